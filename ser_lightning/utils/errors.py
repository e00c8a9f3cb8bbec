"""User mistakes end with their message; tracebacks are for bugs.

A missing corpus folder, a file that is not a checkpoint, an impossible model × features pair
or a value the project refuses already raise an error whose message names the file or key and
the fix. Printed under a traceback it reads like a crash, so every entry point's `main()` is
wrapped in `exits_on_user_mistake`: such an error prints `error: <message>` to stderr and exits
with status 1. Anything else is a bug and keeps its traceback, and `HYDRA_FULL_ERROR=1` shows
the traceback of user mistakes too.

In a Hydra multirun the error is left to the sweep (a grid sweep records the job as skipped or
failed in job_status.json and goes on; Optuna records a failed trial).
"""

from __future__ import annotations

import functools
import linecache
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ser_lightning.utils.jobs import StartupError, is_multirun

F = TypeVar("F", bound=Callable[..., Any])
PACKAGE_DIR = Path(__file__).resolve().parents[1]

# Paths the user named that are not there or cannot be read.
PATH_MISTAKES = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def user_mistake_types() -> tuple[type[BaseException], ...]:
    """The project's exceptions that mean "the input is wrong" (imported here, not at start-up:
    `report` does not otherwise load torch)."""
    from ser_lightning.checkpoint import CheckpointError
    from ser_lightning.data.quality import UnusableFilesError
    from ser_lightning.models.requirements import IncompatibleFeaturesError

    return (StartupError, CheckpointError, UnusableFilesError, IncompatibleFeaturesError, *PATH_MISTAKES)


def root_cause(err: BaseException) -> BaseException:
    """Hydra wraps constructor errors in InstantiationException; the innermost error is the useful one."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def raised_on_purpose(err: BaseException) -> bool:
    """Whether `err` comes from a `raise` statement of ser_lightning itself.

    The project raises ValueError only to refuse a value it was given, with a message that says
    which and why. A ValueError from inside a library, or from a builtin called on a
    ser_lightning line that is not a `raise` (e.g. `int("x")`), is a bug and keeps its traceback.
    """
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    # by file, not module name: `python -m ser_lightning.export` runs export.py as __main__
    if not Path(filename).resolve().is_relative_to(PACKAGE_DIR):
        return False
    return linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise")


def user_mistake(err: BaseException) -> BaseException | None:
    """The error whose message to show when `err` is a user mistake, else None (a bug)."""
    if isinstance(err, StartupError):
        return err  # its message already names the root cause
    cause = root_cause(err)
    if isinstance(cause, user_mistake_types()) or (
        isinstance(cause, ValueError) and raised_on_purpose(cause)
    ):
        return cause
    return None


def exits_on_user_mistake(main: F) -> F:
    """Wrap an entry point's main(): a user mistake prints its message alone and exits with 1.

    Goes between `@hydra.main` and the function (Hydra then sees the same task function).
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as err:
            mistake = user_mistake(err)
            if mistake is None or os.environ.get("HYDRA_FULL_ERROR") == "1" or is_multirun():
                raise
            print(f"error: {mistake}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]
