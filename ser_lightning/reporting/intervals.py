"""Confidence intervals and paired comparisons by resampling speakers, not clips.

Clips of one speaker are not independent draws: a model that fails on one voice fails on most of
its clips. Resampling clips treats 240 clips of 4 speakers as 240 independent trials and gives
intervals far too narrow. Here the unit is the speaker: a bootstrap resample draws the test
speakers with replacement and takes all clips of each drawn speaker (a speaker drawn twice counts
twice). Every score of a resample is the metric of ser_lightning.metrics applied to the summed
confusion matrix of the drawn speakers, so the definitions stay those of the point estimates.

- `speaker_bootstrap`: a percentile interval for UA, WA and macro-F1 of one test report.
- `ScoredRun` / `mean_over_runs_bootstrap`: the mean over runs (folds, seeds) with an interval;
  runs whose test speakers are the same (seed repeats) share each resample, runs with other
  speakers (folds) are resampled within their own speakers (a stratified bootstrap).
- `paired_comparison`: A against B on the same test clips: the difference of the means with a
  paired bootstrap interval (the same speaker draws for A and B) and a two-sided p-value from a
  paired permutation test over speakers (each speaker's predictions swapped between A and B
  with probability 1/2: under "A and B are equally good" every swap is as likely).

Each is seeded: the same inputs and seed give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from ser_lightning.metrics import macro_f1, unweighted_accuracy, weighted_accuracy
from ser_lightning.utils.errors import InvalidSetting

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
# The scores given with an interval, by their key in an evaluation report's metrics.
INTERVAL_SCORES: dict[str, Callable[[np.ndarray], float]] = {
    "ua": unweighted_accuracy,
    "accuracy": weighted_accuracy,
    "macro_f1": macro_f1,
}


@dataclass(frozen=True)
class BootstrapSettings:
    """How intervals are drawn: number of resamples, seed, confidence level."""

    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    confidence: float = CONFIDENCE

    def __post_init__(self):
        if self.resamples < 1:
            raise InvalidSetting(f"bootstrap.resamples={self.resamples} must be at least 1 (1000 is usual)")
        if not 0.0 < self.confidence < 1.0:
            raise InvalidSetting(
                f"bootstrap.confidence={self.confidence} must lie between 0 and 1 (e.g. 0.95)"
            )

    def speaker_record(self, speakers: int) -> dict:
        """The header of a speaker-bootstrap record: how its intervals were drawn.

        Args:
            speakers: the number of speakers drawn from.

        Returns:
            `method`, `resamples`, `seed`, `confidence` and `speakers`.
        """
        return {
            "method": "bootstrap over speakers (all clips of each drawn speaker)",
            "resamples": self.resamples,
            "seed": self.seed,
            "confidence": self.confidence,
            "speakers": speakers,
        }


DEFAULT_BOOTSTRAP = BootstrapSettings()


def speaker_confusions(
    y_true: ArrayLike, y_pred: ArrayLike, speakers: Iterable[object], num_classes: int
) -> tuple[list[str], np.ndarray]:
    """Split the clips' confusion matrix by speaker.

    Args:
        y_true: true label indices, one per clip.
        y_pred: predicted label indices, one per clip.
        speakers: each clip's speaker (compared as strings).
        num_classes: K, the number of labels.

    Returns:
        The sorted speaker ids and each one's confusion matrix `(S, K, K)`.
    """
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    speakers = np.asarray([str(s) for s in speakers])
    ids, index = np.unique(speakers, return_inverse=True)
    confusions = np.zeros((len(ids), num_classes, num_classes), dtype=np.int64)
    np.add.at(confusions, (index, y_true, y_pred), 1)
    return ids.tolist(), confusions


def _percentile_interval(values: np.ndarray, confidence: float) -> list[float]:
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]


def _scores(confusions: np.ndarray, score: Callable[[np.ndarray], float]) -> np.ndarray:
    """Score each matrix of a stack `(B, K, K)`.

    Returns:
        `score` of each matrix, `(B,)` float64.
    """
    return np.array([score(c) for c in confusions], dtype=np.float64)


def _draw_weights(num_speakers: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Draw `resamples` bootstrap resamples of `num_speakers` speakers, S draws with replacement each.

    Returns:
        How often each speaker is drawn in each resample, `(B, S)`.
    """
    return rng.multinomial(num_speakers, np.full(num_speakers, 1.0 / num_speakers), size=resamples)


