"""Waveform augmentation: an audiomentations Compose built from config, one clip at a time.

It runs where the clip is read: in the DataLoader workers for on-the-fly augmentation (train
split only), or once per copy when offline copies are built. audiomentations draws from
Python's `random` and NumPy's global generator; PyTorch seeds both in every DataLoader worker
from the loader's base seed (and Lightning mixes in the rank under
`seed_everything(workers=True)`), so a seeded run augments the same way every time.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

import numpy as np
from audiomentations import Compose
from audiomentations.core.transforms_interface import BaseWaveformTransform
from hydra.utils import instantiate
from numpy.typing import NDArray

log = logging.getLogger(__name__)


class RandomCropPad(BaseWaveformTransform):
    """Keep a random window of the clip and zero-pad it back to the clip's length.

    The window holds `min_fraction`–`max_fraction` of the samples, is cut at a random place
    and put back at a random place: the seed projects' random cropping/padding, done on our
    fixed-length cached clips (which are already cropped/padded once, deterministically).
    """

    supports_multichannel = True

    def __init__(self, min_fraction: float = 0.8, max_fraction: float = 1.0, p: float = 0.5):
        super().__init__(p)
        if not 0.0 < min_fraction <= max_fraction <= 1.0:
            raise ValueError(
                f"RandomCropPad needs 0 < min_fraction <= max_fraction <= 1; got {min_fraction}, {max_fraction}"
            )
        self.min_fraction = min_fraction
        self.max_fraction = max_fraction

    def randomize_parameters(self, samples: NDArray[np.float32], sample_rate: int) -> None:
        super().randomize_parameters(samples, sample_rate)
        if self.parameters["should_apply"]:
            length = samples.shape[-1]
            keep = random.randint(
                max(1, int(round(self.min_fraction * length))),
                max(1, int(round(self.max_fraction * length))),
            )
            self.parameters["keep"] = keep
            self.parameters["crop_start"] = random.randint(0, length - keep)
            self.parameters["pad_start"] = random.randint(0, length - keep)

    def apply(self, samples: NDArray[np.float32], sample_rate: int) -> NDArray[np.float32]:
        keep, crop, pad = (
            self.parameters["keep"],
            self.parameters["crop_start"],
            self.parameters["pad_start"],
        )
        out = np.zeros_like(samples)
        out[..., pad : pad + keep] = samples[..., crop : crop + keep]
        return out


def fit_to_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad the end so that every augmented clip keeps the cached clip's length."""
    if samples.shape[-1] == length:
        return samples
    if samples.shape[-1] > length:
        return samples[..., :length]
    out = np.zeros(samples.shape[:-1] + (length,), dtype=samples.dtype)
    out[..., : samples.shape[-1]] = samples
    return out


class WaveformAugmentation:
    """Applies a Compose to one float32 clip `(samples,)` and returns a clip of the same length.

    Length is a contract of the caches and of `FeatureExtractor.output_shape`: transforms that
    change it (pitch shifting by resampling, a stretch without `leave_length_unchanged`) are
    cut or zero-padded at the end.
    """

    def __init__(self, compose: Compose, sample_rate: int, names: list[str]):
        self.compose = compose
        self.sample_rate = sample_rate
        self.names = names

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        length = samples.shape[-1]
        out = self.compose(
            samples=np.asarray(samples, dtype=np.float32), sample_rate=self.sample_rate
        )
        return np.ascontiguousarray(fit_to_length(out, length), dtype=np.float32)

    def __repr__(self) -> str:
        return f"WaveformAugmentation(sample_rate={self.sample_rate}, transforms={self.names})"


WAVEFORM_KEYS = ("p", "shuffle", "transforms")


def build_waveform_augmentation(
    node: Mapping | None, sample_rate: int
) -> WaveformAugmentation | None:
    """`augmentation.waveform` → WaveformAugmentation, or None when it is off or has no transforms.

    `transforms` maps a name to a `_target_` node (any audiomentations transform, or
    RandomCropPad); a null entry is off, so one transform can be dropped from a preset with
    `augmentation.waveform.transforms.pitch_shift=null`. Mapping order is application order.
    """
    if not node:
        return None
    unknown = sorted(set(node) - set(WAVEFORM_KEYS))
    if unknown:
        raise ValueError(
            f"augmentation.waveform has unknown keys {unknown}; allowed: {list(WAVEFORM_KEYS)}"
        )
    entries = node.get("transforms") or {}
    if not isinstance(entries, Mapping):
        raise ValueError(
            "augmentation.waveform.transforms must map names to transform configs "
            "(e.g. gain: {_target_: audiomentations.Gain, min_gain_db: -6, max_gain_db: 6, p: 0.5})"
        )
    transforms, names = [], []
    for name, spec in entries.items():
        if spec is None:
            continue
        where = f"augmentation.waveform.transforms.{name}"
        if not isinstance(spec, Mapping) or "_target_" not in spec:
            raise ValueError(
                f"{where} needs a _target_ naming the transform class (e.g. audiomentations.Gain)"
            )
        try:
            transform = instantiate(dict(spec), _convert_="all")
        except Exception as err:  # Hydra wraps the constructor's own error; keep its message
            raise ValueError(f"{where}: cannot build {spec['_target_']}: {err}") from err
        if not callable(transform):
            raise ValueError(f"{where}: {spec['_target_']} is not a waveform transform")
        transforms.append(transform)
        names.append(str(name))
    if not transforms:
        return None
    compose = Compose(
        transforms, p=float(node.get("p", 1.0)), shuffle=bool(node.get("shuffle", False))
    )
    return WaveformAugmentation(compose, sample_rate, names)
