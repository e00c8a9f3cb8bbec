"""Writing real video files for the tests with PyAV (FFmpeg's encoders, bundled in its wheel)."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    wave: np.ndarray | None,
    sample_rate: int = 16000,
    audio_codec: str = "aac",
    seconds: float | None = None,
    fps: int = 10,
) -> Path:
    """A small H.264 video whose audio track is `wave` (mono float in [-1, 1]); no track if None."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seconds = seconds if seconds is not None else len(wave) / sample_rate
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream(audio_codec, rate=sample_rate, layout="mono") if wave is not None else None
        if audio is not None and audio_codec == "aac":
            audio.bit_rate = 192000
        for i in range(max(1, int(np.ceil(seconds * fps)))):
            image = np.full((48, 64, 3), (i * 20) % 255, dtype=np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        if audio is not None:
            sample_format = audio.format.name
            clipped = np.clip(wave, -1.0, 1.0)
            # The inverse of soundfile's int-to-float scaling, so 16-bit sources pass losslessly.
            if sample_format.startswith("s16"):
                data = np.clip(np.round(clipped * 32768), -32768, 32767).astype(np.int16)[None]
            elif sample_format.startswith("s32"):
                data = np.clip(np.round(clipped * 2147483648), -2147483648, 2147483647).astype(np.int32)[None]
            else:
                data = clipped.astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(data, format=sample_format, layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, fractions.Fraction(1, sample_rate)
            for packet in audio.encode(frame):
                out.mux(packet)
            for packet in audio.encode(None):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return path
