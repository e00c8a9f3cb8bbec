"""Calibrated probabilities: temperature scaling, fitted on the validation split, kept in the checkpoint.

A network trained with cross-entropy is usually over-confident: of the clips it gives 90 %, far
fewer than 90 % are right. Temperature scaling (Guo et al., 2017) divides the logits by one number
T fitted to minimise the negative log-likelihood of the validation split. It changes no prediction
(the order of the logits is kept), only how confident the probabilities are.

`probabilities(logits, temperature)` is the one function that turns logits into probabilities:
the test stage (ReportCollector), eval, predict and everything built on the Predictor call it.
The temperature travels in the checkpoint's hyper-parameters as plain data,
`calibration: {method: temperature, temperature: T, ...}` (vetted on loading by
`check_calibration`); a checkpoint without it has T = 1. `calibration=conformal` adds a
conformal record under `conformal` (`ser_lightning.conformal`): the threshold of the sets of
emotions, fitted on the same validation clips' calibrated probabilities.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ser_lightning.conformal import check_conformal
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # the torch form is imported where it runs: the ONNX backend loads no torch
    import torch

# temperature; conformal: the temperature and a conformal threshold (ser_lightning.conformal)
CALIBRATION_METHODS = ("temperature", "conformal", "none")
# The answer of predict for a clip whose top probability is below min_confidence.
UNCERTAIN = "uncertain"
# The range searched for T (log-space); outside it the validation set says more about itself
# than about calibration.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Return softmax(logits / temperature) over the last axis, in float32 whatever the logits' precision."""
    import torch

    return torch.softmax(logits.float() / float(temperature), dim=-1)


def probabilities_numpy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The numpy form of `probabilities`, for the torch-free ONNX backend.

    Returns:
        softmax(logits / temperature) over the last axis, float32.
    """
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    scaled = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return (scaled / scaled.sum(axis=-1, keepdims=True)).astype(np.float32)


def _nll(logits: np.ndarray, y_true: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    return float((log_norm - scaled[np.arange(len(y_true)), y_true]).mean())


def fit_temperature(logits, y_true) -> dict:
    """The temperature minimising the NLL of `logits` `(N, K)` for the true classes `(N,)`.

    T is searched in log-space within TEMPERATURE_BOUNDS.

    Returns:
        The calibration record stored in the checkpoint: method, temperature, `fitted_on`,
        the number of validation files and their NLL before and after.

    Raises:
        InvalidSetting: If `logits` is not 2-D with one row per label, or there are no labels.
    """
    from scipy.optimize import minimize_scalar  # only training fits; loading a model must not import scipy

    logits = np.asarray(logits, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(y_true) or len(y_true) == 0:
        raise InvalidSetting(
            f"temperature scaling needs one row of logits per labelled file; got logits {logits.shape}, "
            f"{len(y_true)} labels"
        )
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        lambda log_t: _nll(logits, y_true, math.exp(log_t)), bounds=(low, high), method="bounded"
    )
    temperature = float(math.exp(result.x))
    return {
        "method": "temperature",
        "temperature": temperature,
        "fitted_on": "val",
        "files": int(len(y_true)),
        "nll_before": _nll(logits, y_true, 1.0),
        "nll_after": _nll(logits, y_true, temperature),
    }


def temperature_of(calibration: dict | None) -> float:
    """Return the temperature a stored calibration record applies (1 without one)."""
    if not calibration or calibration.get("method") != "temperature":
        return 1.0
    return float(calibration["temperature"])


def check_calibration(calibration: object, where: str = "<checkpoint>") -> None:
    """Vet a stored calibration record: None, or a temperature record of plain values.

    Accepted: None or {method: temperature, temperature: a positive finite number, ...plain
    numbers and strings, and optionally conformal: a record `check_conformal` accepts};
    anything else is refused.

    Args:
        calibration: The record from a checkpoint's hyper-parameters.
        where: The checkpoint's name, for the error message.

    Raises:
        InvalidSetting: If the record is not a temperature record, its temperature is not a
            positive finite number, a value is not a plain number or string, or its conformal
            record is refused.
    """
    if calibration is None:
        return
    if not isinstance(calibration, dict) or calibration.get("method") != "temperature":
        raise InvalidSetting(
            f"{where!r}: hyper_parameters.calibration={calibration!r} is refused: it must be null or "
            "{method: temperature, temperature: T}"
        )
    temperature = calibration.get("temperature")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not (math.isfinite(temperature) and temperature > 0)
    ):
        raise InvalidSetting(
            f"{where!r}: hyper_parameters.calibration.temperature={temperature!r} must be a positive finite number"
        )
    for key, value in calibration.items():
        if key == "conformal":
            check_conformal(value, where)
        elif not isinstance(value, str | int | float | None):
            raise InvalidSetting(
                f"{where!r}: hyper_parameters.calibration.{key} must be a plain number or string"
            )


def check_min_confidence(min_confidence: float) -> float:
    """Vet `min_confidence`: below it predict answers "uncertain"; 0 always answers an emotion.

    Returns:
        The value as a float.

    Raises:
        InvalidSetting: If it does not lie in [0, 1).
    """
    value = float(min_confidence)
    if not 0.0 <= value < 1.0:
        raise InvalidSetting(
            f"min_confidence={min_confidence} must lie in [0, 1): below it predict answers {UNCERTAIN!r} "
            "(0 never does)"
        )
    return value
