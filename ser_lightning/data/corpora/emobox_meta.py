"""EmoBox's metadata format: label maps, fold lists (jsonl), wav paths and list membership.

EmoBox (https://github.com/emo-box/EmoBox) keeps, per corpus `<name>`, the folder
`<meta_dir>/<name>/` holding `label_map.json` (its label codes, the `emo` of each line, onto label
names) and `fold_<k>/<name>_{train,test}_fold_<k>.jsonl` for k = 1, 2, ... (as many folds as it
defines: one for corpora with a fixed train/test list). Each line is one utterance:
`{"key": ..., "wav": ..., "emo": ..., "length": ..., "sample_rate": ..., "channel": ...}`.
Everything read here is data: a line that cannot be used is rejected with its file, line and
reason, and a wav path may not leave data.root. The parser is `corpora.emobox`, the split
`splits.emobox_lists`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ser_lightning.data.utterances import RejectedFile
from ser_lightning.labels import KNOWN_EMOTIONS
from ser_lightning.utils.errors import UserError

# EmoBox's label names (the values of its label_map.json files, compared in lower case) onto
# ser_lightning.labels.KNOWN_EMOTIONS.
EMOBOX_LABELS: dict[str, str] = {
    "neutral": "neutral",
    "calm": "calm",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "angry": "angry",
    "anger": "angry",
    "fear": "fearful",
    "fearful": "fearful",
    "disgust": "disgust",
    "surprise": "surprised",
    "surprised": "surprised",
    "contempt": "contempt",
    "boredom": "boredom",
    "excited": "excited",
    "frustrated": "frustrated",
}
REQUIRED_FIELDS: tuple[str, ...] = ("key", "wav", "emo", "length", "sample_rate", "channel")
LIST_PARTS: tuple[str, ...] = ("train", "test")
# `{data_root}/`, `{root}/`, `${data_root}/`, `$data_root/` at the start of a wav path
_PLACEHOLDER = re.compile(r"^\$?\{[A-Za-z_][A-Za-z0-9_]*\}[/\\]*|^\$[A-Za-z_][A-Za-z0-9_]*[/\\]+")
MEMBERSHIP_PREFIX = "emobox:"


@dataclass(frozen=True)
class EmoBoxEntry:
    """One usable line of an EmoBox list: key, wav path (relative to data.root), emotion, where."""

    key: str
    wav: str
    emotion: str
    where: str  # "<file>:<line>"


@dataclass
class EmoBoxList:
    """One fold's train or test list: its usable entries and its rejected lines."""

    entries: list[EmoBoxEntry] = field(default_factory=list)
    rejected: list[RejectedFile] = field(default_factory=list)


def list_path(meta_dir: str | Path, dataset: str, fold: int, part: str) -> Path:
    """Where EmoBox keeps fold `fold`'s (from 1) train or test list of a corpus.

    Args:
        meta_dir: EmoBox's data folder.
        dataset: the corpus name.
        fold: the EmoBox fold, from 1.
        part: "train" or "test".

    Returns:
        `<meta_dir>/<dataset>/fold_<fold>/<dataset>_<part>_fold_<fold>.jsonl`.
    """
    return Path(meta_dir) / dataset / f"fold_{fold}" / f"{dataset}_{part}_fold_{fold}.jsonl"


def emobox_folds(meta_dir: str | Path, dataset: str) -> list[int]:
    """The EmoBox folds (from 1) of a corpus that have a test list on disk.

    Args:
        meta_dir: EmoBox's data folder.
        dataset: the corpus name.

    Returns:
        The fold numbers, sorted.
    """
    folder = Path(meta_dir) / dataset
    found = (re.fullmatch(r"fold_(\d+)", p.name) for p in folder.glob("fold_*"))
    return sorted(int(m[1]) for m in found if m and list_path(meta_dir, dataset, int(m[1]), "test").is_file())


