"""Scoring a trained run's checkpoint again: eval must give its test report, predict eval's scores."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from .configs import compose_train


def check_eval_and_predict_agree_with_training(
    run: Path,
    data_root: Path,
    cache_dir: Path,
    work: Path,
    eval_overrides: list[str],
    predict_overrides: list[str],
) -> None:
    """`eval` of the run's best checkpoint gives the run's test UA on the same files, and `predict` on
    a test file (cut as training cut it) gives the probabilities eval gave that file."""
    from ser_lightning.eval import evaluate
    from ser_lightning.predict import predict

    ckpt = json.loads((run / "summary.json").read_text())["best_checkpoint"]
    cfg = compose_train(
        [f"ckpt_path={ckpt}", "device=cpu", f"+data.root={data_root}", *eval_overrides],
        work / "eval",
        cache_dir,
        config_name="eval",
    )
    report, eval_summary = evaluate(cfg)
    train_metrics = json.loads((run / "test_report" / "metrics.json").read_text())
    assert report.metrics["ua"] == pytest.approx(train_metrics["ua"], abs=1e-6)
    assert eval_summary["same_test_files_as_training"] is True
    # the same files, labels, split and metrics: eval's protocol card is the training run's
    card = json.loads((run / "summary.json").read_text())["protocol_card"]
    assert eval_summary["protocol_card"] == card == train_metrics["protocol_card"]
    assert json.loads((work / "eval" / "metrics.json").read_text())["protocol_card"] == card

    scored = report.predictions_frame().iloc[0]
    out = io.StringIO()
    predict_cfg = compose_train(
        [
            f"ckpt_path={ckpt}",
            f"inputs={data_root / scored['file']}",
            "device=cpu",
            "output=json",
            "long_clips=crop",
            *predict_overrides,
        ],
        work / "predict",
        config_name="predict",
    )
    results = predict(predict_cfg, stream=out)
    assert len(results) == 1 and not hasattr(results[0], "message")
    row = json.loads(out.getvalue().strip().splitlines()[0])
    assert row["predicted"] == scored["predicted"]
    for name in report.labels:
        assert row["probabilities"][name] == pytest.approx(scored[f"prob_{name}"], abs=1e-5)
