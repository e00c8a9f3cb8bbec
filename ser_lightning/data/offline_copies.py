"""Offline augmented copies: K augmented versions of every training clip, features cached once.

For features that are computed on CPU and cached (librosa chroma, tonnetz, ...), recomputing
them from freshly augmented audio every epoch would make data loading the bottleneck; the
Keras-era recipes instead trained on a fixed set of augmented copies. Copy k of clip r is
drawn with its own seed (offline_seed, r, k), so the bytes do not depend on worker count or
order, and the cache key (features key, train rows, transforms, K, seed, library version)
says exactly what an entry holds. The copies live in the feature store's cache beside the
clean waveforms and features they are made from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import audiomentations
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ser_lightning.augment.waveform import WaveformAugmentation
from ser_lightning.data.cache import cache_key
from ser_lightning.data.feature_store import FeatureStore, StoredArrays
from ser_lightning.data.loading import available_cores
from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.progress import progress_bar
from ser_lightning.utils.seeding import seeded_global_rngs

# Bump when the bytes of an entry change for the same inputs.
OFFLINE_COPIES_VERSION = 1


class AugmentedWaveforms(Dataset):
    """Item i: copy i % K of training row rows[i // K], augmented with its own seed."""

    def __init__(
        self,
        waveform_path: Path,
        rows: np.ndarray,
        copies: int,
        augmentation: WaveformAugmentation,
        seed: int,
    ):
        self.waveform_path = waveform_path
        self.rows = rows
        self.copies = copies
        self.augmentation = augmentation
        self.seed = seed
        self._waveforms: np.ndarray | None = None  # opened in the process that reads it

    def __len__(self) -> int:
        return len(self.rows) * self.copies

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        if self._waveforms is None:
            self._waveforms = np.load(self.waveform_path, mmap_mode="r")
        row, copy = int(self.rows[i // self.copies]), i % self.copies
        with seeded_global_rngs(self.seed, row, copy):
            wave = self.augmentation(np.array(self._waveforms[row], dtype=np.float32))
        return i, torch.from_numpy(wave)


class AugmentedCopies(Dataset):
    """Training rows read from the copies' feature cache; `row` names the source clip."""

    def __init__(self, array: np.ndarray, rows: np.ndarray, copies: int, labels: np.ndarray):
        self.array = array
        self.rows = rows
        self.copies = copies
        self.labels = labels

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> dict:
        row = int(self.rows[i // self.copies])
        item = np.array(self.array[i], dtype=np.float32)
        return {"features": torch.from_numpy(item), "label": int(self.labels[row]), "row": row}


class OfflineCopies:
    """K augmented feature copies of a train split, built once into the feature store.

    A data module constructor argument (`offline_copies=`, from `augmentation.offline_copies`); the data module
    calls `build` in setup and appends the returned dataset to the clean training rows.
    """

    def __init__(
        self,
        augmentation: WaveformAugmentation,
        copies: int,
        seed: int,
        description: dict,
        workers: int | None = None,
        chunk: int = 64,
    ):
        if copies < 1:
            raise InvalidSetting(
                f"augmentation.offline_copies={copies} must be at least 1 for offline copies"
            )
        self.augmentation = augmentation
        self.copies = copies
        self.seed = seed
        self.description = description
        self.workers = min(8, available_cores()) if workers is None else workers
        self.chunk = chunk

    def key(self, features_key: str, rows: np.ndarray) -> str:
        """Compute the cache key of the copies of `rows`.

        It hashes the clean features' key, the rows, the waveform augmentation's description,
        the number of copies, the seed, the audiomentations version and the cache version.

        Args:
            features_key: the key of the clean feature cache the copies go with.
            rows: the train split's table rows.

        Returns:
            The key.
        """
        return cache_key(
            features=features_key,
            rows=hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest(),
            waveform=self.description,
            copies=self.copies,
            seed=self.seed,
            audiomentations=audiomentations.__version__,
            version=OFFLINE_COPIES_VERSION,
        )

    def build(
        self, store: FeatureStore, arrays: StoredArrays, train_rows: np.ndarray, labels: np.ndarray
    ) -> AugmentedCopies | None:
        """Build (or reuse) the feature cache of the augmented copies of the train clips.

        Args:
            store: the feature store whose extractor and cache the copies use.
            arrays: the clean caches of the table.
            train_rows: the train split's table rows.
            labels: the label of every table row.

        Returns:
            The copies as a dataset, or None when the split has no train rows (test-only).
        """
        features = store.features
        rows = np.sort(train_rows)
        if len(rows) == 0:
            return None
        key = self.key(arrays.keys.features, rows)
        shape = (len(rows) * self.copies, *features.output_shape(store.audio.num_samples))
        waves = AugmentedWaveforms(
            store.cache.path("waveforms", arrays.keys.waveforms),
            rows,
            self.copies,
            self.augmentation,
            self.seed,
        )

        def fill(out: np.ndarray) -> None:
            # Workers augment (CPU, one clip each); this process extracts features in chunks through
            # the extractor's precompute, so its own batching or process pool (handcrafted68)
            # applies exactly as it does for the clean cache.
            # Loaded (or compiled) here first, so the workers never compile numba functions at once.
            self.augmentation.prepare_numba()
            loader = DataLoader(waves, batch_size=self.chunk, num_workers=self.workers, shuffle=False)
            with progress_bar() as progress, torch.inference_mode():
                task = progress.add_task(f"augmenting train clips ({self.copies} copies)", total=len(waves))
                for index, batch in loader:
                    block = np.empty((len(index), *out.shape[1:]), dtype=out.dtype)
                    features.precompute(batch.numpy(), block)
                    out[index.numpy()] = block
                    progress.advance(task, len(index))

        meta = {
            "copies": self.copies,
            "seed": self.seed,
            "train_rows": len(rows),
            "waveform": self.description,
            "features": features.cache_params(),
        }
        # in the extractor's cache precision, as its clean cache is (float16 for features=ssl)
        store.build("augmented_features", key, shape, fill, meta, "augmented copies", features.cache_dtype)
        return AugmentedCopies(store.cache.load("augmented_features", key), rows, self.copies, labels)
