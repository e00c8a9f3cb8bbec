"""`features=waveform`: the waveform itself, for networks that hold their own front end.

Such a network is `model=ssl_finetune`, a pretrained speech encoder trained with the head.

It follows the feature contract like every other kind: `(batch, 1, 1, samples)`, one channel of
one feature row. Clips are resampled to `rate` (16 kHz, the rate every pretrained encoder here
was trained on) when the data's rate differs; at the same rate the features are the waveform
cache's own rows, so nothing is stored twice (`view_of_waveforms`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torchaudio

from ser_lightning.features.base import FeatureExtractor
from ser_lightning.features.ssl.features import resampled_length

log = logging.getLogger(__name__)


class Waveform(FeatureExtractor):
    """Waveforms at `rate` Hz as `(batch, 1, 1, samples)`.

    Args:
        sample_rate: The data's rate (`${data.sample_rate}`).
        rate: The rate the network takes.
        normalization: none (the default; a pretrained encoder normalises its input as it was
            trained to), utterance (zero mean, unit variance per clip) or dataset.
    """

    # only a network that declares it takes Waveform features can (see models.requirements)
    needs_own_front_end = True

    def __init__(self, sample_rate: int = 16000, rate: int = 16000, normalization: str = "none"):
        super().__init__(n_features=1, normalization=normalization)
        self.sample_rate = int(sample_rate)
        self.rate = int(rate)
        if self.rate != self.sample_rate:
            log.info(
                "features=waveform: clips are resampled from %d Hz to %d Hz", self.sample_rate, self.rate
            )

    def extract(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return the waveforms resampled to `rate` as float32, `(batch, 1, 1, samples)`."""
        waves = waveforms.float()
        if self.rate != self.sample_rate:
            waves = torchaudio.functional.resample(waves, self.sample_rate, self.rate)
        return waves[:, None, None, :]

    def output_shape(self, num_samples: int) -> tuple[int, int, int]:
        """Return `(1, 1, samples at rate)` for a clip of `num_samples` samples at `sample_rate`."""
        return (1, 1, resampled_length(num_samples, self.sample_rate, self.rate))

    def cache_params(self) -> dict:
        """Return the two rates, keyed as kind "waveform"."""
        return {"kind": "waveform", "sample_rate": self.sample_rate, "rate": self.rate}

    def view_of_waveforms(self, waveforms: np.ndarray) -> np.ndarray | None:
        """Return the waveforms as a `(N, 1, 1, samples)` view, or None when they must be resampled."""
        if self.rate != self.sample_rate:
            return None
        return waveforms[:, None, None, :]
