"""A Hydra callback that writes and prints the study report when a multirun ends.

`experiment=emobox_folds` (and any config that adds it under `hydra.callbacks`) turns
`python -m ser_lightning.train -m ...` into one command that trains every fold and ends with
the mean ± std over folds (and the intervals), as `python -m ser_lightning.report SWEEP_DIR`
would print them afterwards.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """On multirun end: `ser_lightning.report` of the sweep folder (`metric`, `title`)."""

    def __init__(self, metric: str = "test/ua", title: str | None = None):
        self.metric = metric
        self.title = title

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        """Build and print the study report of the sweep folder; log an error when none can be built."""
        from ser_lightning.reporting.study import build_report, print_summary

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            written = build_report(sweep_dir, metric=self.metric, title=self.title)
        except (FileNotFoundError, ValueError) as err:  # a sweep whose jobs all failed to start
            log.error("no study report for %s: %s", sweep_dir, err)
            return
        print_summary(sweep_dir, written, self.metric)