def speaker_bootstrap(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    speakers: Iterable[object],
    num_classes: int,
    settings: BootstrapSettings = DEFAULT_BOOTSTRAP,
) -> dict:
    """Percentile intervals (95 % by default, `settings.confidence`) of UA, WA and macro-F1 over speakers.

    With a single test speaker there is nothing to resample: the intervals are None and `note`
    says why.

    Args:
        y_true: true label indices, one per clip.
        y_pred: predicted label indices, one per clip.
        speakers: each clip's speaker.
        num_classes: K, the number of labels.
        settings: resamples, seed and confidence level.

    Returns:
        The method, resamples, seed, confidence and number of speakers, with `intervals`
        mapping `ua`, `accuracy` and `macro_f1` to `[low, high]` (or None, with a `note`).
    """
    ids, confusions = speaker_confusions(y_true, y_pred, speakers, num_classes)
    record = settings.speaker_record(len(ids))
    if len(ids) < 2:
        return {
            **record,
            "intervals": {name: None for name in INTERVAL_SCORES},
            "note": "one test speaker: no interval over speakers",
        }
    rng = np.random.default_rng(settings.seed)
    weights = _draw_weights(len(ids), settings.resamples, rng)
    resampled = np.einsum("bs,skl->bkl", weights, confusions)
    return {
        **record,
        "intervals": {
            name: _percentile_interval(_scores(resampled, score), settings.confidence)
            for name, score in INTERVAL_SCORES.items()
        },
    }


