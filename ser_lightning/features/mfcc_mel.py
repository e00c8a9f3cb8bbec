"""MFCC and log-mel stacked as two channels on one frame grid (the input of cnn2ch)."""

from __future__ import annotations

import torch

from ser_lightning.features.mel import MelFeatureExtractor, cepstrum, dct_matrix


class MFCCMel(MelFeatureExtractor):
    """`(batch, samples)` to `(batch, 2, n_mels, frames)`: channel 0 MFCC, channel 1 log-mel.

    Both channels come from one mel spectrogram, so they share the frame grid by construction.
    The rows are matched by keeping n_mfcc = n_mels coefficients: the orthonormal DCT of n_mels
    bands has exactly n_mels coefficients and loses nothing, whereas resampling a shorter MFCC
    vector to n_mels rows would interpolate between unrelated quefrencies and invent values.
    Normalisation is per channel (the two have different scales).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 40,
        n_fft: int = 1024,
        win_length: int | None = None,
        hop_length: int = 512,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        normalization: str = "utterance",
    ):
        super().__init__(
            n_features=n_mels,
            normalization=normalization,
            n_channels=2,
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            top_db=top_db,
        )
        self.register_buffer("dct", dct_matrix(n_mels, n_mels), persistent=False)

    def extract(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return MFCC and log-mel as channels 0 and 1, `(batch, 2, n_mels, frames)`."""
        mel_db = self.mel_db(waveforms)  # (B, 1, n_mels, frames)
        return torch.cat([cepstrum(mel_db, self.dct), mel_db], dim=1)

    def output_shape(self, num_samples: int) -> tuple[int, int, int]:
        """Return `(2, n_mels, frames)` for a clip of `num_samples` samples."""
        return (2, self.n_mels, self.mel_db.num_frames(num_samples))

    def cache_params(self) -> dict:
        """Return the mel settings, keyed as kind "mfcc_mel"."""
        return {"kind": "mfcc_mel", **self.mel_params()}
