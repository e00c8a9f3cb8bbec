"""EmoBox's published folds of any corpus (`data=emobox`, `data.split=emobox`).

Fold K (`data.fold`, EmoBox's fold K+1) tests the utterances of its test list and trains on those
of its train list, as `EmoBoxCorpus` read them (the table's `statement` holds each row's list
membership per fold; the jsonl files are the one record). EmoBox has no validation list:
validation utterances are drawn from the fold's train list, round(n × val/(train+val)) of each
emotion, shuffled with (data.split_seed, data.fold), so the same seed always validates on the
same utterances. They are drawn by utterance: a speaker may be in train and validation alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ser_lightning.data.corpora.emobox_meta import parse_membership
from ser_lightning.data.splits.base import Splitter
from ser_lightning.data.splits.speakers import val_share
from ser_lightning.utils.errors import InvalidSetting


@dataclass(frozen=True)
class EmoBoxListSplit(Splitter):
    """EmoBox's train/test lists of fold `fold` + 1; validation drawn from train, stratified by emotion."""

    fold: int = 0
    name: ClassVar[str] = "emobox"
    # EmoBox's lists keep speakers apart on some corpora only, and validation is drawn by utterance
    speaker_independent: ClassVar[bool] = False

    @classmethod
    def from_settings(
        cls, ratios, seed, fold=0, num_folds=6, test_corpus=None, folds=None
    ) -> EmoBoxListSplit:
        """The splitter from the data config: the ratios, the seed and the fold (see Splitter).

        Returns:
            The splitter.
        """
        return cls(ratios=tuple(ratios), seed=seed, fold=fold)

    def lists(self, table: pd.DataFrame) -> pd.Series:
        """Each row's list in this fold, "train" or "test", from the table's EmoBox membership.

        Args:
            table: the utterance table of data=emobox.

        Returns:
            "train" or "test" per row, named "split".

        Raises:
            InvalidSetting: the table is not EmoBox's, data.fold names no EmoBox fold, the fold
                has no train or no test list, or some rows are in neither list of the fold.
        """
        members = [parse_membership(str(text)) for text in table["statement"]]
        if any(m is None for m in members):
            raise InvalidSetting(
                "data.split=emobox needs the table of data=emobox (its rows name their EmoBox lists); "
                "choose another data.split for this corpus"
            )
        folds = sorted({fold for m in members for fold in m})
        emobox_fold = self.fold + 1
        if emobox_fold not in folds:
            raise InvalidSetting(
                f"data.fold={self.fold} is EmoBox's fold {emobox_fold}, but the lists have folds {folds}; "
                f"use data.fold in 0..{max(folds) - 1}"
            )
        parts = pd.Series([m.get(emobox_fold) for m in members], index=table.index, name="split")
        if parts.isna().any():
            missing = table.loc[parts.isna(), "path"].head(3).tolist()
            raise InvalidSetting(
                f"{int(parts.isna().sum())} utterances are in neither list of EmoBox fold {emobox_fold} "
                f"(e.g. {missing}): their lines there were rejected (see rejected_files.csv); fix the lists"
            )
        for part in ("train", "test"):
            if not (parts == part).any():
                raise InvalidSetting(
                    f"EmoBox fold {emobox_fold} has no usable {part} utterance of this run's emotions; "
                    + ("use data.split=test_only to evaluate on its test list" if part == "train" else "")
                )
        return parts

    def val_rows(self, table: pd.DataFrame, parts: pd.Series) -> np.ndarray:
        """Validation rows: of each emotion of the train list, round(n × val share), seeded.

        Args:
            table: the utterance table.
            parts: each row's list (`lists`).

        Returns:
            The positions of the validation rows, sorted.

        Raises:
            InvalidSetting: the train list has fewer than two utterances.
        """
        train = np.flatnonzero(parts.to_numpy() == "train")
        if len(train) < 2:
            raise InvalidSetting(f"EmoBox fold {self.fold + 1} trains on {len(train)} utterance(s): too few")
        rng, share, chosen = np.random.default_rng([self.seed, self.fold]), val_share(self.ratios), []
        emotions = table["emotion"].to_numpy()[train]
        for emotion in sorted(set(emotions)):
            rows = train[emotions == emotion]
            chosen += list(rows[rng.permutation(len(rows))][: int(math.floor(len(rows) * share + 0.5))])
        if not chosen:
            chosen = [train[int(rng.integers(len(train)))]]
        if len(chosen) == len(train):
            chosen = chosen[:-1]
        return np.sort(np.array(chosen, dtype=int))

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        """Each row's split: its list in this fold, validation drawn from train (see Splitter.__call__).

        Args:
            table: the utterance table.

        Returns:
            "train", "val" or "test" for every row, in table order, named "split".
        """
        parts = self.lists(table)
        split = parts.to_numpy().copy()
        split[self.val_rows(table, parts)] = "val"
        return pd.Series(split, index=table.index, name="split")

    def describe(self, table: pd.DataFrame) -> dict:
        """The protocol, the EmoBox fold, the list sizes and how validation was drawn.

        Args:
            table: the utterance table the split is made of.

        Returns:
            The split's record for the run.
        """
        split = self(table)
        counts = split.value_counts()
        return {
            "split": self.name,
            "speaker_independent": False,
            "fold": self.fold,
            "emobox_fold": self.fold + 1,
            "num_folds": len({f for text in table["statement"] for f in parse_membership(str(text)) or {}}),
            "seed": self.seed,
            "sizes": {name: int(counts.get(name, 0)) for name in ("train", "val", "test")},
            "val": (
                f"utterances drawn from EmoBox fold {self.fold + 1}'s train list, round(n x "
                f"{val_share(self.ratios):.3f}) of each emotion, shuffled with (split_seed, fold); "
                "EmoBox has no validation list"
            ),
        }
