"""What every corpus parser shares: finding audio files, spotting unusable ones, duplicates.

Corpora are downloaded and unpacked by hand in many ways; the usual accidents are an
archive unpacked twice into nested folders (the same recording found twice), a Git LFS
checkout without `git lfs pull` (text pointers named .wav) and empty files left by an
interrupted copy. Each becomes a rejected file with a reason, never a silent drop or a
crash halfway through decoding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from ser_lightning.data.utterances import CorpusScan, RejectedFile, make_table
from ser_lightning.utils.errors import InvalidSetting, UserError

log = logging.getLogger(__name__)

# A Git LFS pointer is a short text file that starts with this line.
_LFS_POINTER_PREFIX = b"version https://git-lfs"


def find_audio_files(root: Path, extensions: Iterable[str]) -> list[Path]:
    """Audio files under root (recursively), sorted, matched by extension case-insensitively.

    Files inside hidden folders (`.unpack-*` left by a killed unpack, `.download/`, `.git/`) are
    not corpus files: a staging copy would otherwise be kept first and the real file rejected as
    its duplicate. How many were passed over, and where, is logged.

    Args:
        root: the corpus folder.
        extensions: the audio extensions, with their dots (e.g. ".wav").

    Returns:
        The audio files outside hidden folders, sorted.
    """
    extensions = {e.lower() for e in extensions}
    found = [p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file()]
    hidden = [p for p in found if any(part.startswith(".") for part in p.relative_to(root).parts[:-1])]
    if hidden:
        folders = sorted({next(q for q in p.relative_to(root).parts if q.startswith(".")) for p in hidden})
        log.info(
            "passed over %d audio files in hidden folders of %s (%s): not part of the corpus",
            len(hidden),
            root,
            ", ".join(folders[:5]),
        )
    return sorted(set(found) - set(hidden))


def unusable_reason(path: Path) -> str | None:
    """Tell why a file cannot be audio at all, from its size and first bytes.

    Args:
        path: the file.

    Returns:
        The reason (empty, Git LFS pointer), with what to do about it, or None when it may be audio.
    """
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
        """Screen the next file, in sorted path order.

        Args:
            path: the file.
            key: what makes its recording unique in the corpus.

        Returns:
            A RejectedFile when the file is unusable or a later copy of a recording already seen,
            else None.
        """
        problem = unusable_reason(path)
        if problem:
            return RejectedFile(str(path), problem, stage="audio")
        first = self._first.setdefault(key, str(path))
        if first == str(path):
            return None
        return RejectedFile(
            str(path),
            f"the same recording as {first} (found twice, e.g. an archive unpacked twice); remove one copy",
        )


def check_speech_only(corpus: str, vocal_channels: Iterable[str]) -> tuple[str, ...]:
    """Refuse a channel filter that keeps nothing: corpora other than RAVDESS hold speech only.

    Args:
        corpus: the corpus's name, for the message.
        vocal_channels: `data.vocal_channels`.

    Returns:
        The channels as a tuple.

    Raises:
        InvalidSetting: when "speech" is not among them.
    """
    channels = tuple(vocal_channels)
    if "speech" not in channels:
        raise InvalidSetting(
            f"data.vocal_channels={list(channels)} keeps no {corpus} file: {corpus} holds speech only; "
            "use data.vocal_channels=[speech]"
        )
    return channels


def missing_root_error(corpus: str, root: Path, help_text: str) -> FileNotFoundError:
    """Build the error for a corpus folder that does not exist.

    Args:
        corpus: the corpus's name in messages.
        root: the missing folder.
        help_text: where to get the corpus and how to point data.root at it.

    Returns:
        The error (not raised), naming the folder and saying what to do.
    """
    return FileNotFoundError(f"{corpus} folder {str(root)!r} does not exist. {help_text}")


class FileNameError(UserError, ValueError):
    """A file name (or place) that does not follow a corpus's scheme; the message says what is wrong."""


# path -> (what makes the recording unique in its corpus, the row's columns other than
# path, vocal_channel and corpus); raises FileNameError for a file that does not fit.
DescribeFile = Callable[[Path], tuple[tuple, dict]]


def scan_speech_files(
    title: str, root: str | Path, hint: str, corpus: str, describe: DescribeFile
) -> CorpusScan:
    """The utterance table of a speech-only corpus whose labels are in its .wav file names.

    Every .wav under root (recursively, sorted) is described by its name; files whose names do
    not fit, unusable files and second copies of a recording are listed as rejected with the
    reason, never dropped silently. `title` names the corpus in messages, `hint` says where
    to get it.

    Args:
        title: the corpus's name in messages.
        root: the corpus folder.
        hint: where to get the corpus.
        corpus: the value of the table's `corpus` column.
        describe: gives a file's unique key and its columns, or raises FileNameError.

    Returns:
        The table of usable files and the rejected ones with their reasons.

    Raises:
        FileNotFoundError: when the folder does not exist (raised through `missing_root_error`),
            holds no .wav files, or no usable one.
    """  # noqa: DOC501 - raised as `missing_root_error(...)`, which builds a FileNotFoundError
    root = Path(root).expanduser()
    if not root.is_dir():
        raise missing_root_error(title, root, hint)
    files = find_audio_files(root, (".wav",))
    if not files:
        raise FileNotFoundError(f"{title} folder {str(root)!r} holds no .wav files. {hint}")
    rows, rejected, screen = [], [], FileScreen()
    for path in files:
        try:
            key, columns = describe(path)
        except FileNameError as err:
            rejected.append(RejectedFile(str(path), str(err)))
            continue
        problem = screen.check(path, key)
        if problem:
            rejected.append(problem)
            continue
        rows.append({"path": str(path.resolve()), **columns, "vocal_channel": "speech", "corpus": corpus})
    if not rows:
        raise FileNotFoundError(
            f"no usable {title} files under {str(root)!r} ({len(rejected)} rejected). {hint}"
        )
    return CorpusScan(make_table(rows), rejected)