# ------------------------------------------------------------------ several runs
@dataclass
class ScoredRun:
    """One run's test predictions: clip ids, true and predicted class, speaker of each clip."""

    name: str
    files: Sequence[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    speakers: Sequence[str]
    num_classes: int
    speaker_ids: list[str] = field(init=False)
    confusions: np.ndarray = field(init=False)  # (S, K, K)

    def __post_init__(self):
        self.speaker_ids, self.confusions = speaker_confusions(
            self.y_true, self.y_pred, self.speakers, self.num_classes
        )

    def score(self, score: Callable[[np.ndarray], float]) -> float:
        """Score the run on all its clips.

        Args:
            score: a metric of a confusion matrix (e.g. `unweighted_accuracy`).

        Returns:
            The metric of the run's summed confusion matrix.
        """
        return float(score(self.confusions.sum(axis=0)))


def _strata(runs: Sequence[ScoredRun]) -> list[tuple[list[str], list[int]]]:
    """Group runs by their set of test speakers.

    Returns:
        One (the speakers, the runs' positions) pair per distinct set of speakers.
    """
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(tuple(run.speaker_ids), []).append(i)
    return [(list(speakers), members) for speakers, members in groups.items()]


def _run_weights(runs: Sequence[ScoredRun], resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Draw the bootstrap resamples of speakers, once per stratum of runs with the same speakers.

    Returns:
        Each run's speaker weights `(B, S_run)`; runs of a stratum share the same array.
    """
    weights: list[np.ndarray | None] = [None] * len(runs)
    for speakers, members in _strata(runs):
        drawn = _draw_weights(len(speakers), resamples, rng)
        for i in members:
            weights[i] = drawn
    return weights  # type: ignore[return-value]


def mean_over_runs_bootstrap(
    runs: Sequence[ScoredRun], settings: BootstrapSettings = DEFAULT_BOOTSTRAP
) -> dict[str, dict]:
    """Per score: the mean over runs and its interval (stratified speaker bootstrap).

    Args:
        runs: the runs (folds, seeds) to average.
        settings: resamples, seed and confidence level.

    Returns:
        For `ua`, `accuracy` and `macro_f1`: `mean` and `interval` (`[low, high]`, or None when
        no run has two test speakers).

    Raises:
        InvalidSetting: when there are no runs.
    """
    if not runs:
        raise InvalidSetting("no runs to score")
    rng = np.random.default_rng(settings.seed)
    weights = _run_weights(runs, settings.resamples, rng)
    out = {}
    for name, score in INTERVAL_SCORES.items():
        point = float(np.mean([run.score(score) for run in runs]))
        draws = np.mean(
            [
                _scores(np.einsum("bs,skl->bkl", w, run.confusions), score)
                for run, w in zip(runs, weights, strict=True)
            ],
            axis=0,
        )
        single = all(len(run.speaker_ids) < 2 for run in runs)
        out[name] = {
            "mean": point,
            "interval": None if single else _percentile_interval(draws, settings.confidence),
        }
    return out


def check_paired(runs_a: Sequence[ScoredRun], runs_b: Sequence[ScoredRun]) -> None:
    """Check that the runs pair up: position by position, the same clips with the same speakers.

    Args:
        runs_a: model A's runs.
        runs_b: model B's runs, in the same order.

    Raises:
        InvalidSetting: when the numbers of runs differ or are 0, or a pair differs in files,
            labels or speakers.
    """
    if len(runs_a) != len(runs_b) or not runs_a:
        raise InvalidSetting(f"a paired comparison needs runs in pairs; got {len(runs_a)} and {len(runs_b)}")
    for a, b in zip(runs_a, runs_b, strict=True):
        same = (
            list(a.files) == list(b.files)
            and np.array_equal(a.y_true, b.y_true)
            and list(a.speakers) == list(b.speakers)
        )
        if not same:
            raise InvalidSetting(
                f"runs {a.name} and {b.name} did not score the same test clips (same files, labels and "
                "speakers in the same order); a paired comparison needs the same folds and split settings"
            )


def paired_comparison(
    runs_a: Sequence[ScoredRun],
    runs_b: Sequence[ScoredRun],
    settings: BootstrapSettings = DEFAULT_BOOTSTRAP,
    permutations: int | None = None,
) -> dict[str, dict]:
    """Compare A with B per score: A minus B over paired runs, with an interval and a p-value.

    The difference is that of the means over paired runs, with its paired bootstrap interval
    and the permutation p-value (two-sided) over speakers.
    Runs are paired by position (same fold, same repeat) and must share their clips. The p-value
    is (1 + #{|permuted difference| >= |observed difference|}) / (1 + permutations): never 0,
    and 1 when A and B predict the same.

    Args:
        runs_a: model A's runs.
        runs_b: model B's runs, paired with `runs_a` by position.
        settings: resamples, seed and confidence level.
        permutations: permutations of the test; `settings.resamples` when None.

    Returns:
        For `ua`, `accuracy` and `macro_f1`: `a`, `b`, `difference`, `interval` and `p_value`.

    Raises:
        InvalidSetting: when the runs do not pair up (see `check_paired`).
    """
    check_paired(runs_a, runs_b)
    permutations = permutations or settings.resamples
    rng = np.random.default_rng(settings.seed)
    weights = _run_weights(runs_a, settings.resamples, rng)
    # one flip per speaker per permutation, shared by runs with the same speakers
    flips: list[np.ndarray | None] = [None] * len(runs_a)
    for speakers, members in _strata(runs_a):
        drawn = rng.integers(0, 2, size=(permutations, len(speakers)))
        for i in members:
            flips[i] = drawn
    out = {}
    for name, score in INTERVAL_SCORES.items():
        mean_a = float(np.mean([r.score(score) for r in runs_a]))
        mean_b = float(np.mean([r.score(score) for r in runs_b]))
        observed = mean_a - mean_b
        boot = np.zeros(settings.resamples)
        permuted = np.zeros(permutations)
        for a, b, w, f in zip(runs_a, runs_b, weights, flips, strict=True):
            boot += _scores(np.einsum("bs,skl->bkl", w, a.confusions), score)
            boot -= _scores(np.einsum("bs,skl->bkl", w, b.confusions), score)
            swapped_a = np.einsum("ps,skl->pkl", 1 - f, a.confusions) + np.einsum(
                "ps,skl->pkl", f, b.confusions
            )
            swapped_b = np.einsum("ps,skl->pkl", f, a.confusions) + np.einsum(
                "ps,skl->pkl", 1 - f, b.confusions
            )
            permuted += _scores(swapped_a, score) - _scores(swapped_b, score)
        boot /= len(runs_a)
        permuted /= len(runs_a)
        # a tolerance: a difference equal to the observed one up to rounding counts as reached
        extreme = np.abs(permuted) >= abs(observed) - 1e-12
        out[name] = {
            "a": mean_a,
            "b": mean_b,
            "difference": observed,
            "interval": _percentile_interval(boot, settings.confidence),
            "p_value": float((1 + extreme.sum()) / (1 + permutations)),
        }
    return out
