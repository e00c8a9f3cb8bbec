"""A saved baseline behind the scoring interface of a network, for predict and serve.

`inference.predictor.Predictor` scores windows through the few members of `SERModel` it uses:
`labels`, `audio`, `to`, `eval` and `scores({"waveform": ...})`. `BaselineScorer` gives a
`BaselineModel` (`model.skops` and its `model.json`) those members, so that predict and serve
cut, batch, average and report a baseline's windows with the very code they use for networks:
`python -m ser_lightning.predict ckpt_path=<run>/model.skops` (or the run folder) and
`python -m ser_lightning.serve ckpt_path=...` take either.

Each window is decoded and conditioned as training's clips were (`inference.windows`), its
openSMILE functionals computed, and the pipeline's probabilities returned. A baseline has no
temperature: `calibration=` changes nothing for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ser_lightning.baselines.model_files import MODEL_FILE
from ser_lightning.baselines.prediction import BaselineModel
from ser_lightning.checkpoint_encoder import EncoderFiles

RUN_SUMMARY = "baseline.json"


def baseline_model_file(path: str | Path) -> Path | None:
    """The baseline model a `ckpt_path` names, if it names one.

    Args:
        path: a `model.skops` file (any `.skops` file), or a baseline run folder holding one.

    Returns:
        The `.skops` file, or None when `path` names something else (a network's checkpoint).
    """
    path = Path(path).expanduser()
    if path.suffix == ".skops":
        return path
    if path.is_dir() and (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    return None


class BaselineScorer:
    """A BaselineModel with the scoring members Predictor uses (see the module docstring).

    Args:
        model: the loaded baseline.

    Attributes:
        labels: the class order.
        audio: the audio settings the baseline's clips were decoded with.
        temperature: 1.0; a baseline's probabilities are the pipeline's own.
        calibration: None: no temperature and no conformal sets were fitted.
    """

    temperature = 1.0
    calibration = None

    def __init__(self, model: BaselineModel):
        self.model = model
        self.labels = list(model.labels)
        self.audio = model.audio

    def to(self, device: torch.device | str) -> BaselineScorer:  # noqa: ARG002 (scikit-learn runs on the CPU)
        """Stay on the CPU, where scikit-learn runs; returns itself as `nn.Module.to` does.

        Returns:
            This scorer.
        """
        return self

    def eval(self) -> BaselineScorer:
        """Nothing to switch; returns itself as `nn.Module.eval` does.

        Returns:
            This scorer.
        """
        return self

    def probabilities(self, batch: dict, calibrated: bool = True) -> torch.Tensor:  # noqa: ARG002
        """Class probabilities of a batch of conditioned waveform windows.

        Args:
            batch: `{"waveform": (N, samples)}`, at the model's rate.
            calibrated: ignored: a baseline has no temperature.

        Returns:
            `(N, labels)` float32 probabilities, on the CPU.
        """
        waves = batch["waveform"].detach().cpu().numpy()
        return torch.from_numpy(self.model.probabilities(list(waves)).astype(np.float32))

    def scores(self, batch: dict, calibrated: bool = True) -> tuple[torch.Tensor, None]:
        """What a network's `SERModel.scores` gives, for a baseline: class probabilities, no dimensions.

        Args:
            batch: `{"waveform": (N, samples)}`, at the model's rate.
            calibrated: ignored: a baseline has no temperature.

        Returns:
            `(probabilities (N, labels), None)`.
        """
        return self.probabilities(batch, calibrated), None


def load_scoring_model(path: str | Path, encoder_files: EncoderFiles | None = None) -> Any:
    """Load what predict and serve score with: a baseline (`.skops` or its run folder) or a network.

    Args:
        path: `ckpt_path`: a `.ckpt` written by train, a baseline's `model.skops` or its run folder.
        encoder_files: which pretrained-encoder files a network checkpoint may read.

    Returns:
        A BaselineScorer, or the checkpoint's SERModel.
    """
    found = baseline_model_file(path)
    if found is not None:
        return BaselineScorer(BaselineModel.load(found))
    from ser_lightning.model import SERModel

    return SERModel.load_from_checkpoint(path, encoder_files=encoder_files)


def _fitted_numbers(value: Any, seen: set[int]) -> int:
    # every number a fitted estimator learnt: its arrays (attributes ending in "_"), nested
    # estimators (pipeline steps, calibrated classifiers) included, each object once
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return int(value.size) if value.dtype.kind in "fiu" else 0
    if isinstance(value, list | tuple):
        return sum(_fitted_numbers(v, seen) for v in value)
    if hasattr(value, "get_params"):
        own = [v for k, v in vars(value).items() if k.endswith("_") and not k.startswith("_")]
        steps = [step for _, step in getattr(value, "steps", [])]
        return sum(_fitted_numbers(v, seen) for v in [*own, *steps])
    return 0


def _run_test_metrics(model_file: Path) -> dict | None:
    try:
        test = json.loads((model_file.parent / RUN_SUMMARY).read_text())["metrics"]["test"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    names = {"ua": "ua", "wa": "accuracy", "f1": "macro_f1"}
    found = {key: float(test[name]) for key, name in names.items() if isinstance(test.get(name), int | float)}
    return found or None


def baseline_info(scorer: BaselineScorer, path: str | Path) -> dict:
    """Describe a served baseline as GET /v1/model describes a network.

    Args:
        scorer: the loaded baseline.
        path: its `ckpt_path` (only the file name is shown).

    Returns:
        Labels, audio, features (the openSMILE set), the classifier as `network`, the numbers
        the fitted pipeline holds as `parameters`, the run's test scores and split from its
        baseline.json when it is beside the model.
    """
    model_file = baseline_model_file(path) or Path(path)
    info = scorer.model.info
    features = {k: v for k, v in dict(info.get("features") or {}).items() if not str(k).startswith("_")}
    classifier = (info.get("classifier") or {}).get("name")
    estimator = scorer.model.pipeline.steps[-1][1] if hasattr(scorer.model.pipeline, "steps") else None
    protocol: dict[str, Any] = {"split": None, "sizes": None}
    corpus = None
    try:
        summary = json.loads((model_file.parent / RUN_SUMMARY).read_text())
        card = summary["protocol_card"]
        split = card.get("split") or {}
        protocol = {"split": split.get("protocol") or split.get("name"), "sizes": summary.get("split_sizes")}
        corpus = card.get("corpus")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # a model file copied without its run: described without them
    return {
        "checkpoint": model_file.name,
        "labels": list(scorer.labels),
        "sample_rate": scorer.audio.sample_rate,
        "window_s": scorer.audio.duration,
        "features": {"name": features.get("feature_set"), "normalize": info.get("normalize"), **features},
        "network": f"{classifier or type(estimator).__name__} (baseline)",
        "parameters": _fitted_numbers(scorer.model.pipeline, set()),
        "corpus": corpus,
        "protocol": protocol,
        "test_metrics": _run_test_metrics(model_file),
    }
