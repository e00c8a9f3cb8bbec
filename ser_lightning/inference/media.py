"""Finding and decoding the files `predict` scores: audio files, folders of them, and videos.

Audio goes through the same reader as training (soundfile); video containers, and audio files
soundfile cannot read, through PyAV (FFmpeg's decoders, bundled in its wheels). Both end in the
same channel mix and resampler as training, `decoding.MonoStream`, applied block by block: a
file's channels at its own rate are never all in memory, and a file longer than
`max_duration_s` is refused, from its header when it says how long it is, else as soon as
decoding passes the limit; `max_samples` likewise limits the samples decoded (all channels, at the
file's own rate), which is what decoding costs. FFmpeg opens files as `containers` allows: audio
and video containers from local files only, never playlists.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ser_lightning.decoding import AudioDecodeError, MonoStream, decode_error, probe_audio
from ser_lightning.inference.containers import FFMPEG_OPTIONS, refuse_playlists
from ser_lightning.utils.errors import UserError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".mov", ".avi")
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS
# The longest recording predict decodes by default: one hour is 230 MB of mono float32 at 16 kHz.
DEFAULT_MAX_DURATION_S = 3600.0
# Seconds of the file (all channels, its own rate) read at a time before mixing and resampling.
BLOCK_SECONDS = 1.0
UNKNOWN_FRAMES = np.iinfo(np.int64).max
# How decoding.probe_audio words a WAV whose data ends before its header says.
TRUNCATED = "it is truncated"
# How read_with_av words a file whose audio codec FFmpeg has no decoder for.
UNSUPPORTED_CODEC = "its audio codec"


class MediaTooLongError(UserError, ValueError):
    """A recording longer than predict's `max_duration_s`; the message names the file and the key."""

    def __init__(self, path: str | Path, seconds: float | None, max_duration_s: float, sample_rate: int):
        self.path, self.seconds, self.max_duration_s = str(path), seconds, max_duration_s
        mb_per_hour = 3600 * sample_rate * 4 / 1e6
        super().__init__(
            f"{self.path!r} {self.length}, longer than max_duration_s={max_duration_s:g} s, the most predict "
            f"decodes from one file; cut it into shorter files, or raise max_duration_s (each hour held "
            f"takes {mb_per_hour:.0f} MB of memory)"
        )

    @property
    def length(self) -> str:
        """How long the recording is, as far as known, for messages."""
        return (
            f"lasts {self.seconds:.1f} s" if self.seconds is not None else "decodes to more audio than that"
        )


class MediaTooManySamplesError(MediaTooLongError):
    """A recording that decodes to more than `max_samples` samples (all channels, its own rate).

    A high rate and many channels cost decoding time whatever its length in seconds.
    """

    def __init__(self, path: str | Path, samples: int | None, max_samples: int, rate: int, channels: int):
        self.path, self.samples, self.max_samples = str(path), samples, max_samples
        self.seconds, self.max_duration_s = None, None
        ValueError.__init__(
            self,
            f"{self.path!r} {self.length} ({rate} Hz x {channels} channels), more than the {max_samples:,} "
            "samples decoded from one file; send it at a lower rate or with fewer channels (mono 16 kHz "
            "is what the model hears), or a shorter recording",
        )

    @property
    def length(self) -> str:
        """How many samples the recording decodes to, as far as known, for messages."""
        if self.samples is None:
            return "decodes to more samples than that"
        return f"decodes to {self.samples:,} samples"


@dataclass(frozen=True)
class InputError:
    """An input that could not be scored, with a message that names it and says what to do."""

    path: str
    message: str


