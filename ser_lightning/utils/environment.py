"""The installed environment: is it the one requirements.lock describes, and can it load?

torch and torchaudio are a compiled pair: torchaudio's shared library links against symbols of
one torch release, and a mismatched pair fails at import with a linker error such as
``undefined symbol: torch_exception_get_what_without_backtrace``. The package imports the pair
first (``ser_lightning/__init__.py``) so that such an environment stops with a message that says
what is installed, what is expected and how to fix it, instead of that error.

The expected versions are read from the installed project's own requirements (pyproject.toml's
exact pins), so the pins have one source.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import re

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
            raise IncompatibleInstallError(
                f"{name} cannot be loaded in this environment: {type(err).__name__}: {err}\n"
                f"{describe_versions()}\n"
                f"The compiled pair torch/torchaudio must be exactly the locked versions; {FIX}."
            ) from None


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
