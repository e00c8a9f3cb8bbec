"""The steps of a predict run around the scoring: its settings, timeline mode and its last log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, ListConfig

from ser_lightning.inference.media import InputError
from ser_lightning.inference.results import FilePrediction
from ser_lightning.inference.timeline import TimelineSettings, plot_timeline
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only: predict backend=onnx imports no torch
    from ser_lightning.inference.file_scoring import FileScorer

log = logging.getLogger("ser_lightning.predict")


def input_list(inputs: str | Sequence[str]) -> list[str]:
    """Normalise the `inputs` setting to a list of paths.

    Args:
        inputs: A list (or ListConfig or tuple) of paths, or one path as a string.

    Returns:
        The paths as strings.

    Raises:
        InvalidSetting: If there are none.
    """
    if isinstance(inputs, ListConfig | list | tuple):
        items = [str(i) for i in inputs]
    elif isinstance(inputs, str) and inputs:
        items = [inputs]
    else:
        items = []
    if not items:
        raise InvalidSetting("inputs is empty; pass inputs='[clip.wav,folder/,talk.mp4]' or inputs=clip.wav")
    return items


def check_calibration_option(calibration: object) -> bool:
    """Vet eval's and predict's `calibration`: `checkpoint` (its temperature and sets) or `none` (plain softmax).

    Args:
        calibration: the `calibration` group's node (`{method: ...}`) or a bare method name.

    Returns:
        True for `checkpoint`, False for `none`.

    Raises:
        InvalidSetting: If it is neither (temperature and conformal are fitted by train).
    """
    method = str(calibration if isinstance(calibration, str) else calibration.get("method"))
    if method not in ("checkpoint", "none"):
        raise InvalidSetting(
            f"calibration={method!r} must be checkpoint (the temperature and conformal sets stored in the "
            "checkpoint) or none (plain softmax); temperature and conformal are fitted by train"
        )
    return method == "checkpoint"


def timeline_predictions(
    cfg: DictConfig, predictor: FileScorer, files: list[Path], max_duration_s: float | None
) -> Iterator[FilePrediction | InputError]:
    """Timeline mode: each file's prediction with its speech segments over time, and a plot of each.

    The plots are `timelines/<n>_<name>.png` in the run directory.

    Yields:
        Each file's FilePrediction (with its timeline) or InputError, as it is ready.
    """
    settings = TimelineSettings.from_config(cfg.get("timeline_settings"))
    plots = Path(cfg.paths.output_dir) / "timelines"
    results = predictor.predict_timelines(
        files, settings, hop=cfg.hop, long_clips=cfg.long_clips, max_duration_s=max_duration_s
    )
    for number, (item, wave) in enumerate(results):
        if isinstance(item, FilePrediction) and item.timeline is not None:
            png = plot_timeline(
                item.timeline,
                wave,
                predictor.audio.sample_rate,
                plots / f"{number:03d}_{Path(item.path).stem}.png",
                title=Path(item.path).name,
            )
            log.info("%s: %d speech segments, plot %s", item.path, len(item.timeline.segments), png)
        yield item


def log_summary(results: list[FilePrediction | InputError], seconds: float) -> None:
    """The last lines of the log: how many inputs were scored and failed (and which), and the sets' sizes."""
    failed = [r.path for r in results if isinstance(r, InputError)]
    if failed:
        log.error(
            "scored %d files; %d of %d inputs failed (error rows above; the exit status is 1), e.g. %s; in %.1f s",
            len(results) - len(failed),
            len(failed),
            len(results),
            ", ".join(failed[:3]),
            seconds,
        )
    else:
        log.info("scored %d files, 0 inputs failed, in %.1f s", len(results), seconds)
    sets = [
        r.prediction_set for r in results if isinstance(r, FilePrediction) and r.prediction_set is not None
    ]
    if sets:
        coverage = next(r.set_coverage for r in results if isinstance(r, FilePrediction) and r.set_coverage)
        log.info(
            "conformal sets (%.0f%% coverage): mean size %.2f; %d of %d files have more than one emotion",
            100 * coverage,
            sum(len(s) for s in sets) / len(sets),
            sum(len(s) > 1 for s in sets),
            len(sets),
        )
