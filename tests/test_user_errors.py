"""User mistakes end with their message alone; tracebacks are for bugs (HYDRA_FULL_ERROR=1 shows them).

Every test runs the real entry point in a subprocess, the way a user meets it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ser_lightning.data.splits import check_ratios
from ser_lightning.utils.errors import exits_on_user_mistake

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, full_error: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def assert_message_alone(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    # the output ends with the message: nothing comes after it
    assert "error: " in result.stderr, result.stderr[-3000:]
    assert message in result.stderr[result.stderr.rindex("error: ") :], result.stderr[-3000:]


def hydra_outputs(tmp_path: Path) -> list[str]:
    return [f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"]


def test_a_missing_data_root_is_one_message_before_anything_is_built(tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    result = run_module(
        "ser_lightning.train", "data=ravdess", f"data.root={missing}", *hydra_outputs(tmp_path)
    )
    assert_message_alone(result, f"RAVDESS folder '{missing}' does not exist")
    assert "python -m ser_lightning.data.download ravdess" in result.stderr  # where to get it
    # no config tree, no trainer banners, no cache: the check comes before all of them
    assert "CONFIG" not in result.stdout and "GPU available" not in result.stderr
    assert not (tmp_path / "cache").exists()


def test_hydra_full_error_still_shows_the_traceback(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_module(
        "ser_lightning.train",
        "data=ravdess",
        f"data.root={missing}",
        *hydra_outputs(tmp_path),
        full_error=True,
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "FileNotFoundError" in result.stderr


def test_an_impossible_model_and_features_pair_is_one_message(tmp_path):
    result = run_module(
        "ser_lightning.train",
        "model=cnn2ch",
        "features=logmel",
        "print_config=false",
        f"paths.data_dir={tmp_path / 'data'}",
        *hydra_outputs(tmp_path),
    )
    assert_message_alone(result, "IncompatibleFeaturesError: model CNN2Ch")
    assert "features=mfcc_mel" in result.stderr  # the fix


@pytest.fixture
def not_a_checkpoint(tmp_path) -> Path:
    path = tmp_path / "notes.ckpt"
    path.write_text("these are notes, not a checkpoint\n")
    return path


@pytest.mark.parametrize("module", ["ser_lightning.eval", "ser_lightning.predict"])
def test_a_file_that_is_not_a_checkpoint_is_one_message(module, not_a_checkpoint, tmp_path):
    args = [f"ckpt_path={not_a_checkpoint}", f"hydra.run.dir={tmp_path / 'run'}"]
    if module == "ser_lightning.predict":
        args.append(f"inputs={tmp_path}")
    result = run_module(module, *args)
    assert_message_alone(result, f"'{not_a_checkpoint}' is not a readable PyTorch checkpoint")


def test_a_value_the_project_refuses_is_one_message(tmp_path):
    result = run_module(
        "ser_lightning.export", "ckpt_path=any.ckpt", "format=tflite", f"hydra.run.dir={tmp_path}"
    )
    assert_message_alone(result, "format='tflite' is not supported; choose from ('onnx',)")


def test_a_missing_checkpoint_to_resume_is_one_message(tmp_path):
    missing = tmp_path / "gone.ckpt"
    result = run_module("ser_lightning.train", f"ckpt_path={missing}", *hydra_outputs(tmp_path))
    assert_message_alone(result, f"ckpt_path='{missing}' does not exist")


def test_a_missing_sweep_folder_for_the_report_is_one_message(tmp_path):
    result = run_module("ser_lightning.report", str(tmp_path / "no_sweep"))
    assert_message_alone(result, f"sweep directory '{tmp_path / 'no_sweep'}' does not exist")
    assert not (tmp_path / "no_sweep").exists()  # not created as the report's folder either


def test_a_value_refused_by_the_project_exits_with_its_message_alone(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    @exits_on_user_mistake
    def main():
        check_ratios([0.5, 0.5, 0.5])

    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 1
    assert capsys.readouterr().err.startswith("error: data.split_ratios=[0.5, 0.5, 0.5] must be")


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A ValueError no `raise` of ser_lightning made is a bug, not a user mistake: here float() on a
    line of check_ratios that is not its `raise` (it converts before it validates)."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    @exits_on_user_mistake
    def main():
        check_ratios(["a", 0.5, 0.5])

    with pytest.raises(ValueError, match="could not convert string to float"):
        main()


def test_every_error_the_user_must_fix_is_a_user_error():
    """One base class tells user mistakes from bugs; the class decides, not where it was raised."""
    from ser_lightning.checkpoint import CheckpointError
    from ser_lightning.data.download import DownloadError
    from ser_lightning.data.leakage import LeakageError
    from ser_lightning.data.quality import UnusableFilesError
    from ser_lightning.decoding import AudioDecodeError
    from ser_lightning.features.ssl import EncoderWeightsMismatch, MissingEncoderWeights
    from ser_lightning.inference.media import MediaTooLongError
    from ser_lightning.models.requirements import IncompatibleFeaturesError
    from ser_lightning.nonfinite_loss import NonFiniteLossError
    from ser_lightning.resume import ResumeError
    from ser_lightning.utils.errors import InvalidSetting, UserError, user_mistake

    for kind in (
        CheckpointError,
        DownloadError,
        LeakageError,
        UnusableFilesError,
        AudioDecodeError,
        EncoderWeightsMismatch,
        MissingEncoderWeights,
        MediaTooLongError,
        IncompatibleFeaturesError,
        NonFiniteLossError,
        InvalidSetting,
        ResumeError,
    ):
        assert issubclass(kind, UserError), kind
    refused = InvalidSetting("data.batch_size=-4 must be at least 1")
    assert isinstance(refused, ValueError)  # callers that catch ValueError keep working
    wrapped = RuntimeError("while building the data module")
    wrapped.__cause__ = refused
    assert user_mistake(wrapped) is refused
    assert user_mistake(ValueError("could not convert string to float: 'a'")) is None
