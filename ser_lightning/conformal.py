"""Conformal prediction sets: a set of emotions that holds the true one with a stated coverage.

Split conformal prediction (Vovk et al. 2005; Angelopoulos & Bates 2021) turns any model's
probabilities into sets with a guarantee that needs no assumption on the model, only that the
calibration clips and the new clips are exchangeable (drawn alike):

- Score each calibration clip by how little probability the model gave its true emotion,
  `s = 1 - p(true emotion)` (the "LAC" score of Sadinle, Lei & Wasserman 2019).
- Take the threshold `q` = the `ceil((n + 1)(1 - alpha))`-th smallest of the n scores.
- A new clip's set holds every emotion whose score would be at most `q`: `p >= 1 - q`.

Then the set holds the true emotion with probability between `1 - alpha` and
`1 - alpha + 1/(n + 1)` (the upper end when scores have no ties), averaged over calibration and
test draws. The score is LAC rather than APS (adaptive prediction sets, which add up the sorted
probabilities): LAC gives the smallest sets on average among sets with the coverage when the
probabilities are right (Sadinle et al.), needs no randomisation to reach its coverage
(non-randomised APS over-covers with larger sets), and is one stored number that any runtime
(ONNX included) applies with one comparison. Its weakness, coverage that is lower on hard
classes or speakers and higher on easy ones, is what the report's per-gender and per-speaker
rows show.

Sets here always hold the most probable emotion: LAC can give an empty set to a clip where no
emotion reaches `1 - q` (a confident model asked for a low coverage), and an empty answer
helps no one. Adding the top emotion only enlarges sets, so the coverage guarantee still holds
(the upper bound may then be passed by the share of such clips).

The calibration clips are the validation split's. Under a speaker-independent split its speakers
are neither training nor test speakers, so calibration and test clips are exchangeable in the
way that matters (unseen speakers); under a random split the validation speakers were heard in
training and the sets are too small for new speakers. The record says which (`fit_conformal`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from ser_lightning.utils.errors import InvalidSetting

# The nonconformity score: 1 - the probability of the true emotion.
SCORE = "lac"
DEFAULT_COVERAGE = 0.9
# Keys of the stored record (inside the calibration record, under `conformal`) and their types.
RECORD_NUMBERS = ("coverage", "threshold", "files", "rank", "coverage_upper_bound")
RECORD_STRINGS = ("score", "fitted_on", "split")
RECORD_COUNTS = ("speakers", "speakers_in_training", "speakers_in_test")


def check_coverage(coverage: float, setting: str = "calibration.coverage") -> float:
    """Vet a coverage: the share of clips whose set must hold the true emotion.

    Args:
        coverage: the wanted coverage, 1 - alpha.
        setting: the setting's name, for the error message.

    Returns:
        The coverage as a float.

    Raises:
        InvalidSetting: If it does not lie strictly between 0 and 1.
    """
    value = float(coverage)
    if not 0.0 < value < 1.0:
        raise InvalidSetting(
            f"{setting}={coverage} must lie strictly between 0 and 1, e.g. 0.9: the share of clips "
            "whose set must hold the true emotion"
        )
    return value


def quantile_rank(n: int, coverage: float) -> int:
    """The rank `ceil((n + 1) * coverage)` of the calibration score that is the threshold.

    A product like 0.9 * 100 that floating point puts a hair above an integer is rounded down
    to that integer first (90.00000000000001 is rank 90, not 91).

    Args:
        n: the number of calibration scores.
        coverage: 1 - alpha.

    Returns:
        The 1-based rank; above `n` when there are too few scores for the coverage.
    """
    return math.ceil(round((n + 1) * coverage, 9))


def minimum_clips(coverage: float) -> int:
    """The fewest calibration clips whose threshold is not 1 (every emotion): n >= coverage / (1 - coverage).

    Args:
        coverage: 1 - alpha.

    Returns:
        The smallest n with `quantile_rank(n, coverage) <= n`.
    """
    return math.ceil(round(coverage / (1.0 - coverage), 9))


def conformal_threshold(scores: ArrayLike, coverage: float) -> float:
    """The split-conformal threshold of calibration `scores` for `coverage`.

    Args:
        scores: the calibration clips' scores, `1 - p(true emotion)`.
        coverage: 1 - alpha.

    Returns:
        The `ceil((n + 1) * coverage)`-th smallest score; 1.0 (every emotion in every set) when
        that rank is above n, i.e. when n < coverage / (1 - coverage).

    Raises:
        InvalidSetting: If there are no scores.
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if len(scores) == 0:
        raise InvalidSetting("conformal calibration needs at least one labelled validation clip")
    rank = quantile_rank(len(scores), check_coverage(coverage))
    return 1.0 if rank > len(scores) else float(scores[rank - 1])


def true_class_scores(probabilities: ArrayLike, y_true: ArrayLike) -> np.ndarray:
    """Return the LAC score of each clip: 1 - the probability of its true emotion."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    return 1.0 - probabilities[np.arange(len(y_true)), y_true]


def prediction_sets(probabilities: ArrayLike, threshold: float, include_top: bool = True) -> np.ndarray:
    """The emotions in each clip's set: those whose probability is at least `1 - threshold`.

    Args:
        probabilities: `(N, K)` (calibrated) probabilities, or one clip's `(K,)`.
        threshold: the conformal threshold (`conformal_threshold`).
        include_top: put the most probable emotion in every set (never an empty set).

    Returns:
        A boolean mask of the shape of `probabilities`: True where the emotion is in the set.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    # the comparison is on scores, as the threshold was computed: 1 - p <= q
    members = (1.0 - probabilities) <= threshold
    if include_top:
        top = probabilities.argmax(axis=-1)
        np.put_along_axis(members, np.expand_dims(top, -1), True, axis=-1)
    return members


