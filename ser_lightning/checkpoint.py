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

The checks of the stored configs live in `ser_lightning.checkpoint_vetting`, the encoder files
a checkpoint may make this machine read in `ser_lightning.checkpoint_encoder` (`EncoderFiles`),
and `CheckpointError`, which all of them raise, in `ser_lightning.checkpoint_errors`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ser_lightning import __version__
from ser_lightning.calibration import check_calibration
from ser_lightning.checkpoint_encoder import EncoderFiles
from ser_lightning.checkpoint_errors import CheckpointError
from ser_lightning.checkpoint_vetting import check_config_targets, check_data_settings, check_plain

RECORD_KEY = "ser_lightning"
# The layout described above. Bump it whenever a stored field changes meaning or place; a file
# of any other version is refused (2: the scoring model under `model.`, data settings without
# `_target_`).
CHECKPOINT_FORMAT_VERSION = 2
# The state dict's entries of the scoring model (SERModule's `self.model`).
MODEL_STATE_PREFIX = "model."

REQUIRED_HPARAMS = ("net", "features", "audio", "labels")
# A checkpoint being written: hidden, and not ending in `.ckpt`, so nothing takes it for one.
CHECKPOINT_TEMPORARY_TEMPLATE = ".{name}.{token}.partial"


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
            refused by the checks of `ser_lightning.checkpoint_vetting`.
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
    check_config_targets(hparams, where)


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
