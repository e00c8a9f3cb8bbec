"""Train/validation/test splits: pure functions of the utterance table, the ratios and a seed.

- RandomSplit: stratified by emotion, what the earlier SER projects did. Speakers appear in
  train and test alike, so scores are optimistic; a warning says so once per process.
- ActorSplit: speaker-independent. Actors are drawn per gender so that every split holds both
  genders; no actor is in two splits.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

log = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
_warned_random_split = False


def check_ratios(ratios: tuple[float, float, float] | list[float]) -> tuple[float, float, float]:
    """Validate split ratios: three positive numbers that sum to 1."""
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(r <= 0 for r in ratios) or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise ValueError(
            f"data.split_ratios={list(ratios)} must be three positive numbers (train, val, test) that sum to 1, "
            "e.g. [0.7, 0.15, 0.15]"
        )
    return ratios  # type: ignore[return-value]


@dataclass(frozen=True)
class RandomSplit:
    """Stratified random split of utterances: train first, then the remainder halved by ratio."""

    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 42
    name: str = "random"
    speaker_independent: bool = False

    def __call__(self, table: pd.DataFrame) -> pd.Series:
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


@dataclass(frozen=True)
class ActorSplit:
    """Speaker-independent split: whole actors go to one split, both genders in every split.

    For each gender the actors are shuffled with the seed; val and test each get
    round(n * ratio) actors (at least one), train the rest. With RAVDESS's 12 + 12 actors and
    70/15/15 that is 8 + 8 train, 2 + 2 val, 2 + 2 test actors.
    """

    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 42
    name: str = "actor"
    speaker_independent: bool = True

    def assign_actors(self, table: pd.DataFrame) -> dict[str, str]:
        """Map each actor to the split it belongs to."""
        _, val_r, test_r = check_ratios(self.ratios)
        rng = np.random.default_rng(self.seed)
        actor_gender = table.groupby("actor")["gender"].first()
        assignment: dict[str, str] = {}
        for gender, actors in sorted(actor_gender.groupby(actor_gender).groups.items()):
            actors = sorted(actors)
            if len(actors) < 3:
                raise ValueError(
                    f"a speaker-independent split needs at least 3 {gender} actors (one per split); "
                    f"the corpus has {len(actors)}. Use data.split=random for this corpus."
                )
            order = [actors[i] for i in rng.permutation(len(actors))]
            n_val = max(1, round(len(actors) * val_r))
            n_test = max(1, round(len(actors) * test_r))
            if n_val + n_test >= len(actors):
                n_val = n_test = 1
            for i, actor in enumerate(order):
                assignment[actor] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
        return assignment

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        assignment = self.assign_actors(table)
        return table["actor"].map(assignment).rename("split")


def _assignment(n: int, train_idx, val_idx, test_idx) -> pd.Series:
    split = np.empty(n, dtype=object)
    split[train_idx] = "train"
    split[val_idx] = "val"
    split[test_idx] = "test"
    return pd.Series(split, name="split")


def split_indices(assignment: pd.Series) -> dict[str, np.ndarray]:
    """Row indices of each split, in table order."""
    values = assignment.to_numpy()
    return {name: np.flatnonzero(values == name) for name in SPLIT_NAMES}
