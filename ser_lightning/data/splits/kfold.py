"""Speaker-independent k-fold cross-validation over actors (`data.split=kfold`).

Fold K is the test set, validation actors are drawn from the other folds. The folds are cut from
the sorted actors, or given: a published fold set by name (`data.folds=emobox`, see
`splits.published`) or a list of actor lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ser_lightning.data.splits.published import given_folds, listed_folds
from ser_lightning.data.splits.speakers import HeldOutActorsSplit, actor_strata, draw_val_actors, val_share
from ser_lightning.utils.errors import InvalidSetting


@dataclass(frozen=True)
class KFoldSplit(HeldOutActorsSplit):
    """Speaker-independent k-fold cross-validation over actors; this run tests fold `fold`.

    Folds are fixed by the actors alone (no seed), so that every run of a study, and every
    study, tests the same actors in fold K: each (corpus, gender) group's sorted actors are cut
    into num_folds contiguous chunks, and the larger chunks of uneven groups go to the folds
    that are smallest so far. On RAVDESS (12 + 12 actors, 6 folds) fold K is actors
    4K+1 .. 4K+4: two men and two women (fold 0: 01-04).

    Given folds (`given_folds`, from data.folds: a PUBLISHED_FOLDS name such as `emobox`, or a
    list of actor lists) replace the cut: fold K tests exactly the K-th list, and the number of
    lists must equal num_folds. Actors of the corpus in no list are only ever trained or
    validated on; a listed actor the corpus lacks is an error.

    Validation: from the other folds' actors, round(n * val / (train + val)) of each
    (corpus, gender) group are drawn with the seed and the fold (data.split_ratios gives
    val and train); on RAVDESS 2 + 2 of the remaining 10 + 10, leaving 16 to train on. The
    same rule holds for given folds (EmoBox publishes train/test folds only): for EmoBox fold 1
    (actors 01, 11, 20, 21: three men, one woman) 2 of the other 9 men and 2 of the other 11
    women validate, the same actors for every run with the same data.split_seed.
    """

    fold: int = 0
    num_folds: int = 6
    # the data.folds setting as given (a name or lists of actors), None: folds cut from the actors
    given_folds: str | tuple[tuple[str, ...], ...] | None = None
    name: ClassVar[str] = "kfold"

    @classmethod
    def from_settings(cls, ratios, seed, fold=0, num_folds=6, test_corpus=None, folds=None) -> KFoldSplit:
        """The splitter from the data config: ratios, seed, fold, num_folds and folds (see Splitter).

        Returns:
            The splitter.
        """
        return cls(
            ratios=tuple(ratios), seed=seed, fold=fold, num_folds=num_folds, given_folds=given_folds(folds)
        )

    def folds(self, table: pd.DataFrame) -> list[list[str]]:
        """The test actors of every fold.

        Args:
            table: the utterance table.

        Returns:
            num_folds lists of actors, each sorted.

        Raises:
            InvalidSetting: num_folds is below 2 or above the number of actors, or the given
                folds do not fit the table.
        """
        if self.given_folds is not None:
            return listed_folds(self.given_folds, self.num_folds, table)
        num_actors = table["actor"].nunique()
        if self.num_folds < 2 or self.num_folds > num_actors:
            raise InvalidSetting(
                f"data.num_folds={self.num_folds} must be between 2 and the number of actors ({num_actors}); "
                f"{num_actors} folds is leave-one-speaker-out (data.split=loso)"
            )
        folds: list[list[str]] = [[] for _ in range(self.num_folds)]
        for group in actor_strata(table):
            chunks = np.array_split(np.array(group, dtype=object), self.num_folds)  # larger chunks first
            smallest_first = sorted(range(self.num_folds), key=lambda k: (len(folds[k]), k))
            for chunk, k in zip(chunks, smallest_first, strict=True):
                folds[k].extend(chunk.tolist())
        return [sorted(fold) for fold in folds]

    def _check_fold(self) -> None:
        if not 0 <= self.fold < self.num_folds:
            raise InvalidSetting(
                f"data.fold={self.fold} must be in 0..{self.num_folds - 1} (data.num_folds={self.num_folds})"
            )

    def test_and_val(self, table: pd.DataFrame) -> tuple[list[str], list[str]]:
        """The test actors of this run's fold and the validation actors drawn from the other folds.

        Args:
            table: the utterance table.

        Returns:
            The test actors and the validation actors.

        Raises:
            InvalidSetting: data.fold is not in 0..num_folds-1, or the folds cannot be made.
        """
        self._check_fold()
        test = self.folds(table)[self.fold]
        rest = sorted(set(table["actor"]) - set(test))
        rng = np.random.default_rng([self.seed, self.fold])
        what = f"fold {self.fold} of {self.num_folds}"
        return test, draw_val_actors(table, rest, val_share(self.ratios), rng, what)

    def fold_record(self, table: pd.DataFrame) -> dict:
        """The fold, the number of folds and how the folds were made.

        Args:
            table: the utterance table the split is made of.

        Returns:
            `fold`, `num_folds` and `folds` (`folds_setting`).
        """
        return {"fold": self.fold, "num_folds": self.num_folds, "folds": self.folds_setting()}

    def folds_setting(self) -> str | list[list[str]]:
        """How the folds were made: a published set's name, the given lists, or `actors` (cut).

        Returns:
            The data.folds record of the run.
        """
        if self.given_folds is None:
            return "actors"
        if isinstance(self.given_folds, str):
            return self.given_folds
        return [list(fold) for fold in self.given_folds]
