"""Self-contained checkpoints: what they hold (the file format, versioned), and loading them safely.

A ser_lightning checkpoint is a Lightning checkpoint whose parts are all plain data:

- `hyper_parameters`: SERModule's constructor arguments as plain dicts: `labels` (the label
  order), `features` (the feature extractor config), `audio` (sample rate, duration, offset,
  crop, peak normalisation), `net` (the network config), `optimizer`/`scheduler` configs.
  They alone rebuild the model, feature extraction included. `calibration` (written into the
  best checkpoint after training) holds the temperature fitted on the validation split, a number.
- `state_dict`: SERModule's weights, including feature buffers (dataset normalisation
  statistics). The scoring model's (`ser_lightning.model.SERModel`) are the entries under
  `model.` (SERModule's `self.model`); the rest is training state.
- `ser_lightning` (written by the `CheckpointRecord` callback): `format_version`, the version of
  ser_lightning that wrote it, the `data` settings the model was trained on (the data config's
  plain settings, no `_target_`: eval rebuilds the data module from them with
  `build_data_module`), and its `split` (`ser_lightning.data.provenance.split_record`: name,
  sizes, a fingerprint of the test files, the identities of the training and validation files).

`CHECKPOINT_FORMAT_VERSION` names this layout; a file of another version is refused with one
line that says what to do (earlier layouts are not converted). Loading is safe for files from
strangers: a checkpoint is data.

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
- The stored data settings hold no Hydra key at all; which folders eval reads and writes is
  decided in `eval`, not by them.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ser_lightning import __version__
from ser_lightning.calibration import check_calibration
from ser_lightning.utils.errors import UserError

RECORD_KEY = "ser_lightning"
# The layout described above. Bump it whenever a stored field changes meaning or place; a file
# of any other version is refused (2: the scoring model under `model.`, data settings without
# `_target_`).
CHECKPOINT_FORMAT_VERSION = 2
# The state dict's entries of the scoring model (SERModule's `self.model`).
MODEL_STATE_PREFIX = "model."

REQUIRED_HPARAMS = ("net", "features", "audio", "labels")
# Packages whose classes a checkpoint config may name (the package or its sub-modules, matched
# name by name: `ser_lightning_x` is not `ser_lightning`); anything else is refused.
TRUSTED_TARGET_PACKAGES = ("ser_lightning", "torch.nn", "torch.optim", "torchaudio.transforms")
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
_ANY_BASES = (
    "torch.nn.Module",
    "torch.optim.Optimizer",
    "torch.optim.lr_scheduler.LRScheduler",
    "torch.optim.lr_scheduler.ReduceLROnPlateau",
)


class CheckpointError(UserError, ValueError):
    """A file that is not a loadable ser_lightning checkpoint; the message names the file and why."""


# --------------------------------------------------------------------------- reading
def read_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a checkpoint file safely and check that it is a ser_lightning checkpoint.

    Args:
        path: The .ckpt file (`~` is expanded).
        map_location: Where tensors are loaded, as for `torch.load`.

    Returns:
        The checkpoint dict, vetted by `check_checkpoint`.

    Raises:
        CheckpointError: If the file does not exist, holds pickled objects (refused by
            `weights_only=True`), is not a readable PyTorch checkpoint, or fails
            `check_checkpoint`.
    """
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
    """Raise CheckpointError unless `checkpoint` has the parts and version this code reads.

    Args:
        checkpoint: A loaded checkpoint (anything `torch.load` returned).
        path: The file's name, for error messages.

    Raises:
        CheckpointError: If it has no state dict, lacks a required hyper-parameter, is of
            another format version, or its configs, calibration, data settings or targets are
            refused by the checks of this module.
    """
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
    check_format_version(record, where)
    check_plain(hparams, "hyper_parameters", where)
    try:  # the temperature the probabilities are divided by: a positive number, nothing else
        check_calibration(hparams.get("calibration"), where)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    # The configs that reach Hydra or OmegaConf; the split's file lists never do.
    if record.get("data") is not None:
        check_plain(record["data"], f"{RECORD_KEY}.data", where)
        check_data_settings(record["data"], f"{RECORD_KEY}.data", where)
    for role in _ROLE_BASES:
        if role in ("net", "features") or hparams.get(role) is not None:
            check_targets(hparams[role], role, where)


def check_format_version(record: Any, where: str) -> None:
    """Refuse, in one line that says what to do, a file whose layout is not CHECKPOINT_FORMAT_VERSION.

    Args:
        record: The checkpoint's `ser_lightning` record (anything; not a dict counts as none).
        where: The file's name, for the error message.

    Raises:
        CheckpointError: If the record's `format_version` is not CHECKPOINT_FORMAT_VERSION; the
            message says whether to update ser_lightning or retrain.
    """
    record = record if isinstance(record, dict) else {}
    version = record.get("format_version")
    if type(version) is int and version == CHECKPOINT_FORMAT_VERSION:
        return
    wrote = record.get("ser_lightning_version")
    wrote = repr(wrote) if isinstance(wrote, str) else "unknown"
    if type(version) is int and version > CHECKPOINT_FORMAT_VERSION:
        advice = f"Update ser_lightning to the version that wrote it ({wrote}), or retrain the model with this one."
    else:
        advice = f"Retrain the model with this version, or load it with the ser_lightning version that wrote it ({wrote})."
    has = f"format {version!r}" if version is not None else "no format version (an early layout)"
    raise CheckpointError(
        f"{where!r} is a checkpoint of {has}; this ser_lightning ({__version__}) reads checkpoint format "
        f"{CHECKPOINT_FORMAT_VERSION} only. {advice}"
    )


