"""Turning audio files into the fixed-length waveforms every model sees.

Decoding (ser_lightning.decoding) is followed by peak normalisation and cropping or zero-padding
to the clip length of the model's AudioSettings (ser_lightning.audio_settings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ser_lightning.audio_settings import AudioSettings, fit_length, peak_normalize
from ser_lightning.decoding import decode_frames, probe_audio

# A file longer than offset + duration by more than this is decoded only around its crop.
PARTIAL_READ_MARGIN_SECONDS = 30.0
# Audio read on each side of a partial window so that the resampler's edges fall outside the crop.
RESAMPLE_CONTEXT_SECONDS = 0.05


def _partial_window(info, settings: AudioSettings) -> tuple[int, int, int] | None:
    """Find the part of a long file to decode for its crop.

    Args:
        info: the file's header (`decoding.probe_audio`).
        settings: the clip's rate, offset, duration and crop.

    Returns:
        (first file frame, frame count, samples to skip after resampling) covering the crop of
        a long file, or None when the file is short enough to decode whole.
    """
    rate, file_rate = settings.sample_rate, info.samplerate
    length = int(round(info.frames * rate / file_rate))  # samples after resampling
    if length / rate <= settings.offset + settings.duration + PARTIAL_READ_MARGIN_SECONDS:
        return None
    target = settings.num_samples
    offset = int(round(settings.offset * rate))
    begin = offset + (length - offset - target) // 2 if settings.crop == "center" else offset
    file_begin = begin * file_rate / rate
    context = 0 if file_rate == rate else int(np.ceil(RESAMPLE_CONTEXT_SECONDS * file_rate))
    first = max(0, int(np.floor(file_begin)) - context)
    stop = min(info.frames, int(np.ceil(file_begin + target * file_rate / rate)) + context + 1)
    skip = int(round((file_begin - first) * rate / file_rate))
    return first, stop - first, skip


def load_waveform(path: str | Path, settings: AudioSettings) -> np.ndarray:
    """Decode, mix to mono, resample, peak-normalise and crop/pad one file.

    A file longer than the clip by more than PARTIAL_READ_MARGIN_SECONDS is read only around
    its crop (so a 10-minute recording costs the memory of a few seconds), and is then
    peak-normalised on that crop; shorter files are normalised on the whole recording.

    Args:
        path: the audio file.
        settings: the model's audio settings.

    Returns:
        The clip: mono float32, `settings.num_samples` long, at `settings.sample_rate`.
    """
    info = probe_audio(path)
    window = _partial_window(info, settings)
    if window is None:
        samples = decode_frames(path, settings.sample_rate)
        if settings.peak_normalize:
            samples = peak_normalize(samples)
        return fit_length(samples, settings).astype(np.float32, copy=False)
    first, frames, skip = window
    crop = decode_frames(path, settings.sample_rate, first, frames)[skip : skip + settings.num_samples]
    if settings.peak_normalize:
        crop = peak_normalize(crop)
    out = np.zeros(settings.num_samples, dtype=np.float32)
    out[: len(crop)] = crop
    return out
