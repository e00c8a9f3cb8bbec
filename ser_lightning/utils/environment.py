"""The installed environment: is it the one requirements.lock describes, and can it load?

torch and torchaudio are a compiled pair: torchaudio's shared library links against symbols of
one torch release, and a mismatched pair fails at import with a linker error such as
``undefined symbol: torch_exception_get_what_without_backtrace``. The package installs an import
guard (``ser_lightning/__init__.py``, `guard_compiled_dependencies`): the first import of
torchaudio, from wherever, imports torch first and turns a failure of either into a message
that says what is installed, what is expected and how to fix it, instead of that error. The
guard imports nothing itself, so the ONNX backend (`ser_lightning.inference.onnx_backend`),
which needs neither, runs without torch.

The expected versions are read from the installed project's own requirements (pyproject.toml's
exact pins), so the pins have one source.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata as metadata
import re
import sys

PROJECT = "ser_lightning"
# Imported in this order: torch first, then the packages whose compiled code links against it.
COMPILED_PAIR = ("torch", "torchaudio")
FIX = "run `make install`, which installs exactly the versions of requirements.lock into .venv"


class IncompatibleInstallError(ImportError):
    """A compiled dependency cannot load in this environment (the wrong versions are installed)."""


def installed_version(distribution: str) -> str | None:
    """The installed version of `distribution`.

    Returns:
        The version string, or None when the distribution is not installed.
    """
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def expected_versions() -> dict[str, str]:
    """Exact pins (``name==version``) of the compiled pair, from the project's requirements.

    Returns:
        A mapping of lower-cased package name to pinned version; empty when the project is
        not installed (run from a checkout).
    """
    try:
        requirements = metadata.requires(PROJECT) or []
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return {}
    pins = {}
    for requirement in requirements:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;,]+)\s*(;.*)?$", requirement)
        if match and match.group(1).lower() in COMPILED_PAIR:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def describe_versions() -> str:
    """Compare the installed torch/torchaudio with the project's pins, for an error message.

    Returns:
        One indented line per package of the compiled pair: installed and expected version,
        marked where they differ.
    """
    expected = expected_versions()
    rows = []
    for name in COMPILED_PAIR:
        have = installed_version(name) or "not installed"
        want = expected.get(name, "unknown (ser_lightning is not installed)")
        flag = "" if have == want else "   <- differs"
        rows.append(f"  {name:<11} installed {have:<14} expected {want}{flag}")
    return "\n".join(rows)


def check_compiled_dependencies() -> None:
    """Import the compiled pair; raise IncompatibleInstallError with versions and the fix if it fails.

    Raises:
        IncompatibleInstallError: If torch or torchaudio cannot be imported (ImportError or
            OSError, such as a linker error from a mismatched pair).
    """
    for name in COMPILED_PAIR:
        try:
            importlib.import_module(name)
        except (ImportError, OSError) as err:
            raise IncompatibleInstallError(_incompatible_message(name, err)) from None


class _CheckedLoader(importlib.abc.Loader):
    """The real loader of torch or torchaudio, its failure turned into IncompatibleInstallError."""

    def __init__(self, loader: importlib.abc.Loader, name: str):
        self.loader, self.name = loader, name

    def create_module(self, spec):  # noqa: D102 (importlib's protocol)
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: D102 (importlib's protocol)
        try:
            self.loader.exec_module(module)
        except (ImportError, OSError) as err:
            raise IncompatibleInstallError(_incompatible_message(self.name, err)) from None


class CompiledPairGuard(importlib.abc.MetaPathFinder):
    """Check the compiled pair when it is first imported, not before (`guard_compiled_dependencies`)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 (importlib's protocol)
        if fullname not in COMPILED_PAIR:
            return None
        if fullname != COMPILED_PAIR[0]:  # torch first: torchaudio's library links against it
            importlib.import_module(COMPILED_PAIR[0])
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _CheckedLoader(spec.loader, fullname)
        return spec


def guard_compiled_dependencies() -> None:
    """Install `CompiledPairGuard` (once): importing torch or torchaudio later checks the pair.

    Nothing is imported now, so a process that never needs torch (the ONNX backend) never loads it.
    """
    if not any(isinstance(finder, CompiledPairGuard) for finder in sys.meta_path):
        sys.meta_path.insert(0, CompiledPairGuard())


def _incompatible_message(name: str, err: BaseException) -> str:
    return (
        f"{name} cannot be loaded in this environment: {type(err).__name__}: {err}\n"
        f"{describe_versions()}\n"
        f"The compiled pair torch/torchaudio must be exactly the locked versions; {FIX}."
    )


def install_summary(lock_file: str = "requirements.lock") -> str:
    """One line for `make install`: how many packages, the compiled pair, and that it loads.

    Args:
        lock_file: The lock file's name, as shown in the line.

    Returns:
        The summary line.

    Raises:
        IncompatibleInstallError: If the compiled pair cannot be imported (raised by
            `check_compiled_dependencies`).
    """
    check_compiled_dependencies()
    count = sum(1 for _ in metadata.distributions())
    pair = ", ".join(f"{name} {installed_version(name)}" for name in COMPILED_PAIR)
    return f"environment ready: {count} packages as in {lock_file} ({pair}, loaded together)"
