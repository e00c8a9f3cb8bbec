"""The seed recipes: each experiment composes with its source's values and runs fast_dev_run."""

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.train import train
from ser_lightning.utils.config import CONFIG_DIR

from .helpers.configs import compose_train
from .helpers.corpora import copy_subset, subset_overrides
from .helpers.runs import assert_complete_test_result

# What each recipe must set: dotted config keys, plus the input shape its features produce.
RECIPES = {
    "seed000_acnt": {
        "shape": (1, 40, 174),
        "model.net._target_": "ser_lightning.models.ACNT",
        "model.net.cnn_channels": [16, 32, 64, 128],
        "model.net.use_transformer": True,
        "data.split_ratios": [0.7, 0.15, 0.15],
        "model.scheduler._target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
    },
    "seed001_cnn_bilstm_mha": {
        "shape": (1, 68, 862),
        "model.net._target_": "ser_lightning.models.CNNBiLSTMMHA",
        "features._target_": "ser_lightning.features.Handcrafted68",
        "data.sample_rate": 22050,
        "model.optimizer._target_": "torch.optim.AdamW",
        "model.optimizer.lr": 1e-4,
        "model.optimizer.weight_decay": 1e-3,
        "model.label_smoothing": 0.1,
        "model.scheduler.factor": 0.5,
        "model.scheduler.patience": 10,
        "callbacks.early_stopping.patience": 20,
        "trainer.gradient_clip_val": 1.0,
        "data.batch_size": 16,
        "trainer.max_epochs": 300,
    },
    "seed002_crnn_mfcc": {
        "shape": (1, 40, 94),
        "model.net._target_": "ser_lightning.models.CRNNAttention",
        "model.net.frontend": "conv1d",
        "features._target_": "ser_lightning.features.MFCC",
        "model.scheduler._target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
    },
    "seed003_crnn_logmel": {
        "shape": (1, 128, 300),
        "model.net._target_": "ser_lightning.models.CRNNAttention",
        "model.net.frontend": "conv2d",
        "data.sample_rate": 16000,
        "data.peak_normalize": True,
        "model.class_weights": True,
        "model.optimizer._target_": "torch.optim.Adam",
        "model.optimizer.lr": 1e-3,
        "model.scheduler": None,
        "data.batch_size": 16,
        "trainer.max_epochs": 100,
        "callbacks.early_stopping.patience": 10,
        "callbacks.model_checkpoint.monitor": "val/acc",
    },
    "seed004_cnn2ch": {
        "shape": (2, 40, 94),
        "model.net._target_": "ser_lightning.models.CNN2Ch",
        "features._target_": "ser_lightning.features.MFCCMel",
    },
}


def test_every_experiment_file_is_a_known_recipe():
    # seedNNN_* are the seed recipes; the others are protocols (emobox_folds, tests/test_splits_emobox.py)
    assert sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("seed*.yaml")) == sorted(RECIPES)


@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_experiment_composes_with_its_recipe(experiment):
    cfg = compose_train([f"experiment={experiment}"], Path("/tmp/unused"))
    expected = dict(RECIPES[experiment])
    audio = AudioSettings(cfg.data.sample_rate, cfg.data.duration)
    assert instantiate(cfg.features).output_shape(audio.num_samples) == expected.pop("shape")
    for key, value in expected.items():
        got = OmegaConf.select(cfg, key)
        got = OmegaConf.to_container(got) if OmegaConf.is_config(got) else got
        assert got == (pytest.approx(value) if isinstance(value, float) else value), key
    assert cfg.data.split == "actor"  # speaker-independent unless data.split=random is asked for

    header = (CONFIG_DIR / "experiment" / f"{experiment}.yaml").read_text()
    seed = experiment.split("_")[0]
    assert header.startswith("# @package _global_\n")
    assert "Reproduces:" in header and "Changes:" in header and "data.split=random" in header
    assert f"  - override /augmentation: {seed}\n" in header
    preset = compose_train([f"augmentation={seed}"], Path("/tmp/unused")).augmentation
    assert OmegaConf.to_container(cfg.augmentation) == OmegaConf.to_container(preset)


@pytest.fixture(scope="module")
def subset_root(small_demo_root, tmp_path_factory) -> Path:
    return copy_subset(small_demo_root, tmp_path_factory.mktemp("subset") / "ravdess")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("experiments_cache")


# 862 zero-padded frames through a 3-layer BiLSTM cost seconds per batch on CPU; the recipe's
# shape is checked above, the wiring needs only a short sequence.
FAST_DEV_RUN_EXTRA = {"seed001_cnn_bilstm_mha": ["features.max_len=64"]}


@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_experiment_passes_fast_dev_run(experiment, subset_root, tmp_path, cache_dir):
    """On 48 clips of the small demo corpus (6 actors, one clip per emotion), cut to 0.5 s."""
    overrides = [f"experiment={experiment}", "debug=fdr", *FAST_DEV_RUN_EXTRA.get(experiment, [])]
    cfg = compose_train(subset_overrides(subset_root, 0.5) + overrides, tmp_path, cache_dir)
    metrics, objects = train(cfg)
    assert_complete_test_result(tmp_path, metrics)
    assert objects["model"].hparams.net["_target_"] == RECIPES[experiment]["model.net._target_"]
