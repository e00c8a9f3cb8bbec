"""Files that cannot be used: found before any split or cache, listed, never mislabeled.

A corpus on disk is messy: names that fit no parser, empty or truncated files, text saved as
`.wav`. Two kinds of file are left out of the utterance table, each with a reason a user can
act on:

- `label`: the corpus parser could not label the name (it already reports these);
- `audio`: the file cannot be decoded (`screen_audio` reads every frame of every labelled
  file once, so that the table holds only files the waveform cache can decode).

`data.on_error` says what happens to them: `skip` (default) leaves them out and lists them in
`rejected_files.csv` of the run; `raise` stops the run naming them. Either way a run stops when
the share of unusable files exceeds `data.max_skip_fraction`: that many bad files usually
means a wrong folder or a broken copy, not a few stray files.

The audio check is cached like the arrays (content-addressed on the file list), so a second
run reads no audio to know which files are bad.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ser_lightning.data.cache import ArrayCache, cache_key, file_fingerprint
from ser_lightning.data.utterances import CorpusScan, RejectedFile, rejected_frame
from ser_lightning.decoding import AudioDecodeError, probe_audio
from ser_lightning.utils.errors import InvalidSetting, UserError

log = logging.getLogger(__name__)

ON_ERROR_CHOICES = ("skip", "raise")
# Bump when the audio check accepts or refuses different files for the same inputs.
AUDIO_CHECK_VERSION = 1
_EXAMPLES = 5


class UnusableFilesError(UserError, ValueError):
    """The run stops because of unusable files; `rejected` lists every one with its reason."""

    def __init__(self, message: str, rejected: list[RejectedFile]):
        super().__init__(message)
        self.rejected = rejected

    def __reduce__(self):  # picklable (DDP ranks) despite the two-argument init
        return type(self), (str(self), self.rejected)


@dataclass(frozen=True)
class SkipPolicy:
    """What to do with unusable files (`data.on_error`, `data.max_skip_fraction`)."""

    on_error: str = "skip"
    max_skip_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR_CHOICES:
            raise InvalidSetting(f"data.on_error={self.on_error!r} must be one of {list(ON_ERROR_CHOICES)}")
        if not 0.0 <= self.max_skip_fraction <= 1.0:
            raise InvalidSetting(
                f"data.max_skip_fraction={self.max_skip_fraction} must be a share between 0 and 1 "
                "(0.05 stops a run when more than 5% of the files cannot be used)"
            )

    def enforce(self, scan: CorpusScan) -> None:
        """Stop the run when the scan's rejected files are not allowed.

        Not allowed are any with on_error=raise, or more than max_skip_fraction of the files (or
        all of them) with on_error=skip.

        Args:
            scan: the scan after screening.

        Raises:
            UnusableFilesError: when no file is usable, or the rejected files are not allowed;
                the message shows a few of them with their reasons.
        """
        if len(scan.table) == 0:
            raise UnusableFilesError(
                f"none of the {len(scan.rejected)} files can be used:{_examples(scan.rejected)}",
                scan.rejected,
            )
        if not scan.rejected:
            return
        candidates = len(scan.table) + len(scan.rejected)
        share = len(scan.rejected) / candidates
        listing = _examples(scan.rejected)
        if self.on_error == "raise":
            raise UnusableFilesError(
                f"{len(scan.rejected)} of {candidates} files cannot be used (data.on_error=raise):{listing}\n"
                "Fix or remove them, or set data.on_error=skip to leave them out.",
                scan.rejected,
            )
        if share > self.max_skip_fraction:
            raise UnusableFilesError(
                f"{len(scan.rejected)} of {candidates} files ({share:.1%}) cannot be used, more than "
                f"data.max_skip_fraction={self.max_skip_fraction} allows:{listing}\n"
                "Check that data.root points at the corpus and that its files are complete; raise "
                "data.max_skip_fraction to train on the rest anyway.",
                scan.rejected,
            )


def _examples(rejected: list[RejectedFile]) -> str:
    text = "".join(f"\n  {item.path}: {item.reason}" for item in rejected[:_EXAMPLES])
    if len(rejected) > _EXAMPLES:
        text += f"\n  ... and {len(rejected) - _EXAMPLES} more"
    return text


def skip_counts(rejected: list[RejectedFile]) -> dict[str, int]:
    """Count the rejected files per stage, for the run summary.

    Args:
        rejected: the rejected files.

    Returns:
        The number of files per stage ("label", "audio") that has any.
    """
    counts: dict[str, int] = {}
    for item in rejected:
        counts[item.stage] = counts.get(item.stage, 0) + 1
    return counts


def check_audio_file(path: str | Path, block_frames: int = 1 << 16) -> str | None:
    """Decode every frame of a file to check that it can be used.

    Reads in blocks, so a long recording costs one block of memory.

    Args:
        path: the audio file.
        block_frames: frames read at a time.

    Returns:
        None when every frame decodes, else the reason it cannot be used.
    """
    try:
        probe_audio(path)
        with sf.SoundFile(str(path)) as handle:
            for _ in handle.blocks(blocksize=block_frames, dtype="float32"):
                pass
    except AudioDecodeError as err:
        return f"cannot decode audio: {err.problem}; replace or remove the file"
    except Exception as err:  # libsndfile reports broken data in several exception types
        return f"cannot decode audio: {getattr(err, 'error_string', None) or err}; replace or remove the file"
    return None


def screen_audio(scan: CorpusScan, cache: ArrayCache, workers: int | None = None) -> CorpusScan:
    """The scan without the files that cannot be decoded; those join `scan.rejected`.

    The result of the check is a cache entry: one byte per file (1 = decodes), the reasons in
    its metadata, keyed on the file list, so it is computed once per corpus state.

    Args:
        scan: the scan of the corpus.
        cache: the run's cache; the check's entries go in its `audiocheck` folder.
        workers: threads that decode files; None chooses by the number of files.

    Returns:
        The scan itself when every file decodes, else a new scan without the others.
    """
    paths = scan.table["path"].tolist()
    key = cache_key(files=file_fingerprint(paths), version=AUDIO_CHECK_VERSION)

    def fill(out: np.ndarray) -> dict:
        count = workers or min(8, max(1, len(paths) // 64))
        with ThreadPoolExecutor(max_workers=count) as pool:
            reasons = list(pool.map(check_audio_file, paths))
        out[:] = [reason is None for reason in reasons]
        return {"reasons": {str(i): reason for i, reason in enumerate(reasons) if reason is not None}}

    # beside, not among, the data arrays
    checks = ArrayCache(cache.directory / "audiocheck", cache.lock_timeout)
    checks.build("audiocheck", key, (len(paths),), "uint8", fill, {"num_files": len(paths)})
    usable = np.asarray(checks.load("audiocheck", key), dtype=bool)
    if usable.all():
        return scan
    reasons = checks.metadata("audiocheck", key)["reasons"]
    failures = [RejectedFile(paths[i], reasons[str(i)], stage="audio") for i in np.flatnonzero(~usable)]
    table = scan.table[usable].reset_index(drop=True)
    return CorpusScan(table, [*scan.rejected, *failures], scan.excluded_by_filter)


def write_rejected(rejected: list[RejectedFile], directory: str | Path) -> Path:
    """Write rejected_files.csv (path, stage, reason) in `directory`, creating it if needed.

    Args:
        rejected: the rejected files.
        directory: the folder to write into.

    Returns:
        The CSV's path.
    """
    path = Path(directory) / "rejected_files.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rejected_frame(rejected).to_csv(path, index=False)
    return path
