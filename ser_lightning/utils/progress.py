"""The one progress bar every long step shows: a count of items (clips, files) or of bytes.

    with progress_bar() as bar:
        task = bar.add_task("decoding audio", total=len(paths))
        ...
        bar.advance(task)

`kind="bytes"` shows sizes and the transfer speed instead of counts (downloads).
"""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ser_lightning.utils.errors import InvalidSetting

PROGRESS_KINDS = ("count", "bytes")


def progress_bar(kind: str = "count") -> Progress:
    """A rich Progress with the columns of `kind`: count (done/total, elapsed, remaining) or bytes.

    Args:
        kind: "count" for items done of total, "bytes" for sizes and transfer speed.

    Returns:
        An unstarted Progress; use it as a context manager.

    Raises:
        InvalidSetting: If `kind` is not one of PROGRESS_KINDS.
    """
    if kind not in PROGRESS_KINDS:
        raise InvalidSetting(f"progress kind {kind!r} is not one of {PROGRESS_KINDS}")
    amount = (MofNCompleteColumn(),) if kind == "count" else (DownloadColumn(), TransferSpeedColumn())
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *amount,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
