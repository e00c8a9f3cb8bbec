"""Scoring new audio with a saved baseline: `BaselineModel.load("model.skops").predict_files([...])`.

The model's `model.json` says how its features were made (the audio settings the clips were
decoded with, the openSMILE feature set); files are decoded and their functionals computed the
same way, then scored by the pipeline. A model trained with `features.normalize=speaker` is
refused: it needs every clip of a speaker to normalise one, which a single file does not give.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.baselines.classifiers import class_probabilities
from ser_lightning.baselines.model_files import load_model
from ser_lightning.data.audio import load_waveform
from ser_lightning.data.variable_length import load_whole, whole_length
from ser_lightning.features.opensmile_features import clip_features
from ser_lightning.utils.errors import InvalidSetting


class BaselineModel:
    """A fitted baseline pipeline with what it needs to score audio files.

    Args:
        pipeline: The fitted scikit-learn pipeline.
        info: Its `model.json`: labels, features config, audio settings, normalize.

    Raises:
        InvalidSetting: If the model was trained with speaker normalisation, or its description
            lacks the audio settings or the features config.
    """

    def __init__(self, pipeline: Any, info: dict):
        missing = [key for key in ("labels", "features", "audio", "normalize") if key not in info]
        if missing:
            raise InvalidSetting(
                f"the model's model.json lacks {missing}; it was written by an older version: run "
                "`python -m ser_lightning.baseline` again to write a model that can score files"
            )
        if info["normalize"] == "speaker":
            raise InvalidSetting(
                "this baseline was trained with features.normalize=speaker, which normalises a clip with all "
                "clips of its speaker; one file cannot be scored so. Train with features.normalize=corpus to "
                "score single files"
            )
        self.pipeline = pipeline
        self.info = info
        self.labels: list[str] = list(info["labels"])
        self.audio = AudioSettings(**info["audio"])

    @classmethod
    def load(cls, path: str | Path) -> BaselineModel:
        """Load `model.skops` (types checked, see `model_files.load_model`) and its `model.json`.

        Returns:
            The model, ready to score files.
        """
        pipeline, info = load_model(path)
        return cls(pipeline, info)

    def probabilities(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Score decoded clips (at the model's sample rate, as its audio settings cut them).

        Args:
            waveforms: One mono float32 clip per item.

        Returns:
            `(N, labels)` class probabilities.
        """
        features = self.info["features"]
        vectors = np.stack(
            [
                clip_features(wave, self.audio.sample_rate, features["feature_set"], "functionals")[:, 0]
                for wave in waveforms
            ]
        )
        return class_probabilities(self.pipeline, vectors.astype(np.float64), len(self.labels))

    def decode(self, path: str | Path) -> np.ndarray:
        """Decode one file as training decoded its clips (rate, crop or whole length, peak level).

        Returns:
            The clip, mono float32.
        """
        if self.audio.whole_clips:
            return load_whole(str(path), self.audio, whole_length(str(path), self.audio))
        return load_waveform(path, self.audio)

    def predict_files(self, paths: Sequence[str | Path]) -> pd.DataFrame:
        """Score audio files.

        Args:
            paths: The files.

        Returns:
            One row per file: `file`, `predicted`, `confidence` and `prob_<label>` per label.
        """
        probabilities = self.probabilities([self.decode(path) for path in paths])
        frame = pd.DataFrame({"file": [str(p) for p in paths]})
        frame["predicted"] = [self.labels[i] for i in probabilities.argmax(axis=1)]
        frame["confidence"] = probabilities.max(axis=1)
        for i, label in enumerate(self.labels):
            frame[f"prob_{label}"] = probabilities[:, i]
        return frame
