"""Train/validation/test splits: pure functions of the utterance table, the ratios and a seed.

- RandomSplit: stratified by emotion, what the earlier SER projects did. Speakers appear in
  train and test alike, so scores are optimistic; a warning says so once per process.
- ActorSplit: speaker-independent. Actors are drawn per gender so that every split holds both
  genders; no actor is in two splits.
- KFoldSplit: speaker-independent folds of actors; fold K is the test set, validation actors
  are drawn from the other folds. The folds are cut from the sorted actors, or given: a published
  fold set by name (`data.folds=emobox`, PUBLISHED_FOLDS) or a list of actor lists.
  LeaveOneSpeakerOutSplit: one actor per fold.
- CrossCorpusSplit: one corpus of a combined table is the test set.
- EvalOnlySplit (test_only): every utterance is test data (evaluating a trained model on a new corpus).

Speaker-independent splits balance actors over strata of (corpus, gender), so that every
split holds both genders, and every corpus of a combined table, where the actors allow it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
_warned_random_split = False

# Test folds published with benchmarks, so that a number can be set beside the published table.
# EmoBox (Ma et al., Interspeech 2024, github.com/emo-box/EmoBox): RAVDESS's 24 actors in six test
# folds of four; EmoBox's fold N is our data.fold=N-1.
PUBLISHED_FOLDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "emobox": (
        ("01", "11", "20", "21"),
        ("04", "10", "12", "14"),
        ("08", "09", "19", "23"),
        ("03", "05", "07", "24"),
        ("02", "15", "16", "18"),
        ("06", "13", "17", "22"),
    ),
}


def check_ratios(ratios: tuple[float, float, float] | list[float]) -> tuple[float, float, float]:
    """Validate split ratios: three positive numbers that sum to 1."""
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
        ratios,
        seed: int,
        fold: int = 0,
        num_folds: int = 6,
        test_corpus: str | None = None,
        folds=None,
    ) -> Splitter:
        """The splitter from the data config's split settings (each protocol keeps those it uses)."""
        return cls(ratios=tuple(ratios), seed=seed)

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        raise NotImplementedError

    def describe(self, table: pd.DataFrame) -> dict:
        return {"split": self.name, "speaker_independent": self.speaker_independent}

    def required_splits(self) -> tuple[str, ...]:
        """The splits that must hold files for this protocol to be usable."""
        return SPLIT_NAMES if self.needs_training_data else ("test",)


@dataclass(frozen=True)
class RandomSplit(Splitter):
    """Stratified random split of utterances: train first, then the remainder halved by ratio."""

    name: ClassVar[str] = "random"
    speaker_independent: ClassVar[bool] = False

    def describe(self, table: pd.DataFrame) -> dict:
        return {
            "split": self.name,
            "speaker_independent": False,
            "seed": self.seed,
            "ratios": list(self.ratios),
        }

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
class ActorSplit(Splitter):
    """Speaker-independent split: whole actors go to one split, both genders in every split.

    For each gender the actors are shuffled with the seed; val and test each get
    round(n * ratio) actors (at least one), train the rest. With RAVDESS's 12 + 12 actors and
    70/15/15 that is 8 + 8 train, 2 + 2 val, 2 + 2 test actors.
    """

    name: ClassVar[str] = "actor"

    def describe(self, table: pd.DataFrame) -> dict:
        return {
            "split": self.name,
            "speaker_independent": True,
            "seed": self.seed,
            "ratios": list(self.ratios),
        }

    def assign_actors(self, table: pd.DataFrame) -> dict[str, str]:
        """Map each actor to the split it belongs to."""
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
        assignment = self.assign_actors(table)
        return table["actor"].map(assignment).rename("split")


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def actor_strata(table: pd.DataFrame, actors=None) -> list[list[str]]:
    """Actors grouped by (corpus, gender), groups and actors in sorted order."""
    info = table.groupby("actor", sort=True)[["corpus", "gender"]].first()
    if actors is not None:
        info = info.loc[sorted(actors)]
    groups = info.groupby(["corpus", "gender"], sort=True).groups
    return [sorted(members) for _, members in sorted(groups.items())]


