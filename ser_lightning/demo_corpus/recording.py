"""Recording stage: the actor's room and microphone, the take's level and the noise floor."""

from __future__ import annotations

import numpy as np
from scipy import signal

from ser_lightning.demo_corpus.speakers import SpeakerProfile

# RMS over the vowels of a neutral take (dBFS); the share of a cue's loudness dB that reaches
# the recording; and the range peaks are squeezed into (speech has a ~12 dB crest factor).
_REFERENCE_LEVEL_DB = -18.0
_LEVEL_COMPRESSION = 0.5
_PEAK_RANGE = (0.3, 0.88)


def record(
    speech: np.ndarray,
    speaker: SpeakerProfile,
    cue: dict[str, float],
    vowels: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The take as the microphone hears it, float64 in [-0.99, 0.99].

    `vowels` masks the vowel samples its level is measured on.

    Args:
        speech: the dry speech signal.
        speaker: the actor, whose room and microphone chain colour the take.
        cue: the take's cue values, by name (its loudness).
        vowels: True on the vowels' samples.
        rng: the take's random stream.

    Returns:
        The recorded take, `speech.shape`.
    """
    total = speech.size
    speech = signal.fftconvolve(speech, speaker.room_ir)[:total]
    speech = signal.sosfilt(speaker.channel_sos, speech)
    active_rms = np.sqrt(np.mean(speech[vowels] ** 2)) + 1e-12
    # Takes are recorded with part of their loudness spread (a recording engineer rides the
    # gain), then peaks are squeezed smoothly into _PEAK_RANGE: nothing clips, nothing vanishes
    # into the noise floor, and louder takes stay louder.
    level_db = _REFERENCE_LEVEL_DB + _LEVEL_COMPRESSION * cue["loudness"] + rng.normal(0.0, 0.5)
    speech *= 10.0 ** (level_db / 20.0) / active_rms
    peak = np.max(np.abs(speech))
    low, high = np.log(_PEAK_RANGE[0]), np.log(_PEAK_RANGE[1])
    centre, half_width = 0.5 * (low + high), 0.5 * (high - low)
    squeezed = centre + half_width * np.tanh((np.log(peak) - centre) / half_width)
    speech *= np.exp(squeezed) / peak
    hiss = signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal(total))  # reddish room noise
    hiss *= 10.0 ** (speaker.noise_db / 20.0) / np.std(hiss)
    audio = speech + hiss
    return np.clip(audio, -0.99, 0.99)
