"""Finding and decoding the files `predict` scores: audio files, folders of them, and videos.

Audio goes through the same reader as training (soundfile); video containers, and audio files
soundfile cannot read, through PyAV (FFmpeg's decoders, bundled in its wheels). Both end in the
same channel mix and resampler as training, `data.audio.mix_and_resample`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_lightning.data.audio import AudioDecodeError, mix_and_resample, read_audio

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".mov", ".avi")
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS


@dataclass(frozen=True)
class InputError:
    """An input that could not be scored, with a message that names it and says what to do."""

    path: str
    message: str


def collect_inputs(inputs: list[str] | tuple[str, ...]) -> tuple[list[Path], list[InputError]]:
    """Expand files and folders (recursively) into media files, in order, without repeats.

    Missing paths, unsupported extensions and folders without media become InputErrors; files
    of other types inside a folder are counted in the log, not scored.
    """
    files: list[Path] = []
    errors: list[InputError] = []
    seen: set[Path] = set()
    supported = ", ".join(e.lstrip(".") for e in MEDIA_EXTENSIONS)

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(path)

    for item in inputs:
        path = Path(str(item)).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file())
            media = [p for p in found if p.suffix.lower() in MEDIA_EXTENSIONS]
            if not media:
                errors.append(
                    InputError(str(path), f"folder {str(path)!r} holds no audio or video files ({supported})")
                )
                continue
            if len(found) > len(media):
                log.info(
                    "%s: %d files of other types were not scored (supported: %s)",
                    path,
                    len(found) - len(media),
                    supported,
                )
            for p in media:
                add(p)
        elif path.is_file():
            if path.suffix.lower() not in MEDIA_EXTENSIONS:
                errors.append(
                    InputError(
                        str(path), f"{str(path)!r} is not a supported audio or video file ({supported})"
                    )
                )
            else:
                add(path)
        else:
            errors.append(InputError(str(path), f"{str(path)!r} does not exist (no such file or folder)"))
    return files, errors


def read_with_av(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode the first audio track of any FFmpeg-readable file to mono float32 at `sample_rate`."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioDecodeError(path, "it has no audio track, so there is no speech to score")
            # Planar float at the file's own rate and channels; mixing and resampling then
            # happen exactly as in training.
            resampler = av.AudioResampler(format="fltp")
            chunks, file_rate = [], None
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    file_rate = out.sample_rate
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except AudioDecodeError:
        raise
    except Exception as err:  # PyAV raises its own error types per FFmpeg failure
        raise AudioDecodeError(path, f"{err} (is it a complete audio or video file?)") from err
    if not chunks or file_rate is None:
        raise AudioDecodeError(path, "its audio track holds no samples")
    channels = max(c.shape[0] for c in chunks)
    data = np.concatenate([np.broadcast_to(c, (channels, c.shape[1])) for c in chunks], axis=1)
    return mix_and_resample(data.T.astype(np.float32, copy=False), file_rate, sample_rate)


def read_media(path: str | Path, sample_rate: int) -> np.ndarray:
    """A whole audio or video file as mono float32 at `sample_rate`."""
    if Path(path).suffix.lower() in AUDIO_EXTENSIONS:
        try:
            return read_audio(path, sample_rate)
        except AudioDecodeError as first:
            try:
                return read_with_av(path, sample_rate)
            except AudioDecodeError:
                raise first from None
    return read_with_av(path, sample_rate)
