"""Which emotions a run classifies (`data.labels`), and the class indices that follow from it.

- `all`: the 8 emotions of ser_lightning.labels.EMOTIONS (RAVDESS's), whatever the corpus holds.
- `corpus`: the emotions the scanned corpus actually holds (CREMA-D: 6, no calm or surprised).
- a list, e.g. `[neutral, happy, sad, angry]`: those emotions only; files of other emotions
  are left out and counted as excluded by the filter.

Whatever the choice, names keep the order of KNOWN_EMOTIONS (RAVDESS's eight, then the
emotions only other corpora name), and a run's class index is the
position of its emotion in that run's label names. The data module re-indexes the table's
`label` column to it, so that batches, class weights, split.csv, metrics and the
checkpoint's `labels` all agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from ser_lightning.labels import EMOTIONS, KNOWN_EMOTIONS
from ser_lightning.utils.errors import InvalidSetting

LABEL_SET_NAMES = ("all", "corpus")


def check_label_spec(spec: str | Sequence[str]) -> str | tuple[str, ...]:
    """Validate data.labels: "all", "corpus", or a list of emotion names.

    Args:
        spec: the setting.

    Returns:
        "all" or "corpus" as given, or the listed emotions in KNOWN_EMOTIONS order.

    Raises:
        InvalidSetting: when the name is unknown, or the list has unknown, repeated or fewer than
            two emotions.
    """
    if isinstance(spec, str):
        if spec not in LABEL_SET_NAMES:
            raise InvalidSetting(
                f"data.labels={spec!r} is not valid; use 'all', 'corpus' or a list of emotions from {list(KNOWN_EMOTIONS)}"
            )
        return spec
    names = list(spec)
    unknown = [n for n in names if n not in KNOWN_EMOTIONS]
    if unknown or len(set(names)) < 2 or len(set(names)) != len(names):
        raise InvalidSetting(
            f"data.labels={names} must list at least two different emotions from {list(KNOWN_EMOTIONS)}"
            + (f"; unknown: {unknown}" if unknown else "")
        )
    return tuple(e for e in KNOWN_EMOTIONS if e in names)


def resolve_label_names(spec: str | tuple[str, ...], present: Iterable[str]) -> tuple[str, ...]:
    """Decide the run's label names for a checked spec and the emotions a corpus holds.

    Args:
        spec: a spec `check_label_spec` returned.
        present: the emotions the corpus holds (read for "corpus" only).

    Returns:
        RAVDESS's eight for "all", the corpus's emotions for "corpus", else the listed ones; in
        KNOWN_EMOTIONS order.

    Raises:
        InvalidSetting: when "corpus" finds fewer than two emotions.
    """
    if spec == "all":
        return EMOTIONS
    if spec == "corpus":
        present = set(present)
        names = tuple(e for e in KNOWN_EMOTIONS if e in present)
        if len(names) < 2:
            raise InvalidSetting(
                f"data.labels=corpus found only {names} in the corpus; a classifier needs two emotions"
            )
        return names
    return tuple(spec)


def relabel(table: pd.DataFrame, names: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Keep the rows whose emotion is in `names` and number their labels.

    Args:
        table: the utterance table.
        names: the run's label names.

    Returns:
        The kept rows, with `label` = the emotion's index in `names`, and how many were left out.
    """
    index = {name: i for i, name in enumerate(names)}
    keep = table["emotion"].isin(index)
    kept = table.loc[keep].reset_index(drop=True)
    kept["label"] = kept["emotion"].map(index).astype("int64")
    return kept, int((~keep).sum())
