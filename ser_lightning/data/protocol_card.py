"""Protocol cards: what a result was measured on and how, so that only like results stand side by side.

Two UAs are comparable when they were measured on the same files, with the same labels, the
same split rule and the same metric definitions, and aggregated the same way. A card records
exactly that, for every result (`summary.json`, `eval.json`, the study tables):

- `corpus` and `corpus_files_sha256`: the corpus name and a fingerprint of every labelled file
  its parser found, before label filters and the audio check (`CorpusScan.labelled_files_sha256`:
  paths relative to the corpus root, so the card is the same on every machine);
- `labels` and `label_map`: the run's label names and the harmonisation map that produced them
  (empty when the corpus's own names are used);
- `split`: the split rule, as the splitter describes it, without what varies between repeats of
  one protocol (`REPEAT_FIELDS`: the fold, the split seed and the actors they pick), which is
  kept apart under `repeat`; `fold_membership_sha256`: a fingerprint of this run's (file, split)
  pairs;
- `metrics`: the metric definitions (`ser_lightning.metrics.METRIC_DEFINITIONS`);
- `aggregation`: how the number is aggregated (one run; a study says over what it averages);
- `feature_normalization` (only when given, e.g. by `python -m ser_lightning.baseline`): how the
  features were scaled; hashed only when the scaling read the test clips (speaker
  normalisation with the unlabelled test speakers' own statistics), which changes the protocol;
- `hash`: 12 hex digits of SHA-256 over everything above except `repeat` and
  `fold_membership_sha256`, so that the folds and seeds of one protocol share a hash.

`differing_fields(a, b)` names the fields two cards disagree on; the study report refuses to
put results with different hashes side by side unless told to (`--allow-protocol-mismatch`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ser_lightning.metrics import METRIC_DEFINITIONS

# What varies between the repeats of one protocol (a study's folds and split seeds).
REPEAT_FIELDS = ("seed", "fold", "test_actors", "val_actors")
# The fields the hash is taken over, in the card's order.
HASHED_FIELDS = ("corpus", "corpus_files_sha256", "labels", "label_map", "split", "metrics", "aggregation")
ONE_RUN = "one run: the scores of this run's test split"


def _sha256(lines: list[str]) -> str:
    digest = hashlib.sha256()
    for line in sorted(lines):
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def card_hash(card: dict) -> str:
    """Hash the fields that define a protocol.

    Args:
        card: a protocol card (its `hash`, `repeat` and `fold_membership_sha256` are not read).

    Returns:
        12 hex digits of SHA-256 over the canonical JSON of HASHED_FIELDS.
    """
    fields = {key: card.get(key) for key in HASHED_FIELDS}
    if (card.get("feature_normalization") or {}).get("uses_unlabelled_test_clips"):
        fields["feature_normalization"] = card["feature_normalization"]
    canonical = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def protocol_card(
    manifest: Any,
    label_map: dict[str, str] | None = None,
    aggregation: str = ONE_RUN,
    feature_normalization: dict | None = None,
) -> dict:
    """The protocol card of a prepared manifest (the data module's, after setup).

    Args:
        manifest: a `Manifest` (corpus, table, labels, splitter and split assignment).
        label_map: the harmonisation map from the corpus's emotion names to the run's; None: the
            manifest's own (`data.label_map`).
        aggregation: how the result the card travels with is aggregated.
        feature_normalization: how the features were scaled (`normalize`, `uses_unlabelled_test_clips`,
            `description`); None: not recorded.

    Returns:
        The card: plain values only, with its `hash`.
    """
    table = manifest.split_table()  # paths relative to the corpus root
    described = manifest.splitter.describe(manifest.table)
    manifest_map = getattr(manifest, "label_map", None) or {}
    card = {
        "corpus": manifest.corpus,
        "corpus_files_sha256": manifest.scan.labelled_files_sha256,
        "labels": list(manifest.label_names),
        "label_map": dict(sorted((label_map if label_map is not None else manifest_map).items())),
        "split": {k: v for k, v in described.items() if k not in REPEAT_FIELDS},
        "repeat": {k: described[k] for k in REPEAT_FIELDS if k in described},
        "fold_membership_sha256": _sha256(
            [f"{p}\t{s}" for p, s in zip(table["path"], table["split"], strict=True)]
        ),
        "metrics": dict(METRIC_DEFINITIONS),
        "aggregation": aggregation,
    }
    if feature_normalization is not None:
        card["feature_normalization"] = dict(feature_normalization)
    card["hash"] = card_hash(card)
    return card


def differing_fields(a: dict, b: dict) -> list[str]:
    """Name the protocol fields on which two cards disagree.

    Args:
        a: a protocol card.
        b: another.

    Returns:
        The HASHED_FIELDS whose values differ (`split.<key>` for the split rule's keys), in order,
        then `feature_normalization` when it is hashed in either card and differs.
    """
    names = []
    for key in HASHED_FIELDS:
        if key == "split":
            split_a, split_b = a.get("split") or {}, b.get("split") or {}
            names += [
                f"split.{k}"
                for k in sorted(split_a.keys() | split_b.keys())
                if split_a.get(k) != split_b.get(k)
            ]
        elif a.get(key) != b.get(key):
            names.append(key)
    hashed = [(c.get("feature_normalization") or {}) for c in (a, b)]
    if any(n.get("uses_unlabelled_test_clips") for n in hashed) and hashed[0] != hashed[1]:
        names.append("feature_normalization")
    return names
