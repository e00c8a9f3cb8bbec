"""Config helpers: where the configs live, printing them, instantiating lists of objects."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import rich
import rich.syntax
import rich.tree
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
PRINT_ORDER = ("data", "features", "model", "trainer", "callbacks", "logger", "paths")
# Lightning 2.6 and torch.export on torch 2.11 warn about their own use of a deprecated torch
# pytree API at every stage; nothing a user can act on.
PYTREE_NOTICE = r".*isinstance\(treespec, LeafSpec\)"


def silence_pytree_notice() -> None:
    """Hide PYTREE_NOTICE (the entry points call this once at import)."""
    warnings.filterwarnings("ignore", message=PYTREE_NOTICE)


# torch.onnx's exporter builds its operator registry at every export and logs, for each of
# torchvision's operators (nms, roi_align, ...), that torchvision is not installed: a dozen
# warnings per export about operators no network of this project uses.
TORCHVISION_NOTICE_LOGGER = "torch.onnx._internal.exporter._registration"
TORCHVISION_NOTICE = "torchvision is not installed. Skipping %s"


class _DropTorchvisionNotice(logging.Filter):
    """Drops exactly TORCHVISION_NOTICE; every other record of the logger passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != TORCHVISION_NOTICE


def silence_torchvision_notice() -> None:
    """Hide torch.onnx's TORCHVISION_NOTICE, and nothing else of its logger (once, however often called)."""
    logger = logging.getLogger(TORCHVISION_NOTICE_LOGGER)
    if not any(isinstance(f, _DropTorchvisionNotice) for f in logger.filters):
        logger.addFilter(_DropTorchvisionNotice())


def print_config_tree(cfg: DictConfig, save_to: str | Path | None = None) -> None:
    """Print the composed config as a tree (and save it as text next to the run)."""
    tree = rich.tree.Tree("CONFIG", style="bold", guide_style="dim")
    keys = [k for k in PRINT_ORDER if k in cfg] + [k for k in cfg if k not in PRINT_ORDER and k != "hydra"]
    for key in keys:
        branch = tree.add(key, style="bold")
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_to is not None:
        with open(save_to, "w") as handle:
            rich.print(tree, file=handle)


def instantiate_dict(cfg: DictConfig | None, what: str) -> list:
    """Instantiate every `_target_` node of a mapping (callbacks, loggers); None entries are off.

    Args:
        cfg: The mapping of name to node config; None or empty builds nothing.
        what: What the entries are (e.g. "callbacks"), for the error messages.

    Returns:
        The built objects, in the mapping's order, skipping entries that are None.

    Raises:
        TypeError: If `cfg` is not a mapping.
        InvalidSetting: If an entry is not a config with a `_target_`.
    """
    objects = []
    if not cfg:
        return objects
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"the {what} config must be a mapping of name to config")
    for name, node in cfg.items():
        if node is None:
            continue
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise InvalidSetting(
                f"{what}.{name} has no _target_: every {what} entry must name the class to build"
            )
        log.debug("instantiating %s %s <%s>", what, name, node._target_)
        objects.append(instantiate(node))
    return objects


def to_plain(cfg) -> dict | list | None:
    """Resolved plain containers (safe to store in checkpoints and load with weights_only).

    Returns:
        `cfg` resolved into plain dicts and lists when it is an OmegaConf config, None for
        None, and anything else unchanged.
    """
    if cfg is None:
        return None
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def task_overrides() -> list[str]:
    """The command line's overrides of this Hydra job.

    Returns:
        The overrides as typed (`key=value`), or [] outside a Hydra job.
    """
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
