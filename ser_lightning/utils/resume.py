"""Resuming an interrupted run in its own directory, with the config it was started with.

    python -m ser_lightning.train <the original overrides> ckpt_path=last hydra.run.dir=<run dir>

Hydra gives every new run a new directory, so `ckpt_path=last` needs `hydra.run.dir` to point
at the interrupted run's; the resumed run then writes its checkpoints, metrics and summary
there. Hydra rewrites `.hydra/` at every start, so the first start also keeps its own record,
`run_config.yaml` (the resolved config and the command-line overrides); a resume whose model,
features, data or seed differ from it stops before any work and says which keys differ.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

RUN_CONFIG = "run_config.yaml"
# What makes a checkpoint's training history mean something: resuming with other values
# would silently continue a different experiment. Worker counts change no result.
RESUME_MUST_MATCH = ("model", "features", "data", "seed")
RESUME_MAY_DIFFER = ("data.num_workers", "data.pin_memory", "data.decode_workers")


def _flat(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def _resume_command(overrides: list[str]) -> str:
    return "python -m ser_lightning.train " + " ".join(
        [*overrides, "ckpt_path=last", "hydra.run.dir=<run dir>"]
    )


def checkpoint_to_resume(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint `ckpt_path` names ("last": this run directory's last.ckpt), checked to exist."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        path = output_dir / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last: {output_dir} has no checkpoints/last.ckpt. A new run gets a new directory; "
                f"resume a run in its own directory with: {_resume_command(['<the original overrides>'])}"
            )
        return str(path)
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt_path!r} does not exist; give a .ckpt file or ckpt_path=last"
        )
    return str(ckpt_path)


def record_or_check_run_config(
    cfg: DictConfig, output_dir: Path, overrides: list[str], resuming: bool
) -> None:
    """Write run_config.yaml when a run starts from scratch; on a resume, refuse a different experiment."""
    plain = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    record = output_dir / RUN_CONFIG
    if not resuming:  # a start from scratch is the first start of what this directory holds
        OmegaConf.save(OmegaConf.create({"overrides": list(overrides), "config": plain}), record)
        return
    if not record.is_file():
        return  # nothing recorded to compare with
    saved = OmegaConf.to_container(OmegaConf.load(record), resolve=False)
    before = {k: v for k, v in _flat({key: saved["config"].get(key) for key in RESUME_MUST_MATCH}).items()}
    now = {k: v for k, v in _flat({key: plain.get(key) for key in RESUME_MUST_MATCH}).items()}
    changed = sorted(
        k for k in before.keys() | now.keys() if before.get(k) != now.get(k) and k not in RESUME_MAY_DIFFER
    )
    if changed:
        listing = "\n".join(f"  {k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise ValueError(
            f"resuming {output_dir} with a different config than it was started with:\n{listing}\n"
            f"Repeat the original command: {_resume_command(saved.get('overrides', []))}"
        )
