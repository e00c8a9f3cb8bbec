"""The checks of a checkpoint's stored configs, made before anything is built from them.

`ser_lightning.checkpoint` describes what a checkpoint may hold and why; these are the checks
it runs on a file's hyper-parameters and data settings: plain values without interpolation
(`check_plain`), data settings without any Hydra key (`check_data_settings`), and `_target_`s
that name classes of trusted packages, of the kind each config builds (`check_targets`,
`check_config_targets`). Each refusal is a `CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import importlib
from typing import Any

from ser_lightning.checkpoint_errors import CheckpointError

# Packages whose classes a checkpoint config may name (the package or its sub-modules, matched
# name by name: `ser_lightning_x` is not `ser_lightning`); anything else is refused.
TRUSTED_TARGET_PACKAGES = ("ser_lightning", "torch.nn", "torch.optim", "torchaudio.transforms")
# Hydra's special keys, which `instantiate` acts on rather than passing them to the class.
HYDRA_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
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


def check_config_targets(hparams: dict, where: str) -> None:
    """Check the targets of every config role the hyper-parameters hold (`check_targets`).

    `net` and `features` are always checked; the other roles (optimizer, scheduler,
    spectrogram, mixup) when they are set.

    Args:
        hparams: The checkpoint's hyper-parameters, already checked by `check_plain`.
        where: The file's name, for error messages.
    """
    for role in _ROLE_BASES:
        if role in ("net", "features") or hparams.get(role) is not None:
            check_targets(hparams[role], role, where)
