"""Resuming an interrupted run: the same experiment, with the config it was started with.

    python -m ser_lightning.train <the original overrides> ckpt_path=last hydra.run.dir=<run dir>

Hydra gives every new run a new directory, so `ckpt_path=last` needs `hydra.run.dir` to point
at the interrupted run's; the resumed run then writes its checkpoints, metrics and summary
there. `ckpt_path=PATH` resumes any checkpoint in a new directory. Every resume is checked
before any training step, whatever directory the checkpoint lies in:

1. `run_config.yaml` of the checkpoint's run (Hydra rewrites `.hydra/` at every start, so the
   first start keeps its own record: the resolved config and the overrides): model, features,
   data, seed, augmentation and the trainer keys that change results must match;
2. the checkpoint's own record (written by `CheckpointRecord`): its data config must match, so
   that the split is made the same way, and its hyper-parameters must be those of the model
   this config builds (this is what a checkpoint copied out of its run is checked against);
3. after the data module has split the corpus, the fingerprint of the test files must equal the
   checkpoint's: otherwise the corpus changed, and files the model trained on could now be test
   files.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ser_lightning.checkpoint import RECORD_KEY, read_checkpoint
from ser_lightning.data.augmentation import AUGMENTATION_DEFAULTS
from ser_lightning.data.provenance import data_settings, same_test_files
from ser_lightning.preemption import preempted_checkpoint
from ser_lightning.utils.config import task_overrides, to_plain
from ser_lightning.utils.errors import UserError

log = logging.getLogger(__name__)

RUN_CONFIG = "run_config.yaml"

# What makes a checkpoint's training history mean something: resuming with other values
# would silently continue a different experiment. Every key under these must match unless it
# is listed in RESUME_MAY_DIFFER (so a trainer key added later is compared by default).
RESUME_MUST_MATCH = ("model", "features", "data", "seed", "augmentation", "trainer")
RESUME_MAY_DIFFER = (
    # How fast batches arrive and where caches live (caches are keyed by their content).
    "data.num_workers",
    "data.pin_memory",
    "data.placement",  # the same batches either way (tests/test_device_placement.py)
    "data.device_memory_share",
    "data.decode_workers",
    "data.cache_dir",
    # When training stops: extending a run is what a resume is for; the epochs already trained
    # are the same whatever the limit.
    "trainer.max_epochs",
    "trainer.min_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    # Where it runs: a run preempted on one machine resumes on whatever is free. A different
    # world size changes the effective batch (data.batch_size is per device), so the result is
    # not bit-identical to an uninterrupted run; refusing would leave the run unfinishable.
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    # Where and how often it reports.
    "trainer.default_root_dir",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.profiler",
    # Speed choices of the model that change no result (HPARAMS_MAY_DIFFER): a run compiled on
    # one machine resumes uncompiled on another, or in another memory layout.
    "model.compile",
    "model.channels_last",
)
# Hyper-parameters of the model that change no result (compiling and the memory layout are
# speed choices), or that training writes itself (the temperature fitted after fitting, stored
# in the best checkpoint).
HPARAMS_MAY_DIFFER = ("compile", "channels_last", "calibration")


class ResumeError(UserError, ValueError):
    """A resume that would continue another experiment than its checkpoint's; the message says what differs."""


