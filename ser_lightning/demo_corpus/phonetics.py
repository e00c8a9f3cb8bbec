"""Phonetic material: the two RAVDESS statements as syllables, their vowels and consonants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# F1-F3 (Hz) of an adult male vocal tract (Peterson & Barney 1952; Hillenbrand et al. 1995).
VOWEL_FORMANTS: dict[str, tuple[float, float, float]] = {
    "i": (270.0, 2290.0, 3010.0),
    "I": (390.0, 1990.0, 2550.0),
    "a": (730.0, 1090.0, 2440.0),
    "o": (570.0, 840.0, 2410.0),
    "Q": (600.0, 950.0, 2450.0),
    "U": (440.0, 1020.0, 2240.0),
    "@": (500.0, 1500.0, 2500.0),
}
NEUTRAL_VOWEL = np.array(VOWEL_FORMANTS["@"])


@dataclass(frozen=True)
class Syllable:
    """One syllable of a statement: its consonants, vowel targets, length, stress and pause."""

    onset: str  # consonant before the vowel: "k", "t" (voiceless stops), "b", "d", "dh"
    #             (voiced onsets), "s" (fricative) or "" (none)
    vowel_start: str  # vowel target at the start; differs from vowel_end for diphthongs
    vowel_end: str
    length: float  # relative duration
    stressed: bool
    coda: str = ""  # "z" adds a voiced fricative after the vowel
    pause_after: float = 0.0  # relative length of a following pause (word/phrase boundary)


# Keyed by the RAVDESS statement code.
STATEMENTS: dict[str, tuple[Syllable, ...]] = {
    # "Kids are talking by the door"
    "01": (
        Syllable("k", "I", "I", 1.0, True, coda="z", pause_after=0.25),
        Syllable("", "a", "a", 0.7, False),
        Syllable("t", "o", "o", 1.1, True),
        Syllable("k", "I", "I", 0.8, False, pause_after=0.5),
        Syllable("b", "a", "I", 1.1, True),
        Syllable("dh", "@", "@", 0.5, False),
        Syllable("d", "o", "U", 1.4, True),
    ),
    # "Dogs are sitting by the door"
    "02": (
        Syllable("d", "Q", "Q", 1.0, True, coda="z", pause_after=0.25),
        Syllable("", "a", "a", 0.7, False),
        Syllable("s", "I", "I", 1.1, True),
        Syllable("t", "I", "I", 0.8, False, pause_after=0.5),
        Syllable("b", "a", "I", 1.1, True),
        Syllable("dh", "@", "@", 0.5, False),
        Syllable("d", "o", "U", 1.4, True),
    ),
}

# Onset consonants: fraction of the syllable taken, silent closure fraction, noise band (Hz),
# noise level relative to the vowel, and whether the closure carries a low voice bar.
ONSETS: dict[str, tuple[float, float, tuple[float, float], float, bool]] = {
    "": (0.0, 0.0, (0.0, 0.0), 0.0, False),
    "k": (0.24, 0.14, (1500.0, 3500.0), 0.35, False),
    "t": (0.24, 0.14, (3000.0, 6500.0), 0.35, False),
    "b": (0.14, 0.10, (600.0, 2000.0), 0.15, True),
    "d": (0.14, 0.10, (2000.0, 4500.0), 0.15, True),
    "dh": (0.16, 0.0, (2500.0, 6000.0), 0.10, True),
    "s": (0.32, 0.0, (4000.0, 7500.0), 0.30, False),
}
