"""The log-mel front end shared by the cepstral extractors (MFCC, MFCC + log-mel)."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn


class MelDecibels(nn.Module):
    """Power mel spectrogram in dB, `(batch, samples)` to `(batch, 1, n_mels, frames)`.

    LogMel.extract is exactly this; top_db clips each utterance's floor at `top_db`
    below its own peak (4-D input keeps torchaudio's clamp per utterance, not per batch).
    """

    def __init__(self, sample_rate: int, n_fft: int, win_length: int | None, hop_length: int, n_mels: int,
                 f_min: float, f_max: float | None, top_db: float | None):
        super().__init__()
        if f_max is not None and f_max > sample_rate / 2:
            raise ValueError(f"features.f_max={f_max} is above the Nyquist frequency {sample_rate / 2} Hz")
        self.hop_length = hop_length
        self.top_db = top_db
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length or n_fft,
            hop_length=hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            power=2.0,
            center=True,
        )

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        power = self.melspec(waveforms.float()).unsqueeze(1)
        return torchaudio.functional.amplitude_to_DB(
            power, multiplier=10.0, amin=1e-10, db_multiplier=0.0, top_db=self.top_db
        )

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """Orthonormal DCT-II `(n_mels, n_mfcc)`, the transform librosa.feature.mfcc applies."""
    return torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")


def cepstrum(mel_db: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """MFCCs `(..., n_mfcc, frames)` from log-mel `(..., n_mels, frames)`."""
    return torch.matmul(mel_db.transpose(-1, -2), dct).transpose(-1, -2)