def set_labels(members: ArrayLike, labels: list[str], probabilities: ArrayLike) -> list[str]:
    """Name one clip's set, most probable emotion first.

    Args:
        members: the clip's `(K,)` mask from `prediction_sets`.
        labels: the K emotions, in the model's order.
        probabilities: the clip's `(K,)` probabilities, for the order.

    Returns:
        The emotions in the set.
    """
    members = np.asarray(members, dtype=bool)
    order = np.argsort(-np.asarray(probabilities, dtype=np.float64), kind="stable")
    return [labels[k] for k in order if members[k]]


def fit_conformal(
    probabilities: ArrayLike,
    y_true: ArrayLike,
    coverage: float = DEFAULT_COVERAGE,
    speakers: ArrayLike | None = None,
    split: str = "",
    speakers_in_training: int = 0,
    speakers_in_test: int = 0,
) -> dict:
    """Fit the conformal threshold on the validation clips' calibrated probabilities.

    Args:
        probabilities: `(N, K)` calibrated probabilities of the validation clips.
        y_true: their true emotions `(N,)`.
        coverage: the wanted coverage, 1 - alpha.
        speakers: each clip's speaker, to count the calibration speakers (None: not counted).
        split: the split rule's name, recorded.
        speakers_in_training: validation speakers who also speak in the training split.
        speakers_in_test: validation speakers who also speak in the test split.

    Returns:
        The record stored in the checkpoint (`calibration.conformal`): score, coverage,
        threshold, files, rank, the guarantee's upper bound, fitted_on, split and the speaker
        counts.

    Raises:
        InvalidSetting: If the shapes do not line up, there are no clips, or the coverage is
            not in (0, 1).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    if probabilities.ndim != 2 or len(probabilities) != len(y_true) or len(y_true) == 0:
        raise InvalidSetting(
            f"conformal calibration needs one row of probabilities per labelled clip; got "
            f"{probabilities.shape} and {len(y_true)} labels"
        )
    coverage = check_coverage(coverage)
    n = len(y_true)
    return {
        "score": SCORE,
        "coverage": coverage,
        "threshold": conformal_threshold(true_class_scores(probabilities, y_true), coverage),
        "files": int(n),
        "rank": int(quantile_rank(n, coverage)),
        "coverage_upper_bound": min(1.0, coverage + 1.0 / (n + 1)),
        "fitted_on": "val",
        "split": str(split),
        "speakers": int(len(set(np.asarray(speakers).tolist()))) if speakers is not None else 0,
        "speakers_in_training": int(speakers_in_training),
        "speakers_in_test": int(speakers_in_test),
    }


def conformal_of(calibration: dict | None) -> dict | None:
    """Return the conformal record a stored calibration record holds (None without one)."""
    if not calibration:
        return None
    record = calibration.get("conformal")
    return record if isinstance(record, dict) else None


def check_conformal(record: object, where: str = "<checkpoint>") -> None:
    """Vet a stored conformal record: plain numbers and strings of the known keys.

    Args:
        record: `hyper_parameters.calibration.conformal` of a checkpoint.
        where: the checkpoint's name, for the error message.

    Raises:
        InvalidSetting: If it is not a dict of the known keys, its score is not LAC, its
            coverage is not in (0, 1), its threshold not in [0, 1], or a value has the wrong type.
    """
    name = "hyper_parameters.calibration.conformal"
    if not isinstance(record, dict):
        raise InvalidSetting(f"{where!r}: {name}={record!r} must be a mapping")
    known = set(RECORD_NUMBERS) | set(RECORD_STRINGS) | set(RECORD_COUNTS)
    unknown = sorted(set(record) - known)
    if unknown:
        raise InvalidSetting(f"{where!r}: {name} has unknown keys {unknown}; known: {sorted(known)}")
    for key, value in record.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in RECORD_STRINGS and not isinstance(value, str):
            raise InvalidSetting(f"{where!r}: {name}.{key}={value!r} must be a string")
        if key not in RECORD_STRINGS and not (number and math.isfinite(value)):
            raise InvalidSetting(f"{where!r}: {name}.{key}={value!r} must be a finite number")
    if record.get("score") != SCORE:
        raise InvalidSetting(
            f"{where!r}: {name}.score={record.get('score')!r} is refused: only {SCORE!r} is known"
        )
    for key in ("coverage", "threshold"):
        if key not in record:
            raise InvalidSetting(f"{where!r}: {name} lacks {key!r}")
    if not 0.0 < record["coverage"] < 1.0:
        raise InvalidSetting(f"{where!r}: {name}.coverage={record['coverage']!r} must lie in (0, 1)")
    if not 0.0 <= record["threshold"] <= 1.0:
        raise InvalidSetting(f"{where!r}: {name}.threshold={record['threshold']!r} must lie in [0, 1]")
