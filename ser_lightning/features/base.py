"""The one contract every feature kind follows.

Waveforms `(batch, samples)` in, features `(batch, channels, n_features, n_frames)` out, and
`output_shape(num_samples)` says that shape in advance so that models size themselves.

Extraction is split in two so that caching stays valid when normalisation changes:
`extract` (the expensive, cacheable part) and `normalize` (cheap, applied on the fly, with
dataset statistics kept as buffers so that a checkpoint carries them).

Normalisation works per channel: a 2-channel extractor (MFCC and log-mel) has two different
scales, and pooling them into one mean/std would let one channel swamp the other.

`precompute` fills the feature cache from the waveform cache. The default runs `extract` on
chunks in this process; CPU-only extractors (librosa) override it with a process pool.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ser_lightning.utils.errors import InvalidSetting

NORMALIZATIONS = ("utterance", "dataset", "none")


class FeatureExtractor(nn.Module):
    """Base class: subclasses implement `extract`, `output_shape` and `cache_params`."""

    # True when `extract` is torch code that can run on the training device per batch;
    # False for CPU-only extractors whose output is always precomputed and cached.
    runs_on_device: bool = True
    # The numpy dtype of this extractor's feature cache; batches are float32 whatever it is.
    cache_dtype: str = "float32"

    def __init__(
        self, n_features: int, normalization: str = "utterance", eps: float = 1e-5, n_channels: int = 1
    ):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise InvalidSetting(f"features.normalization={normalization!r} must be one of {NORMALIZATIONS}")
        self.normalization = normalization
        self.eps = eps
        self.n_channels = n_channels
        # Per-channel, per-feature-row statistics for normalization="dataset"; filled by
        # fit_normalization. Single-channel extractors keep the 1-D (n_features,) shape.
        stats_shape = (n_features,) if n_channels == 1 else (n_channels, n_features)
        self.register_buffer("dataset_mean", torch.zeros(stats_shape))
        self.register_buffer("dataset_std", torch.ones(stats_shape))
        self.register_buffer("dataset_stats_fitted", torch.tensor(False))
        # Host-side copy of "the statistics are fitted", so that normalize does not read the
        # buffer, which on a GPU is a device-to-host sync on every batch. Set by
        # fit_normalization; a state dict being loaded may bring either value, so loading
        # clears it and the buffer is read once more on the next batch.
        self._stats_known_fitted = False

    # -- to implement -----------------------------------------------------------------------
    def extract(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Compute the unnormalised features of `(batch, samples)` waveforms (the cacheable part).

        Args:
            waveforms: Clips at the data's sample rate, `(batch, samples)`.

        Returns:
            The features, `(batch, channels, n_features, n_frames)`.
        """
        raise NotImplementedError

    def output_shape(self, num_samples: int) -> tuple[int, int, int]:
        """The shape `extract` gives one clip of `num_samples` samples, for models to size themselves.

        Returns:
            `(channels, n_features, n_frames)`.
        """
        raise NotImplementedError

    def cache_params(self) -> dict:
        """Every parameter that changes the bytes `extract` produces (for cache keys).

        Returns:
            A JSON-serialisable mapping, including a `kind` naming the extractor.
        """
        raise NotImplementedError

    def view_of_waveforms(self, waveforms: np.ndarray) -> np.ndarray | None:
        """The features of cached `waveforms` `(N, samples)` as a view of them, if `extract` copies them.

        Where `extract` would copy the waveforms unchanged, the feature store stores nothing and
        reads this view instead.

        Returns:
            The view `(N, C, F, T)`, or None when the features must be computed (the default).
        """
        return None

    # -- shared ------------------------------------------------------------------------------
    @property
    def needs_dataset_stats(self) -> bool:
        """Whether normalization is "dataset" and its train-split statistics are not fitted yet."""
        return self.normalization == "dataset" and not bool(self.dataset_stats_fitted)

    def fit_normalization(self, features: np.ndarray, chunk: int = 256) -> None:
        """Per-channel, per-row mean and std over extracted features `(N, C, F, T)` (the train split)."""
        total = np.zeros(features.shape[1:3], dtype=np.float64)
        total_sq = np.zeros_like(total)
        count = 0
        for start in range(0, len(features), chunk):
            block = np.asarray(features[start : start + chunk], dtype=np.float64)
            total += block.sum(axis=(0, 3))
            total_sq += np.square(block).sum(axis=(0, 3))
            count += block.shape[0] * block.shape[3]
        mean = total / max(count, 1)
        std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0.0))
        self.dataset_mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view_as(self.dataset_mean))
        self.dataset_std.copy_(torch.as_tensor(std, dtype=torch.float32).view_as(self.dataset_std))
        self.dataset_stats_fitted.fill_(True)
        self._stats_known_fitted = True

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._stats_known_fitted = False
        super()._load_from_state_dict(*args, **kwargs)

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        """Normalise extracted features `(batch, C, F, T)` as `normalization` says.

        "utterance" standardises each clip and channel over all its values; "dataset" uses the
        per-channel, per-row statistics of the train split; "none" passes them through.

        Returns:
            The normalised features, same shape.

        Raises:
            RuntimeError: If normalization is "dataset" and no statistics were fitted or loaded.
        """
        if self.normalization == "utterance":
            mean = features.mean(dim=(2, 3), keepdim=True)
            std = features.std(dim=(2, 3), keepdim=True)
            return (features - mean) / (std + self.eps)
        if self.normalization == "dataset":
            # Checked eagerly; a graph being exported cannot branch on a buffer (and is checked before).
            if not torch.compiler.is_exporting() and not self._stats_known_fitted:
                if not bool(self.dataset_stats_fitted):
                    raise RuntimeError(
                        "features.normalization=dataset needs statistics of the train split; "
                        "they are fitted when training starts (or loaded from a checkpoint)"
                    )
                self._stats_known_fitted = True
            mean = self.dataset_mean.view(1, self.n_channels, -1, 1)
            std = self.dataset_std.view(1, self.n_channels, -1, 1)
            return (features - mean) / (std + self.eps)
        return features

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return the normalised features of `(batch, samples)` waveforms: `normalize(extract(...))`."""
        return self.normalize(self.extract(waveforms))

    # -- padded batches of variable-length clips ------------------------------------------------
    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Count the frames each clip of a padded batch has, from its samples.

        Args:
            sample_lengths: `(batch,)` samples per clip.

        Returns:
            `(batch,)` int64 frame counts, as `output_shape` gives them for each length.
        """
        counts = {n: self.output_shape(n)[2] for n in set(sample_lengths.tolist())}
        return torch.tensor([counts[n] for n in sample_lengths.tolist()], dtype=torch.int64)

    def extract_padded(
        self, waveforms: torch.Tensor, sample_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Extract the features of a padded batch, each clip as it is extracted alone.

        Every clip is extracted from its own samples (a frame at a clip's end must not see the
        next clip's padding), then the features are padded with zeros to the longest clip's frames.

        Args:
            waveforms: `(batch, samples)`, zero past each clip's end.
            sample_lengths: `(batch,)` samples per clip.

        Returns:
            The unnormalised features `(batch, C, F, frames)` and each clip's frame count.
        """
        clips = [self.extract(waveforms[i : i + 1, : int(n)]) for i, n in enumerate(sample_lengths.tolist())]
        frames = torch.tensor([clip.size(-1) for clip in clips], dtype=torch.int64)
        out = clips[0].new_zeros((len(clips), *clips[0].shape[1:3], int(frames.max())))
        for i, clip in enumerate(clips):
            out[i, ..., : clip.size(-1)] = clip[0]
        return out, frames

    def normalize_padded(self, features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Normalise a padded batch as each clip is normalised alone, and zero the padding.

        "utterance" takes each clip's mean and (unbiased) standard deviation over its own frames;
        "dataset" and "none" work frame by frame as in `normalize`.

        Args:
            features: Extracted features `(batch, C, F, T)`.
            frame_lengths: `(batch,)` frames per clip.

        Returns:
            The normalised features, zero past each clip's end.
        """
        real = (
            torch.arange(features.size(-1), device=features.device)
            < frame_lengths.to(features.device)[:, None]
        )
        real = real[:, None, None, :]
        if self.normalization != "utterance":
            return self.normalize(features).masked_fill(~real, 0.0)
        weights = real.to(features.dtype)
        count = weights.sum(dim=3, keepdim=True) * features.size(2)
        mean = (features * weights).sum(dim=(2, 3), keepdim=True) / count
        squares = ((features - mean).square() * weights).sum(dim=(2, 3), keepdim=True)
        std = (squares / (count - 1).clamp(min=1)).sqrt()
        return ((features - mean) / (std + self.eps)).masked_fill(~real, 0.0)

    def precompute(
        self,
        waveforms: np.ndarray,
        out: np.ndarray,
        advance: Callable[[int], None] | None = None,
        chunk: int = 64,
    ) -> None:
        """Fill the feature cache `out` (N, C, F, T) from cached waveforms (N, samples).

        Args:
            waveforms: The cached waveforms, `(N, samples)`.
            out: The array to fill, `(N, C, F, T)`.
            advance: Called with k after every k clips, so that the caller can show progress.
            chunk: Clips extracted at a time.
        """
        with torch.inference_mode():
            for start in range(0, len(waveforms), chunk):
                batch = torch.from_numpy(np.array(waveforms[start : start + chunk]))
                out[start : start + chunk] = self.extract(batch).numpy()
                if advance is not None:
                    advance(len(batch))