def collect_inputs(inputs: list[str] | tuple[str, ...]) -> tuple[list[Path], list[InputError]]:
    """Expand files and folders (recursively) into media files, in order, without repeats.

    Missing paths, unsupported extensions and folders without media become InputErrors; files
    of other types inside a folder are counted in the log, not scored.

    Args:
        inputs: files and folders, as given on the command line.

    Returns:
        The media files to score and the InputErrors of the inputs that cannot be.
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


class BoundedMonoStream(MonoStream):
    """A MonoStream that refuses a file that decodes to more than its limits.

    The limits are `max_duration_s` (None: no limit; MediaTooLongError) and `max_samples`
    samples over all channels (None: no limit; MediaTooManySamplesError); the file is refused
    before the block that passes a limit is mixed.
    """

    def __init__(
        self,
        path: str | Path,
        file_rate: int,
        sample_rate: int,
        max_duration_s: float | None,
        max_samples: int | None = None,
    ):
        super().__init__(path, file_rate, sample_rate)
        self.max_duration_s, self.max_samples = max_duration_s, max_samples

    def add(self, block: np.ndarray) -> None:
        """Mix and resample one block of `(frames, channels)` samples, unless it passes a limit.

        Raises:
            MediaTooLongError: when the file's frames so far pass `max_duration_s`.
            MediaTooManySamplesError: when its samples over all channels pass `max_samples`.
        """
        frames = self.frames + len(block)
        if self.max_duration_s is not None and frames > self.max_duration_s * self.file_rate:
            raise MediaTooLongError(self.path, None, self.max_duration_s, self.sample_rate)
        channels = block.shape[1]
        if self.max_samples is not None and frames * channels > self.max_samples:
            raise MediaTooManySamplesError(self.path, None, self.max_samples, self.file_rate, channels)
        super().add(block)


def check_size(
    path: str | Path,
    seconds: float | None,
    max_duration_s: float | None,
    sample_rate: int,
    header: tuple[int, int] | None = None,
    max_samples: int | None = None,
) -> None:
    """Refuse a file by its header, before decoding it, when it is over a limit.

    A file is refused when its `seconds` are more than `max_duration_s`, or at `header` =
    (rate, channels) make more than `max_samples` samples. An unknown length passes.

    Args:
        path: the file, for the message.
        seconds: its length according to its header, or None when the header does not say.
        max_duration_s: the longest file decoded, or None for no limit.
        sample_rate: the rate it is decoded to (for the message's memory estimate).
        header: the file's own (rate, channels), or None when unknown.
        max_samples: the most samples (all channels) decoded, or None for no limit.

    Raises:
        MediaTooLongError: when `seconds` is over `max_duration_s`.
        MediaTooManySamplesError: when its samples over all channels are over `max_samples`.
    """
    if max_duration_s is not None and seconds is not None and seconds > max_duration_s:
        raise MediaTooLongError(path, seconds, max_duration_s, sample_rate)
    if max_samples is not None and seconds is not None and header is not None:
        rate, channels = header
        samples = int(round(seconds * rate)) * channels
        if samples > max_samples:
            raise MediaTooManySamplesError(path, samples, max_samples, rate, channels)


def read_with_soundfile(
    path: str | Path, sample_rate: int, max_duration_s: float | None = None, max_samples: int | None = None
) -> np.ndarray:
    """Read an audio file with soundfile, block by block, as mono float32 at `sample_rate`.

    Args:
        path: the audio file.
        sample_rate: the rate to resample to.
        max_duration_s: the longest file decoded, or None for no limit.
        max_samples: the most samples (all channels, the file's own rate) decoded, or None.

    Returns:
        The mono waveform.

    Raises:
        AudioDecodeError: when soundfile cannot read the file (raised through `decode_error`).
        MediaTooLongError: when the file is over `max_duration_s` or (MediaTooManySamplesError)
            `max_samples`, by its header or as it is decoded.
    """  # noqa: DOC501 - raised as `decode_error(...)`, which builds an AudioDecodeError
    info = probe_audio(path)
    # libsndfile reports the largest count when the header leaves the length open (a FLAC
    # written to a pipe): the limit is then enforced on the samples decoded.
    known = info.frames < UNKNOWN_FRAMES
    check_size(
        path,
        info.frames / info.samplerate if known else None,
        max_duration_s,
        sample_rate,
        (info.samplerate, info.channels),
        max_samples,
    )
    mono = BoundedMonoStream(path, info.samplerate, sample_rate, max_duration_s, max_samples)
    block = max(1, int(BLOCK_SECONDS * info.samplerate))
    try:
        for data in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            mono.add(data)
    except MediaTooLongError:
        raise
    except Exception as err:  # soundfile raises several types for unreadable input
        raise decode_error(path, err) from err
    return mono.finish()


def _av_seconds(container, stream) -> float | None:
    """Read how long the audio track lasts according to the container.

    Returns:
        The stream's duration in seconds, else the container's, else None when neither says.
    """
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        import av

        return container.duration / av.time_base
    return None


def read_with_av(
    path: str | Path, sample_rate: int, max_duration_s: float | None = None, max_samples: int | None = None
) -> np.ndarray:
    """Decode the first audio track of an audio or video container to mono float32 at `sample_rate`.

    FFmpeg opens the file as `containers.FFMPEG_OPTIONS` allows: local files, no playlists.

    Args:
        path: the audio or video file.
        sample_rate: the rate to resample to.
        max_duration_s: the longest file decoded, or None for no limit.
        max_samples: the most samples (all channels, the file's own rate) decoded, or None.

    Returns:
        The mono waveform.

    Raises:
        AudioDecodeError: when the file is a playlist (UnsupportedContainerError), has no audio
            track or no samples, its codec has no decoder, its format is outside the whitelist,
            or FFmpeg fails to decode it.
        MediaTooLongError: when the file is over `max_duration_s` or (MediaTooManySamplesError)
            `max_samples`, by its header or as it is decoded.
    """
    import av

    refuse_playlists(path)
    mono: BoundedMonoStream | None = None
    stream = None
    try:
        with av.open(str(path), container_options=FFMPEG_OPTIONS) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioDecodeError(path, "it has no audio track, so there is no speech to score")
            context = stream.codec_context
            check_size(
                path,
                _av_seconds(container, stream),
                max_duration_s,
                sample_rate,
                (context.sample_rate, context.channels) if context.sample_rate else None,
                max_samples,
            )
            # Planar float at the file's own rate and channels; each frame is then mixed and
            # resampled exactly as in training.
            resampler = av.AudioResampler(format="fltp")
            frames = itertools.chain.from_iterable(
                resampler.resample(frame) for frame in itertools.chain(container.decode(stream), [None])
            )
            for out in frames:
                if mono is None:
                    mono = BoundedMonoStream(path, out.sample_rate, sample_rate, max_duration_s, max_samples)
                mono.add(out.to_ndarray().T)
    except (AudioDecodeError, MediaTooLongError):
        raise
    except Exception as err:  # PyAV raises its own error types per FFmpeg failure
        if type(err).__name__ == "DecoderNotFoundError":
            codec = (
                getattr(getattr(stream, "codec_context", None), "name", None) if stream is not None else None
            )
            raise AudioDecodeError(
                path,
                f"{UNSUPPORTED_CODEC} ({codec or 'unknown to FFmpeg'}) has no decoder here; convert it to wav, flac or mp3",
            ) from err
        if type(err).__name__ == "ArgumentError" and getattr(err, "errno", None) == 22:
            # FFmpeg's answer to a format outside FFMPEG_OPTIONS' whitelist
            raise AudioDecodeError(
                path,
                "it is not an audio or video container this decoder opens (wav, flac, ogg, mp3, mp4, mkv, ...)",
            ) from err
        raise AudioDecodeError(path, f"{err} (is it a complete audio or video file?)") from err
    if mono is None or mono.frames == 0:
        raise AudioDecodeError(path, "its audio track holds no samples")
    return mono.finish()


def read_media(
    path: str | Path, sample_rate: int, max_duration_s: float | None = None, max_samples: int | None = None
) -> np.ndarray:
    """A whole audio or video file as mono float32 at `sample_rate`.

    `max_duration_s` (None: no limit) refuses longer files with MediaTooLongError, `max_samples`
    (None: no limit) files decoding to more samples over all channels with MediaTooManySamplesError,
    and a playlist is refused with containers.UnsupportedContainerError.

    Audio files go through soundfile first, then through PyAV when soundfile cannot read them
    (but not when soundfile found a truncated WAV); other files through PyAV.

    Args:
        path: the audio or video file.
        sample_rate: the rate to resample to.
        max_duration_s: the longest file decoded, or None for no limit.
        max_samples: the most samples (all channels, the file's own rate) decoded, or None.

    Returns:
        The mono waveform.

    Raises:
        AudioDecodeError: when neither decoder can read the file: soundfile's error, or PyAV's
            when it names a codec without a decoder.
    """
    refuse_playlists(path)
    if Path(path).suffix.lower() in AUDIO_EXTENSIONS:
        try:
            return read_with_soundfile(path, sample_rate, max_duration_s, max_samples)
        except AudioDecodeError as first:
            if first.problem.startswith(TRUNCATED):
                # soundfile read the header and found less data than it declares: FFmpeg would
                # score the part that is there, as if it were the whole recording
                raise
            try:
                return read_with_av(path, sample_rate, max_duration_s, max_samples)
            except AudioDecodeError as second:
                # FFmpeg naming a codec it cannot decode says more than soundfile's format error
                raise (second if second.problem.startswith(UNSUPPORTED_CODEC) else first) from None
    return read_with_av(path, sample_rate, max_duration_s, max_samples)
