"""What every split protocol shares: the split names, the ratio check and the Splitter contract.

Also the one protocol without a rule of its own, EvalOnlySplit (`data.split=test_only`), and
`split_indices`, which turns any protocol's assignment into row indices per split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ser_lightning.utils.errors import InvalidSetting

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


def check_ratios(ratios: tuple[float, float, float] | list[float]) -> tuple[float, float, float]:
    """Validate split ratios: three positive numbers that sum to 1.

    Args:
        ratios: data.split_ratios, the (train, val, test) shares.

    Returns:
        The ratios as a tuple of three floats.

    Raises:
        InvalidSetting: there are not three ratios, one is not positive, or they do not sum to 1.
    """
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(r <= 0 for r in ratios) or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise InvalidSetting(
            f"data.split_ratios={list(ratios)} must be three positive numbers (train, val, test) that sum to 1, "
            "e.g. [0.7, 0.15, 0.15]"
        )
    return ratios  # type: ignore[return-value]


@dataclass(frozen=True)
class Splitter:
    """A split protocol: the utterance table in, each row's split ("train", "val", "test") out.

    Subclasses set `name` (the data.split value), say whether no speaker is in two splits
    (`speaker_independent`) and whether the protocol has training data at all
    (`needs_training_data`; test_only has none), and take from the data config the options
    they use (`from_settings`).
    """

    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 42
    name: ClassVar[str] = ""
    speaker_independent: ClassVar[bool] = True
    needs_training_data: ClassVar[bool] = True

    @classmethod
    def from_settings(
        cls,
        ratios: Sequence[float],
        seed: int,
        fold: int = 0,
        num_folds: int = 6,
        test_corpus: str | None = None,
        folds: str | Sequence[Sequence[str | int]] | None = None,
    ) -> Splitter:
        """The splitter from the data config's split settings (each protocol keeps those it uses).

        Args:
            ratios: data.split_ratios, the (train, val, test) shares.
            seed: data.split_seed.
            fold: data.fold, the fold this run tests (k-fold and leave-one-speaker-out).
            num_folds: data.num_folds (k-fold).
            test_corpus: data.test_corpus (cross-corpus).
            folds: data.folds, a published fold set's name or lists of actors (k-fold).

        Returns:
            The splitter.
        """
        return cls(ratios=tuple(ratios), seed=seed)

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        """Each row's split.

        Args:
            table: the utterance table.

        Returns:
            "train", "val" or "test" for every row, in table order, named "split".
        """
        raise NotImplementedError

    def describe(self, table: pd.DataFrame) -> dict:
        """What the split was, for the run's records.

        Args:
            table: the utterance table the split is made of.

        Returns:
            The protocol's name and settings (and, where it draws them, its test and validation actors).
        """
        return {"split": self.name, "speaker_independent": self.speaker_independent}

    def required_splits(self) -> tuple[str, ...]:
        """The splits that must hold files for this protocol to be usable.

        Returns:
            All of SPLIT_NAMES, or only ("test",) for a protocol without training data.
        """
        return SPLIT_NAMES if self.needs_training_data else ("test",)


@dataclass(frozen=True)
class EvalOnlySplit(Splitter):
    """Every utterance is test data: for evaluating a trained model on a new corpus."""

    name: ClassVar[str] = "test_only"
    needs_training_data: ClassVar[bool] = False

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        """Every row's split: "test" (see Splitter.__call__).

        Args:
            table: the utterance table.

        Returns:
            "test" for every row, in table order, named "split".
        """
        return pd.Series(["test"] * len(table), index=table.index, name="split")


def split_indices(assignment: pd.Series) -> dict[str, np.ndarray]:
    """Row indices of each split, in table order.

    Args:
        assignment: each row's split, as a splitter returns it.

    Returns:
        For each of SPLIT_NAMES, the positions of its rows.
    """
    values = assignment.to_numpy()
    return {name: np.flatnonzero(values == name) for name in SPLIT_NAMES}
