"""A run on a tiny pretrained-encoder folder, through the real configs: features=ssl with the
ssl_head model learns on the small demo corpus, and eval and predict score its checkpoint,
which loads the encoder from the same local folder a user's weights would sit in."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import transformers

from ser_lightning.checkpoint import CheckpointError
from ser_lightning.features.ssl import EncoderWeightsMismatch
from ser_lightning.predict import predict
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import small_demo_overrides
from .helpers.scoring import check_eval_and_predict_agree_with_training

# slow set (CI runs it): one 30-epoch training over a tiny encoder serves every test here, minutes on 2 cores
pytestmark = pytest.mark.slow

TINY_WAVLM = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (32,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


@pytest.fixture(scope="module")
def trained(small_demo_root, tmp_path_factory) -> dict:
    """Train once: a randomly initialised tiny WavLM saved with save_pretrained, its frozen hidden
    states (mean and std over time of each of its 3 hidden states) as features, ssl_head on top.

    Measured on this config with 2 torch threads: best validation UA 0.359, test UA 0.281 on the
    2 unseen actors (chance 0.125). A random encoder keeps less of the emotional cues than
    log-mel, so the bar is lower than the log-mel learning test's.
    """
    root = tmp_path_factory.mktemp("ssl_run")
    torch.manual_seed(0)
    transformers.WavLMModel(transformers.WavLMConfig(**TINY_WAVLM)).eval().save_pretrained(
        root / "tiny_wavlm"
    )
    overrides = small_demo_overrides(small_demo_root) + [
        "features=ssl",
        f"features.encoder={root / 'tiny_wavlm'}",
        "features.pooling=mean_std",
        "features.normalization=dataset",
        "model=ssl_head",
        "trainer.max_epochs=30",
        "callbacks.early_stopping.patience=40",
        "logger=csv",
        "seed=1",
    ]
    cfg = compose_train(overrides, root / "run", root / "cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        metrics, objects = train(cfg)
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "metrics": metrics, "objects": objects, "run": root / "run"}


def test_an_ssl_head_on_a_tiny_encoder_learns(trained):
    metrics = trained["metrics"]
    assert metrics["val/ua_best"] >= 0.25, (
        f"best validation UA {metrics['val/ua_best']:.3f} is close to chance"
    )
    assert metrics["test/ua"] >= 0.2, f"test UA {metrics['test/ua']:.3f} is close to chance"
    datamodule = trained["objects"]["datamodule"]
    # (3 hidden states, mean and std of 32 values, one frame), cached in float16
    assert datamodule.arrays.features.shape[1:] == (3, 64, 1)
    assert datamodule.arrays.features.dtype == "float16"
    # the encoder's weights stay out of the checkpoint; its digest is in it
    best = Path(json.loads((trained["run"] / "summary.json").read_text())["best_checkpoint"])
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    assert not [key for key in state if "encoder." in key and "sha256" not in key]
    assert any(key.endswith("encoder_sha256") for key in state)


def test_eval_and_predict_score_an_ssl_checkpoint_as_training_did(trained, small_demo_root, tmp_path):
    # eval: the encoder folder the checkpoint names lies in this machine's models folder, so it is
    # read; predict: the folder lies outside predict's models folder, so the user names it. Eval
    # reads the float16 feature cache, predict computes the features: both are rounded to float16
    # alike (in_cache_precision), so they agree to float32 arithmetic.
    check_eval_and_predict_agree_with_training(
        trained["run"],
        small_demo_root,
        trained["root"] / "cache",
        tmp_path,
        eval_overrides=[f"paths.models_dir={trained['root']}"],
        predict_overrides=[f"encoder={trained['root'] / 'tiny_wavlm'}"],
    )


def test_a_checkpoint_does_not_choose_which_encoder_files_are_read(trained, small_demo_root, tmp_path):
    ckpt = json.loads((trained["run"] / "summary.json").read_text())["best_checkpoint"]
    clip = sorted(small_demo_root.rglob("*.wav"))[0]
    cfg = compose_train(
        [f"ckpt_path={ckpt}", f"inputs={clip}", "device=cpu"], tmp_path, config_name="predict"
    )
    folder = trained["root"] / "tiny_wavlm"
    with pytest.raises(
        CheckpointError, match=rf"features.encoder='{folder}', outside .*models_dir.*encoder={folder}"
    ):
        predict(cfg, stream=io.StringIO())
    # a folder named by the user must hold the weights the checkpoint was trained with
    other = tmp_path / "other_wavlm"
    torch.manual_seed(5)
    transformers.WavLMModel(transformers.WavLMConfig(**TINY_WAVLM)).eval().save_pretrained(other)
    cfg = compose_train(
        [f"ckpt_path={ckpt}", f"inputs={clip}", "device=cpu", f"encoder={other}"],
        tmp_path,
        config_name="predict",
    )
    with pytest.raises(EncoderWeightsMismatch):
        predict(cfg, stream=io.StringIO())
