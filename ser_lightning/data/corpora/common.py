"""What every corpus parser shares: finding audio files, spotting unusable ones, duplicates.

Corpora are downloaded and unpacked by hand in many ways; the usual accidents are an
archive unpacked twice into nested folders (the same recording found twice), a Git LFS
checkout without `git lfs pull` (text pointers named .wav) and empty files left by an
interrupted copy. Each becomes a rejected file with a reason, never a silent drop or a
crash halfway through decoding.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ser_lightning.data.utterances import RejectedFile

# A Git LFS pointer is a short text file that starts with this line.
_LFS_POINTER_PREFIX = b"version https://git-lfs"


def find_audio_files(root: Path, extensions: Iterable[str]) -> list[Path]:
    """Audio files under root (recursively), sorted, matched by extension case-insensitively."""
    extensions = {e.lower() for e in extensions}
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file())


def unusable_reason(path: Path) -> str | None:
    """Why a file cannot be audio at all (empty, Git LFS pointer), or None when it may be."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes); copy it again from the corpus archive"
    if size < 1024:
        with open(path, "rb") as handle:
            if handle.read(len(_LFS_POINTER_PREFIX)) == _LFS_POINTER_PREFIX:
                return "the file is a Git LFS pointer, not audio; run `git lfs pull` in the corpus checkout"
    return None


class FileScreen:
    """Rejects unusable files and later copies of a recording, keeping the first usable copy.

    The key is whatever makes a recording unique in a corpus (RAVDESS: the file name). Files
    arrive in sorted path order, so which copy is kept is stable across scans.
    """

    def __init__(self) -> None:
        self._first: dict[tuple, str] = {}

    def check(self, path: Path, key: tuple) -> RejectedFile | None:
        problem = unusable_reason(path)
        if problem:
            return RejectedFile(str(path), problem)
        first = self._first.setdefault(key, str(path))
        if first == str(path):
            return None
        return RejectedFile(
            str(path),
            f"the same recording as {first} (found twice, e.g. an archive unpacked twice); remove one copy",
        )


def check_speech_only(corpus: str, vocal_channels: Iterable[str]) -> tuple[str, ...]:
    """Corpora other than RAVDESS hold speech only: refuse a channel filter that keeps nothing."""
    channels = tuple(vocal_channels)
    if "speech" not in channels:
        raise ValueError(
            f"data.vocal_channels={list(channels)} keeps no {corpus} file: {corpus} holds speech only; "
            "use data.vocal_channels=[speech]"
        )
    return channels


def missing_root_error(corpus: str, root: Path, help_text: str) -> FileNotFoundError:
    return FileNotFoundError(f"{corpus} folder {str(root)!r} does not exist. {help_text}")