def check_plain(value: Any, key_path: str, where: str) -> None:
    """Check that a stored config holds plain values only, and no interpolation.

    Plain values are str, int, float, bool, None, lists and dicts, at any depth.

    Args:
        value: The config (or a part of it).
        key_path: Its dotted path in the checkpoint, for error messages.
        where: The file's name, for error messages.

    Raises:
        CheckpointError: If a string or key holds `${`, a key is not a str or int, or a value
            is of another type.
    """
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


def check_data_settings(data: Any, key_path: str, where: str) -> None:
    """Check that stored data settings are a mapping of plain settings, with no Hydra key at any depth.

    So no node of the file is ever instantiated (eval passes them to `build_data_module` itself).

    Args:
        data: The stored data settings.
        key_path: Their dotted path in the checkpoint, for error messages.
        where: The file's name, for error messages.

    Raises:
        CheckpointError: If `data` is not a mapping, or any mapping in it has a Hydra key
            (`_target_`, `_args_`, `_partial_`, `_recursive_`, `_convert_`).
    """
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{where!r}: {key_path}={data!r} is refused: stored data settings are a mapping"
        )

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in HYDRA_KEYS:
                    raise CheckpointError(
                        f"{where!r}: {path}.{key}={value!r} is refused: stored data settings are plain "
                        "values of build_data_module, nothing Hydra would build or run"
                    )
                visit(value, f"{path}.{key}")
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                visit(value, f"{path}[{i}]")

    visit(data, key_path)


def _resolve(dotted: str) -> Any:
    """Import `package.module.Name` (longest importable module prefix, then attributes).

    Returns:
        The object the dotted name resolves to.

    Raises:
        ImportError: If no prefix of the name is an importable module.
    """
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
    """Return whether the dotted `name` is one of `packages` or lies inside one (whole names only)."""
    return any(name == package or name.startswith(package + ".") for package in packages)


def check_targets(
    config: Any, role: str, where: str, trusted: tuple[str, ...] = TRUSTED_TARGET_PACKAGES
) -> None:
    """Check that the config of `role` builds a class of a trusted package, of the right kind.

    So must every node nested in it; Hydra's other special keys hold only what Hydra expects of
    them.

    Args:
        config: The stored config of `role`.
        role: Which config it is, a key of the role table (net, features, optimizer, ...).
        where: The file's name, for error messages.
        trusted: The packages whose classes may be named.

    Raises:
        CheckpointError: If the config is not a mapping with a `_target_`, or any `_target_` in
            it is outside `trusted`, does not exist here, is not a class defined there or not
            of the kind its role builds, or `_partial_`, `_recursive_`, `_convert_` or `_args_`
            holds something else than Hydra expects.
    """
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
        """Return the settings named in the config of eval, predict or export.

        They are read from `encoder`, `encoder_weights` and `paths.models_dir`.
        """
        encoder, weights = cfg.get("encoder"), cfg.get("encoder_weights")
        return cls(
            None if encoder is None else str(encoder),
            None if weights is None else str(weights),
            str(cfg.paths.models_dir),
        )

    def apply(self, node: dict, where: str, node_path: str) -> dict:
        """Put the user's encoder files into a features or network config, vetting its stored paths.

        A config that builds no pretrained encoder (whose class does not say
        `reads_encoder_files`, as `features=ssl` and `model=ssl_finetune` do) is left as it is.

        Args:
            node: The stored features or network config.
            where: The checkpoint's name, for error messages.
            node_path: The config's place in the checkpoint ("features", "model.net").

        Returns:
            `node` itself when it reads no encoder files; otherwise a copy with the user's
            `encoder` and `weights` in place of the stored ones.

        Raises:
            CheckpointError: If a stored encoder folder or weights file the user did not
                replace lies outside `models_dir`.
        """
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


# --------------------------------------------------------------------------- building from a checkpoint
def loadable_hparams(
    checkpoint: dict, path: str | Path = "<checkpoint>", encoder_files: EncoderFiles | None = None
) -> dict:
    """The hyper-parameters of a read (and vetted) checkpoint, as a model is rebuilt from them.

    The model is rebuilt uncompiled, its memory layout decided again where it runs (both speed
    choices of the training run), its pretrained encoder's files as `encoder_files` allows (by
    default no stored path).

    Args:
        checkpoint: what `read_checkpoint` returned.
        path: the file's name, for error messages.
        encoder_files: the user's encoder files and models folder.

    Returns:
        A new dict of SERModule's constructor arguments.

    Raises:
        CheckpointError: If a stored encoder path lies outside the allowed models folder
            (from `EncoderFiles.apply`).
    """
    hparams = dict(checkpoint["hyper_parameters"])
    hparams["compile"] = False
    hparams["channels_last"] = "auto"
    encoder_files = encoder_files or EncoderFiles()
    hparams["features"] = encoder_files.apply(hparams["features"], str(path), "features")
    hparams["net"] = encoder_files.apply(hparams["net"], str(path), "model.net")
    return hparams


def model_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """Return the scoring model's weights: the state dict's entries under MODEL_STATE_PREFIX, without it."""
    state = checkpoint["state_dict"]
    return {
        key.removeprefix(MODEL_STATE_PREFIX): v
        for key, v in state.items()
        if key.startswith(MODEL_STATE_PREFIX)
    }


def load_weights(
    module: torch.nn.Module, state: dict, path: str | Path = "<checkpoint>", strict: bool = True
) -> None:
    """Load a checkpoint's `state` into the module its config built.

    Args:
        module: The module built from the checkpoint's config.
        state: The weights to load.
        path: The file's name, for the error message.
        strict: As for `load_state_dict`.

    Raises:
        CheckpointError: If the weights do not fit the module (missing, unexpected or
            mis-shaped entries).
    """
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise CheckpointError(
            f"{str(path)!r}: its weights do not fit the model its config builds: {err}"
        ) from None
