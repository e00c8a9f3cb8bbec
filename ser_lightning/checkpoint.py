"""Self-contained checkpoints: what they hold, and loading them without running foreign code.

A ser_lightning checkpoint is a Lightning checkpoint whose parts are all plain data:

- `hyper_parameters`: SERModule's constructor arguments as plain dicts: `labels` (the label
  order), `features` (the feature extractor config), `audio` (sample rate, duration, offset,
  crop, peak normalisation), `net` (the network config), `optimizer`/`scheduler` configs.
  They alone rebuild the model, feature extraction included.
- `state_dict`: the weights, including feature buffers (dataset normalisation statistics).
- `ser_lightning` (written by the `CheckpointRecord` callback): `format_version`, the resolved
  `data` config the model was trained on and its `split` (name, sizes and a fingerprint of the
  test files), so that `eval` can test on the same held-out files with nothing but the file.

Loading is safe for files from strangers: `torch.load(weights_only=True)` refuses pickled
code, and every `_target_` in the hyper-parameters must name a network, feature, optimizer
or scheduler class of this project or of torch before anything is instantiated: a config
naming `os.system` would otherwise run it through Hydra's `instantiate`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from ser_lightning import __version__

RECORD_KEY = "ser_lightning"
# Bump when the meaning of a stored field changes; loaders refuse versions they do not know.
CHECKPOINT_FORMAT_VERSION = 1

REQUIRED_HPARAMS = ("net", "features", "audio", "labels")
# Packages whose classes a checkpoint config may name; anything else is refused.
TRUSTED_TARGET_PACKAGES = ("ser_lightning.", "torch.nn.", "torch.optim.", "torchaudio.transforms.")
# What each top-level config must build.
_ROLE_BASES: dict[str, tuple[str, ...]] = {
    "net": ("torch.nn.Module",),
    "features": ("ser_lightning.features.base.FeatureExtractor",),
    "optimizer": ("torch.optim.Optimizer",),
    "scheduler": ("torch.optim.lr_scheduler.LRScheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau"),
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
class CheckpointRecord(pl.Callback):
    """Adds the `ser_lightning` record (format version, data config, split) to every checkpoint.

    `data` is the resolved data config of the run; relative `root`/`cache_dir` are made
    absolute so that eval finds the corpus from any working directory.
    """

    def __init__(self, data: dict | None):
        self.data = _absolute_paths(dict(data)) if data else None
        self._split: dict | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        if self._split is None:
            self._split = split_record(getattr(trainer, "datamodule", None))
        checkpoint[RECORD_KEY] = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "ser_lightning_version": __version__,
            "data": self.data,
            "split": self._split,
        }


def _absolute_paths(data: dict) -> dict:
    for key in ("root", "cache_dir"):
        if isinstance(data.get(key), str):
            data[key] = str(Path(data[key]).expanduser().resolve())
    return data


def split_record(datamodule: Any) -> dict | None:
    """Name and sizes of the split a data module made, and a fingerprint of its test files."""
    if datamodule is None or getattr(datamodule, "assignment", None) is None:
        return None
    table = datamodule.split_table()
    return {
        "name": datamodule.splitter.name,
        "sizes": {str(k): int(v) for k, v in table["split"].value_counts().sort_index().items()},
        "test_files_sha256": files_fingerprint(table.loc[table["split"] == "test", "path"]),
    }


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
    for role in ("net", "features", "optimizer", "scheduler"):
        if hparams.get(role) is not None:
            check_targets(hparams[role], role, where)


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


def check_targets(
    config: Any, role: str, where: str, trusted: tuple[str, ...] = TRUSTED_TARGET_PACKAGES
) -> None:
    """Every `_target_` in `config` must be a class of a trusted package of the right kind."""

    def visit(node: Any, key_path: str, bases: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            target = node.get("_target_")
            if target is not None:
                _check_target(target, key_path, bases)
            for key, value in node.items():
                if key != "_target_":
                    visit(value, f"{key_path}.{key}", _ANY_BASES)
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                visit(value, f"{key_path}[{i}]", _ANY_BASES)

    def _check_target(target: Any, key_path: str, bases: tuple[str, ...]) -> None:
        refused = (
            f"{where!r}: {key_path}._target_={target!r} is refused: checkpoint configs may only name "
            f"classes of {', '.join(p.rstrip('.') for p in trusted)} "
        )
        if not isinstance(target, str) or not target.startswith(trusted):
            raise CheckpointError(refused + "(this one is outside them)")
        try:
            obj = _resolve(target)
        except (ImportError, AttributeError):
            raise CheckpointError(
                f"{where!r}: {key_path}._target_={target!r} does not exist in this installation; "
                "the checkpoint needs code this ser_lightning does not have"
            ) from None
        # The module check stops names that walk through a trusted module to a foreign object
        # (e.g. ser_lightning.x.os.system).
        if not isinstance(obj, type) or not obj.__module__.startswith(tuple(p.rstrip(".") for p in trusted)):
            raise CheckpointError(refused + "(it does not name a class defined there)")
        if not issubclass(obj, tuple(_resolve(b) for b in bases)):
            raise CheckpointError(refused + f"(a {role} config must build a {' or '.join(bases)})")

    visit(config, role, _ROLE_BASES[role])


def checkpoint_record(checkpoint: dict) -> dict:
    """The `ser_lightning` record of a loaded checkpoint ({} for checkpoints written without it)."""
    return checkpoint.get(RECORD_KEY) or {}


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu", strict: bool = True):
    """Rebuild the SERModule a checkpoint file holds, in eval mode, from the file alone."""
    return module_from_checkpoint(read_checkpoint(path, map_location), path, map_location, strict)


def module_from_checkpoint(
    checkpoint: dict,
    path: str | Path = "<checkpoint>",
    map_location: str | torch.device | None = "cpu",
    strict: bool = True,
):
    """The SERModule of an already read (and checked) checkpoint.

    The network is built uncompiled (compiling is a training-time speed choice); weights saved
    from a compiled network load into it all the same.
    """
    from ser_lightning.module import SERModule

    hparams = dict(checkpoint["hyper_parameters"])
    hparams["compile"] = False
    try:
        module = SERModule(**hparams)
    except TypeError as err:
        raise CheckpointError(f"{str(path)!r}: its hyper_parameters do not fit SERModule: {err}") from None
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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames it into place.

    A run killed while `best.ckpt` or `last.ckpt` is being written keeps the previous complete
    file, never a truncated one. (Lightning's own writer stages the bytes in the system's temp
    folder and moves them over, which is a copy, not a rename, when that folder is on another
    filesystem than the run.) Remote paths (`s3://...`) are left to Lightning.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path) or storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(checkpoint, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(staging, path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
