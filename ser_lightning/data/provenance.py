"""What a model was trained on, as its checkpoint records it, and the checks against that record.

A checkpoint's record (ser_lightning.checkpoint) keeps the run's data settings and its split:
name, sizes, a fingerprint of the test files, and the identity of every training and
validation file. Two commands check new work against it:

- `eval` lists the scored files the model learnt from (`training_overlap`), and stops before
  it passes their scores off as speaker-independent test scores (`check_training_overlap`);
- a resumed run must split the same test files (`split_record`'s fingerprint), or the corpus
  changed and files the model trained on could now be test files.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ser_lightning.data.splits import SPLITS
from ser_lightning.data.utterances import relative_paths
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only: importing the data module here would load Lightning
    from ser_lightning.data.datamodule import SERDataModule

log = logging.getLogger(__name__)


def data_settings(data: dict) -> dict:
    """The data settings a checkpoint records of a data config: its keys, without `_target_`.

    Relative `root` and `cache_dir` are made absolute, so that eval finds the corpus from any
    working directory, and a resumed run compares like with like.

    Args:
        data: a resolved data config (conf/data), with or without `_target_`.

    Returns:
        A new dict of plain settings: the keyword arguments of `build_data_module` but `features`.
    """
    settings = {key: value for key, value in data.items() if key != "_target_"}
    for key in ("root", "cache_dir"):
        if isinstance(settings.get(key), str):
            settings[key] = str(Path(settings[key]).expanduser().resolve())
    return settings


def file_identities(
    relative_paths: Iterable[str | os.PathLike[str]], absolute_paths: Iterable[str | os.PathLike[str]]
) -> dict[str, int]:
    """Identify files by their corpus-relative path and size.

    The relative path still matches when the corpus is moved or copied; the size tells apart
    two corpora that share a naming scheme (the demo corpus and RAVDESS name files alike).

    Args:
        relative_paths: each file's path relative to the corpus root.
        absolute_paths: the same files' paths on this machine, in the same order.

    Returns:
        Corpus-relative path -> size in bytes of each file.
    """
    return {str(rel): os.stat(path).st_size for rel, path in zip(relative_paths, absolute_paths, strict=True)}


def files_fingerprint(paths: Iterable[str | os.PathLike[str]]) -> str:
    """Hash a list of (corpus-relative) file paths, whatever their order.

    Args:
        paths: the paths.

    Returns:
        The SHA-256 hex digest of the sorted paths.
    """
    digest = hashlib.sha256()
    for path in sorted(str(p) for p in paths):
        digest.update(path.encode() + b"\n")
    return digest.hexdigest()


def split_record(datamodule: Any) -> dict | None:
    """The split a set-up data module made, as a checkpoint records it.

    Args:
        datamodule: an SERDataModule after `setup` (None, or one without a manifest: no record).

    Returns:
        `name`, `sizes` per split, `test_files_sha256` (`files_fingerprint` of the test files),
        and `train_files`/`val_files` (`file_identities`), or None.
    """
    manifest = getattr(datamodule, "manifest", None)
    if manifest is None:
        return None
    table = manifest.split_table()
    absolute = manifest.table["path"].to_numpy()
    return {
        "name": manifest.splitter.name,
        "sizes": {str(k): int(v) for k, v in table["split"].value_counts().sort_index().items()},
        "test_files_sha256": files_fingerprint(table.loc[table["split"] == "test", "path"]),
        **{
            f"{part}_files": file_identities(table["path"][mask], absolute[mask])
            for part in ("train", "val")
            for mask in [(table["split"] == part).to_numpy()]
        },
    }


def training_overlap(split: dict | None, scored: dict[str, int]) -> dict:
    """Find which of the `scored` files a checkpoint's run trained or validated on.

    Files match by corpus-relative path and size, against the run's recorded `split`.

    Args:
        split: the checkpoint's split record (`split_record`), or None.
        scored: the scored files, as `file_identities` gives them.

    Returns:
        `status` (`none`, `overlap`, or `unknown` for a record that lists no files), `count`,
        and the matching `train` and `val` files (None when unknown).
    """
    split = split or {}
    if not isinstance(split.get("train_files"), dict) or not isinstance(split.get("val_files"), dict):
        return {"status": "unknown", "count": None, "train": None, "val": None}
    found = {
        part: sorted(f for f, size in scored.items() if split[f"{part}_files"].get(f) == size)
        for part in ("train", "val")
    }
    count = len(found["train"]) + len(found["val"])
    return {"status": "overlap" if count else "none", "count": count, **found}


def scored_training_files(datamodule: SERDataModule, split: str, trained_split: dict | None) -> dict:
    """Find the training files among those of one split of a set-up data module.

    Args:
        datamodule: the set-up data module to be scored.
        split: the split scored (`all`: the whole corpus, the test split of `test_only`).
        trained_split: the checkpoint's split record.

    Returns:
        `training_overlap` of the split's files, with `of`: how many files it holds.
    """
    manifest = datamodule.manifest
    table = manifest.table.iloc[manifest.indices["test" if split == "all" else split]]
    scored = file_identities(relative_paths(table, manifest.root), table["path"])
    return {**training_overlap(trained_split, scored), "of": len(scored)}


def check_training_overlap(
    overlap: dict, split: str, datamodule: SERDataModule, trained_split: dict, ckpt_path: str, allowed: bool
) -> None:
    """Stop before scoring training files as test data under a speaker-independent protocol.

    Scores reported as test scores (split=test or all) of files the model learnt from are not
    test scores; under data.split=actor/kfold/loso/cross_corpus they would wrongly claim unseen
    speakers. split=train/val ask for such files by name, and `allowed`
    (allow_train_overlap=true) accepts them.

    Args:
        overlap: what `scored_training_files` found.
        split: the split scored (test, val, train or all).
        datamodule: the set-up data module scored.
        trained_split: the checkpoint's split record.
        ckpt_path: the checkpoint, for the message.
        allowed: the user accepts scoring such files.

    Raises:
        InvalidSetting: the files overlap and either protocol is speaker-independent.
    """
    if overlap["status"] != "overlap" or split not in ("test", "all") or allowed:
        return
    trained_protocol = SPLITS.get(str(trained_split.get("name")))
    protocol = datamodule.splitter
    if not (
        protocol.speaker_independent
        or (trained_protocol is not None and trained_protocol.speaker_independent)
    ):
        return
    examples = ", ".join((overlap["train"] + overlap["val"])[:3])
    raise InvalidSetting(
        f"{overlap['count']} of the {overlap['of']} files eval would score as test were used to train the "
        f"model ({len(overlap['train'])} train, {len(overlap['val'])} validation files of {ckpt_path}), "
        f"e.g. {examples}; under data.split={protocol.name} (trained with data.split={trained_split.get('name')}) "
        "their scores would pass for speaker-independent test scores. Score the checkpoint's own test split "
        "(ckpt_path alone), a corpus it never saw, or pass allow_train_overlap=true to score them anyway "
        "(eval.json and the report then list them)."
    )


def overlap_warning(overlap: dict) -> str:
    """Word the warning a report's title carries when it scores files the model learnt from.

    Args:
        overlap: what `scored_training_files` found.

    Returns:
        The warning line, or '' when there is no overlap.
    """
    if overlap["status"] != "overlap":
        return ""
    return (
        f"WARNING: {overlap['count']} of these {overlap['of']} files were used to train "
        f"({len(overlap['train'])}) or validate ({len(overlap['val'])}) the model"
    )


def warn_of_training_overlap(overlap: dict, ckpt_path: str) -> None:
    """Log what `scored_training_files` found when it is not `none`.

    That is files the model learnt from, or a record that cannot tell.
    """
    if overlap["status"] == "unknown":
        log.warning(
            "%s lists no training files (its record holds no split): whether the model learnt from any "
            "scored file is unknown",
            Path(ckpt_path).name,
        )
    elif overlap["status"] == "overlap":
        log.warning("%s; eval.json lists them under training_overlap", overlap_warning(overlap))


def same_test_files(trained_split: dict | None, test_files: Iterable[str | os.PathLike[str]]) -> bool | None:
    """Tell whether `test_files` are the test files the checkpoint's run held out.

    Args:
        trained_split: the checkpoint's split record, or None.
        test_files: corpus-relative paths of this run's test files.

    Returns:
        Whether their fingerprint matches the record's, or None when the record has none.
    """
    fingerprint = (trained_split or {}).get("test_files_sha256")
    if not fingerprint:
        return None
    return files_fingerprint(test_files) == fingerprint
