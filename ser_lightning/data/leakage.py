"""Leakage checks of a split, run before training: speakers and recordings in two splits.

Two ways a test score passes for more than it is:
- a **speaker** in the test split was heard in training (the random split does this on purpose,
  as the earlier SER projects did; a speaker-independent protocol must never do it);
- the same **recording** is in two splits: the same clip in two corpora of a combined set, or
  copied under two names. It is found by a content hash of the decoded audio the model sees
  (the cached waveform: mono, resampled, cropped or padded, peak-normalised), so a copy with
  another name, folder, container or gain is the same recording.

`check_leakage` stops a run whose speaker-independent protocol puts a speaker in two splits, and
any run with one recording in two splits, with the list; the random split is speaker-dependent
by design, which `speaker_note` states with the number of test clips whose speaker is in training
(the run summary and every test report carry it).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ser_lightning.data.splits.base import SPLIT_NAMES
from ser_lightning.utils.errors import UserError

if TYPE_CHECKING:  # annotations only: the manifest imports this module's callers
    from ser_lightning.data.manifest import Manifest

log = logging.getLogger(__name__)

# how many offending speakers / recordings an error lists before "... and N more"
LISTED = 20


class LeakageError(UserError, ValueError):
    """A split that would let test clips be learnt from: the message lists the speakers or files."""


def clip_table(table: pd.DataFrame) -> pd.DataFrame:
    """The clip information reports read (speaker, gender, intensity, corpus), one row per clip.

    The speaker is the table's `actor`, unique across the corpora of a combined table.

    Args:
        table: rows of the utterance table, one per clip.

    Returns:
        `speaker` and whichever of `gender`, `intensity` and `corpus` the table has, as strings.
    """
    clips = pd.DataFrame({"speaker": table["actor"].astype(str).to_numpy()})
    for column in ("gender", "intensity", "corpus"):
        if column in table:
            clips[column] = table[column].astype(str).to_numpy()
    return clips


def speaker_note(manifest: Manifest) -> dict:
    """Note whether the protocol keeps test speakers out of training.

    Args:
        manifest: a prepared manifest (its table, split assignment and splitter).

    Returns:
        The split's name, whether it is speaker-independent, the numbers of test clips and
        test speakers, and how many of each are in the training split (0 for a
        speaker-independent split).
    """
    table, assignment = manifest.table, manifest.assignment.to_numpy()
    actors = table["actor"].astype(str).to_numpy()
    trained = set(actors[assignment == "train"])
    test = assignment == "test"
    heard = np.array([a in trained for a in actors[test]], dtype=bool)
    return {
        "split": manifest.splitter.name,
        "speaker_independent": bool(manifest.splitter.speaker_independent),
        "test_clips": int(test.sum()),
        "test_clips_with_training_speaker": int(heard.sum()),
        "test_speakers": int(len(set(actors[test]))),
        "test_speakers_in_training": int(len(set(actors[test]) & trained)),
    }


def recording_hashes(waveforms: np.ndarray) -> list[str]:
    """Hash the content of each row of the waveform cache.

    Args:
        waveforms: the waveform cache, one row per clip.

    Returns:
        A BLAKE2b (128-bit) hex digest per row: equal for identical decoded audio.
    """
    return [
        hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16).hexdigest() for row in waveforms
    ]


@dataclass
class LeakageReport:
    """What check_leakage found."""

    split: str
    speaker_independent: bool
    speakers_in_several_splits: dict[str, list[str]] = field(default_factory=dict)
    # each: the copies of one recording found in more than one split, as (path, split) pairs
    recordings_in_several_splits: list[list[tuple[str, str]]] = field(default_factory=list)
    copies_within_one_split: int = 0
    recordings_checked: int = 0

    def to_dict(self) -> dict:
        """Summarise the report for the run summary.

        Returns:
            The split, whether it is speaker-independent, and counts of speakers and recordings
            in several splits, copies within one split and recordings checked.
        """
        return {
            "split": self.split,
            "speaker_independent": self.speaker_independent,
            "speakers_in_several_splits": len(self.speakers_in_several_splits),
            "recordings_in_several_splits": len(self.recordings_in_several_splits),
            "copies_within_one_split": self.copies_within_one_split,
            "recordings_checked": self.recordings_checked,
        }


def find_leakage(
    table: pd.DataFrame,
    assignment: ArrayLike,
    split: str,
    speaker_independent: bool,
    hashes: list[str] | None = None,
) -> LeakageReport:
    """Find speakers and (given their content hashes) recordings that are in more than one split.

    Args:
        table: the utterance table (`actor`, `path`).
        assignment: each row's split; rows of no split ("unused": a test partition data.split=official
            does not test on) are served by no loader and are not checked.
        split: the split protocol's name.
        speaker_independent: whether the protocol keeps speakers apart.
        hashes: each row's content hash (`recording_hashes`), or None to check speakers only.

    Returns:
        What was found; nothing is refused here (`check_leakage` decides).
    """
    assignment = np.asarray(assignment)
    report = LeakageReport(split, speaker_independent)
    served = np.isin(assignment, SPLIT_NAMES)
    if not served.all():
        table, assignment = table[served], assignment[served]
        hashes = None if hashes is None else [h for h, keep in zip(hashes, served, strict=True) if keep]
    frame = pd.DataFrame({"actor": table["actor"].astype(str).to_numpy(), "split": assignment})
    splits_of = frame.groupby("actor")["split"].agg(lambda s: sorted(set(s)))
    report.speakers_in_several_splits = {a: s for a, s in splits_of.items() if len(s) > 1}
    if hashes is not None:
        report.recordings_checked = len(hashes)
        paths = table["path"].astype(str).to_numpy()
        groups: dict[str, list[int]] = {}
        for row, digest in enumerate(hashes):
            groups.setdefault(digest, []).append(row)
        for rows in groups.values():
            if len(rows) < 2:
                continue
            if len({assignment[r] for r in rows}) > 1:
                report.recordings_in_several_splits.append([(paths[r], str(assignment[r])) for r in rows])
            else:
                report.copies_within_one_split += len(rows) - 1
    return report


def check_leakage(manifest: Manifest, waveforms: np.ndarray | None) -> LeakageReport:
    """Find leakage in a prepared manifest (and its waveform cache) and stop on what is not allowed.

    Not allowed are a speaker in two splits under a speaker-independent protocol, and one
    recording in two splits. Copies within one split and a speaker-dependent protocol are logged
    as warnings.

    Args:
        manifest: a prepared manifest.
        waveforms: its waveform cache, or None to check speakers only.

    Returns:
        What was found.

    Raises:
        LeakageError: when a speaker or recording is in two splits where that is not allowed;
            the message lists them.
    """
    splitter = manifest.splitter
    hashes = recording_hashes(waveforms) if waveforms is not None else None
    report = find_leakage(
        manifest.table, manifest.assignment.to_numpy(), splitter.name, splitter.speaker_independent, hashes
    )
    problems = []
    if splitter.speaker_independent and report.speakers_in_several_splits:
        listed = [f"{a} ({', '.join(s)})" for a, s in report.speakers_in_several_splits.items()]
        problems.append(
            f"{len(listed)} speaker(s) are in more than one split of the speaker-independent "
            f"data.split={splitter.name}: {_listed(listed)}. Check the actor ids the corpus parser reads "
            "(two corpora sharing ids?) and data.folds"
        )
    if report.recordings_in_several_splits:
        listed = [
            " = ".join(f"{path} [{split}]" for path, split in group)
            for group in report.recordings_in_several_splits
        ]
        problems.append(
            f"{len(listed)} recording(s) are in more than one split (identical decoded audio under "
            f"different names): {_listed(listed)}. Remove the copies from the corpus folder"
        )
    if problems:
        raise LeakageError(f"leakage check of {manifest.root} failed:\n- " + "\n- ".join(problems))
    if report.copies_within_one_split:
        log.warning(
            "%d recording(s) of %s are copies of another in the same split (identical decoded audio); "
            "they weigh twice in that split's scores",
            report.copies_within_one_split,
            manifest.root,
        )
    if not splitter.speaker_independent:
        note = speaker_note(manifest)
        log.warning(
            "data.split=%s is speaker-dependent: %d of %d test clips have their speaker in the training split",
            splitter.name,
            note["test_clips_with_training_speaker"],
            note["test_clips"],
        )
    return report


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:LISTED])
    return shown + (f"; ... and {len(items) - LISTED} more" if len(items) > LISTED else "")
