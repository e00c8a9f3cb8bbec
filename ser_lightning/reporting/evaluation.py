"""The evaluation report: metrics, per-class table, confusion matrices and per-file predictions.

One report serves `eval` and the end of `train`. Every number is computed from the report's
confusion matrix by ser_lightning.metrics, the definitions the training metrics use too (so the
report's UA is the `test/ua` and `val/ua` of training); they are scikit-learn's, so they can be
checked against any other tool:

- accuracy (WA): share of files classified correctly;
- unweighted accuracy (UA): mean recall over the emotions present in the true labels
  (`balanced_accuracy_score`), the headline SER metric on imbalanced data;
- macro-F1: mean F1 over the emotions present in the true or predicted labels;
- weighted F1: F1 per emotion weighted by its support.

The per-class table and the confusion matrices list every emotion of the model's label order,
so reports of different runs and corpora line up (absent emotions have support 0, recall 0).

Given the speaker (and gender, intensity) of each clip, the report also holds:
- 95 % intervals of UA, WA and macro-F1 by a bootstrap over speakers (reporting/intervals.py),
  with the number of resamples and the seed;
- calibration: ECE and the reliability table of the probabilities (and of the uncalibrated ones
  when a temperature was applied), drawn as reliability.png;
- breakdowns per gender, speaker and intensity (reporting/breakdowns.py) and the gender gap;
- given a conformal record (`calibration=conformal`), each clip's set of emotions and their
  coverage and size overall, per gender, speaker and emotion (reporting/conformal.py);
- the protocol's note on speakers: whether the test speakers were heard in training, and how
  many test clips have their speaker in the training split.

This module scores the report; `reporting.evaluation_files` writes its files and plots, and
`reporting.evaluation_console` prints it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ser_lightning.conformal import set_labels
from ser_lightning.metrics import (
    calibration_bins,
    confusion_counts,
    expected_calibration_error,
    macro_f1,
    negative_log_likelihood,
    per_class_table,
    unweighted_accuracy,
    weighted_accuracy,
    weighted_f1,
)
from ser_lightning.reporting.breakdowns import breakdown_table, gender_gap
from ser_lightning.reporting.conformal import conformal_summary
from ser_lightning.reporting.dimension_report import DimensionReport
from ser_lightning.reporting.intervals import BootstrapSettings, speaker_bootstrap
from ser_lightning.utils.errors import InvalidSetting

PROBABILITY_PREFIX = "prob_"
# columns of the clip table a report may be given (clip_info), written beside each prediction
CLIP_COLUMNS = ("speaker", "gender", "intensity", "corpus")


@dataclass
class EvaluationReport:
    """Scores of one model on one set of labelled files."""

    labels: list[str]
    files: list[str]
    y_true: np.ndarray  # (N,) label indices
    probabilities: np.ndarray  # (N, K)
    metrics: dict[str, float] = field(default_factory=dict)
    per_class: pd.DataFrame = field(default_factory=pd.DataFrame)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    # speaker, gender, intensity, corpus of each clip (None when the caller had no table)
    clips: pd.DataFrame | None = None
    # the speaker bootstrap: method, resamples, seed, confidence, speakers, intervals per score
    intervals: dict = field(default_factory=dict)
    # temperature applied, ECE (and before calibration), NLL, the reliability table
    calibration: dict = field(default_factory=dict)
    reliability: pd.DataFrame = field(default_factory=pd.DataFrame)
    # scores per gender / speaker / intensity (reporting/breakdowns.py) and the gender gap
    breakdowns: pd.DataFrame = field(default_factory=pd.DataFrame)
    gender_gap: dict | None = None
    # the split's note on speakers (leakage.speaker_note): speaker_independent, test clips whose
    # speaker is in the training split
    speakers: dict = field(default_factory=dict)
    # conformal sets (reporting/conformal.py): the summary, the coverage table, each clip's set
    conformal: dict = field(default_factory=dict)
    conformal_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    prediction_sets: np.ndarray | None = None  # (N, K) bool
    # task=multitask: the scores of arousal, valence and dominance (reporting/dimension_report.py)
    dimensions: DimensionReport | None = None

    @property
    def y_pred(self) -> np.ndarray:
        """The predicted label index of each file: its most probable class."""
        return self.probabilities.argmax(axis=1)

    @property
    def confusion_normalized(self) -> np.ndarray:
        """Rows divided by their support (each row is recall per predicted class); empty rows stay 0."""
        support = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(self.confusion, support, out=np.zeros(self.confusion.shape), where=support > 0)

    def predictions_frame(self) -> pd.DataFrame:
        """Tabulate the per-file predictions, as predictions.csv holds them.

        Returns:
            One row per file: `file`, `true`, `predicted`, `prob_<emotion>` per label, the
            conformal `emotion_set` (emotions joined by `|`) when the report has sets, and the clip
            columns (speaker, gender, intensity, corpus) the report has.
        """
        frame = pd.DataFrame(
            {
                "file": self.files,
                "true": [self.labels[i] for i in self.y_true],
                "predicted": [self.labels[i] for i in self.y_pred],
            }
        )
        for k, name in enumerate(self.labels):
            frame[PROBABILITY_PREFIX + name] = self.probabilities[:, k]
        if self.prediction_sets is not None:
            frame["emotion_set"] = [
                "|".join(set_labels(members, self.labels, probs))
                for members, probs in zip(self.prediction_sets, self.probabilities, strict=True)
            ]
        if self.clips is not None:
            for column in CLIP_COLUMNS:
                if column in self.clips:
                    frame[column] = self.clips[column].astype(str).to_numpy()
        return frame

    def metrics_record(self, title: str = "") -> dict:
        """Assemble what metrics.json holds.

        Args:
            title: the report's title, stored under `title`.

        Returns:
            The scores, plus their intervals, calibration, gender gap and speaker note where the
            report has them.
        """
        record = {"title": title, **self.metrics}
        if self.intervals:
            record["intervals"] = self.intervals
        if self.calibration:
            record["calibration"] = self.calibration
        if self.gender_gap is not None:
            record["gender_gap"] = self.gender_gap
        if self.speakers:
            record["speakers"] = self.speakers
        if self.conformal:
            record["conformal"] = self.conformal
        return record


def evaluation_report(
    files: Sequence[str | os.PathLike[str]],
    y_true: ArrayLike,
    probabilities: ArrayLike,
    labels: Iterable[str],
    clips: pd.DataFrame | None = None,
    bootstrap: BootstrapSettings | None = None,
    uncalibrated_probabilities: ArrayLike | None = None,
    temperature: float | None = None,
    speakers: dict | None = None,
    conformal: dict | None = None,
) -> EvaluationReport:
    """Score predicted class probabilities `(N, K)` against true label indices `(N,)`.

    `clips` (a frame with `speaker` and optionally `gender`, `intensity`, `corpus`, one row per
    file) adds the speaker-bootstrap intervals (`bootstrap` settings, default 1000 resamples,
    seed 0) and the breakdowns. `uncalibrated_probabilities`, given when `temperature` was
    applied to get `probabilities`, add the ECE before calibration. `speakers` is the split's
    note on speakers, carried into the files and the printout.

    Args:
        files: one name or path per item.
        y_true: true label indices `(N,)`.
        probabilities: predicted class probabilities `(N, K)`.
        labels: the K label names, in index order.
        clips: per-file speaker (and gender, intensity, corpus), for intervals and breakdowns.
        bootstrap: resamples and seed of the speaker bootstrap.
        uncalibrated_probabilities: the probabilities before `temperature`, for their ECE and NLL.
        temperature: the temperature that gave `probabilities` (recorded; 1.0 when None).
        speakers: the split's note on speakers.
        conformal: the checkpoint's conformal record (`calibration.conformal`), for the sets of
            emotions and their coverage; None for none.

    Returns:
        The scored report.

    Raises:
        InvalidSetting: when the files, labels and probabilities do not line up, there are no
            files, or `clips` lacks a speaker column or has a different number of rows.
    """
    labels = list(labels)
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if (
        probabilities.ndim != 2
        or probabilities.shape != (len(y_true), len(labels))
        or len(files) != len(y_true)
    ):
        raise InvalidSetting(
            f"evaluation needs one file, label and row of {len(labels)} probabilities per item; got "
            f"{len(files)} files, {len(y_true)} labels, probabilities of shape {probabilities.shape}"
        )
    if len(y_true) == 0:
        raise InvalidSetting("evaluation got no files to score")
    report = EvaluationReport(labels, [str(f) for f in files], y_true, probabilities)
    report.confusion = confusion_counts(y_true, report.y_pred, len(labels))
    report.metrics = {
        "accuracy": weighted_accuracy(report.confusion),
        "ua": unweighted_accuracy(report.confusion),
        "macro_f1": macro_f1(report.confusion),
        "weighted_f1": weighted_f1(report.confusion),
        "num_files": int(len(y_true)),
    }
    report.per_class = per_class_table(report.confusion, labels)
    report.reliability = calibration_bins(probabilities, y_true)
    report.calibration = {
        "temperature": 1.0 if temperature is None else float(temperature),
        "ece": expected_calibration_error(probabilities, y_true),
        "nll": negative_log_likelihood(probabilities, y_true),
        "bins": int(len(report.reliability)),
    }
    if uncalibrated_probabilities is not None:
        uncalibrated = np.asarray(uncalibrated_probabilities, dtype=np.float64)
        report.calibration["ece_uncalibrated"] = expected_calibration_error(uncalibrated, y_true)
        report.calibration["nll_uncalibrated"] = negative_log_likelihood(uncalibrated, y_true)
    if clips is not None:
        clips = clips.reset_index(drop=True)
        if len(clips) != len(y_true) or "speaker" not in clips:
            raise InvalidSetting(
                f"clips must have a speaker column and one row per file; got {list(clips.columns)}"
            )
        report.clips = clips
        report.intervals = speaker_bootstrap(
            y_true, report.y_pred, clips["speaker"], len(labels), bootstrap or BootstrapSettings()
        )
        report.breakdowns = breakdown_table(y_true, report.y_pred, clips, labels)
        report.gender_gap = gender_gap(report.breakdowns)
    report.speakers = dict(speakers or {})
    if conformal:
        report.conformal, report.conformal_table, report.prediction_sets = conformal_summary(
            probabilities, y_true, conformal, report.clips, labels
        )
    return report
