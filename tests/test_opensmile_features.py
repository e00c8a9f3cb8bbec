"""openSMILE features (egemaps, compare) and the vector networks (linear, mlp) under SERModule."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_lightning.export import export
from ser_lightning.features import OpenSmileFeatures
from ser_lightning.models import LinearHead, MLPHead
from ser_lightning.train import build, train
from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.jobs import StartupError

from .helpers.configs import compose_train
from .helpers.runs import assert_complete_test_result
from .helpers.scoring import check_eval_and_predict_agree_with_training


def waves(n: int = 2, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    return torch.stack([0.3 * torch.sin(2 * torch.pi * (150 + 50 * i) * t) for i in range(n)])


@pytest.mark.parametrize(
    ("feature_set", "level", "rows"),
    [
        ("egemaps", "functionals", 88),
        ("egemaps", "lld", 25),
        ("compare", "functionals", 6373),
        ("compare", "lld", 65),
    ],
)
def test_shapes_match_output_shape_and_names(feature_set, level, rows):
    extractor = OpenSmileFeatures(feature_set=feature_set, level=level, normalize="none")
    features = extractor.extract(waves())
    assert tuple(features.shape[1:]) == extractor.output_shape(8000)
    assert features.shape[:3] == (2, 1, rows) and len(extractor.names) == rows
    assert (features.shape[-1] == 1) == (level == "functionals")
    assert torch.isfinite(features).all()
    assert extractor.cache_params()["level"] == level


def test_the_cache_fill_matches_extract_whatever_the_worker_count():
    extractor = OpenSmileFeatures(level="functionals", normalize="none", num_workers=2)
    batch = waves(5)
    out = np.zeros((5, *extractor.output_shape(8000)), dtype=np.float32)
    extractor.precompute(batch.numpy(), out, chunk=2)
    np.testing.assert_allclose(out, extractor.extract(batch).numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"normalize": "speaker"},
            "features.normalize=speaker is applied by `python -m ser_lightning.baseline`",
        ),
        ({"normalize": "clip"}, "features.normalize='clip' must be one of"),
        ({"feature_set": "gemaps"}, "features.feature_set='gemaps' must be one of"),
        ({"level": "frames"}, "features.level='frames' must be functionals"),
    ],
)
def test_bad_settings_name_the_setting_and_the_fix(settings, message):
    with pytest.raises(InvalidSetting, match=message.replace("(", r"\(").replace(")", r"\)")):
        OpenSmileFeatures(**settings)


def test_vector_heads_take_vectors_and_pool_frames():
    vector, frames = torch.randn(3, 1, 88, 1), torch.randn(3, 1, 25, 40)
    assert LinearHead((1, 88, 1), 4)(vector).shape == (3, 4)
    assert MLPHead((1, 25, 40), 4, hidden_dims=[8])(frames).shape == (3, 4)
    with pytest.raises(InvalidSetting, match=r"model.net.hidden_dims=\[\] must list"):
        MLPHead((1, 88, 1), 4, hidden_dims=[])


def tone_overrides(root: Path, model: str, features: str) -> list[str]:
    return [
        "data=ravdess",
        f"data.root={root}",
        "data.duration=0.3",
        "data.batch_size=32",
        f"model={model}",
        f"features={features}",
        "trainer.max_epochs=3",
        "logger=csv",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
    ]


@pytest.mark.parametrize(("model", "features"), [("linear", "egemaps"), ("mlp", "egemaps")])
def test_a_vector_network_trains_and_tests_on_functionals(model, features, tone_root, tmp_path):
    cfg = compose_train(tone_overrides(tone_root, model, features), tmp_path / "run", tmp_path / "cache")
    metrics, objects = train(cfg)
    assert_complete_test_result(tmp_path / "run", metrics)
    assert objects["model"].model.input_shape == (1, 88, 1)
    assert type(objects["model"].model.net).__name__ == {"linear": "LinearHead", "mlp": "MLPHead"}[model]
    if model != "linear":
        return
    # downstream unchanged: eval and predict score the checkpoint as the run did, ONNX exports it
    check_eval_and_predict_agree_with_training(
        tmp_path / "run", tone_root, tmp_path / "cache", tmp_path, [], []
    )
    ckpt = json.loads((tmp_path / "run" / "summary.json").read_text())["best_checkpoint"]
    cfg = compose_train(
        [f"ckpt_path={ckpt}", "input=features", "verify_tolerance=0.001"],
        tmp_path / "export",
        config_name="export",
    )
    summary = export(cfg)
    assert summary["parity"]["same_predictions"] and Path(summary["onnx"]).is_file()


def test_speaker_normalisation_stops_a_network_run_at_start_up(tone_root, tmp_path):
    cfg = compose_train(
        tone_overrides(tone_root, "linear", "egemaps") + ["features.normalize=speaker"], tmp_path, tmp_path
    )
    with pytest.raises(StartupError, match="features.normalize=corpus or none"):
        build(cfg)
