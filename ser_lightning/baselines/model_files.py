"""Baseline models on disk: skops files, whose loading builds only types checked against a list.

A pickle runs whatever code its file names when it is loaded; a skops file is data. Loading asks
skops which types the file would build beyond those it trusts by default (numpy arrays, the
common scikit-learn estimators) and refuses the file unless every one of them is in
`TRUSTED_TYPES`, the few more that the baselines' own pipelines need. A file that names any other
type stops with the types listed, before anything is built.

Beside each `model.skops` a `model.json` keeps what a caller needs to use it: the label order,
the features config, the feature names, `features.normalize` and the audio settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import skops.io as sio

from ser_lightning.utils.errors import InvalidSetting

# The types beyond skops' defaults that the baselines' pipelines contain: the SVM's Platt
# calibration and the random forest's trees.
TRUSTED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.tree._tree.Tree",
)
MODEL_FILE = "model.skops"
INFO_FILE = "model.json"


def save_model(pipeline: Any, directory: str | Path, info: dict) -> Path:
    """Write a fitted pipeline as `model.skops` and its description as `model.json`.

    Args:
        pipeline: The fitted scikit-learn pipeline.
        directory: The run folder.
        info: Plain values: labels, features config, feature names, normalize.

    Returns:
        The path of the skops file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MODEL_FILE
    sio.dump(pipeline, path)
    (directory / INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
    return path


def load_model(path: str | Path) -> tuple[Any, dict]:
    """Load a baseline model written by `save_model`, checking the types it builds first.

    Args:
        path: The `model.skops` file (its `model.json` is read from the same folder).

    Returns:
        The pipeline and its description.

    Raises:
        InvalidSetting: If the file is missing, or would build a type outside skops' defaults and
            TRUSTED_TYPES (the message lists them; nothing was loaded).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidSetting(f"model file {path} does not exist; give the model.skops of a baseline run")
    untrusted = sio.get_untrusted_types(file=path)
    unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unknown:
        raise InvalidSetting(
            f"{path} would build types that are not trusted: {unknown}; it was not loaded. Only files "
            "written by `python -m ser_lightning.baseline` (scikit-learn pipelines) are loaded"
        )
    pipeline = sio.load(path, trusted=list(untrusted))
    info_path = path.with_name(INFO_FILE)
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return pipeline, info
