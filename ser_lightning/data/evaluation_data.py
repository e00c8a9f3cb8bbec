"""The data a checkpoint is evaluated on (`python -m ser_lightning.eval`).

The settings are the checkpoint's own data settings or the command line's, checked as data from
a file; the data module is built from them with the model's audio settings, label order and
feature extractor.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from ser_lightning.data.datamodule import SERDataModule, build_data_module
from ser_lightning.data.provenance import data_settings
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only
    from ser_lightning.model import SERModel

log = logging.getLogger("ser_lightning.eval")

EVAL_SPLITS = ("test", "val", "train", "all")


def eval_data_config(
    chosen: dict | None, record: dict, ckpt_path: str, paths: Mapping[str, str]
) -> tuple[dict, str]:
    """The data settings to evaluate on (`build_data_module`'s), and where they came from.

    A full data config (`data=<group>`, with `_target_`) is used as given, with the checkpoint's
    label map (`data.label_map`) when it names none itself, so that a corpus is harmonised as
    the training corpus was; a partial one
    (`+data.root=...`) is merged onto the checkpoint's own settings. Those are data from a file:
    only `build_data_module`'s settings, its cache folder replaced by this machine's
    `paths.cache_dir`, and the folders it would have eval read must lie in `paths.data_dir`
    unless the user named them (see `check_stored_folders`).

    Args:
        chosen: the data config of the command line (full or partial), or None.
        record: the checkpoint's `ser_lightning` record (its `data` settings).
        ckpt_path: the checkpoint's path, for messages.
        paths: this machine's `data_dir` and `cache_dir`.

    Returns:
        The settings and their source: "command line", "checkpoint" or
        "checkpoint with overrides".

    Raises:
        InvalidSetting: the checkpoint carries no data settings, unknown ones, or names folders
            outside `paths.data_dir` that the user did not name.
    """
    if chosen and "_target_" in chosen:
        settings = data_settings(chosen)
        own_map = (record.get("data") or {}).get("label_map") or {}
        if own_map and not settings.get("label_map"):
            log.info(
                "data.label_map: the checkpoint's %s (the data config of the command line has none)", own_map
            )
            settings["label_map"] = dict(own_map)
        return settings, "command line"
    own = record.get("data")
    if not own:
        raise InvalidSetting(
            f"checkpoint {ckpt_path!r} carries no data settings; choose the data to evaluate on: "
            "data=<group> data.root=PATH, e.g. data=ravdess data.root=/data/ravdess"
        )
    own = stored_data_settings(own, ckpt_path)
    own["cache_dir"] = str(paths["cache_dir"])  # what is written is this machine's choice
    check_stored_folders(own, chosen or {}, ckpt_path, paths["data_dir"])
    merged = OmegaConf.to_container(OmegaConf.merge(own, chosen or {}), resolve=True)
    return merged, "checkpoint" + (" with overrides" if chosen else "")


def stored_data_settings(own: dict, ckpt_path: str) -> dict:
    """Check that the checkpoint's data settings are all settings of the data config.

    `read_checkpoint` has vetted them already (plain values, no Hydra key).

    Args:
        own: the checkpoint's data settings.
        ckpt_path: the checkpoint's path, for messages.

    Returns:
        A copy of `own`.

    Raises:
        InvalidSetting: a key that `build_data_module` does not take.
    """
    settings = set(inspect.signature(build_data_module).parameters) - {
        "features",
        "waveform_augmentation",
        "offline_copies",
    }
    unknown = sorted(set(own) - settings)
    if unknown:
        raise InvalidSetting(
            f"checkpoint {ckpt_path!r}: its data config has {unknown}, which this ser_lightning's "
            "data module does not take; evaluate with data=<group> data.root=PATH instead"
        )
    return dict(own)


def check_stored_folders(own: dict, chosen: dict, ckpt_path: str, data_dir: str) -> None:
    """Refuse folders a checkpoint names outside this machine's data folder, unless the user named them.

    The corpus folder (and a folder corpus's label CSV) a checkpoint names is read only when it
    lies inside this machine's `paths.data_dir`, or when the user names it on the command line:
    a checkpoint must not choose which of the machine's files eval reads.

    Args:
        own: the checkpoint's data settings.
        chosen: the data settings of the command line.
        ckpt_path: the checkpoint's path, for messages.
        data_dir: this machine's `paths.data_dir`.

    Raises:
        InvalidSetting: no corpus folder, or a folder or label CSV the checkpoint names outside
            `paths.data_dir` (and the corpus folder) that the user did not name.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    if not isinstance(chosen.get("root") or own.get("root"), str):
        raise InvalidSetting(
            f"checkpoint {ckpt_path!r}: its data config names no corpus folder; pass +data.root=PATH"
        )
    root = Path(chosen.get("root") or own["root"]).expanduser().resolve()
    if "root" not in chosen and not root.is_relative_to(data_dir):
        raise InvalidSetting(
            f"checkpoint {ckpt_path!r} was trained on the corpus at {own['root']!r}, outside this machine's "
            f"data folder paths.data_dir={str(data_dir)!r}; eval reads the folder a checkpoint names only "
            f"inside paths.data_dir. To evaluate on that folder (or a copy), name it yourself: "
            f"python -m ser_lightning.eval ckpt_path={ckpt_path} +data.root={own['root']}"
        )
    csv = (own.get("corpus_options") or {}).get("csv")
    if csv is not None and "csv" not in (chosen.get("corpus_options") or {}):
        where = (root / Path(csv).expanduser()).resolve()
        if not (where.is_relative_to(root) or where.is_relative_to(data_dir)):
            raise InvalidSetting(
                f"checkpoint {ckpt_path!r} names the label CSV data.corpus_options.csv={csv!r}, outside the "
                f"corpus folder {str(root)!r} and paths.data_dir={str(data_dir)!r}; name the CSV yourself: "
                f"+data.corpus_options.csv=PATH"
            )


def build_eval_datamodule(data: dict, model: SERModel, split: str) -> SERDataModule:
    """A data module of the data settings `data` with the SERModel's audio, labels and features.

    Args:
        data: the data settings (`eval_data_config`).
        model: the SERModel whose audio settings, label order and feature extractor replace
            the data config's.
        split: the split to score, one of EVAL_SPLITS (`all`: every file, `data.split=test_only`).

    Returns:
        The SERDataModule, not yet prepared.

    Raises:
        InvalidSetting: an unknown split.
    """
    if split not in EVAL_SPLITS:
        raise InvalidSetting(f"split={split!r} must be one of {EVAL_SPLITS}")
    data = dict(data)
    # The model's label order decides the class indices; files of other emotions are left out
    # (and counted by the data module), emotions the corpus lacks just have no support.
    fixed = {**model.audio.to_dict(), "labels": list(model.labels)}
    replaced = {k: (data[k], v) for k, v in fixed.items() if k in data and data[k] != v}
    if replaced:
        log.info(
            "the checkpoint's settings replace the data config's: %s",
            ", ".join(f"{k} {old} -> {new}" for k, (old, new) in replaced.items()),
        )
    data.update(fixed)
    if split == "all":
        data["split"] = "test_only"
    if "train_input" in data:
        data["train_input"] = "features"  # eval reads cached features for every split
    return build_data_module(features=model.features, **data)
