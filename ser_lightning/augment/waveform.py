"""Waveform augmentation: an audiomentations Compose built from config, one clip at a time.

It runs where the clip is read: in the DataLoader workers for on-the-fly augmentation (train
split only), or once per copy when offline copies are built. audiomentations draws from
Python's `random` and NumPy's global generator; both are seeded per clip, from (seed, epoch,
row) on the fly (`CachedUtterances`) and from (offline_seed, row, copy) for offline copies, so
a seeded run augments every clip the same way whatever the number of workers or ranks, and a
resumed run replays the epochs it redoes exactly.
"""

from __future__ import annotations

import copy
import functools
import logging
import random
from collections.abc import Iterator, Mapping

import numpy as np
import python_stretch
from audiomentations import Compose
from audiomentations.core.transforms_interface import BaseWaveformTransform
from hydra.utils import instantiate
from numpy.typing import NDArray

from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.numba_cache import prepare_numba_cache
from ser_lightning.utils.seeding import seeded_global_rngs

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
            raise InvalidSetting(
                f"RandomCropPad needs 0 < min_fraction <= max_fraction <= 1; got {min_fraction}, {max_fraction}"
            )
        self.min_fraction = min_fraction
        self.max_fraction = max_fraction

    def randomize_parameters(self, samples: NDArray[np.float32], sample_rate: int) -> None:
        """Draw the window's length and where it is cut from and put back, when the transform applies."""
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
        """Copy the drawn window into a zero clip of the same length.

        Returns:
            The cropped and re-padded clip, shaped like `samples`.
        """
        keep, crop, pad = (
            self.parameters["keep"],
            self.parameters["crop_start"],
            self.parameters["pad_start"],
        )
        out = np.zeros_like(samples)
        out[..., pad : pad + keep] = samples[..., crop : crop + keep]
        return out


class PitchTimeStretch(BaseWaveformTransform):
    """Pitch shift and time stretch, each drawn on its own, done in one Signalsmith Stretch pass.

    The same augmentation as audiomentations' `TimeStretch(leave_length_unchanged=True)`
    followed by `PitchShift` (both use the Signalsmith stretcher by default), with the same
    ranges and independent probabilities `rate_p` and `pitch_p`, but a clip that gets both
    goes through the stretcher once instead of twice: a pass costs about the same with or
    without the second change (~10 ms per 3 s clip on one core), so the pair costs a quarter
    less on average at p 0.5 each, and a clip is resynthesised once rather than twice.
    The output keeps the input's length (zero-padded at the end when sped up, cut when
    slowed down). `p` gates the whole transform, as for every audiomentations transform.
    """

    supports_multichannel = True

    def __init__(
        self,
        min_semitones: float = -2.0,
        max_semitones: float = 2.0,
        pitch_p: float = 0.5,
        min_rate: float = 0.9,
        max_rate: float = 1.1,
        rate_p: float = 0.5,
        p: float = 1.0,
    ):
        super().__init__(p)
        if not -24.0 <= min_semitones <= max_semitones <= 24.0:
            raise InvalidSetting(
                f"PitchTimeStretch needs -24 <= min_semitones <= max_semitones <= 24; "
                f"got {min_semitones}, {max_semitones}"
            )
        if not 0.0 < min_rate <= max_rate:
            raise InvalidSetting(
                f"PitchTimeStretch needs 0 < min_rate <= max_rate (1 = unchanged tempo); got {min_rate}, {max_rate}"
            )
        for name, value in (("pitch_p", pitch_p), ("rate_p", rate_p)):
            if not 0.0 <= value <= 1.0:
                raise InvalidSetting(f"PitchTimeStretch {name}={value} must be a probability in [0, 1]")
        self.min_semitones, self.max_semitones, self.pitch_p = min_semitones, max_semitones, pitch_p
        self.min_rate, self.max_rate, self.rate_p = min_rate, max_rate, rate_p

    def randomize_parameters(self, samples: NDArray[np.float32], sample_rate: int) -> None:
        """Draw the pitch shift and the rate; one not drawn to apply stays at 0 semitones / rate 1."""
        super().randomize_parameters(samples, sample_rate)
        if self.parameters["should_apply"]:
            # drawn in this order whatever is applied, so a seed gives the same stream of draws
            shift_pitch = random.random() < self.pitch_p
            semitones = random.uniform(self.min_semitones, self.max_semitones)
            stretch = random.random() < self.rate_p
            rate = random.uniform(self.min_rate, self.max_rate)
            self.parameters["semitones"] = semitones if shift_pitch else 0.0
            self.parameters["rate"] = rate if stretch else 1.0

    def apply(self, samples: NDArray[np.float32], sample_rate: int) -> NDArray[np.float32]:
        """Shift and stretch the clip in one Signalsmith pass, keeping its length.

        Returns:
            The clip, shaped like `samples` (itself when neither change was drawn).
        """
        semitones, rate = self.parameters["semitones"], self.parameters["rate"]
        if semitones == 0.0 and rate == 1.0:
            return samples
        channels = samples if samples.ndim == 2 else samples[np.newaxis, :]
        stretcher = python_stretch.Signalsmith.Stretch()
        stretcher.preset(channels.shape[0], sample_rate)
        stretcher.setTransposeSemitones(semitones)
        stretcher.setTimeFactor(rate)
        out = fit_to_length(stretcher.process(np.ascontiguousarray(channels)), samples.shape[-1])
        return out if samples.ndim == 2 else out[0]


