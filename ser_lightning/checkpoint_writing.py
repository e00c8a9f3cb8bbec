"""Writing checkpoints during training: the record callback and the atomic writer (Lightning parts).

Kept apart from ser_lightning.checkpoint (the format and its safe reading) so that reading a
checkpoint, as predict and serve do, does not import Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from ser_lightning import __version__
from ser_lightning.checkpoint import CHECKPOINT_FORMAT_VERSION, CHECKPOINT_TEMPORARY_TEMPLATE, RECORD_KEY
from ser_lightning.data.provenance import data_settings, split_record
from ser_lightning.utils.files import atomic_write


class CheckpointRecord(pl.Callback):
    """Adds the `ser_lightning` record (format version, data settings, split) to every checkpoint.

    `data` is the resolved data config of the run, stored as its plain settings (`data_settings`:
    no `_target_`, absolute `root` and `cache_dir`).
    """

    def __init__(self, data: dict | None):
        self.data = data_settings(data) if data else None
        self._split: dict | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        """Store the record in `checkpoint`; the split is taken from the trainer's data module once."""
        if self._split is None:
            self._split = split_record(getattr(trainer, "datamodule", None))
        checkpoint[RECORD_KEY] = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "ser_lightning_version": __version__,
            "data": self.data,
            "split": self._split,
        }


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames it into place.

    A run killed while `best.ckpt` or `last.ckpt` is being written keeps the previous complete
    file, never a truncated one. (Lightning's own writer stages the bytes in the system's temp
    folder and moves them over, which is a copy, not a rename, when that folder is on another
    filesystem than the run.) Remote paths (`s3://...`) are left to Lightning.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        """Write `checkpoint` to `path` atomically (synced, then renamed); remote paths go to Lightning."""
        if "://" in str(path) or storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, template=CHECKPOINT_TEMPORARY_TEMPLATE, sync=True) as staging:
            torch.save(checkpoint, staging)


def checkpoint_plugins(trainer: Mapping[str, Any]) -> dict[str, list]:
    """The Trainer's checkpoint plugin: best.ckpt / last.ckpt renamed into place (kill-safe).

    Args:
        trainer: the trainer config; where it names `plugins` of its own, those are kept.

    Returns:
        The `plugins` keyword for the Trainer ([AtomicCheckpointIO()]), or {} to keep the config's.
    """
    return {} if trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
