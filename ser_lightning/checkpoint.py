"""Self-contained checkpoints: what they hold, and loading them without running foreign code.

A ser_lightning checkpoint is a Lightning checkpoint whose parts are all plain data:

- `hyper_parameters`: SERModule's constructor arguments as plain dicts: `labels` (the label
  order), `features` (the feature extractor config), `audio` (sample rate, duration, offset,
  crop, peak normalisation), `net` (the network config), `optimizer`/`scheduler` configs.
  They alone rebuild the model, feature extraction included. `calibration` (written into the
  best checkpoint after training) holds the temperature fitted on the validation split, a number.
- `state_dict`: the weights, including feature buffers (dataset normalisation statistics).
- `ser_lightning` (written by the `CheckpointRecord` callback): `format_version`, the resolved
  `data` config the model was trained on and its `split` (name, sizes, a fingerprint of the
  test files, and `train_files`/`val_files`: corpus-relative path -> size in bytes), so that
  `eval` can test on the same held-out files with nothing but the file, and can tell when it is
  asked to score files the model learnt from.

Loading is safe for files from strangers: a checkpoint is data.

- `torch.load(weights_only=True)` refuses pickled code.
- The stored configs (hyper-parameters and record) must hold plain values (strings, numbers,
  booleans, None, lists, dicts) without any OmegaConf interpolation: Hydra resolves `${...}`
  before it instantiates, and resolvers such as `oc.create` or `oc.decode` would turn a
  string into a new `{_target_: ...}` node that no check saw. Configs are stored resolved, so
  a checkpoint written by `ser_lightning.train` never holds one.
- Every `_target_` in the hyper-parameters must name a network, feature, optimizer or
  scheduler class defined in this project or in torch, and Hydra's other special keys
  (`_args_`, `_partial_`, `_recursive_`, `_convert_`) must hold what Hydra expects of them,
  before anything is instantiated: a config naming `os.system` would otherwise run it.
- The stored data config may only build a data module (`build_data_module`) from plain values (see
  `check_data_config`); which folders eval reads and writes is decided in `eval`, not by it.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ser_lightning import __version__
from ser_lightning.calibration import check_calibration

RECORD_KEY = "ser_lightning"
# Bump when the meaning of a stored field changes; loaders refuse versions they do not know.
# (Fields added later, like the split's `train_files`, keep the version: older files just lack them.)
CHECKPOINT_FORMAT_VERSION = 1

REQUIRED_HPARAMS = ("net", "features", "audio", "labels")
# Packages whose classes a checkpoint config may name (the package or its sub-modules, matched
# name by name: `ser_lightning_x` is not `ser_lightning`); anything else is refused.
TRUSTED_TARGET_PACKAGES = ("ser_lightning", "torch.nn", "torch.optim", "torchaudio.transforms")
# The one callable a stored data config may build (a data module from the flat data settings),
# and the name it had in checkpoints written before (same settings, same data module).
DATA_MODULE_TARGET = "ser_lightning.data.datamodule.build_data_module"
EARLIER_DATA_MODULE_TARGETS = ("ser_lightning.data.datamodule.SERDataModule",)
# Hydra's special keys, which `instantiate` acts on rather than passing them to the class.
HYDRA_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
# A checkpoint being written: hidden, and not ending in `.ckpt`, so nothing takes it for one.
CHECKPOINT_TEMPORARY_TEMPLATE = ".{name}.{token}.partial"
_CONVERT_MODES = ("none", "partial", "object", "all")
# What each top-level config must build.
_ROLE_BASES: dict[str, tuple[str, ...]] = {
    "net": ("torch.nn.Module",),
    "features": ("ser_lightning.features.base.FeatureExtractor",),
    "optimizer": ("torch.optim.Optimizer",),
    "scheduler": ("torch.optim.lr_scheduler.LRScheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau"),
    "spectrogram": ("ser_lightning.augment.spectrogram.SpecAugment",),
    "mixup": ("ser_lightning.augment.mixup.Mixup",),
}
# Hyper-parameters written before SpecAugment and mixup were `_target_` nodes: one plain
# `augmentation` dict whose `spectrogram` and `mixup` held the options of these classes.
_EARLIER_AUGMENTATION_TARGETS = {
    "spectrogram": "ser_lightning.augment.spectrogram.SpecAugment",
    "mixup": "ser_lightning.augment.mixup.Mixup",
}
_ANY_BASES = (
    "torch.nn.Module",
    "torch.optim.Optimizer",
    "torch.optim.lr_scheduler.LRScheduler",
    "torch.optim.lr_scheduler.ReduceLROnPlateau",
)


class CheckpointError(ValueError):
    """A file that is not a loadable ser_lightning checkpoint; the message names the file and why."""


# --------------------------------------------------------------------------- writing
# The Lightning callback and checkpoint writer live in ser_lightning.checkpoint_writing, so that
# reading a checkpoint (predict, serve) does not import Lightning.


def _absolute_paths(data: dict) -> dict:
    for key in ("root", "cache_dir"):
        if isinstance(data.get(key), str):
            data[key] = str(Path(data[key]).expanduser().resolve())
    return data


def split_record(datamodule: Any) -> dict | None:
    """Name and sizes of the split a data module made, a fingerprint of its test files, and the
    identity of its training and validation files (see `file_identities`), so that eval can tell
    when it is asked to score files the model learnt from."""
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


def file_identities(relative_paths, absolute_paths) -> dict[str, int]:
    """Corpus-relative path -> size in bytes of each file.

    The relative path still matches when the corpus is moved or copied; the size tells apart
    two corpora that share a naming scheme (the demo corpus and RAVDESS name files alike).
    """
    return {str(rel): os.stat(path).st_size for rel, path in zip(relative_paths, absolute_paths, strict=True)}


def training_overlap(split: dict | None, scored: dict[str, int]) -> dict:
    """Which of the `scored` files (as `file_identities` gives them) the checkpoint's run trained
    or validated on. `status` is `none`, `overlap`, or `unknown` for checkpoints written before
    their split recorded its files."""
    split = split or {}
    if not isinstance(split.get("train_files"), dict) or not isinstance(split.get("val_files"), dict):
        return {"status": "unknown", "count": None, "train": None, "val": None}
    found = {
        part: sorted(f for f, size in scored.items() if split[f"{part}_files"].get(f) == size)
        for part in ("train", "val")
    }
    count = len(found["train"]) + len(found["val"])
    return {"status": "overlap" if count else "none", "count": count, **found}


def files_fingerprint(paths) -> str:
    """Order-independent hash of a list of (corpus-relative) file paths."""
    digest = hashlib.sha256()
    for path in sorted(str(p) for p in paths):
        digest.update(path.encode() + b"\n")
    return digest.hexdigest()


# --------------------------------------------------------------------------- reading
def read_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a checkpoint file safely and check that it is a ser_lightning checkpoint."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not exist; pass ckpt_path=PATH to a .ckpt file of a run"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was refused by safe loading (torch.load weights_only=True): it holds "
            f"pickled Python objects, which could run code. ser_lightning checkpoints hold only tensors and "
            f"plain data; do not load this file unless you trust who made it. Detail: {str(err).splitlines()[0]}"
        ) from None
    except Exception as err:  # torch raises RuntimeError, EOFError, ... for files that are not checkpoints
        raise CheckpointError(
            f"{str(path)!r} is not a readable PyTorch checkpoint ({type(err).__name__}: {err}); "
            "pass ckpt_path= a .ckpt file written by `python -m ser_lightning.train`"
        ) from None
    check_checkpoint(checkpoint, path)
    return checkpoint


def check_checkpoint(checkpoint: Any, path: str | Path = "<checkpoint>") -> None:
    """Raise CheckpointError unless `checkpoint` has the parts and version this code reads."""
    where = str(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{where!r} is not a Lightning checkpoint (no state_dict)")
    hparams = checkpoint.get("hyper_parameters")
    missing = [k for k in REQUIRED_HPARAMS if not isinstance(hparams, dict) or k not in hparams]
    if missing:
        raise CheckpointError(
            f"{where!r} is not a ser_lightning checkpoint: its hyper_parameters lack {missing} "
            "(label order, feature, audio and network configs); it was not written by ser_lightning.train"
        )
    record = checkpoint.get(RECORD_KEY)
    if record is not None:
        version = record.get("format_version") if isinstance(record, dict) else None
        if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
            raise CheckpointError(
                f"{where!r} has checkpoint format version {version!r}; this ser_lightning "
                f"({__version__}) reads versions up to {CHECKPOINT_FORMAT_VERSION}. Update ser_lightning."
            )
    check_plain(hparams, "hyper_parameters", where)
    try:  # the temperature the probabilities are divided by: a positive number, nothing else
        check_calibration(hparams.get("calibration"), where)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    hparams = current_hparams(hparams)
    # The configs that reach Hydra or OmegaConf; the split's file lists never do.
    if record is not None and record.get("data") is not None:
        check_plain(record["data"], f"{RECORD_KEY}.data", where)
        check_data_config(record["data"], f"{RECORD_KEY}.data", where)
    for role in _ROLE_BASES:
        if role in ("net", "features") or hparams.get(role) is not None:
            check_targets(hparams[role], role, where)


def check_plain(value: Any, key_path: str, where: str) -> None:
    """Plain values only (str, int, float, bool, None, lists, dicts), and no interpolation."""
    if isinstance(value, str):
        # Any `${` is refused, escaped ones too: `\${x}` resolves to `${x}`, which a later
        # resolve would run.
        if "${" in value:
            raise CheckpointError(
                f"{where!r}: {key_path}={value!r} is refused: it is an OmegaConf interpolation, which "
                "Hydra would resolve (and could turn into code to run) before building anything. "
                "ser_lightning stores configs resolved, so its checkpoints never hold one: this file "
                "was edited or made elsewhere; do not load it"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int) or "${" in str(key):
                raise CheckpointError(
                    f"{where!r}: {key_path} has the key {key!r}; config keys are plain names"
                )
            check_plain(item, f"{key_path}.{key}", where)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{key_path}[{i}]", where)
    elif not isinstance(value, int | float | bool | None):
        raise CheckpointError(
            f"{where!r}: {key_path} holds a {type(value).__name__}; stored configs hold plain values "
            "(strings, numbers, booleans, null, lists, mappings) only"
        )


def check_data_config(data: Any, key_path: str, where: str) -> None:
    """A stored data config builds a data module and nothing else: its `_target_` is exactly
    DATA_MODULE_TARGET (or its earlier name), and no other Hydra key appears at any depth (so no nested node of the
    file is ever instantiated)."""
    if not isinstance(data, dict) or data.get("_target_") not in (
        DATA_MODULE_TARGET,
        *EARLIER_DATA_MODULE_TARGETS,
    ):
        target = data.get("_target_") if isinstance(data, dict) else data
        raise CheckpointError(
            f"{where!r}: {key_path}._target_={target!r} is refused: a stored data config may only "
            f"build {DATA_MODULE_TARGET}"
        )

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in HYDRA_KEYS and not (path == key_path and key == "_target_"):
                    raise CheckpointError(
                        f"{where!r}: {path}.{key} is refused: a stored data config holds plain "
                        f"settings of {DATA_MODULE_TARGET} only, nothing Hydra would build or run"
                    )
                visit(value, f"{path}.{key}")
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                visit(value, f"{path}[{i}]")

    visit(data, key_path)


def _resolve(dotted: str) -> Any:
    """Import `package.module.Name` (longest importable module prefix, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def in_packages(name: str, packages: tuple[str, ...] = TRUSTED_TARGET_PACKAGES) -> bool:
    """Whether the dotted `name` is one of `packages` or lies inside one (whole names only)."""
    return any(name == package or name.startswith(package + ".") for package in packages)


def check_targets(
    config: Any, role: str, where: str, trusted: tuple[str, ...] = TRUSTED_TARGET_PACKAGES
) -> None:
    """The config of `role` builds a class of a trusted package of the right kind, and so does
    every node nested in it; Hydra's other special keys hold only what Hydra expects of them."""
    refused = f"checkpoint configs may only name classes of {', '.join(trusted)}"

    def visit(node: Any, key_path: str, bases: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            if "_target_" in node:
                check_target(node["_target_"], f"{key_path}._target_", bases)
            for key, value in node.items():
                path = f"{key_path}.{key}"
                if key in ("_partial_", "_recursive_") and not isinstance(value, bool):
                    raise CheckpointError(f"{where!r}: {path}={value!r} is refused: it must be true or false")
                if key == "_convert_" and (not isinstance(value, str) or value.lower() not in _CONVERT_MODES):
                    raise CheckpointError(
                        f"{where!r}: {path}={value!r} is refused: it must be one of {_CONVERT_MODES}"
                    )
                if key == "_args_" and not isinstance(value, list | tuple):
                    raise CheckpointError(f"{where!r}: {path}={value!r} is refused: it must be a list")
                if key != "_target_":
                    visit(value, path, _ANY_BASES)
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                visit(value, f"{key_path}[{i}]", _ANY_BASES)

    def check_target(target: Any, key_path: str, bases: tuple[str, ...]) -> None:
        if not isinstance(target, str) or not in_packages(target, trusted):
            raise CheckpointError(
                f"{where!r}: {key_path}={target!r} is refused: {refused} (this one is outside them)"
            )
        try:
            obj = _resolve(target)
        except (ImportError, AttributeError):
            raise CheckpointError(
                f"{where!r}: {key_path}={target!r} does not exist in this installation; "
                "the checkpoint needs code this ser_lightning does not have"
            ) from None
        # The module check stops names that walk through a trusted module to a foreign object
        # (e.g. ser_lightning.x.os.system, or a class of `ser_lightning_x` imported into one).
        if not isinstance(obj, type) or not in_packages(obj.__module__, trusted):
            raise CheckpointError(
                f"{where!r}: {key_path}={target!r} is refused: {refused} (it does not name a class defined there)"
            )
        if not issubclass(obj, tuple(_resolve(b) for b in bases)):
            raise CheckpointError(
                f"{where!r}: {key_path}={target!r} is refused: a {role} config must build a {' or '.join(bases)}"
            )

    if not isinstance(config, dict) or "_target_" not in config:
        raise CheckpointError(
            f"{where!r}: the {role!r} config is refused: it must be a mapping whose _target_ names the class to build"
        )
    visit(config, role, _ROLE_BASES[role])


def checkpoint_record(checkpoint: dict) -> dict:
    """The `ser_lightning` record of a loaded checkpoint ({} for checkpoints written without it);
    a data config of an earlier version names today's data module target."""
    record = dict(checkpoint.get(RECORD_KEY) or {})
    if isinstance(record.get("data"), dict):
        record["data"] = current_data_config(record["data"])
    return record


def current_data_config(data: dict) -> dict:
    """A data config that names the data module by an earlier name (a checkpoint's, or a data
    config written for an earlier version) names today's; the flat settings are the same."""
    if data.get("_target_") in EARLIER_DATA_MODULE_TARGETS:
        return {**data, "_target_": DATA_MODULE_TARGET}
    return data


def current_hparams(hparams: dict) -> dict:
    """Hyper-parameters as today's SERModule takes them: an earlier `augmentation` dict becomes
    the `spectrogram` and `mixup` nodes (its data-side keys never reached the model)."""
    if "augmentation" not in hparams:
        return dict(hparams)
    hparams = dict(hparams)
    augmentation = hparams.pop("augmentation") or {}
    for key, target in _EARLIER_AUGMENTATION_TARGETS.items():
        node = augmentation.get(key)
        hparams[key] = {"_target_": target, **node} if node else None
    return hparams


@dataclass(frozen=True)
class EncoderFiles:
    """Which files a checkpoint of a pretrained encoder (`features=ssl`, `model=ssl_finetune`) may load.

    Its features config names the encoder it was trained with: a registry name (the weights
    come from the Hugging Face cache), or a folder or file on the machine that trained it. A
    file someone else made must not choose which of this machine's files are read, so a stored
    folder or file is read only inside `models_dir` (`paths.models_dir` for the commands);
    `encoder` and `weights`, named by the user, replace the stored ones. The weights' digest,
    kept in the checkpoint, must still match.
    """

    encoder: str | None = None
    weights: str | None = None
    models_dir: str | None = None

    @classmethod
    def of_command(cls, cfg) -> EncoderFiles:
        """From the config of eval, predict or export: `encoder`, `encoder_weights`, `paths.models_dir`."""
        encoder, weights = cfg.get("encoder"), cfg.get("encoder_weights")
        return cls(
            None if encoder is None else str(encoder),
            None if weights is None else str(weights),
            str(cfg.paths.models_dir),
        )

    def apply(self, node: dict, where: str, node_path: str) -> dict:
        """A features or network config (at `node_path`) with the user's encoder files, its stored
        paths vetted; unchanged unless it builds a pretrained encoder (`features=ssl`,
        `model=ssl_finetune`, whose classes say `reads_encoder_files`)."""
        from hydra.utils import get_class

        # Whatever keys the stored node has: a node that names only `weights` (its encoder then a
        # default) reads a file too, and every stored path is vetted whenever encoder files are read.
        target = node.get("_target_")
        if not isinstance(target, str) or not getattr(get_class(target), "reads_encoder_files", False):
            return node
        from ser_lightning.features.ssl import ENCODERS

        node = dict(node)
        for key, named, option in (
            ("encoder", self.encoder, "encoder"),
            ("weights", self.weights, "encoder_weights"),
        ):
            if named is not None:
                node[key] = str(named)
                continue
            stored = node.get(key)
            if stored is None or (key == "encoder" and stored in ENCODERS):
                continue
            if not self._inside_models_dir(str(stored)):
                raise CheckpointError(
                    f"{where!r} was trained with {node_path}.{key}={stored!r}, outside this machine's models folder "
                    f"paths.models_dir={self.models_dir!r}; a checkpoint's encoder files are read only inside it. "
                    f"To use that {'folder' if key == 'encoder' else 'file'} (or a copy), name it yourself: "
                    f"{option}={stored}"
                )
        return node

    def _inside_models_dir(self, stored: str) -> bool:
        if not self.models_dir:
            return False
        models = Path(self.models_dir).expanduser().resolve()
        return Path(stored).expanduser().resolve().is_relative_to(models)


def load_checkpoint(
    path: str | Path,
    module_class: type[torch.nn.Module],
    map_location: str | torch.device | None = "cpu",
    strict: bool = True,
    encoder_files: EncoderFiles | None = None,
):
    """Rebuild the model a checkpoint file holds, in eval mode, from the file alone.

    `module_class` is the module the hyper-parameters are the constructor arguments of:
    `ser_lightning.module.SERModule` (whose `load_from_checkpoint(path)` calls this), or for
    inference alone `ser_lightning.inference.model.InferenceModel`, which needs no Lightning.
    """
    return module_from_checkpoint(
        read_checkpoint(path, map_location), module_class, path, map_location, strict, encoder_files
    )


def module_from_checkpoint(
    checkpoint: dict,
    module_class: type[torch.nn.Module],
    path: str | Path = "<checkpoint>",
    map_location: str | torch.device | None = "cpu",
    strict: bool = True,
    encoder_files: EncoderFiles | None = None,
):
    """The `module_class` (SERModule) of an already read (and checked) checkpoint.

    The network is built uncompiled and in the default memory layout, decided again for the
    device it runs on (compiling and `channels_last` are speed choices of the training run);
    weights saved from a compiled network, or in another layout, load into it all the same
    (`_orig_mod.` keys are those of runs that wrapped the network in torch.compile). A
    pretrained encoder's files are read as `encoder_files` allows (see EncoderFiles; by default
    no stored folder or file).
    """
    hparams = current_hparams(checkpoint["hyper_parameters"])
    hparams["compile"] = False
    hparams["channels_last"] = "auto"
    encoder_files = encoder_files or EncoderFiles()
    hparams["features"] = encoder_files.apply(hparams["features"], str(path), "features")
    hparams["net"] = encoder_files.apply(hparams["net"], str(path), "model.net")
    try:
        module = module_class(**hparams)
    except TypeError as err:
        raise CheckpointError(
            f"{str(path)!r}: its hyper_parameters do not fit {module_class.__name__}: {err}"
        ) from None
    state = {k.replace("._orig_mod.", ".", 1): v for k, v in checkpoint["state_dict"].items()}
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise CheckpointError(
            f"{str(path)!r}: its weights do not fit the model its config builds: {err}"
        ) from None
    if map_location is not None:
        module.to(map_location)
    return module.eval()
