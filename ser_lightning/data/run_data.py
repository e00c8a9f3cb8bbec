"""A training run's data before its first step: prepared, its split checked and recorded.

`prepare_for_training` runs the data module's prepare_data and setup("fit") as the trainer
would, lists unusable files in the run folder when they stop the run, lets a resumed checkpoint
check the split, writes the manifest's records, and checks the split for leakage: no speaker
(speaker-independent protocols) and no recording in two splits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ser_lightning.data.leakage import LeakageReport, check_leakage
from ser_lightning.data.quality import UnusableFilesError, write_rejected

if TYPE_CHECKING:
    from ser_lightning.data.datamodule import SERDataModule


def prepare_for_training(
    datamodule: SERDataModule,
    output_dir: str | Path,
    write_records: bool,
    check_split: Callable[[SERDataModule], None] | None = None,
) -> LeakageReport:
    """Prepare a training run's data and check its split, before any training step.

    Args:
        datamodule: the run's data module, not yet set up.
        output_dir: the run folder; unusable files are listed there (rejected_files.csv).
        write_records: whether this process writes the manifest's records (the first one).
        check_split: a check of the split made, run before anything is written (a resumed
            checkpoint's `check_split`); None: none.

    Returns:
        The leakage check of the split.

    Raises:
        UnusableFilesError: the run stops because of unusable files; the message names the
            listing of all of them with their reasons.
        LeakageError: a speaker or recording is in two splits where that is not allowed.
    """
    try:
        datamodule.prepare_data()
        datamodule.setup("fit")
    except UnusableFilesError as err:
        listed = write_rejected(err.rejected, output_dir)
        raise UnusableFilesError(f"{err}\nAll of them, with reasons: {listed}", err.rejected) from None
    if check_split is not None:
        check_split(datamodule)
    if write_records:
        datamodule.manifest.write_records(output_dir)
    return check_leakage(datamodule.manifest, datamodule.arrays.waveforms)
