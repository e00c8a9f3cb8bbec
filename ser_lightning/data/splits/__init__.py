"""Train/validation/test splits: pure functions of the utterance table, the ratios and a seed.

- RandomSplit (`stratified`): stratified by emotion, what the earlier SER projects did. Speakers
  appear in train and test alike, so scores are optimistic; a warning says so once per process.
- ActorSplit (`speakers`): speaker-independent. Actors are drawn per gender so that every split
  holds both genders; no actor is in two splits.
- KFoldSplit (`kfold`): speaker-independent folds of actors; fold K is the test set, validation
  actors are drawn from the other folds. The folds are cut from the sorted actors, or given: a
  published fold set by name (`data.folds=emobox`, PUBLISHED_FOLDS in `published`) or a list of
  actor lists. LeaveOneSpeakerOutSplit (`speakers`): one actor per fold.
- CrossCorpusSplit (`speakers`): one corpus of a combined table is the test set.
- LeaveOneSessionOutSplit (`sessions`): IEMOCAP's leave-one-session-out; fold K tests session K+1.
- PartitionSplit (official, `partitions`): the corpus's own published partitions (MSP-Podcast:
  Train, Development, and the test partition `data.test_partition`).
- EmoBoxListSplit (`emobox`, `emobox_lists`): EmoBox's train/test lists of any corpus (data=emobox).
- EvalOnlySplit (test_only, `base`): every utterance is test data (evaluating a trained model on
  a new corpus).

Speaker-independent splits balance actors over strata of (corpus, gender), so that every
split holds both genders, and every corpus of a combined table, where the actors allow it.
This package's top level is the registry of protocols (SPLITS, make_split) and exports every
public name of its modules.
"""

from __future__ import annotations

from collections.abc import Sequence

from ser_lightning.data.splits.base import SPLIT_NAMES, EvalOnlySplit, Splitter, check_ratios, split_indices
from ser_lightning.data.splits.emobox_lists import EmoBoxListSplit
from ser_lightning.data.splits.kfold import KFoldSplit
from ser_lightning.data.splits.partitions import PartitionSplit
from ser_lightning.data.splits.published import PUBLISHED_FOLDS, given_folds
from ser_lightning.data.splits.sessions import LeaveOneSessionOutSplit, speaker_session
from ser_lightning.data.splits.speakers import (
    ActorSplit,
    CrossCorpusSplit,
    LeaveOneSpeakerOutSplit,
    actor_strata,
    draw_val_actors,
)
from ser_lightning.data.splits.stratified import RandomSplit
from ser_lightning.utils.errors import InvalidSetting

__all__ = [
    "PUBLISHED_FOLDS",
    "SPLITS",
    "SPLIT_NAMES",
    "ActorSplit",
    "CrossCorpusSplit",
    "EmoBoxListSplit",
    "EvalOnlySplit",
    "KFoldSplit",
    "LeaveOneSessionOutSplit",
    "LeaveOneSpeakerOutSplit",
    "PartitionSplit",
    "RandomSplit",
    "Splitter",
    "actor_strata",
    "check_ratios",
    "draw_val_actors",
    "given_folds",
    "make_split",
    "speaker_session",
    "split_indices",
]

SPLITS: dict[str, type[Splitter]] = {
    splitter.name: splitter
    for splitter in (
        RandomSplit,
        ActorSplit,
        KFoldSplit,
        LeaveOneSpeakerOutSplit,
        LeaveOneSessionOutSplit,
        CrossCorpusSplit,
        EmoBoxListSplit,
        PartitionSplit,
        EvalOnlySplit,
    )
}


def make_split(
    name: str,
    ratios: Sequence[float],
    seed: int,
    fold: int = 0,
    num_folds: int = 6,
    test_corpus: str | None = None,
    folds: str | Sequence[Sequence[str | int]] | None = None,
    test_partition: str | None = None,
) -> Splitter:
    """The splitter a data config names, with the options that split takes.

    Args:
        name: data.split, a key of SPLITS.
        ratios: data.split_ratios, the (train, val, test) shares.
        seed: data.split_seed.
        fold: data.fold.
        num_folds: data.num_folds.
        test_corpus: data.test_corpus (cross_corpus only).
        folds: data.folds (kfold only).
        test_partition: data.test_partition (official only; None tests on Test1).

    Returns:
        The splitter.

    Raises:
        InvalidSetting: an unknown split, or an option the split does not take.
    """
    if name not in SPLITS:
        raise InvalidSetting(f"data.split={name!r} is not known; choose from {sorted(SPLITS)}")
    if folds is not None and name != "kfold":
        raise InvalidSetting(f"data.folds={folds!r} only applies to data.split=kfold (got split={name})")
    if test_corpus is not None and name != "cross_corpus":
        raise InvalidSetting(
            f"data.test_corpus={test_corpus!r} only applies to data.split=cross_corpus (got split={name})"
        )
    if test_partition is not None and name != "official":
        raise InvalidSetting(
            f"data.test_partition={test_partition!r} only applies to data.split=official (got split={name})"
        )
    extra = {"test_partition": test_partition} if name == "official" else {}
    return SPLITS[name].from_settings(
        ratios, seed, fold=fold, num_folds=num_folds, test_corpus=test_corpus, folds=folds, **extra
    )
