"""Speaker-independent split protocols, and the actor drawing they share.

- ActorSplit (`data.split=actor`): actors are drawn per gender so that every split holds both
  genders; no actor is in two splits.
- LeaveOneSpeakerOutSplit (`loso`): one actor per fold.
- CrossCorpusSplit (`cross_corpus`): one corpus of a combined table is the test set.

The k-fold protocol (`splits.kfold`) draws its validation actors with the same rule: from the
non-test actors, balanced over strata of (corpus, gender), so that every split holds both
genders, and every corpus of a combined table, where the actors allow it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ser_lightning.data.splits.base import Splitter, check_ratios
from ser_lightning.utils.errors import InvalidSetting


def actor_strata(table: pd.DataFrame, actors: Iterable[str] | None = None) -> list[list[str]]:
    """Actors grouped by (corpus, gender), groups and actors in sorted order.

    Args:
        table: the utterance table (columns actor, corpus, gender).
        actors: only these actors; None: all of the table's.

    Returns:
        One sorted list of actors per (corpus, gender) group, the groups in sorted order.
    """
    info = table.groupby("actor", sort=True)[["corpus", "gender"]].first()
    if actors is not None:
        info = info.loc[sorted(actors)]
    groups = info.groupby(["corpus", "gender"], sort=True).groups
    return [sorted(members) for _, members in sorted(groups.items())]


def draw_val_actors(
    table: pd.DataFrame, candidates: Iterable[str], share: float, rng: np.random.Generator, what: str
) -> list[str]:
    """Validation actors drawn from `candidates`: round(share * n) of each (corpus, gender) group.

    At least one actor is drawn, and at least one candidate stays for training.

    Args:
        table: the utterance table.
        candidates: the actors outside the test set.
        share: the validation share of the candidates (`val_share`).
        rng: the generator to draw with.
        what: the protocol, named in the error when the candidates are too few.

    Returns:
        The validation actors, sorted.

    Raises:
        InvalidSetting: fewer than two candidates, one for validation and one for training.
    """
    candidates = sorted(candidates)
    if len(candidates) < 2:
        raise InvalidSetting(
            f"{what} leaves {len(candidates)} actor(s) outside the test set, but validation and training "
            "need one actor each; use fewer folds, a larger corpus, or data.split=random"
        )
    groups = actor_strata(table, candidates)
    chosen: list[str] = []
    for group in groups:
        order = [group[i] for i in rng.permutation(len(group))]
        chosen += order[: _round_half_up(len(group) * share)]
    if not chosen:
        largest = max(groups, key=len)
        chosen = [largest[int(rng.integers(len(largest)))]]
    if len(chosen) == len(candidates):
        chosen = chosen[:-1]
    return sorted(chosen)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def val_share(ratios: Sequence[float]) -> float:
    """The validation share of the non-test actors, from data.split_ratios.

    Args:
        ratios: data.split_ratios, the (train, val, test) shares.

    Returns:
        val / (train + val).
    """
    train_r, val_r, _ = check_ratios(ratios)
    return val_r / (train_r + val_r)


def assign_by_actor(table: pd.DataFrame, test: list[str], val: list[str]) -> pd.Series:
    """Each row's split from its actor: the test actors test, the validation actors validate.

    Args:
        table: the utterance table.
        test: the test actors.
        val: the validation actors; every other actor trains.

    Returns:
        Each row's split, named "split".
    """
    split = {actor: "train" for actor in table["actor"].unique()}
    split.update({actor: "val" for actor in val})
    split.update({actor: "test" for actor in test})
    return table["actor"].map(split).rename("split")


@dataclass(frozen=True)
class HeldOutActorsSplit(Splitter):
    """A speaker-independent split made of test actors and validation actors; every other actor trains.

    Subclasses say which actors test and validate (`test_and_val`), what their record adds
    (`fold_record`) and how validation actors are drawn (`val_rule`); a row's split is its actor's.
    """

    val_rule: ClassVar[str] = "actors drawn per (corpus, gender) from the other folds"

    def test_and_val(self, table: pd.DataFrame) -> tuple[list[str], list[str]]:
        """Choose the test actors and the validation actors.

        Args:
            table: the utterance table.

        Returns:
            The test actors and the validation actors.
        """
        raise NotImplementedError

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        """Each row's split: the test actors test, the validation actors validate (see Splitter.__call__).

        Args:
            table: the utterance table.

        Returns:
            "train", "val" or "test" for every row, in table order, named "split".
        """
        return assign_by_actor(table, *self.test_and_val(table))

    def fold_record(self, table: pd.DataFrame) -> dict:
        """Say what this protocol adds to its record (its fold, how its folds are made).

        Args:
            table: the utterance table the split is made of.

        Returns:
            The protocol's own fields, in the order the record lists them.
        """
        return {}

    def describe(self, table: pd.DataFrame) -> dict:
        """The protocol, its own fields (`fold_record`), the seed, the test and validation actors.

        Args:
            table: the utterance table the split is made of.

        Returns:
            The split's record for the run.
        """
        test, val = self.test_and_val(table)
        return {
            "split": self.name,
            "speaker_independent": True,
            **self.fold_record(table),
            "seed": self.seed,
            "test_actors": test,
            "val_actors": val,
            "val": self.val_rule,
        }


@dataclass(frozen=True)
class ActorSplit(Splitter):
    """Speaker-independent split: whole actors go to one split, both genders in every split.

    For each gender the actors are shuffled with the seed; val and test each get
    round(n * ratio) actors (at least one), train the rest. With RAVDESS's 12 + 12 actors and
    70/15/15 that is 8 + 8 train, 2 + 2 val, 2 + 2 test actors.
    """

    name: ClassVar[str] = "actor"

    def describe(self, table: pd.DataFrame) -> dict:
        """The protocol, its seed and its ratios.

        Args:
            table: the utterance table the split is made of.

        Returns:
            The split's record for the run.
        """
        return {
            "split": self.name,
            "speaker_independent": True,
            "seed": self.seed,
            "ratios": list(self.ratios),
        }

    def assign_actors(self, table: pd.DataFrame) -> dict[str, str]:
        """Map each actor to the split it belongs to.

        Args:
            table: the utterance table (columns actor, gender).

        Returns:
            Each actor's split.

        Raises:
            InvalidSetting: a gender has fewer than three actors, one per split.
        """
        _, val_r, test_r = check_ratios(self.ratios)
        rng = np.random.default_rng(self.seed)
        actor_gender = table.groupby("actor")["gender"].first()
        assignment: dict[str, str] = {}
        for gender, actors in sorted(actor_gender.groupby(actor_gender).groups.items()):
            actors = sorted(actors)
            if len(actors) < 3:
                raise InvalidSetting(
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
        """Each row's split, that of its actor (see Splitter.__call__).

        Args:
            table: the utterance table.

        Returns:
            "train", "val" or "test" for every row, in table order, named "split".
        """
        assignment = self.assign_actors(table)
        return table["actor"].map(assignment).rename("split")


@dataclass(frozen=True)
class LeaveOneSpeakerOutSplit(HeldOutActorsSplit):
    """Leave-one-speaker-out: fold K tests the K-th actor in sorted order.

    On RAVDESS fold 0 is actor 01; there are as many folds as actors, whatever data.num_folds
    says. Validation actors are drawn from the others as in KFoldSplit.
    """

    fold: int = 0
    name: ClassVar[str] = "loso"
    val_rule: ClassVar[str] = "actors drawn per (corpus, gender) from the other actors"

    @classmethod
    def from_settings(
        cls, ratios, seed, fold=0, num_folds=6, test_corpus=None, folds=None
    ) -> LeaveOneSpeakerOutSplit:
        """The splitter from the data config: the ratios, the seed and the fold (see Splitter).

        Returns:
            The splitter.
        """
        return cls(ratios=tuple(ratios), seed=seed, fold=fold)

    def test_and_val(self, table: pd.DataFrame) -> tuple[list[str], list[str]]:
        """The test actor and the validation actors of this fold.

        Args:
            table: the utterance table.

        Returns:
            The test actors (one) and the validation actors.

        Raises:
            InvalidSetting: data.fold is not the index of one of the table's actors.
        """
        actors = sorted(table["actor"].unique())
        if not 0 <= self.fold < len(actors):
            raise InvalidSetting(
                f"data.fold={self.fold} must be in 0..{len(actors) - 1}: split=loso has one fold per actor"
            )
        test = [actors[self.fold]]
        rng = np.random.default_rng([self.seed, self.fold])
        what = f"leave-one-speaker-out fold {self.fold}"
        return test, draw_val_actors(
            table, actors[: self.fold] + actors[self.fold + 1 :], val_share(self.ratios), rng, what
        )

    def fold_record(self, table: pd.DataFrame) -> dict:
        """The fold and the number of folds: one per actor.

        Args:
            table: the utterance table the split is made of.

        Returns:
            `fold` and `num_folds`.
        """
        return {"fold": self.fold, "num_folds": int(table["actor"].nunique())}


@dataclass(frozen=True)
class CrossCorpusSplit(HeldOutActorsSplit):
    """Train on some corpora, test on another: every utterance of `test_corpus` is test data.

    Validation actors are drawn from the other corpora as in KFoldSplit.
    """

    test_corpus: str | None = None
    name: ClassVar[str] = "cross_corpus"
    val_rule: ClassVar[str] = "actors drawn per (corpus, gender) from the other corpora"

    @classmethod
    def from_settings(
        cls, ratios, seed, fold=0, num_folds=6, test_corpus=None, folds=None
    ) -> CrossCorpusSplit:
        """The splitter from the data config: the ratios, the seed and the test corpus (see Splitter).

        Returns:
            The splitter.
        """
        return cls(ratios=tuple(ratios), seed=seed, test_corpus=test_corpus)

    def test_and_val(self, table: pd.DataFrame) -> tuple[list[str], list[str]]:
        """The test corpus's actors and the validation actors drawn from the other corpora.

        Args:
            table: the utterance table of several corpora.

        Returns:
            The test actors and the validation actors.

        Raises:
            InvalidSetting: the table has one corpus only, or not the test corpus.
        """
        corpora = sorted(table["corpus"].unique())
        if self.test_corpus not in corpora or len(corpora) < 2:
            raise InvalidSetting(
                f"data.split=cross_corpus needs data.test_corpus set to one of several corpora in the table; "
                f"got test_corpus={self.test_corpus!r}, corpora {corpora} (use data=ser_en to combine corpora)"
            )
        test = sorted(table.loc[table["corpus"] == self.test_corpus, "actor"].unique())
        rest = sorted(set(table["actor"]) - set(test))
        rng = np.random.default_rng(self.seed)
        what = f"cross_corpus with test_corpus={self.test_corpus}"
        return test, draw_val_actors(table, rest, val_share(self.ratios), rng, what)

    def fold_record(self, table: pd.DataFrame) -> dict:
        """The test corpus.

        Args:
            table: the utterance table the split is made of.

        Returns:
            `test_corpus`.
        """
        return {"test_corpus": self.test_corpus}
