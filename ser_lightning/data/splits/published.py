"""Given test folds (`data.folds`): a fold set published with a benchmark, or lists of actors.

A k-fold run with given folds tests exactly the actors of one list, so that a number can be set
beside a published table (KFoldSplit in `splits.kfold` cuts its own folds otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ser_lightning.utils.errors import InvalidSetting

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


def given_folds(
    folds: str | Sequence[Sequence[str | int]] | None,
) -> str | tuple[tuple[str, ...], ...] | None:
    """data.folds as a KFoldSplit takes it: None, a PUBLISHED_FOLDS name, or lists of actor ids.

    Args:
        folds: the data.folds setting: None, a name, or a list of actor lists (one per fold).

    Returns:
        None, the name, or the lists as tuples of actor ids (strings).

    Raises:
        InvalidSetting: an unknown name, or not a non-empty list of non-empty actor lists.
    """
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


def listed_folds(
    given: str | tuple[tuple[str, ...], ...], num_folds: int, table: pd.DataFrame
) -> list[list[str]]:
    """The given folds, their actor ids matched to the table's.

    Ids typed as numbers on the command line (data.folds=[[1,11],...]) match zero-padded ids.

    Args:
        given: a PUBLISHED_FOLDS name or the actor lists, as `given_folds` returns them.
        num_folds: data.num_folds, which must equal the number of lists.
        table: the utterance table whose actors the lists name.

    Returns:
        The test actors of every fold, each fold sorted.

    Raises:
        InvalidSetting: the number of lists is not num_folds, an actor is listed twice, or a
            listed actor is not in the table.
    """
    name = given if isinstance(given, str) else None
    listed = PUBLISHED_FOLDS[name] if name else given
    setting = f"data.folds={name}" if name else "data.folds"
    if len(listed) != num_folds:
        raise InvalidSetting(
            f"{setting} lists {len(listed)} folds but data.num_folds={num_folds}; set data.num_folds={len(listed)}"
        )
    actors = {str(a) for a in table["actor"].unique()}
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
