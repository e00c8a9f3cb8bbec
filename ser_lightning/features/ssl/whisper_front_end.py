"""Whisper's log-mel front end in torch, so that it runs batched on the device.

Whisper models give `load_encoder` their encoder only; this module computes the input that
encoder was trained on, as WhisperFeatureExtractor does, and says how many encoder frames a
clip covers.
"""

from __future__ import annotations

import torch
from torch import nn

from ser_lightning.features.ssl.registry import SAMPLE_RATE
from ser_lightning.utils.errors import InvalidSetting

# Whisper's front end: 25 ms windows every 10 ms over 30 s of 16 kHz audio, 2 frames per encoder frame.
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_WINDOW_SAMPLES = 30 * SAMPLE_RATE
WHISPER_SAMPLES_PER_FRAME = 2 * WHISPER_HOP


def whisper_frames(samples: int) -> int:
    """The Whisper encoder frames that a 16 kHz clip of `samples` covers (20 ms each).

    Args:
        samples: the clip's length in samples.

    Returns:
        The number of encoder frames, rounded up.

    Raises:
        InvalidSetting: the clip is longer than Whisper's 30 s window.
    """
    if samples > WHISPER_WINDOW_SAMPLES:
        raise InvalidSetting(
            f"Whisper encoders see at most 30 s; clips of {samples / SAMPLE_RATE:.1f} s need "
            "data.duration of 30 or less"
        )
    return -(-samples // WHISPER_SAMPLES_PER_FRAME)


class WhisperLogMel(nn.Module):
    """Whisper's log-mel spectrogram of 16 kHz waveforms, batched in torch.

    Waveforms `(batch, samples)` are padded with zeros to 30 s; the result is
    `(batch, n_mels, 3000)`, as WhisperFeatureExtractor computes it.

    Args:
        n_mels: the number of mel bins (80; 128 for whisper-large-v3).
    """

    def __init__(self, n_mels: int):
        super().__init__()
        from transformers import WhisperFeatureExtractor

        filters = WhisperFeatureExtractor(feature_size=n_mels).mel_filters  # (n_fft // 2 + 1, n_mels)
        self.register_buffer("mel_filters", torch.as_tensor(filters, dtype=torch.float32), persistent=False)
        self.register_buffer("window", torch.hann_window(WHISPER_N_FFT), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """The log-mel spectrogram of the waveforms.

        Args:
            waveforms: 16 kHz audio, `(batch, samples)`, at most 30 s.

        Returns:
            `(batch, n_mels, 3000)`, scaled as Whisper was trained.

        Raises:
            InvalidSetting: the clips are longer than 30 s.
        """
        if waveforms.shape[-1] > WHISPER_WINDOW_SAMPLES:
            raise InvalidSetting(
                f"Whisper encoders see at most 30 s; these clips have {waveforms.shape[-1] / SAMPLE_RATE:.1f} s "
                "(set data.duration to 30 or less)"
            )
        padded = nn.functional.pad(waveforms.float(), (0, WHISPER_WINDOW_SAMPLES - waveforms.shape[-1]))
        stft = torch.stft(padded, WHISPER_N_FFT, WHISPER_HOP, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        log_spec = torch.clamp(self.mel_filters.T @ power, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
