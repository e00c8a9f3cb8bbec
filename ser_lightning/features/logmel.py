"""Log-mel spectrogram features computed with torchaudio (on the training device)."""

from __future__ import annotations

import torch

from ser_lightning.features.mel import MelFeatureExtractor


class LogMel(MelFeatureExtractor):
    """Power mel spectrogram in dB: `(batch, samples)` to `(batch, 1, n_mels, frames)`.

    top_db clips each utterance's floor at `top_db` below its own peak (None keeps all).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        win_length: int | None = None,
        hop_length: int = 256,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        normalization: str = "utterance",
    ):
        super().__init__(
            n_features=n_mels,
            normalization=normalization,
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            top_db=top_db,
        )

    def extract(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return the log-mel spectrogram `(batch, 1, n_mels, frames)` of `(batch, samples)` waveforms."""
        return self.mel_db(waveforms)  # (B, 1, n_mels, frames)

    def output_shape(self, num_samples: int) -> tuple[int, int, int]:
        """Return `(1, n_mels, frames)` for a clip of `num_samples` samples."""
        return (1, self.n_mels, self.mel_db.num_frames(num_samples))

    def cache_params(self) -> dict:
        """Return the mel settings, keyed as kind "logmel"."""
        return {"kind": "logmel", **self.mel_params()}
