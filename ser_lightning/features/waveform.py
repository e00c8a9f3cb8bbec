"""`features=waveform`: the waveform itself, as the input of networks that hold their own front
end (`model=ssl_finetune`, a pretrained speech encoder trained with the head).

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

    sample_rate: the data's rate (`${data.sample_rate}`); rate: the rate the network takes.
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
        waves = waveforms.float()
        if self.rate != self.sample_rate:
            waves = torchaudio.functional.resample(waves, self.sample_rate, self.rate)
        return waves[:, None, None, :]

    def output_shape(self, num_samples: int) -> tuple[int, int, int]:
        return (1, 1, resampled_length(num_samples, self.sample_rate, self.rate))

    def cache_params(self) -> dict:
        return {"kind": "waveform", "sample_rate": self.sample_rate, "rate": self.rate}

    def view_of_waveforms(self, waveforms: np.ndarray) -> np.ndarray | None:
        if self.rate != self.sample_rate:
            return None
        return waveforms[:, None, None, :]