def read_label_map(meta_dir: str | Path, dataset: str) -> dict[str, str]:
    """EmoBox's label codes of a corpus onto KNOWN_EMOTIONS names, from its label_map.json.

    Args:
        meta_dir: EmoBox's data folder.
        dataset: the corpus name.

    Returns:
        Each code of `emo` -> its emotion name (lines match a code as written, else in any case).

    Raises:
        UserError: the file is not a JSON object of names, or names an emotion EMOBOX_LABELS lacks.
    """
    path = Path(meta_dir) / dataset / "label_map.json"
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read EmoBox's label map {path}: {err}") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise UserError(f"{path} must be a JSON object of label code -> label name")
    codes: dict[str, str] = {}
    for code, label in mapping.items():
        if label.strip().lower() not in EMOBOX_LABELS:
            raise UserError(
                f"{path} maps {code!r} to {label!r}, which is not a known emotion; known EmoBox names: "
                f"{', '.join(EMOBOX_LABELS)} (onto {', '.join(KNOWN_EMOTIONS)})"
            )
        codes[code] = EMOBOX_LABELS[label.strip().lower()]
    return codes


def wav_path(wav: str) -> str:
    """A list's wav path made relative to data.root: placeholder stripped, no escape allowed.

    Args:
        wav: the `wav` field as written.

    Returns:
        The normalised relative path.

    Raises:
        ValueError: the path is absolute or leaves data.root with `..` (the message says so).
    """
    rel = _PLACEHOLDER.sub("", wav.strip()).replace("\\", "/")
    if not rel or rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        raise ValueError(
            f"wav {wav!r} is an absolute path (the machine the list was made on); EmoBox paths must be "
            "relative to data.root: rewrite the list's wav paths, or copy them under data.root"
        )
    norm = os.path.normpath(rel)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise ValueError(f"wav {wav!r} leaves data.root; refused")
    return norm


def read_list(path: Path, labels: dict[str, str]) -> EmoBoxList:
    """Read one EmoBox jsonl list; every line that cannot be used is rejected with its reason.

    Args:
        path: the list.
        labels: the corpus's label map (`read_label_map`).

    Returns:
        Its usable entries, in line order, and its rejected lines (file:line and why).
    """
    out, first = EmoBoxList(), {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = _parse_line(line, labels, where, first)
        except ValueError as err:
            out.rejected.append(RejectedFile(where, str(err)))
            continue
        first[entry.key] = number
        out.entries.append(entry)
    return out


def _parse_line(line: str, labels: dict[str, str], where: str, first: dict[str, int]) -> EmoBoxEntry:
    try:
        item = json.loads(line)
    except ValueError:
        raise ValueError("not a JSON line") from None
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    missing = [name for name in REQUIRED_FIELDS if name not in item]
    if missing:
        raise ValueError(f"lacks the field(s) {missing} (an EmoBox line has {list(REQUIRED_FIELDS)})")
    key, emo = item["key"], item["emo"]
    if not isinstance(key, str) or not key or not isinstance(item["wav"], str) or not isinstance(emo, str):
        raise ValueError("key, wav and emo must be non-empty strings")
    if key in first:
        raise ValueError(f"duplicate key {key!r} (first on line {first[key]}); the first is kept")
    emotion = labels.get(emo) or {code.lower(): name for code, name in labels.items()}.get(emo.lower())
    if emotion is None:
        raise ValueError(f"unknown emo {emo!r}; label_map.json has {sorted(labels)}")
    return EmoBoxEntry(key, wav_path(item["wav"]), emotion, where)


def membership_text(folds: dict[int, str]) -> str:
    """A row's list membership as the table keeps it.

    Args:
        folds: EmoBox fold (from 1) -> "train" or "test".

    Returns:
        `emobox:1=train,2=test`.
    """
    return MEMBERSHIP_PREFIX + ",".join(f"{fold}={part}" for fold, part in sorted(folds.items()))


def parse_membership(text: str) -> dict[int, str] | None:
    """Read `membership_text` back.

    Args:
        text: a `statement` value.

    Returns:
        EmoBox fold -> "train"/"test", or None when the text is not an EmoBox membership.
    """
    if not text.startswith(MEMBERSHIP_PREFIX):
        return None
    pairs = (item.split("=", 1) for item in text[len(MEMBERSHIP_PREFIX) :].split(",") if item)
    return {int(fold): part for fold, part in pairs}