def _flat(node: Any, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    if isinstance(node, tuple):  # a list and a tuple of the same values are the same setting
        node = list(node)
    return {prefix[:-1]: node}


def _may_differ(key: str, may_differ: tuple[str, ...]) -> bool:
    return any(key == allowed or key.startswith(allowed + ".") for allowed in may_differ)


def changed_keys(before: dict, now: dict, may_differ: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """Compare two nested configs leaf by leaf.

    Args:
        before: The config recorded earlier.
        now: The config now.
        may_differ: Dotted keys (and the keys under them) left out of the comparison.

    Returns:
        (dotted key, value before, value now) for every leaf that differs, sorted by key; a
        leaf missing on one side counts as None there.
    """
    flat_before, flat_now = _flat(before), _flat(now)
    return [
        (key, flat_before.get(key), flat_now.get(key))
        for key in sorted(flat_before.keys() | flat_now.keys())
        if flat_before.get(key) != flat_now.get(key) and not _may_differ(key, may_differ)
    ]


def _listing(changes: list[tuple[str, Any, Any]], then: str = "", now: str = "") -> str:
    return "\n".join(f"  {key}: {old!r}{then} -> {new!r}{now}" for key, old, new in changes)


def _resume_command(overrides: list[str], placeholder: bool = False) -> str:
    """Return the shell command that resumes a run.

    Each stored override is quoted for the shell: the record lies in a run folder that others
    may share, and a value such as `x; curl ... | sh` must stay one argument of the command a
    user pastes, not a command of its own. With `placeholder`, the overrides are text shown as
    they are.
    """
    words = list(overrides) if placeholder else [shlex.quote(str(o)) for o in overrides]
    return "python -m ser_lightning.train " + " ".join([*words, "ckpt_path=last", "hydra.run.dir=<run dir>"])


def checkpoint_to_resume(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint `ckpt_path` names ("last": this run directory's last.ckpt), checked to exist.

    A run directory holding `checkpoints/preempted.ckpt` (written on a requeue signal,
    `ser_lightning/preemption.py`) resumes from it when `ckpt_path` is unset or "last": that is
    where the run stopped, inside an epoch, and how a requeued SLURM job, which runs the same
    command again, goes on.

    Args:
        cfg: The run's config; its `ckpt_path` is read.
        output_dir: This run's directory, where `ckpt_path=last` looks.

    Returns:
        The checkpoint's path, or None when `ckpt_path` is not set and the directory holds no
        preempted run (a fresh run).

    Raises:
        FileNotFoundError: If the named checkpoint (or this directory's last.ckpt) does not
            exist; the message shows how to resume a run in its own directory.
    """
    ckpt_path = cfg.get("ckpt_path")
    preempted = preempted_checkpoint(output_dir)
    if ckpt_path in (None, "", "last") and preempted.is_file():
        log.warning(
            "resuming from %s: the run in this directory stopped there on a requeue signal", preempted
        )
        return str(preempted)
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        path = output_dir / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last: {output_dir} has no checkpoints/last.ckpt. A new run gets a new directory; "
                f"resume a run in its own directory with: {_resume_command(['<the original overrides>'], placeholder=True)}"
            )
        return str(path)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt_path!r} does not exist; give a .ckpt file or ckpt_path=last"
        )
    return str(ckpt_path)


def _checkpoint_run_dir(ckpt_path: str | Path) -> Path | None:
    """Return the run directory of a checkpoint at `<run>/checkpoints/x.ckpt`; None elsewhere."""
    path = Path(ckpt_path).resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else None


def _must_match(config: dict) -> dict:
    """Return the RESUME_MUST_MATCH part of a plain config; augmentation keys a preset leaves out are off."""
    part = {key: config.get(key) for key in RESUME_MUST_MATCH}
    part["augmentation"] = {**AUGMENTATION_DEFAULTS, **(part["augmentation"] or {})}
    return part


def record_or_check_run_config(
    cfg: DictConfig, output_dir: Path, overrides: list[str], ckpt_path: str | None
) -> None:
    """Write run_config.yaml for a run's first start; on a resume, refuse a different experiment.

    A resume is compared with the run_config.yaml of the run its checkpoint belongs to (this
    directory's for `ckpt_path=last`); a resume into a directory without one records its own
    config there, so that resuming it later is checked too.

    Args:
        cfg: The run's composed config (without `hydra`, resolved, is what is recorded).
        output_dir: This run's directory.
        overrides: The command-line overrides, recorded for the resume command.
        ckpt_path: The checkpoint being resumed, or None for a first start.

    Raises:
        ResumeError: If a key of RESUME_MUST_MATCH (other than RESUME_MAY_DIFFER) differs from
            the checkpoint's run's recorded config.
    """
    plain = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    record = output_dir / RUN_CONFIG
    if ckpt_path is None or not record.is_file():
        OmegaConf.save(OmegaConf.create({"overrides": list(overrides), "config": plain}), record)
    if ckpt_path is None:
        return
    started = _checkpoint_run_dir(ckpt_path)
    if started is None or not (started / RUN_CONFIG).is_file():
        return  # nothing recorded to compare with; the checkpoint's own record is compared next
    saved = OmegaConf.to_container(OmegaConf.load(started / RUN_CONFIG), resolve=False)
    changes = changed_keys(_must_match(saved["config"]), _must_match(plain), RESUME_MAY_DIFFER)
    if changes:
        raise ResumeError(
            f"resuming {started} with a different config than it was started with:\n{_listing(changes)}\n"
            f"Repeat the original command: {_resume_command(saved.get('overrides', []))}"
        )


def check_resume(
    cfg: DictConfig, output_dir: Path, is_rank_zero: bool
) -> tuple[str | None, ResumedCheckpoint | None]:
    """Before any work: the checkpoint to resume must exist and belong to this experiment.

    Records the run's config (`record_or_check_run_config`, on the first process) and checks
    the checkpoint's data settings against this run's; its model and split are checked once
    they are built (`ResumedCheckpoint.check_model`, `check_split`).

    Args:
        cfg: The run's composed config.
        output_dir: This run's directory.
        is_rank_zero: Whether this process writes the run's config record (with the command
            line's overrides, for the resume command).

    Returns:
        The checkpoint's path and its record, or (None, None) for a fresh run.

    Raises:
        FileNotFoundError: If the named checkpoint does not exist.
        ResumeError: If the run's config or data settings differ from the checkpoint's.
    """
    ckpt_path = checkpoint_to_resume(cfg, output_dir)
    if is_rank_zero:
        record_or_check_run_config(cfg, output_dir, task_overrides(), ckpt_path)
    resumed = ResumedCheckpoint.read(ckpt_path) if ckpt_path else None
    if resumed:
        resumed.check_data(to_plain(cfg.data))
    return ckpt_path, resumed


@dataclass
class ResumedCheckpoint:
    """What a resume is checked against: the checkpoint's record and hyper-parameters.

    Only these are kept (not the weights): Lightning reads the file again to restore the state.
    """

    path: str
    record: dict
    hyper_parameters: dict

    @classmethod
    def read(cls, path: str) -> ResumedCheckpoint:
        """Return the record and hyper-parameters of the checkpoint at `path`, read safely.

        Raises:
            CheckpointError: If the file is not a loadable ser_lightning checkpoint.
        """
        checkpoint = read_checkpoint(path)  # safe loading; refuses files that are not checkpoints
        return cls(str(path), checkpoint[RECORD_KEY], checkpoint["hyper_parameters"])

    def check_data(self, data: dict) -> None:
        """Before anything is built: the data config must be the one the checkpoint was trained on.

        Args:
            data: This run's data config (compared as plain settings).

        Raises:
            ResumeError: If a data setting that changes the split differs from the checkpoint's.
        """
        if not self.record.get("data"):
            return
        changes = changed_keys(
            {"data": data_settings(self.record["data"])}, {"data": data_settings(data)}, RESUME_MAY_DIFFER
        )
        if changes:
            raise ResumeError(
                f"resuming {self.path}: it was trained on other data settings than this config's; the split "
                f"would differ and files it trained on could be tested on:\n"
                f"{_listing(changes, ' (checkpoint)', ' (now)')}\n"
                "Resume with the checkpoint's values, or start a new run without ckpt_path."
            )

    def check_model(self, hparams: dict) -> None:
        """After building, before fitting: the config must build the model the checkpoint holds.

        The hyper-parameters hold the network, features, audio, labels, optimiser, scheduler
        and augmentation configs: for a checkpoint copied out of its run (no run_config.yaml
        beside it) they are the record of the experiment.

        Args:
            hparams: The hyper-parameters of the model this config built.

        Raises:
            ResumeError: If they differ from the checkpoint's (beyond HPARAMS_MAY_DIFFER).
        """
        changes = changed_keys(self.hyper_parameters, dict(hparams), HPARAMS_MAY_DIFFER)
        if changes:
            raise ResumeError(
                f"resuming {self.path}: this config builds another model than the checkpoint holds "
                f"(its hyper-parameters):\n{_listing(changes, ' (checkpoint)', ' (now)')}\n"
                "Resume with the checkpoint's settings, or start a new run without ckpt_path."
            )

    def check_split(self, datamodule: Any) -> None:
        """After the split, before fitting: the test files must be those the checkpoint held out.

        The same settings split the same files the same way, so a difference means the corpus
        changed (files added, removed or renamed): files the model trained on could now be test
        files, and the test score would not mean what it says.

        Args:
            datamodule: The set-up data module, whose manifest holds the split.

        Raises:
            ResumeError: If the test files' fingerprint differs from the checkpoint's record.
        """
        stored = self.record.get("split") or {}
        table = datamodule.manifest.split_table()
        test_files = table.loc[table["split"] == "test", "path"]
        if same_test_files(stored, test_files) is False:
            raise ResumeError(
                f"resuming {self.path}: the corpus at {datamodule.source.root} changed since the checkpoint was "
                f"trained: its test split is not the same files ({stored.get('sizes', {}).get('test')} test "
                f"files then, {len(test_files)} now). Resume on the corpus as it was, or start "
                "a new run without ckpt_path."
            )