def draw_val_actors(
    table: pd.DataFrame, candidates, share: float, rng: np.random.Generator, what: str
) -> list[str]:
    """Validation actors drawn from `candidates`: round(share * n) of each (corpus, gender) group.

    At least one actor is drawn, and at least one candidate stays for training; `what` names
    the protocol in the error when the candidates are too few for both.
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


def _val_share(ratios) -> float:
    """The validation share of the non-test actors, from data.split_ratios (train, val, test)."""
    train_r, val_r, _ = check_ratios(ratios)
    return val_r / (train_r + val_r)


def _assign(table: pd.DataFrame, test: list[str], val: list[str]) -> pd.Series:
    split = {actor: "train" for actor in table["actor"].unique()}
    split.update({actor: "val" for actor in val})
    split.update({actor: "test" for actor in test})
    return table["actor"].map(split).rename("split")


@dataclass(frozen=True)
class KFoldSplit(Splitter):
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
        return cls(
            ratios=tuple(ratios), seed=seed, fold=fold, num_folds=num_folds, given_folds=given_folds(folds)
        )

    def folds(self, table: pd.DataFrame) -> list[list[str]]:
        """The test actors of every fold."""
        if self.given_folds is not None:
            return self._listed_folds(table)
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

    def _listed_folds(self, table: pd.DataFrame) -> list[list[str]]:
        """The given folds, their actor ids matched to the table's."""
        name = self.given_folds if isinstance(self.given_folds, str) else None
        listed = PUBLISHED_FOLDS[name] if name else self.given_folds
        setting = f"data.folds={name}" if name else "data.folds"
        if len(listed) != self.num_folds:
            raise InvalidSetting(
                f"{setting} lists {len(listed)} folds but data.num_folds={self.num_folds}; "
                f"set data.num_folds={len(listed)}"
            )
        actors = {str(a) for a in table["actor"].unique()}
        # ids typed as numbers on the command line (data.folds=[[1,11],...]) match zero-padded ids
        by_number = {int(a): a for a in actors if a.isdigit()}
        folds, missing, seen = [], [], set()
        for members in listed:
            fold = []
            for actor in members:
                found = str(actor) if str(actor) in actors else None
                if found is None and str(actor).isdigit():
                    found = by_number.get(int(actor))
                if found is None:
                    missing.append(str(actor))
                elif found in seen:
                    raise InvalidSetting(f"{setting}: actor {found} is listed in two folds")
                else:
                    seen.add(found)
                    fold.append(found)
            folds.append(sorted(fold))
        if missing:
            raise InvalidSetting(
                f"{setting} names actors {missing} that the corpus does not have (its actors: "
                f"{sorted(actors)[:8]}{' ...' if len(actors) > 8 else ''})"
                + (
                    "; EmoBox's folds are RAVDESS's 24 actors 01-24 (data=ravdess, or data=demo with "
                    "its 24 actors)"
                    if name == "emobox"
                    else ""
                )
            )
        return folds

    def _check_fold(self) -> None:
        if not 0 <= self.fold < self.num_folds:
            raise InvalidSetting(
                f"data.fold={self.fold} must be in 0..{self.num_folds - 1} (data.num_folds={self.num_folds})"
            )

    def test_and_val(self, table: pd.DataFrame) -> tuple[list[str], list[str]]:
        self._check_fold()
        test = self.folds(table)[self.fold]
        rest = sorted(set(table["actor"]) - set(test))
        rng = np.random.default_rng([self.seed, self.fold])
        what = f"fold {self.fold} of {self.num_folds}"
        return test, draw_val_actors(table, rest, _val_share(self.ratios), rng, what)

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        return _assign(table, *self.test_and_val(table))

    def describe(self, table: pd.DataFrame) -> dict:
        test, val = self.test_and_val(table)
        return {
            "split": self.name,
            "speaker_independent": True,
            "fold": self.fold,
            "num_folds": self.num_folds,
            "seed": self.seed,
            "folds": self.folds_setting(),
            "test_actors": test,
            "val_actors": val,
            "val": "actors drawn per (corpus, gender) from the other folds",
        }

    def folds_setting(self) -> str | list[list[str]]:
        """How the folds were made: a published set's name, the given lists, or `actors` (cut)."""
        if self.given_folds is None:
            return "actors"
        if isinstance(self.given_folds, str):
            return self.given_folds
        return [list(fold) for fold in self.given_folds]


def given_folds(folds) -> str | tuple[tuple[str, ...], ...] | None:
    """data.folds as a KFoldSplit takes it: None, a PUBLISHED_FOLDS name, or lists of actor ids."""
    if folds is None:
        return None
    if isinstance(folds, str):
        if folds not in PUBLISHED_FOLDS:
            raise InvalidSetting(
                f"data.folds={folds!r} is not a published fold set; choose from {sorted(PUBLISHED_FOLDS)} "
                'or give the test actors of each fold, e.g. data.folds=\'[["01","02"],["03","04"]]\''
            )
        return folds
    folds = [
        list(fold) if isinstance(fold, Sequence) and not isinstance(fold, str) else fold for fold in folds
    ]
    if not folds or not all(isinstance(fold, list) and fold for fold in folds):
        raise InvalidSetting(
            f"data.folds={folds!r} must be a fold set's name ({sorted(PUBLISHED_FOLDS)}) or a list of "
            "actor lists, one per fold"
        )
    return tuple(tuple(str(actor) for actor in fold) for fold in folds)


