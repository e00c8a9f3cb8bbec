"""Which containers the decoders open: audio and video files only, never playlists.

FFmpeg guesses a file's format from its bytes, and some of its formats are not media but lists
of other files or addresses: an `ffconcat` list that names itself is opened again and again until
the process runs out of file handles, and an HLS (`.m3u8`) or DASH playlist makes FFmpeg read
whatever file or URL it names. A recording someone else sent must never pick what is read, so

- every FFmpeg open goes through `FFMPEG_OPTIONS`: the `file` protocol only (no network, no
  `subfile`, `concat` or `data` protocols) and the demuxers of `AUDIO_VIDEO_DEMUXERS` only;
- a file that starts like a playlist is refused before FFmpeg sees it (`refuse_playlists`), with
  a message that says so (the whitelist alone would refuse it with a bare "Invalid argument");
- an upload's suffix is chosen by the server from its first bytes (`sniffed_suffix`), never by
  the client's file name.
"""

from __future__ import annotations

from pathlib import Path

from ser_lightning.decoding import AudioDecodeError

# FFmpeg demuxers of audio and video files (names as `ffmpeg -formats` prints them; one entry
# matches a demuxer with several names, e.g. `mov` is "mov,mp4,m4a,3gp,3g2,mj2").
AUDIO_VIDEO_DEMUXERS: tuple[str, ...] = (
    "wav",
    "w64",
    "flac",
    "ogg",
    "mp3",
    "aac",
    "aiff",
    "caf",
    "amr",
    "au",
    "mov",
    "matroska",
    "avi",
    "asf",
    "mpegts",
    "flv",
)
FFMPEG_OPTIONS: dict[str, str] = {
    "protocol_whitelist": "file",
    "format_whitelist": ",".join(AUDIO_VIDEO_DEMUXERS),
}
# How many leading bytes the checks below read.
HEAD_BYTES = 64
# Leading bytes of playlists and file lists, with what they are called in messages.
_PLAYLISTS: tuple[tuple[bytes, str], ...] = (
    (b"#EXTM3U", "an HLS/M3U playlist"),
    (b"ffconcat", "an FFmpeg concat list"),
    (b"[playlist]", "a PLS playlist"),
    (b"<?xml", "an XML document (a DASH manifest or another playlist)"),
    (b"<MPD", "a DASH manifest"),
)
# Leading bytes of the formats the server names itself (offset, bytes, suffix).
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"fLaC", ".flac"),
    (0, b"OggS", ".ogg"),
    (0, b"ID3", ".mp3"),
    (0, b"\xff\xfb", ".mp3"),
    (0, b"\xff\xf3", ".mp3"),
    (0, b"\xff\xf2", ".mp3"),
    (0, b"\x1a\x45\xdf\xa3", ".mkv"),
    (4, b"ftyp", ".mp4"),
)
# Media the server cannot name from its first bytes: FFmpeg probes it, within the whitelist.
UNNAMED_SUFFIX = ".media"


class UnsupportedContainerError(AudioDecodeError):
    """A file that is a playlist or a list of other files, not a recording."""


def sniffed_suffix(head: bytes) -> str:
    """Choose the extension the decoders go by for a file whose bytes start with `head`.

    The server names its copy of an upload itself, from the upload's first bytes.

    Args:
        head: the file's first bytes (HEAD_BYTES of them).

    Returns:
        The suffix of the first container whose magic bytes match (`.wav`, `.flac`, `.mp3`, ...),
        or UNNAMED_SUFFIX, for FFmpeg to probe within its whitelist.
    """
    if head[:4] == b"RIFF":
        return ".avi" if head[8:12] == b"AVI " else ".wav"
    for offset, magic, suffix in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return suffix
    return UNNAMED_SUFFIX


def playlist_kind(head: bytes) -> str | None:
    """Tell what kind of playlist, if any, the bytes `head` start.

    Args:
        head: the file's first bytes; a byte-order mark and blank lines before them are skipped.

    Returns:
        The playlist's kind in words, or None for anything else.
    """
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")  # a byte-order mark or blank lines first
    return next((kind for magic, kind in _PLAYLISTS if start.startswith(magic)), None)


def refuse_playlists(path: str | Path) -> None:
    """Refuse the file at `path` when it is a playlist or file list.

    A file that cannot be opened passes: the decoder's own open reports what is wrong with it.

    Args:
        path: the file to check.

    Raises:
        UnsupportedContainerError: when the file's first bytes start a playlist or file list.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return  # the decoder's own open reports what is wrong with the file
    kind = playlist_kind(head)
    if kind is not None:
        raise UnsupportedContainerError(
            path,
            f"it is {kind}, not a recording: playlists and file lists are not accepted, "
            "send the audio or video file itself",
        )
