"""Every model × features pair of the real configs: one training step, or a clear start-up error."""

from pathlib import Path

import pytest
import torch

from ser_lightning.models import IncompatibleFeaturesError
from ser_lightning.train import build, train
from ser_lightning.utils.jobs import StartupError

from .helpers.configs import compose_train
from .helpers.corpora import copy_subset, small_demo_overrides, subset_overrides
from .helpers.runs import assert_complete_test_result

MODELS = ["acnt", "cnn_bilstm_mha", "crnn_attn", "crnn_attn_mfcc", "cnn2ch", "ssl_head", "ssl_head_emobox"]
FEATURES = ["logmel", "mfcc", "mfcc_mel", "handcrafted68"]
# cnn2ch is a two-channel design; every other pair must train.
INCOMPATIBLE = {("cnn2ch", "logmel"), ("cnn2ch", "mfcc"), ("cnn2ch", "handcrafted68")}
NET_CLASS = {
    "acnt": "ACNT",
    "cnn_bilstm_mha": "CNNBiLSTMMHA",
    "crnn_attn": "CRNNAttention",
    "crnn_attn_mfcc": "CRNNAttention",
    "cnn2ch": "CNN2Ch",
    "ssl_head": "SSLHead",
    "ssl_head_emobox": "EmoBoxHead",
}
FEATURES_CLASS = {"logmel": "LogMel", "mfcc": "MFCC", "mfcc_mel": "MFCCMel", "handcrafted68": "Handcrafted68"}
BATCH = 4
CLIP_SECONDS = 0.5  # short clips keep 28 pairs fast; every extractor and network handles them


def pair_overrides(root: Path, model: str, features: str) -> list[str]:
    """The small demo corpus with short clips (the corpus itself is the session's, unchanged)."""
    data = [o for o in small_demo_overrides(root) if not o.startswith("data.duration=")]
    return data + [f"data.duration={CLIP_SECONDS}", f"model={model}", f"features={features}"]


def root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


@pytest.fixture(scope="module")
def random_clips() -> dict:
    """Features of the same random clips per feature kind (handcrafted68 is slow to extract)."""
    return {}


@pytest.mark.parametrize("features", FEATURES)
@pytest.mark.parametrize("model", MODELS)
def test_every_pair_takes_a_training_step_or_stops_at_build(
    model, features, small_demo_root, tmp_path, random_clips
):
    cfg = compose_train(pair_overrides(small_demo_root, model, features) + ["logger=none"], tmp_path)
    if (model, features) in INCOMPATIBLE:
        with pytest.raises(StartupError) as error:  # what a sweep records as "skipped"
            build(cfg)
        assert isinstance(root_cause(error.value), IncompatibleFeaturesError)
        message = str(error.value)
        assert message.startswith(f"IncompatibleFeaturesError: model {NET_CLASS[model]} ")
        assert f"cannot take features {FEATURES_CLASS[features]} " in message
        assert "2 input channels" in message and "features=mfcc_mel" in message
        return

    module = build(cfg)["model"]
    num_samples = module.model.audio.num_samples
    assert num_samples == int(CLIP_SECONDS * 16000)
    if features not in random_clips:
        waves = 0.1 * torch.randn(BATCH, num_samples, generator=torch.Generator().manual_seed(0))
        random_clips[features] = module.model.features.extract(waves)
    raw = random_clips[features]
    assert tuple(raw.shape[1:]) == module.model.input_shape  # the shape the model sized itself from
    if module.model.features.needs_dataset_stats:
        module.model.features.fit_normalization(raw.numpy())

    module.train()
    optimizer = module.configure_optimizers()["optimizer"]
    before = [p.detach().clone() for p in module.model.net.parameters()]
    logits = module(module.model.features.normalize(raw))
    loss = module.loss(logits, torch.arange(BATCH) % 8)
    loss.backward()
    optimizer.step()
    assert logits.shape == (BATCH, 8) and torch.isfinite(loss)
    changed = sum(not torch.equal(b, p) for b, p in zip(before, module.model.net.parameters(), strict=True))
    assert changed >= len(before) // 2, f"{model} on {features}: only {changed}/{len(before)} tensors updated"


def test_an_incompatible_pair_stops_before_any_audio_is_touched(small_demo_root, tmp_path):
    cfg = compose_train(
        pair_overrides(small_demo_root, "cnn2ch", "logmel"), tmp_path / "run", tmp_path / "cache"
    )
    with pytest.raises(
        StartupError, match=r"^IncompatibleFeaturesError: model CNN2Ch .* cannot take features LogMel"
    ):
        train(cfg)
    assert not (tmp_path / "cache").exists()  # no waveform or feature cache was built


@pytest.fixture(scope="module")
def subset_root(small_demo_root, tmp_path_factory) -> Path:
    return copy_subset(small_demo_root, tmp_path_factory.mktemp("subset") / "ravdess")


# A real fast_dev_run of a pair no seed recipe uses (test_experiments runs the recipes' pairs):
# cnn2ch on the other 2-channel input, MFCC with its Δ as a second channel.
@pytest.mark.parametrize(
    ("model", "features", "extra"),
    [("cnn2ch", "mfcc", ["features.deltas=1", "features.delta_layout=channels"])],
)
def test_real_fast_dev_runs(model, features, extra, subset_root, tmp_path, model_cache):
    cfg = compose_train(
        subset_overrides(subset_root, CLIP_SECONDS)
        + [f"model={model}", f"features={features}", "debug=fdr", *extra],
        tmp_path,
        model_cache,
    )
    metrics, objects = train(cfg)
    assert_complete_test_result(tmp_path, metrics)
    assert type(objects["model"].model.net).__name__ == NET_CLASS[model]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pairs_cache")
