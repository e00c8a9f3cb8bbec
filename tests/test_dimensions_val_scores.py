"""A dimensional run logs CCC, Pearson r and MAE per dimension on the validation split too (W&B, the
CSV logger, the progress bar read them), equal to eval's scores of the same checkpoint on that split."""

from __future__ import annotations

import pytest

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.eval import evaluate
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import small_demo_overrides
from .helpers.models import TINY_TRAINING


@pytest.mark.slow  # a training run and an eval: ~40 s on 2 shared cores
def test_validation_logs_r_and_mae_per_dimension_as_eval_scores_them(small_demo_root, tmp_path):
    # one epoch over the whole validation split: the best checkpoint holds the weights it scored
    overrides = [*TINY_TRAINING, "task=dimensional", "trainer.max_epochs=1", "trainer.limit_val_batches=1.0"]
    metrics, objects = train(
        compose_train(small_demo_overrides(small_demo_root) + overrides, tmp_path / "run", tmp_path / "cache")
    )
    _, summary = evaluate(
        compose_train(
            [
                f"ckpt_path={objects['summary']['best_checkpoint']}",
                "device=cpu",
                "split=val",
                "allow_train_overlap=true",
                f"paths.data_dir={small_demo_root.parent}",
            ],
            tmp_path / "eval",
            tmp_path / "cache",
            config_name="eval",
        )
    )
    scored = summary["dimensions"]
    for name in DIMENSIONS:
        for score in ("ccc", "r", "mae"):
            assert metrics[f"val/{score}_{name}"] == pytest.approx(scored[f"{score}_{name}"], abs=1e-4), score
    assert metrics["val/mae_arousal"] > 0.0  # on the corpus's scale, from a barely trained model
