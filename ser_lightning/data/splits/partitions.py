"""The corpus's own partitions (`data.split=official`): train, validation and test as published.

A corpus that ships official partitions fills the utterance table's `partition` column
(MSP-Podcast: Train, Development, Test1, Test2, Test3). Train rows train, Development rows
validate, and the rows of one test partition (`data.test_partition`, Test1 unless set) test;
the other test partitions are left out of the run (their rows get the split "unused", so no
split's loader serves them) and how many is logged. Ratios and seed play no part.

The split is speaker-independent only because the partitions are: MSP-Podcast publishes
speaker-disjoint partitions, and the run's leakage check verifies it on the table (a speaker in
two of the run's splits stops the run); `describe()` records the speakers shared between the
run's splits as it finds them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from ser_lightning.data.splits.base import Splitter
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

# Corpora whose parser fills the `partition` column (named in the message of a table without it).
CORPORA_WITH_PARTITIONS: tuple[str, ...] = ("msp_podcast",)
TRAIN_PARTITION, VAL_PARTITION = "Train", "Development"
TEST_PARTITIONS: tuple[str, ...] = ("Test1", "Test2", "Test3")
DEFAULT_TEST_PARTITION = "Test1"
# The split of rows in a test partition the run does not test on: served by no loader.
UNUSED = "unused"


@dataclass(frozen=True)
class PartitionSplit(Splitter):
    """Rows go where the corpus's own `partition` puts them; one test partition is tested."""

    test_partition: str = DEFAULT_TEST_PARTITION
    name: ClassVar[str] = "official"
    speaker_independent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.test_partition not in TEST_PARTITIONS:
            raise InvalidSetting(
                f"data.test_partition={self.test_partition!r} is not a test partition; choose from "
                f"{list(TEST_PARTITIONS)} (Test3 only where the release has it)"
            )

    @classmethod
    def from_settings(
        cls,
        ratios: Sequence[float],
        seed: int,
        fold: int = 0,
        num_folds: int = 6,
        test_corpus: str | None = None,
        folds: str | Sequence[Sequence[str | int]] | None = None,
        test_partition: str | None = None,
    ) -> PartitionSplit:
        """The splitter from the data config's split settings (see Splitter.from_settings).

        Args:
            ratios: data.split_ratios (not used: the partitions are fixed).
            seed: data.split_seed (not used).
            fold: data.fold (not used).
            num_folds: data.num_folds (not used).
            test_corpus: data.test_corpus (not used).
            folds: data.folds (not used).
            test_partition: data.test_partition; None tests on Test1.

        Returns:
            The splitter.
        """
        return cls(ratios=tuple(ratios), seed=seed, test_partition=test_partition or DEFAULT_TEST_PARTITION)

    def targets(self) -> dict[str, str]:
        """Where each partition's rows go.

        Returns:
            Train -> train, Development -> val, the test partition -> test, other test partitions
            -> unused.
        """
        return {
            TRAIN_PARTITION: "train",
            VAL_PARTITION: "val",
            **{p: "test" if p == self.test_partition else UNUSED for p in TEST_PARTITIONS},
        }

    def _check(self, table: pd.DataFrame) -> pd.Series:
        # the table's partition column, refused when absent or not one of the known partitions
        partition = table["partition"].astype(str) if "partition" in table else pd.Series([""] * len(table))
        missing = partition == ""
        if missing.any():
            corpora = sorted(table.loc[missing.to_numpy(), "corpus"].astype(str).unique())
            raise InvalidSetting(
                f"data.split=official needs the corpus's own partitions, but {int(missing.sum())} rows "
                f"(corpus {', '.join(corpora)}) have none; corpora with official partitions: "
                f"{', '.join(CORPORA_WITH_PARTITIONS)}. Use another split (e.g. data.split=actor)"
            )
        unknown = sorted(set(partition) - set(self.targets()))
        if unknown:
            raise InvalidSetting(
                f"data.split=official knows the partitions {list(self.targets())}, not {unknown}"
            )
        if not (partition == self.test_partition).any():
            raise InvalidSetting(
                f"data.test_partition={self.test_partition} has no files in this corpus (its partitions: "
                f"{sorted(set(partition))}); choose one of them"
            )
        return partition

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        """Each row's split, from its partition (see Splitter.__call__).

        Args:
            table: the utterance table, with its `partition` column.

        Returns:
            "train", "val", "test" or "unused" (a test partition this run does not test on) for
            every row, in table order, named "split".

        Raises:
            InvalidSetting: when rows have no partition (the message names the corpora that have
                them), a partition is unknown, or the test partition has no rows.
        """
        partition = self._check(table)
        counts = partition.value_counts()
        targets = self.targets()
        log.info(
            "split=official: %s",
            ", ".join(
                f"{p} -> {targets[p]} ({int(counts.get(p, 0))})" for p in targets if targets[p] != UNUSED
            ),
        )
        left_out = {p: int(counts[p]) for p in TEST_PARTITIONS if targets[p] == UNUSED and p in counts}
        if left_out:
            log.info(
                "split=official tests on %s; left out of the run: %s",
                self.test_partition,
                ", ".join(f"{p} ({n} files)" for p, n in left_out.items()),
            )
        return pd.Series(partition.map(targets).to_numpy(), index=table.index, name="split")

    def describe(self, table: pd.DataFrame) -> dict:
        """The protocol: the partitions used, those left out, and whether speakers are disjoint.

        Args:
            table: the utterance table the split is made of.

        Returns:
            The split's record for the run.
        """
        record = {
            "split": self.name,
            "speaker_independent": self.speaker_independent,
            "protocol": "the corpus's official partitions (MSP-Podcast's are speaker-disjoint)",
            "test_partition": self.test_partition,
            "partitions": {p: s for p, s in self.targets().items() if s != UNUSED},
        }
        if "partition" not in table or (table["partition"].astype(str) == "").any():
            return record
        partition = table["partition"].astype(str)
        record["left_out"] = {
            p: int((partition == p).sum())
            for p, s in self.targets().items()
            if s == UNUSED and (partition == p).any()
        }
        split = partition.map(self.targets())
        actors = table["actor"].astype(str)
        used = split != UNUSED
        per_actor = (
            pd.DataFrame({"actor": actors[used], "split": split[used]}).groupby("actor")["split"].nunique()
        )
        record["speakers_in_several_splits"] = int((per_actor > 1).sum())
        return record
