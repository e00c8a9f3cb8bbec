"""User mistakes end with their message; tracebacks are for bugs.

Every error that is the user's to fix (a missing corpus folder, a file that is not a
checkpoint, an impossible model × features pair, unusable files, encoder weights of another
model, a config value the project refuses) derives from `UserError`, and its message names the
file or key and the fix. Printed under a traceback it reads like a crash, so every entry
point's `main()` is wrapped in `exits_on_user_mistake`: such an error prints `error: <message>`
to stderr and exits with status 1. Anything else is a bug and keeps its traceback, and
`HYDRA_FULL_ERROR=1` shows the traceback of user mistakes too.

In a Hydra multirun the error is left to the sweep (a grid sweep records the job as skipped or
failed in job_status.json and goes on; Optuna records a failed trial).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Paths the user named that are not there or cannot be read.
PATH_MISTAKES = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


class UserError(Exception):
    """An error that is the user's to fix; its message names the file or key and what to do."""


class InvalidSetting(UserError, ValueError):
    """A value the project refuses: a config key, an argument or a setting out of range.

    A ValueError too, so that code and tests that expect one keep working.
    """


def root_cause(err: BaseException) -> BaseException:
    """Hydra wraps constructor errors in InstantiationException; the innermost error is the useful one.

    Returns:
        The last error of `err`'s `__cause__` chain (`err` itself when it has no cause).
    """
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def user_mistake(err: BaseException) -> BaseException | None:
    """The error whose message to show when `err` is a user mistake, else None (a bug).

    Returns:
        `err` itself for a StartupError; otherwise its root cause when that is a UserError,
        StartupError or a path mistake (FileNotFoundError, PermissionError, ...); else None.
    """
    from ser_lightning.utils.jobs import StartupError  # Hydra's modules: not for the low layers

    if isinstance(err, StartupError):
        return err  # its message already names the root cause
    cause = root_cause(err)
    return cause if isinstance(cause, (UserError, StartupError, *PATH_MISTAKES)) else None


def exits_on_user_mistake(main: F) -> F:
    """Wrap an entry point's main(): a user mistake prints its message alone and exits with 1.

    Goes between `@hydra.main` and the function (Hydra then sees the same task function).

    Args:
        main: The entry point's main function.

    Returns:
        A wrapper with `main`'s signature and metadata. It re-raises bugs, and user mistakes
        too inside a multirun or with `HYDRA_FULL_ERROR=1`; otherwise it prints
        `error: <message>` to stderr and raises SystemExit(1).
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as err:
            from ser_lightning.utils.jobs import is_multirun

            mistake = user_mistake(err)
            if mistake is None or os.environ.get("HYDRA_FULL_ERROR") == "1" or is_multirun():
                raise
            print(f"error: {mistake}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]
