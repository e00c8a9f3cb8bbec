"""A tiny model trained once on the small demo corpus, then evaluated, used to predict and exported.

The model is trained for a few batches (it is barely better than chance): these tests check that
train, eval, predict and export agree with each other on the same files, not its accuracy.
"""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from ser_lightning.checkpoint import CHECKPOINT_FORMAT_VERSION, RECORD_KEY, read_checkpoint
from ser_lightning.data.audio import load_waveform
from ser_lightning.data.evaluation_data import eval_data_config
from ser_lightning.eval import evaluate
from ser_lightning.inference.onnx_export import compare_with_torch, export_onnx, onnx_session
from ser_lightning.inference.predictor import Predictor
from ser_lightning.labels import EMOTIONS
from ser_lightning.model import SERModel
from ser_lightning.predict import predict
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import small_demo_overrides
from .helpers.models import TINY_TRAINING as TINY_ACNT_TRAINING
from .helpers.video import write_video

REPO = Path(__file__).resolve().parents[1]
PROBABILITIES = [f"prob_{e}" for e in EMOTIONS]
# the whole test split, so the report can be compared with it
TINY_TRAINING = [*TINY_ACNT_TRAINING, "trainer.limit_test_batches=1.0"]


@pytest.fixture(scope="module")
def trained(small_demo_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("inference_train")
    cache_dir = tmp_path_factory.mktemp("inference_cache")
    cfg = compose_train(small_demo_overrides(small_demo_root) + TINY_TRAINING, run_dir, cache_dir)
    metrics, objects = train(cfg)
    ckpt = Path(objects["summary"]["best_checkpoint"])
    return SimpleNamespace(
        ckpt=ckpt,
        run_dir=run_dir,
        cache_dir=cache_dir,
        metrics=metrics,
        root=small_demo_root,
        model=SERModel.load_from_checkpoint(ckpt),
    )


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):
    """`eval ckpt_path=...` with nothing else: the checkpoint's own test split."""
    run_dir = tmp_path_factory.mktemp("inference_eval")
    report, summary = evaluate(
        compose_train(
            [f"ckpt_path={trained.ckpt}", "device=cpu", *this_machine(trained)], run_dir, config_name="eval"
        )
    )
    return SimpleNamespace(
        report=report, summary=summary, run_dir=run_dir, predictions=pd.read_csv(run_dir / "predictions.csv")
    )


def this_machine(trained) -> list[str]:
    """The paths of the machine that trained: its data folder holds the corpus, its cache the features."""
    return [f"paths.data_dir={trained.root.parent}", f"paths.cache_dir={trained.cache_dir}"]


def run_predict(trained, tmp_path, inputs, *overrides):
    cfg = compose_train(
        [f"ckpt_path={trained.ckpt}", "inputs=[]", "device=cpu", *overrides], tmp_path, config_name="predict"
    )
    cfg.inputs = [str(p) for p in inputs]
    stream = io.StringIO()
    results = predict(cfg, stream=stream)
    return results, stream.getvalue()