@dataclass(frozen=True)
class LeaveOneSpeakerOutSplit(Splitter):
    """Leave-one-speaker-out: fold K tests the K-th actor in sorted order (RAVDESS: fold 0 is
    actor 01); there are as many folds as actors, whatever data.num_folds says. Validation
    actors are drawn from the others as in KFoldSplit."""

    fold: int = 0
    name: ClassVar[str] = "loso"

    @classmethod
    def from_settings(
        cls, ratios, seed, fold=0, num_folds=6, test_corpus=None, folds=None
    ) -> LeaveOneSpeakerOutSplit:
        return cls(ratios=tuple(ratios), seed=seed, fold=fold)

    def test_and_val(self, table: pd.DataFrame) -> tuple[list[str], list[str]]:
        actors = sorted(table["actor"].unique())
        if not 0 <= self.fold < len(actors):
            raise InvalidSetting(
                f"data.fold={self.fold} must be in 0..{len(actors) - 1}: split=loso has one fold per actor"
            )
        test = [actors[self.fold]]
        rng = np.random.default_rng([self.seed, self.fold])
        what = f"leave-one-speaker-out fold {self.fold}"
        return test, draw_val_actors(
            table, actors[: self.fold] + actors[self.fold + 1 :], _val_share(self.ratios), rng, what
        )

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        return _assign(table, *self.test_and_val(table))

    def describe(self, table: pd.DataFrame) -> dict:
        test, val = self.test_and_val(table)
        return {
            "split": self.name,
            "speaker_independent": True,
            "fold": self.fold,
            "num_folds": int(table["actor"].nunique()),
            "seed": self.seed,
            "test_actors": test,
            "val_actors": val,
            "val": "actors drawn per (corpus, gender) from the other actors",
        }


@dataclass(frozen=True)
class CrossCorpusSplit(Splitter):
    """Train on some corpora, test on another: every utterance of `test_corpus` is test data;
    validation actors are drawn from the other corpora as in KFoldSplit."""

    test_corpus: str | None = None
    name: ClassVar[str] = "cross_corpus"

    @classmethod
    def from_settings(
        cls, ratios, seed, fold=0, num_folds=6, test_corpus=None, folds=None
    ) -> CrossCorpusSplit:
        return cls(ratios=tuple(ratios), seed=seed, test_corpus=test_corpus)

    def test_and_val(self, table: pd.DataFrame) -> tuple[list[str], list[str]]:
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
        return test, draw_val_actors(table, rest, _val_share(self.ratios), rng, what)

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        return _assign(table, *self.test_and_val(table))

    def describe(self, table: pd.DataFrame) -> dict:
        test, val = self.test_and_val(table)
        return {
            "split": self.name,
            "speaker_independent": True,
            "test_corpus": self.test_corpus,
            "seed": self.seed,
            "val_actors": val,
            "val": "actors drawn per (corpus, gender) from the other corpora",
        }


@dataclass(frozen=True)
class EvalOnlySplit(Splitter):
    """Every utterance is test data: for evaluating a trained model on a new corpus."""

    name: ClassVar[str] = "test_only"
    needs_training_data: ClassVar[bool] = False

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        return pd.Series(["test"] * len(table), index=table.index, name="split")


SPLITS: dict[str, type[Splitter]] = {
    splitter.name: splitter
    for splitter in (
        RandomSplit,
        ActorSplit,
        KFoldSplit,
        LeaveOneSpeakerOutSplit,
        CrossCorpusSplit,
        EvalOnlySplit,
    )
}


def make_split(
    name: str,
    ratios,
    seed: int,
    fold: int = 0,
    num_folds: int = 6,
    test_corpus: str | None = None,
    folds=None,
) -> Splitter:
    """The splitter a data config names, with the options that split takes."""
    if name not in SPLITS:
        raise InvalidSetting(f"data.split={name!r} is not known; choose from {sorted(SPLITS)}")
    if folds is not None and name != "kfold":
        raise InvalidSetting(f"data.folds={folds!r} only applies to data.split=kfold (got split={name})")
    if test_corpus is not None and name != "cross_corpus":
        raise InvalidSetting(
            f"data.test_corpus={test_corpus!r} only applies to data.split=cross_corpus (got split={name})"
        )
    return SPLITS[name].from_settings(
        ratios, seed, fold=fold, num_folds=num_folds, test_corpus=test_corpus, folds=folds
    )


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
