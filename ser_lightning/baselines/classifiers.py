"""The classical classifiers of the baselines, as scikit-learn pipelines, and feature scaling.

`classifier=svm|logreg|random_forest` picks one; every option of its config is a keyword of the
estimator, so Hydra sweeps over them directly (`-m classifier=svm classifier.C=0.1,1,10
classifier.kernel=linear,rbf`). Each pipeline is `[StandardScaler] → classifier`, the scaler
only for `features.normalize=corpus` (statistics of the train split).

The SVM's probabilities come from Platt scaling fitted by internal cross-validation on the
train split (`CalibratedClassifierCV(SVC(...), ensemble=False)`, scikit-learn's replacement of
`SVC(probability=True)`), so that the report's calibration and NLL are defined for every model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ser_lightning.utils.errors import InvalidSetting

CLASSIFIERS = ("svm", "logreg", "random_forest")
NORMALIZE = ("none", "corpus", "speaker")


def build_pipeline(settings: Mapping, normalize: str, seed: int) -> Pipeline:
    """The scikit-learn pipeline of `classifier` settings.

    Args:
        settings: The classifier config: `name` (svm, logreg, random_forest), `calibration_folds`
            for svm, and the estimator's keywords (C, kernel, gamma, max_iter, n_estimators, ...).
        normalize: `features.normalize`; `corpus` puts a StandardScaler first.
        seed: The random state of the estimators that draw (SVM calibration folds, forests).

    Returns:
        The unfitted pipeline, its last step named `classifier`.

    Raises:
        InvalidSetting: If the name is not one of CLASSIFIERS, `normalize` not one of NORMALIZE,
            or a keyword is not one the estimator takes.
    """
    options = dict(settings)
    name = options.pop("name", None)
    if name not in CLASSIFIERS:
        raise InvalidSetting(f"classifier.name={name!r} must be one of {CLASSIFIERS} (classifier=svm, ...)")
    if normalize not in NORMALIZE:
        raise InvalidSetting(f"features.normalize={normalize!r} must be one of {NORMALIZE}")
    try:
        if name == "svm":
            folds = int(options.pop("calibration_folds", 3))
            estimator = CalibratedClassifierCV(
                SVC(random_state=seed, **options), method="sigmoid", cv=folds, ensemble=False
            )
        elif name == "logreg":
            estimator = LogisticRegression(random_state=seed, **options)
        else:
            estimator = RandomForestClassifier(random_state=seed, **options)
    except TypeError as err:
        raise InvalidSetting(
            f"classifier={name}: {err}; remove the option or name one the estimator takes "
            f"(scikit-learn's {name} keywords)"
        ) from None
    steps = [("scale", StandardScaler())] if normalize == "corpus" else []
    return Pipeline([*steps, ("classifier", estimator)])


def speaker_normalize(
    features: np.ndarray, speakers: pd.Series | np.ndarray, eps: float = 1e-8
) -> np.ndarray:
    """Z-score each speaker's clips with that speaker's own mean and standard deviation.

    Every speaker of the table is normalised with the statistics of all its clips, labels unread,
    so test speakers use their own (unlabelled) clips: the common practice, and a protocol
    choice the card records.

    Args:
        features: `(N, D)` one vector per clip.
        speakers: `(N,)` the speaker of each clip.
        eps: Added to each standard deviation (a constant feature becomes zero).

    Returns:
        `(N, D)` float64, each speaker's rows with mean 0 and standard deviation 1 per feature.
    """
    values = np.asarray(features, dtype=np.float64)
    out = np.empty_like(values)
    speakers = np.asarray(speakers).astype(str)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        block = values[rows]
        out[rows] = (block - block.mean(axis=0)) / (block.std(axis=0) + eps)
    return out


def class_probabilities(pipeline: Pipeline, features: np.ndarray, num_classes: int) -> np.ndarray:
    """Probabilities over all `num_classes` labels, zero for those the train split lacked.

    Args:
        pipeline: A fitted pipeline whose classes are label indices.
        features: `(N, D)`.
        num_classes: How many labels the run has.

    Returns:
        `(N, num_classes)` rows summing to 1.
    """
    known = pipeline.predict_proba(features)
    out = np.zeros((len(features), num_classes), dtype=np.float64)
    out[:, np.asarray(pipeline.classes_, dtype=np.int64)] = known
    return out