def test_training_leaves_a_self_contained_checkpoint_and_a_test_report(trained):
    checkpoint = read_checkpoint(trained.ckpt)
    record = checkpoint[RECORD_KEY]
    assert record["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert "_target_" not in record["data"]  # plain settings, which eval hands to build_data_module
    assert record["data"]["root"] == str(trained.root.resolve()) and record["data"]["split"] == "actor"
    assert record["split"]["name"] == "actor" and record["split"]["sizes"]["test"] == 120
    hparams = checkpoint["hyper_parameters"]
    assert hparams["labels"] == list(EMOTIONS) and hparams["audio"]["duration"] == 1.5

    report = json.loads((trained.run_dir / "test_report" / "metrics.json").read_text())
    assert report["num_files"] == 120
    # the report equals what trainer.test logged: one definition of each metric (ser_lightning.metrics)
    assert report["accuracy"] == pytest.approx(trained.metrics["test/acc"], abs=1e-6)
    assert report["ua"] == pytest.approx(trained.metrics["test/ua"], abs=1e-6)
    assert report["macro_f1"] == pytest.approx(trained.metrics["test/f1"], abs=1e-6)
    # the run summary's per-class recall and confusion matrix are the report's too
    per_class = pd.read_csv(trained.run_dir / "test_report" / "per_class.csv", index_col=0)
    counts = pd.read_csv(trained.run_dir / "test_report" / "confusion_matrix.csv", index_col=0)
    results = json.loads((trained.run_dir / "summary.json").read_text())["test_results"]
    assert results["confusion_matrix"] == counts.to_numpy().tolist() and counts.to_numpy().sum() == 120
    assert list(results["per_class_recall"]) == list(EMOTIONS)
    for emotion in EMOTIONS:
        recall = per_class.loc[emotion, "recall"]
        assert results["per_class_recall"][emotion] == pytest.approx(recall, abs=1e-12)
        assert trained.metrics[f"test/recall_{emotion}"] == pytest.approx(recall, abs=1e-6)


def test_eval_scores_the_checkpoints_own_test_split(trained, evaluated):
    summary, predictions = evaluated.summary, evaluated.predictions
    assert summary["data_source"] == "checkpoint" and summary["split_method"] == "actor"
    assert summary["same_test_files_as_training"] is True
    for name in (
        "metrics.json",
        "per_class.csv",
        "confusion_matrix.csv",
        "confusion_matrix_normalized.csv",
        "confusion_matrix.png",
        "predictions.csv",
        "eval.json",
        "split.csv",
    ):
        assert (evaluated.run_dir / name).is_file(), name

    # metrics equal sklearn's on the predictions file eval wrote
    y_true, y_pred = predictions["true"], predictions["predicted"]
    metrics = json.loads((evaluated.run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    counts = pd.read_csv(evaluated.run_dir / "confusion_matrix.csv", index_col=0)
    np.testing.assert_array_equal(counts.to_numpy(), confusion_matrix(y_true, y_pred, labels=list(EMOTIONS)))
    probabilities = predictions[PROBABILITIES].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (np.array(EMOTIONS)[probabilities.argmax(axis=1)] == y_pred).all()

    # the same files, scores and metrics as the report at the end of training
    at_training = pd.read_csv(trained.run_dir / "test_report" / "predictions.csv")
    assert at_training["file"].tolist() == predictions["file"].tolist()
    assert len(set(predictions["file"])) == 120
    np.testing.assert_allclose(at_training[PROBABILITIES], probabilities, atol=1e-5)
    assert at_training["predicted"].tolist() == y_pred.tolist()
    trained_metrics = json.loads((trained.run_dir / "test_report" / "metrics.json").read_text())
    for name in ("accuracy", "ua", "macro_f1", "weighted_f1", "num_files"):
        assert metrics[name] == pytest.approx(trained_metrics[name], abs=1e-12), name


def test_eval_scores_every_file_of_a_foreign_corpus(trained, evaluated, tmp_path):
    """Two actors without calm and surprised: they cannot be split by actor, and lack two of the
    model's emotions; split=all scores all their files with the model's class indices."""
    folder = tmp_path / "two_actors"
    kept = [f for f in evaluated.predictions["file"] if f.split("-")[2] not in ("02", "08")]  # RAVDESS codes
    for name in kept:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(trained.root / name, folder / name)
    run_dir = tmp_path / "run"
    report, summary = evaluate(
        compose_train(
            [f"ckpt_path={trained.ckpt}", "data=ravdess", f"data.root={folder}", "split=all", "device=cpu"],
            run_dir,
            trained.cache_dir,
            config_name="eval",
        )
    )
    assert summary["data_source"] == "command line" and summary["split_method"] == "test_only"
    assert report.metrics["num_files"] == len(kept) == 120 - 32
    assert report.per_class.loc["calm", "support"] == 0 and report.per_class.loc["surprised", "support"] == 0
    assert report.labels == list(EMOTIONS)
    foreign = pd.read_csv(run_dir / "predictions.csv").set_index("file")
    own = evaluated.predictions.set_index("file").loc[kept]
    assert (foreign.loc[kept, "true"] == own["true"]).all()
    np.testing.assert_allclose(foreign.loc[kept, PROBABILITIES], own[PROBABILITIES], atol=1e-5)


def test_predict_agrees_with_eval_on_the_same_files(trained, evaluated, tmp_path):
    files = [trained.root / f for f in evaluated.predictions["file"]]
    own = evaluated.predictions.set_index("file")

    # crop: one window cut as training cut it, the very input eval scores
    _, text = run_predict(trained, tmp_path / "crop", files, "output=csv", "long_clips=crop")
    cropped = pd.read_csv(io.StringIO(text))
    cropped["file"] = [str(Path(p).relative_to(trained.root)) for p in cropped["file"]]
    cropped = cropped.set_index("file")
    np.testing.assert_allclose(cropped.loc[own.index, PROBABILITIES], own[PROBABILITIES], atol=1e-5)
    assert (cropped.loc[own.index, "predicted"] == own["predicted"]).all()

    # windows (the default): clips that fit the 1.5 s window are scored exactly as eval scores them;
    # longer ones are the mean of their windows
    results, _ = run_predict(trained, tmp_path / "windows", files, "output=csv", "per_window=true")
    fits = [r for r in results if r.duration <= 1.5]
    longer = [r for r in results if r.duration > 1.5]
    assert fits and longer
    for r in fits:
        assert len(r.window_probabilities) == 1
        np.testing.assert_allclose(
            r.probabilities,
            own.loc[str(Path(r.path).relative_to(trained.root)), PROBABILITIES].to_numpy(dtype=float),
            atol=1e-5,
        )
    for r in longer:
        assert len(r.window_probabilities) == 2
        np.testing.assert_allclose(r.probabilities, r.window_probabilities.mean(axis=0), atol=1e-6)
    saved = pd.read_csv(tmp_path / "windows" / "predictions.csv")  # the copy in the run directory
    assert len(saved[saved["window"].isna()]) == len(files)


def test_long_recordings_are_scored_window_by_window(trained, tmp_path):
    clips = sorted((trained.root / "Actor_01").glob("*.wav"))[:3]
    recording = np.concatenate([sf.read(c, dtype="float32")[0] for c in clips])
    sf.write(tmp_path / "long.wav", recording, 16000)
    results, text = run_predict(trained, tmp_path, [tmp_path / "long.wav"], "per_window=true")
    (result,) = results
    spans = result.window_spans
    assert len(spans) >= 4 and spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(len(recording) / 16000)
    # each window's scores are the model's scores of that stretch of the peak-normalised recording
    normalised = recording / np.abs(recording).max()
    starts = [int(round(start * 16000)) for start, _ in spans]
    windows = np.stack([normalised[s : s + 24000] for s in starts])
    expected = Predictor(trained.model, device="cpu").waveform_probabilities(windows)
    np.testing.assert_allclose(result.window_probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(result.probabilities, expected.mean(axis=0), atol=1e-5)
    lines = text.splitlines()
    assert lines[1] == f"Predicted emotion: {result.predicted} ({100 * result.confidence:.1f}%)"
    assert lines[2] == "  " + "  ".join(
        f"{e} {100 * p:.1f}%" for e, p in zip(EMOTIONS, result.probabilities, strict=True)
    )
    assert len(lines) == 3 + len(spans)


def test_a_video_predicts_what_its_audio_predicts(trained, evaluated, tmp_path):
    # the clip the model is surest about, so that lossy AAC coding cannot tip the balance
    probabilities = evaluated.predictions[PROBABILITIES].to_numpy()
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    clip = trained.root / evaluated.predictions["file"][int(np.argmax(top2[:, 1] - top2[:, 0]))]
    wave, rate = sf.read(clip, dtype="float32")
    mp4 = write_video(tmp_path / "talk.mp4", wave, rate, audio_codec="aac")
    mkv = write_video(tmp_path / "talk.mkv", wave, rate, audio_codec="flac")
    results, _ = run_predict(trained, tmp_path, [clip, mp4, mkv], "output=json")
    audio, from_mp4, from_mkv = results
    assert from_mp4.predicted == audio.predicted
    np.testing.assert_allclose(from_mkv.probabilities, audio.probabilities, atol=1e-5)  # lossless track


def test_the_cli_prints_json_and_reports_unreadable_inputs(trained, tmp_path):
    clips = sorted((trained.root / "Actor_02").glob("*.wav"))[:2]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    missing = tmp_path / "missing.mp3"
    inputs = ",".join(str(p) for p in [clips[0], broken, missing, clips[1]])
    env = dict(os.environ, SER_LIGHTNING_ROOT=str(tmp_path))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ser_lightning.predict",
            f"ckpt_path={trained.ckpt}",
            f"inputs=[{inputs}]",
            "output=json",
            "device=cpu",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr  # some inputs failed
    records = [json.loads(line) for line in done.stdout.splitlines()]  # stdout is JSON alone
    by_file = {Path(r["file"]).name: r for r in records}
    assert set(by_file) == {clips[0].name, clips[1].name, "broken.wav", "missing.mp3"}
    assert "does not exist" in by_file["missing.mp3"]["error"]
    assert (
        "cannot decode" in by_file["broken.wav"]["error"] and "broken.wav" in by_file["broken.wav"]["error"]
    )
    for clip in clips:
        record = by_file[clip.name]
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert list(record["probabilities"]) == list(EMOTIONS)
        assert record["predicted"] == max(record["probabilities"], key=record["probabilities"].get)
        assert record["confidence"] == pytest.approx(max(record["probabilities"].values()))
    assert "broken.wav" in done.stderr  # the error is logged for a person too


def test_a_file_over_max_duration_is_an_error_row_and_the_others_are_scored(trained, tmp_path, caplog):
    clips = sorted((trained.root / "Actor_03").glob("*.wav"))[:2]
    # 8 channels at 48 kHz for 12 s: refused from its header, nothing of it decoded
    too_long = tmp_path / "meeting.flac"
    sf.write(too_long, np.zeros((12 * 48000, 8), dtype=np.float32), 48000, subtype="PCM_16")
    inputs = [clips[0], too_long, clips[1]]
    with caplog.at_level("INFO", logger="ser_lightning.predict"):
        results, text = run_predict(
            trained, tmp_path, inputs, "output=json", "max_duration_s=10", "batch_size=2"
        )
    records = [json.loads(line) for line in text.splitlines()]
    assert [Path(r["file"]).name for r in records] == [p.name for p in inputs]
    assert "meeting.flac" in records[1]["error"] and "lasts 12.0 s" in records[1]["error"]
    assert "max_duration_s=10" in records[1]["error"]
    alone, _ = run_predict(trained, tmp_path / "alone", clips, "output=json")
    for scored, reference in zip([results[0], results[2]], alone, strict=True):
        np.testing.assert_allclose(scored.probabilities, reference.probabilities, atol=1e-6)
    assert "1 of 3 inputs failed" in caplog.text and "meeting.flac" in caplog.text.splitlines()[-1]


def test_onnx_export_matches_pytorch_on_real_clips(trained, evaluated, tmp_path):
    path = export_onnx(trained.model, tmp_path / "model.onnx")
    meta = onnx_session(path).get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == list(EMOTIONS) and json.loads(meta["audio"])["duration"] == 1.5
    files = [trained.root / f for f in evaluated.predictions["file"][::4]]
    waves = np.stack([load_waveform(f, trained.model.audio) for f in files])
    parity = compare_with_torch(trained.model, path, waves)
    assert parity["max_abs_probability_diff"] < 1e-4 and parity["max_abs_logit_diff"] < 1e-3
    assert parity["same_predictions"] and parity["num_inputs"] == 30


def test_eval_data_config_comes_from_the_checkpoint_unless_given():
    own = {"root": "/corpora/demo", "split": "actor"}
    record = {"data": own}
    paths = {"data_dir": "/corpora", "cache_dir": "/cache"}
    assert eval_data_config(None, record, "m.ckpt", paths) == (dict(own, cache_dir="/cache"), "checkpoint")
    merged, source = eval_data_config({"root": "/elsewhere/demo"}, record, "m.ckpt", paths)
    assert merged == dict(own, root="/elsewhere/demo", cache_dir="/cache")
    assert source == "checkpoint with overrides"
    other = {"_target_": "ser_lightning.data.datamodule.build_data_module", "root": "/corpora/ravdess"}
    assert eval_data_config(other, record, "m.ckpt", paths) == ({"root": "/corpora/ravdess"}, "command line")
    with pytest.raises(
        ValueError, match=r"old\.ckpt.*carries no data settings.*data=<group> data\.root=PATH"
    ):
        eval_data_config(None, {}, "old.ckpt", paths)


@pytest.mark.slow
def test_the_network_alone_exports_too(trained, evaluated, tmp_path):
    path = export_onnx(trained.model, tmp_path / "network.onnx", input_kind="features")
    files = [trained.root / f for f in evaluated.predictions["file"][::8]]
    waves = torch.from_numpy(np.stack([load_waveform(f, trained.model.audio) for f in files]))
    features = trained.model.features.extract(waves).numpy()
    parity = compare_with_torch(trained.model, path, features, input_kind="features")
    assert parity["max_abs_probability_diff"] < 1e-4 and parity["same_predictions"]


@pytest.mark.slow
def test_the_eval_and_export_clis(trained, tmp_path):
    env = dict(os.environ, SER_LIGHTNING_ROOT=str(tmp_path))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ser_lightning.eval",
            f"ckpt_path={trained.ckpt}",
            "device=cpu",
            *this_machine(trained),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "unweighted accuracy (UA)" in done.stdout and "surprised" in done.stdout
    (eval_json,) = (tmp_path / "outputs" / "eval" / "runs").glob("*/eval.json")
    assert json.loads(eval_json.read_text())["same_test_files_as_training"] is True

    onnx_path = tmp_path / "exported" / "model.onnx"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ser_lightning.export",
            f"ckpt_path={trained.ckpt}",
            f"output_path={onnx_path}",
            f"verify_inputs=[{trained.root / 'Actor_01'}]",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert onnx_path.is_file() and "same predictions: True" in done.stdout
    (export_json,) = (tmp_path / "outputs" / "export" / "runs").glob("*/export.json")
    parity = json.loads(export_json.read_text())["parity"]
    assert (
        parity["max_abs_probability_diff"] < 1e-4 and parity["num_inputs"] == 64
    )  # the cap: 60 clips, some 2 windows


# --------------------------------------------------------------------------- training files scored as test
def run_eval(trained, run_dir, *overrides, ckpt=None):
    cfg = compose_train(
        [f"ckpt_path={ckpt or trained.ckpt}", "device=cpu", *this_machine(trained), *overrides],
        run_dir,
        config_name="eval",
    )
    return evaluate(cfg)


def test_the_checkpoint_lists_the_files_it_learnt_from(trained):
    split = read_checkpoint(trained.ckpt)[RECORD_KEY]["split"]
    for part in ("train", "val"):
        files = split[f"{part}_files"]
        assert len(files) == split["sizes"][part]
        for name, size in list(files.items())[:5]:
            assert not Path(name).is_absolute() and (trained.root / name).stat().st_size == size
    assert not set(split["train_files"]) & set(split["val_files"])


def test_eval_says_its_own_test_split_holds_no_training_file(evaluated):
    assert evaluated.summary["training_overlap"] == {"status": "none", "count": 0, "train": [], "val": []}


def test_eval_refuses_to_score_training_files_as_test(trained, evaluated, tmp_path):
    split = read_checkpoint(trained.ckpt)[RECORD_KEY]["split"]
    # every file of the training corpus
    with pytest.raises(
        ValueError, match=r"600 of the 720 files.*480 train.*120 validation.*allow_train_overlap=true"
    ):
        run_eval(trained, tmp_path / "all", "split=all")
    # another split seed draws other test actors: speakers the model learnt from
    with pytest.raises(ValueError, match=r"files eval would score as test.*data\.split=actor"):
        run_eval(trained, tmp_path / "seed", "+data.split_seed=7")

    # asked for, it scores them and says so in the report and the summary
    report, summary = run_eval(trained, tmp_path / "allowed", "split=all", "allow_train_overlap=true")
    overlap = summary["training_overlap"]
    assert overlap["status"] == "overlap" and overlap["count"] == 600 and summary["allow_train_overlap"]
    assert overlap["train"] == sorted(split["train_files"]) and overlap["val"] == sorted(split["val_files"])
    saved = json.loads((tmp_path / "allowed" / "eval.json").read_text())
    assert saved["training_overlap"] == overlap
    title = json.loads((tmp_path / "allowed" / "metrics.json").read_text())["title"]
    assert "WARNING: 600 of these 720 files were used to train (480) or validate (120) the model" in title
    assert report.metrics["num_files"] == 720


def test_eval_reports_training_files_of_the_splits_it_is_asked_for(trained, tmp_path):
    _, summary = run_eval(trained, tmp_path, "split=val")
    assert summary["training_overlap"]["count"] == 120 and summary["training_overlap"]["train"] == []


def test_checkpoints_without_their_training_files_report_an_unknown_overlap(trained, tmp_path):
    checkpoint = torch.load(trained.ckpt, weights_only=True)
    for part in ("train", "val"):
        del checkpoint["ser_lightning"]["split"][f"{part}_files"]
    older = tmp_path / "older.ckpt"
    torch.save(checkpoint, older)
    _, summary = run_eval(trained, tmp_path / "run", ckpt=older)
    assert summary["training_overlap"]["status"] == "unknown"
    assert summary["same_test_files_as_training"] is True
