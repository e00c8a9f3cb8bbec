"""logger=wandb in offline mode: what a dashboard would show is really logged."""

from __future__ import annotations

from pathlib import Path

import pytest

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.reporting.agreement_intervals import AGREEMENT_SCORES
from ser_lightning.reporting.wandb_logging import finish_wandb, prepare_wandb_config
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import small_demo_overrides


def test_offline_run_logs_config_metrics_and_media(small_demo_root, tmp_path, monkeypatch):
    """A multitask run on the demo corpus (which has simulated annotator votes): the dashboard gets
    the class scores, CCC, r and MAE per dimension, and the test report's agreement scores."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = ["logger=wandb", "debug=limit", "logger.wandb.tags=[test]", "task=multitask"]
    cfg = compose_train(small_demo_overrides(small_demo_root) + overrides, tmp_path, tmp_path / "cache")
    try:
        metrics, objects = train(cfg)
        run = wandb.run
        assert run is not None and run.offline
        assert run.config["model"]["net"]["_target_"].endswith("ACNT")
        assert run.config["data"]["split"] == "actor"
        assert run.summary["test/ua"] == pytest.approx(metrics["test/ua"])
        assert "val/ua_best" in run.summary.keys()
        assert run.tags == ("test",)
        for name in DIMENSIONS:
            assert {f"val/{score}_{name}" for score in ("ccc", "r", "mae")} <= set(run.summary.keys())
            for score in ("ccc", "r", "mae"):
                assert run.summary[f"test/{score}_{name}"] == pytest.approx(metrics[f"test/{score}_{name}"])
        agreement = objects["summary"]["test_results"]["agreement"]
        for name in AGREEMENT_SCORES:
            if agreement[name] is not None:
                assert run.summary[f"test/{name}"] == pytest.approx(agreement[name])
        assert run.summary["test/js_divergence"] == pytest.approx(agreement["js_divergence"])
    finally:
        finish_wandb()
    assert wandb.run is None
    files = next((tmp_path / "wandb").glob("offline-run-*/files"))
    media = {p.parent.name + "/" + p.name.split("_")[0] for p in files.rglob("media/**/*") if p.is_file()}
    assert any(name.startswith("test/spectrograms") for name in media)
    assert any(name.startswith("test/misclassified") for name in media)
    assert any(p.name.startswith("per_class") for p in files.rglob("*.table.json"))
    assert any(p.name.startswith("confusion_matrix") for p in files.rglob("*.table.json"))


def test_without_credentials_wandb_goes_offline_instead_of_prompting(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a wandb login
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    cfg = compose_train(["logger=wandb"], tmp_path)
    assert not cfg.logger.wandb.offline
    prepare_wandb_config(cfg, sweep_name="2026-01-01_00-00-00")
    assert cfg.logger.wandb.offline is True
    assert cfg.logger.wandb.group == "2026-01-01_00-00-00"
    netrc_file = Path(tmp_path / ".netrc")
    netrc_file.write_text("machine api.wandb.ai login user password abc\n")
    netrc_file.chmod(0o600)  # what `wandb login` writes; netrc refuses world-readable passwords
    cfg = compose_train(["logger=wandb"], tmp_path)
    prepare_wandb_config(cfg)
    assert not cfg.logger.wandb.offline and not cfg.logger.wandb.group
