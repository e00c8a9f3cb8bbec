"""The log-mel front end shared by LogMel, MFCC and MFCC + log-mel, and their common settings."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from ser_lightning.features.base import FeatureExtractor
from ser_lightning.utils.errors import InvalidSetting


class MelDecibels(nn.Module):
    """Power mel spectrogram in dB, `(batch, samples)` to `(batch, 1, n_mels, frames)`.

    LogMel.extract is exactly this; top_db clips each utterance's floor at `top_db`
    below its own peak (4-D input keeps torchaudio's clamp per utterance, not per batch).
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        win_length: int | None,
        hop_length: int,
        n_mels: int,
        f_min: float,
        f_max: float | None,
        top_db: float | None,
    ):
        super().__init__()
        if f_max is not None and f_max > sample_rate / 2:
            raise InvalidSetting(
                f"features.f_max={f_max} is above the Nyquist frequency {sample_rate / 2} Hz"
            )
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
        """Return the power mel spectrogram in dB, `(batch, 1, n_mels, frames)`, as float32."""
        power = self.melspec(waveforms.float()).unsqueeze(1)
        return torchaudio.functional.amplitude_to_DB(
            power, multiplier=10.0, amin=1e-10, db_multiplier=0.0, top_db=self.top_db
        )

    def num_frames(self, num_samples: int) -> int:
        """Return the frame count of a clip of `num_samples` samples (centred frames)."""
        return num_samples // self.hop_length + 1


class MelFeatureExtractor(FeatureExtractor):
    """A FeatureExtractor computed from one MelDecibels front end, whose settings it keeps.

    The settings are attributes (`n_mels`, `hop_length`, ...) and part of the cache key
    (`mel_params`), written once here for every mel-based extractor.
    """

    def __init__(
        self,
        *,
        n_features: int,
        normalization: str,
        n_channels: int = 1,
        sample_rate: int,
        n_fft: int,
        win_length: int | None,
        hop_length: int,
        n_mels: int,
        f_min: float,
        f_max: float | None,
        top_db: float | None,
    ):
        super().__init__(n_features=n_features, normalization=normalization, n_channels=n_channels)
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.win_length = win_length or n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = f_max
        self.top_db = top_db
        self.mel_db = MelDecibels(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, top_db)

    def mel_params(self) -> dict:
        """Return the mel front end's settings, the shared part of the subclasses' cache keys."""
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "f_min": self.f_min,
            "f_max": self.f_max,
            "top_db": self.top_db,
        }


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """Return the orthonormal DCT-II `(n_mels, n_mfcc)`, the transform librosa.feature.mfcc applies."""
    return torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")


def cepstrum(mel_db: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """Return the MFCCs `(..., n_mfcc, frames)` of log-mel `(..., n_mels, frames)`."""
    return torch.matmul(mel_db.transpose(-1, -2), dct).transpose(-1, -2)
