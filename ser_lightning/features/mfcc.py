"""MFCC features (torchaudio, on the training device), with optional Δ and ΔΔ."""

from __future__ import annotations

import torch
import torchaudio

from ser_lightning.features.mel import MelFeatureExtractor, cepstrum, dct_matrix
from ser_lightning.utils.errors import InvalidSetting

DELTA_LAYOUTS = ("rows", "channels")


class MFCC(MelFeatureExtractor):
    """Mel-frequency cepstral coefficients, `(batch, samples)` to `(batch, C, F, frames)`.

    The coefficients are the orthonormal DCT-II of the log-mel spectrogram in dB, as
    librosa.feature.mfcc computes them. `deltas` adds Δ (1) or Δ and ΔΔ (2), each a
    regression over `delta_width` frames (ΔΔ is Δ of Δ, the HTK convention). They are
    stacked as extra rows (`delta_layout=rows`: one channel of n_mfcc × (1 + deltas) rows)
    or as extra channels (`delta_layout=channels`: 1 + deltas channels of n_mfcc rows).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mfcc: int = 40,
        n_mels: int = 64,
        n_fft: int = 1024,
        win_length: int | None = None,
        hop_length: int = 512,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        deltas: int = 0,
        delta_layout: str = "rows",
        delta_width: int = 9,
        normalization: str = "utterance",
    ):
        if not 1 <= n_mfcc <= n_mels:
            raise InvalidSetting(f"features.n_mfcc={n_mfcc} must lie in [1, features.n_mels={n_mels}]")
        if deltas not in (0, 1, 2):
            raise InvalidSetting(f"features.deltas={deltas!r} must be 0 (none), 1 (Δ) or 2 (Δ and ΔΔ)")
        if delta_layout not in DELTA_LAYOUTS:
            raise InvalidSetting(f"features.delta_layout={delta_layout!r} must be one of {DELTA_LAYOUTS}")
        if delta_width < 3 or delta_width % 2 == 0:
            raise InvalidSetting(f"features.delta_width={delta_width} must be an odd number >= 3")
        stacks = 1 + deltas
        as_channels = delta_layout == "channels"
        super().__init__(
            n_features=n_mfcc if as_channels else n_mfcc * stacks,
            normalization=normalization,
            n_channels=stacks if as_channels else 1,
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            top_db=top_db,
        )
        self.n_mfcc = n_mfcc
        self.deltas = deltas
        self.delta_layout = delta_layout
        self.delta_width = delta_width
        self.register_buffer("dct", dct_matrix(n_mfcc, n_mels), persistent=False)

    def extract(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return the MFCCs (with their Δ and ΔΔ as configured) of `(batch, samples)` waveforms."""
        coefficients = cepstrum(self.mel_db(waveforms), self.dct)  # (B, 1, n_mfcc, frames)
        stacks = [coefficients]
        for _ in range(self.deltas):
            stacks.append(torchaudio.functional.compute_deltas(stacks[-1], win_length=self.delta_width))
        return torch.cat(stacks, dim=1 if self.delta_layout == "channels" else 2)

    def output_shape(self, num_samples: int) -> tuple[int, int, int]:
        """Return `(1 + deltas, n_mfcc, frames)` (Δ as channels) or `(1, n_mfcc * (1 + deltas), frames)`."""
        frames = self.mel_db.num_frames(num_samples)
        stacks = 1 + self.deltas
        if self.delta_layout == "channels":
            return (stacks, self.n_mfcc, frames)
        return (1, self.n_mfcc * stacks, frames)

    def cache_params(self) -> dict:
        """Return the mel settings and the MFCC and Δ settings, keyed as kind "mfcc"."""
        return {
            "kind": "mfcc",
            **self.mel_params(),
            "n_mfcc": self.n_mfcc,
            "deltas": self.deltas,
            "delta_layout": self.delta_layout,
            "delta_width": self.delta_width,
        }
