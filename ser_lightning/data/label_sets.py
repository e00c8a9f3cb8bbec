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

`data.label_map` harmonises corpora before that filter: it renames a corpus's emotions onto
others (`{excited: happy, calm: neutral}`), so that corpora with different label sets share
one (`conf/label_map/`); `check_label_map` validates it and `harmonise` applies it to the
utterance table's `emotion` column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

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


def check_label_map(mapping: Mapping[str, str] | None) -> dict[str, str]:
    """Validate data.label_map: corpus emotion name -> the name it counts as, both KNOWN_EMOTIONS.

    Args:
        mapping: the setting (None or empty: the corpus's own names).

    Returns:
        The map as a plain dict, sorted by name; identity entries (`happy: happy`) are dropped.

    Raises:
        InvalidSetting: when the setting is not a mapping, names an emotion that is not one of
            KNOWN_EMOTIONS, or maps a name onto one that it maps again (a map is applied once).
    """
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise InvalidSetting(
            f"data.label_map={mapping!r} must map emotion names onto emotion names, e.g. "
            "data.label_map='{excited: happy, calm: neutral}' (or {} for the corpus's own names)"
        )
    pairs = {str(k): str(v) for k, v in mapping.items() if str(k) != str(v)}
    unknown = sorted({name for pair in pairs.items() for name in pair if name not in KNOWN_EMOTIONS})
    if unknown:
        raise InvalidSetting(
            f"data.label_map names unknown emotions {unknown}; both sides of the map must be among "
            f"{list(KNOWN_EMOTIONS)} (the names the corpus parsers give, see docs/corpora.md)"
        )
    chained = sorted(k for k, v in pairs.items() if v in pairs)
    if chained:
        raise InvalidSetting(
            f"data.label_map maps {[f'{k} -> {pairs[k]}' for k in chained]}, then maps that name again; "
            "the map is applied once: map each emotion straight onto its final name"
        )
    return dict(sorted(pairs.items()))


def harmonise(table: pd.DataFrame, mapping: Mapping[str, str]) -> pd.DataFrame:
    """Rename the table's emotions by a checked label map (`check_label_map`).

    Args:
        table: the utterance table.
        mapping: corpus emotion name -> the name it counts as; names it lacks stay as they are.

    Returns:
        The table itself when the map is empty, else a copy with `emotion` renamed.
    """
    if not mapping:
        return table
    table = table.copy()
    table["emotion"] = table["emotion"].map(lambda name: mapping.get(name, name))
    return table