def fit_to_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad the end so that every augmented clip keeps the cached clip's length.

    Args:
        samples: A clip; the last dimension is time.
        length: The number of samples to keep.

    Returns:
        `samples` itself when it already has `length` samples, else a cropped view or a
        zero-padded copy.
    """
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
        """Augment one clip.

        Args:
            samples: The clip, `(samples,)`.

        Returns:
            The augmented clip as contiguous float32, the same length as `samples`.
        """
        length = samples.shape[-1]
        out = self.compose(samples=np.asarray(samples, dtype=np.float32), sample_rate=self.sample_rate)
        return np.ascontiguousarray(fit_to_length(out, length), dtype=np.float32)

    def prepare_numba(self) -> None:
        """Load (or compile, one process at a time) the numba functions these transforms use.

        Call it before DataLoader workers start. The transforms of conf/augmentation (Shift,
        Gain, PolarityInversion, AddGaussianNoise, RandomCropPad, PitchTimeStretch) use none:
        run on an empty NUMBA_CACHE_DIR they write no cache file. Some audiomentations
        transforms that may be added do (AirAbsorption, Trim: librosa's STFT, peak picking and
        zero crossings), and workers compiling those at once could corrupt the cache.
        """
        names = ",".join(sorted({type(t).__name__ for t in _leaf_transforms(self.compose)}))
        prepare_numba_cache(f"waveform augmentation {names}", functools.partial(_apply_each_transform, self))

    def __repr__(self) -> str:
        return f"WaveformAugmentation(sample_rate={self.sample_rate}, transforms={self.names})"


def _leaf_transforms(transform) -> Iterator:
    """The transforms themselves, inside Compose/OneOf/SomeOf (which hold them in `.transforms`)."""
    children = getattr(transform, "transforms", None)
    if children is None:
        yield transform
        return
    for child in children:
        yield from _leaf_transforms(child)


def _apply_each_transform(augmentation: WaveformAugmentation) -> None:
    """Apply a copy of every transform, with p=1, to 1 s of noise: what the numba warm-up runs.

    Seeded and put back, so that the caller's random streams are untouched. A transform that
    cannot run on this clip is skipped: it would fail (or work) the same way on real clips.
    """
    with seeded_global_rngs(0, restore=True):
        clip = (np.random.standard_normal(augmentation.sample_rate) * 0.1).astype(np.float32)
        for transform in _leaf_transforms(augmentation.compose):
            once = copy.deepcopy(transform)
            once.p = 1.0
            try:
                once(samples=clip.copy(), sample_rate=augmentation.sample_rate)
            except Exception as err:  # a warm-up, not the augmentation: real clips will tell
                log.debug("numba warm-up skipped %s: %s", type(transform).__name__, err)


WAVEFORM_KEYS = ("p", "shuffle", "transforms")


def build_waveform_augmentation(node: Mapping | None, sample_rate: int) -> WaveformAugmentation | None:
    """`augmentation.waveform` → WaveformAugmentation, or None when it is off or has no transforms.

    `transforms` maps a name to a `_target_` node (any audiomentations transform, or
    RandomCropPad); a null entry is off, so one transform can be dropped from a preset with
    `augmentation.waveform.transforms.shift=null`. Mapping order is application order.

    Args:
        node: The `augmentation.waveform` config node (keys `p`, `shuffle`, `transforms`).
        sample_rate: The clips' sample rate, passed to every transform.

    Returns:
        The augmentation, or None when the node is empty or every transform is off.

    Raises:
        InvalidSetting: On unknown keys, a `transforms` that is not a mapping, an entry with no
            `_target_`, or a transform that cannot be built or is not callable.
    """
    if not node:
        return None
    unknown = sorted(set(node) - set(WAVEFORM_KEYS))
    if unknown:
        raise InvalidSetting(
            f"augmentation.waveform has unknown keys {unknown}; allowed: {list(WAVEFORM_KEYS)}"
        )
    entries = node.get("transforms") or {}
    if not isinstance(entries, Mapping):
        raise InvalidSetting(
            "augmentation.waveform.transforms must map names to transform configs "
            "(e.g. gain: {_target_: audiomentations.Gain, min_gain_db: -6, max_gain_db: 6, p: 0.5})"
        )
    transforms, names = [], []
    for name, spec in entries.items():
        if spec is None:
            continue
        where = f"augmentation.waveform.transforms.{name}"
        if not isinstance(spec, Mapping) or "_target_" not in spec:
            raise InvalidSetting(
                f"{where} needs a _target_ naming the transform class (e.g. audiomentations.Gain)"
            )
        try:
            transform = instantiate(dict(spec), _convert_="all")
        except Exception as err:  # Hydra wraps the constructor's own error; keep its message
            raise InvalidSetting(f"{where}: cannot build {spec['_target_']}: {err}") from err
        if not callable(transform):
            raise InvalidSetting(f"{where}: {spec['_target_']} is not a waveform transform")
        transforms.append(transform)
        names.append(str(name))
    if not transforms:
        return None
    compose = Compose(transforms, p=float(node.get("p", 1.0)), shuffle=bool(node.get("shuffle", False)))
    return WaveformAugmentation(compose, sample_rate, names)
