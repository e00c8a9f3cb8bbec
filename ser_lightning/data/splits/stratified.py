"""The speaker-dependent split (`data.split=random`): utterances drawn stratified by emotion.

What the earlier SER projects did. Speakers appear in train and test alike, so scores are
optimistic; a warning says so once per process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ser_lightning.data.splits.base import Splitter, check_ratios

log = logging.getLogger(__name__)

_warned_random_split = False


@dataclass(frozen=True)
class RandomSplit(Splitter):
    """Stratified random split of utterances: train first, then the remainder halved by ratio."""

    name: ClassVar[str] = "random"
    speaker_independent: ClassVar[bool] = False

    def describe(self, table: pd.DataFrame) -> dict:
        """The protocol, its seed and its ratios.

        Args:
            table: the utterance table the split is made of.

        Returns:
            The split's record for the run.
        """
        return {
            "split": self.name,
            "speaker_independent": False,
            "seed": self.seed,
            "ratios": list(self.ratios),
        }

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        """Each row's split, drawn stratified by label (see Splitter.__call__).

        Args:
            table: the utterance table.

        Returns:
            "train", "val" or "test" for every row, in table order, named "split".
        """
        global _warned_random_split
        train_r, val_r, test_r = check_ratios(self.ratios)
        if not _warned_random_split:
            log.warning(
                "split=random puts the same speakers in train and test (as the earlier SER projects did); "
                "scores are optimistic. Use data.split=actor for speaker-independent results."
            )
            _warned_random_split = True
        # Integer sizes: 0.7 * 1440 is 1007.999... in floating point, and sklearn would floor it.
        n = len(table)
        n_train = int(round(n * train_r))
        n_val = int(round(n * val_r))
        labels = table["label"].to_numpy()
        train_idx, rest_idx = train_test_split(
            np.arange(n), train_size=n_train, stratify=labels, random_state=self.seed
        )
        val_idx, test_idx = train_test_split(
            rest_idx, train_size=n_val, stratify=labels[rest_idx], random_state=self.seed
        )
        return _assignment(len(table), train_idx, val_idx, test_idx)


def _assignment(n: int, train_idx, val_idx, test_idx) -> pd.Series:
    split = np.empty(n, dtype=object)
    split[train_idx] = "train"
    split[val_idx] = "val"
    split[test_idx] = "test"
    return pd.Series(split, name="split")
