"""Dimensional targets in the data: the demo corpus's ratings, and batches that carry them.

The utterance table keeps each corpus's own ratings in its `arousal`, `valence` and `dominance`
columns (IEMOCAP and MSP-Podcast parsers fill them; `with_demo_dimensions` adds the demo
corpus's). `DimensionBatches`, a part of `SERDataModule`, adds each batch's ratings, normalised
to [-1, 1] with the corpus's scale (ser_lightning.dimensions), as `batch["dimensions"]`
`(batch, 3)` float32, looked up by the batch's table `row`s after the batch reaches its device:
one hook for every kind of loader (cached rows, whole clips, rows held on the device).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ser_lightning.data.utterances import CorpusScan
from ser_lightning.demo_corpus import DemoCorpusSpec
from ser_lightning.demo_corpus.dimensions import demo_dimensions_of
from ser_lightning.dimensions import DIMENSIONS, DimensionScale, no_dimensions_message, scale_for
from ser_lightning.utils.errors import InvalidSetting


def with_demo_dimensions(scan: CorpusScan, spec: DemoCorpusSpec) -> CorpusScan:
    """Add the demo corpus's arousal, valence and dominance (demo_corpus/dimensions.py) to a scan.

    Args:
        scan: the RAVDESS parser's scan of a demo corpus.
        spec: the corpus's spec.

    Returns:
        The same scan, its table with the three rating columns (demo scale 1-5).
    """
    values = np.array(demo_dimensions_of(scan.table["path"], spec), dtype=np.float64).reshape(-1, 3)
    for index, name in enumerate(DIMENSIONS):
        scan.table[name] = values[:, index]
    return scan


def table_ratings(table: pd.DataFrame) -> np.ndarray | None:
    """The table's ratings `(rows, 3)` on the corpus's scale, or None when it has no rating columns.

    Args:
        table: an utterance table.

    Returns:
        The ratings in DIMENSIONS order (NaN where a row has none), or None.
    """
    if not all(name in table.columns for name in DIMENSIONS):
        return None
    return table[list(DIMENSIONS)].to_numpy(dtype=np.float64)


class DimensionBatches:
    """The part of `SERDataModule` that serves dimensional targets (a mixin: it reads `source`, `manifest`)."""

    _dimension_targets: dict | None = None

    @property
    def dimension_scale(self) -> DimensionScale | None:
        """The rating scale of the data's corpus, None when the corpus has no ratings."""
        return scale_for(self.source.name, demo=self.source.demo is not None)

    def require_dimensions(self) -> DimensionScale:
        """Check that every clip of the set-up data has its three ratings, for task=dimensional|multitask.

        Returns:
            The corpus's rating scale.

        Raises:
            InvalidSetting: If the corpus has no ratings (the message names it and the fix), or
                some files lack a rating (the message names a few).
        """
        scale = self.dimension_scale
        ratings = table_ratings(self.manifest.table) if self.manifest is not None else None
        if scale is None or ratings is None:
            raise InvalidSetting(no_dimensions_message(self.source.name))
        missing = ~np.isfinite(ratings).all(axis=1)
        if missing.any():
            files = self.manifest.table["path"][missing].head(3).tolist()
            raise InvalidSetting(
                f"{int(missing.sum())} files of data.corpus={self.source.name} have no arousal/valence/dominance "
                f"rating (e.g. {files}); fix their ratings or leave them out, or use task=categorical"
            )
        return scale

    def dimension_targets(self, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """Every table row's normalised ratings `(rows, 3)` on `device`, None without ratings.

        Args:
            device: where the batches are.

        Returns:
            float32 values in [-1, 1] (NaN where a row has no rating), or None.
        """
        scale = self.dimension_scale
        ratings = table_ratings(self.manifest.table) if self.manifest is not None else None
        if scale is None or ratings is None:
            return None
        cached = self._dimension_targets or {}
        key = str(torch.device(device))
        if key not in cached:
            cached[key] = torch.as_tensor(scale.normalise(ratings), dtype=torch.float32, device=device)
            self._dimension_targets = cached
        return cached[key]

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Add `batch["dimensions"]` (normalised ratings of its rows) when the corpus has ratings.

        Returns:
            The batch, with `dimensions` where the data has ratings.
        """
        if isinstance(batch, dict) and "row" in batch:
            rows = torch.as_tensor(batch["row"])
            targets = self.dimension_targets(rows.device)
            if targets is not None:
                batch["dimensions"] = targets[rows]
        return batch
