"""Soft targets in the data: the demo corpus's simulated votes, and batches that carry distributions.

The utterance table keeps each clip's vote counts (data/votes.py). With data.targets=soft,
`VoteBatches`, a part of `SERDataModule`, adds each batch's distribution of votes over the run's
labels as `batch["soft_targets"]` `(batch, classes)` float32, looked up by the batch's table
`row`s after the batch reaches its device (as `DimensionBatches` adds ratings). A clip whose
votes all fall outside the run's labels (or that has none) is trained on its hard label, and
`require_votes` logs how many there are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from ser_lightning.data.utterances import CorpusScan
from ser_lightning.data.votes import VOTE_COLUMNS, has_votes, no_votes_message, vote_distribution, vote_row
from ser_lightning.demo_corpus import DemoCorpusSpec
from ser_lightning.demo_corpus.votes import demo_votes_of
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only: the data module is made of this mixin
    from ser_lightning.data.datamodule import SERDataModule

log = logging.getLogger(__name__)

TARGET_KINDS: tuple[str, ...] = ("hard", "soft")


def check_targets(targets: str) -> str:
    """Validate data.targets.

    Args:
        targets: the setting.

    Returns:
        The setting.

    Raises:
        InvalidSetting: If it is neither hard nor soft.
    """
    if targets not in TARGET_KINDS:
        raise InvalidSetting(
            f"data.targets={targets!r} is not one of {list(TARGET_KINDS)} (hard: each clip's majority "
            "label; soft: the distribution of its annotators' votes)"
        )
    return targets


def with_targets(module: SERDataModule, targets: str) -> SERDataModule:
    """Set a data module's data.targets, checked (`check_targets`).

    Args:
        module: the SERDataModule.
        targets: data.targets.

    Returns:
        The module.
    """
    module.targets = check_targets(targets)
    return module


def with_demo_votes(scan: CorpusScan, spec: DemoCorpusSpec) -> CorpusScan:
    """Add the demo corpus's simulated votes (demo_corpus/votes.py) to a scan.

    Args:
        scan: the RAVDESS parser's scan of a demo corpus.
        spec: the corpus's spec.

    Returns:
        The same scan, its table with the vote columns.
    """
    rows = [vote_row(votes) for votes in demo_votes_of(scan.table["path"], spec)]
    for column in VOTE_COLUMNS:
        scan.table[column] = np.array([row[column] for row in rows], dtype=np.float64)
    return scan


def soft_target_matrix(
    table: pd.DataFrame, label_names: Sequence[str], label_map: dict[str, str] | None, labels: np.ndarray
) -> tuple[np.ndarray, int, float]:
    """Every row's training distribution: its votes over the run's labels, else its hard label.

    Args:
        table: the run's utterance table with vote columns.
        label_names: the run's labels.
        label_map: data.label_map.
        labels: each row's hard label index.

    Returns:
        `(targets, without, outside)`: `(rows, classes)` float64 distributions, the number of rows
        that had no vote for a run label (given their hard label), and the votes outside the labels.
    """
    distribution, outside = vote_distribution(table, label_names, label_map)
    missing = ~np.isfinite(distribution).all(axis=1)
    distribution[missing] = np.eye(len(label_names))[labels[missing]]
    return distribution, int(missing.sum()), float(outside.sum())


class VoteBatches:
    """The part of `SERDataModule` that serves soft targets (a mixin: it reads `source`, `manifest`)."""

    targets: str = "hard"  # data.targets, set by build_data_module
    _soft_targets: dict | None = None

    def require_votes(self) -> None:
        """Check that the set-up data has annotator votes, for data.targets=soft, and log their use.

        Raises:
            InvalidSetting: If the corpus has no votes; the message names it, the corpora with
                votes and the fix.
        """
        if self.manifest is None or not has_votes(self.manifest.table):
            raise InvalidSetting(no_votes_message(self.source.name))
        _, without, outside = soft_target_matrix(
            self.manifest.table, self.label_names, self.source.label_map, self.manifest.labels
        )
        log.info(
            "data.targets=soft: %d clips trained on their annotators' votes, %d without a vote for the "
            "run's labels trained on their hard label; %.0f votes fell outside the labels %s",
            len(self.manifest.table) - without,
            without,
            outside,
            list(self.label_names),
        )

    def soft_targets(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Every table row's training distribution `(rows, classes)` float32 on `device`.

        Args:
            device: where the batches are.

        Returns:
            The distributions (soft_target_matrix).
        """
        cached = self._soft_targets or {}
        key = str(torch.device(device))
        if key not in cached:
            matrix, _, _ = soft_target_matrix(
                self.manifest.table, self.label_names, self.source.label_map, self.manifest.labels
            )
            cached[key] = torch.as_tensor(matrix, dtype=torch.float32, device=device)
            self._soft_targets = cached
        return cached[key]

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Add `batch["soft_targets"]` (its rows' vote distributions) with data.targets=soft.

        Returns:
            The batch, with `soft_targets` when the targets are soft.
        """
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if self.targets == "soft" and isinstance(batch, dict) and "row" in batch:
            rows = torch.as_tensor(batch["row"])
            batch["soft_targets"] = self.soft_targets(rows.device)[rows]
        return batch
