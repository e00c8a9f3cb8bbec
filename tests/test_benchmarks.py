"""Every benchmark script runs end to end at a tiny size and prints its report (slow: minutes).

The numbers themselves are recorded in experiments/benchmarks/README.md from full-size runs;
here only the parts that would rot silently are checked: options, the report's tables, and
values that must hold whatever the machine (positive timings, ratios > 1 where ours skips work
the baseline does).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "experiments" / "benchmarks"

pytestmark = pytest.mark.slow


def run_benchmark(script: str, *args: str, timeout: int = 900) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def table_rows(report: str, first_cell: str) -> list[list[str]]:
    """Cells of the markdown rows whose first cell starts with first_cell."""
    rows = []
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].strip("`*").startswith(first_cell):
            rows.append(cells)
    return rows


def number(cell: str) -> float:
    return float(re.search(r"-?\d+(\.\d+)?", cell.replace(",", "")).group())


def test_data_pipeline_reports_ours_faster_than_the_seed_style_baseline(tmp_path):
    report = run_benchmark(
        "data_pipeline.py", "--actors", "4", "--epochs", "1", "--workers", "0", "--work-dir", str(tmp_path)
    )
    (plain,) = table_rows(report, "no augmentation")
    (augmented,) = table_rows(report, "waveform augmentation")
    (offline,) = table_rows(report, "offline copies")
    # no decoding and no librosa per item: far less data work even on a busy machine
    assert number(plain[3]) > 5
    assert number(augmented[1]) > 0 and number(augmented[2]) > 0
    assert number(offline[2]) > 0
    assert "cold cache build" in report


def test_scaling_reports_a_row_per_size_and_length(tmp_path):
    report = run_benchmark(
        "scaling.py",
        "--sizes",
        "120,240",
        "--durations",
        "1.5",
        "--duration-clips",
        "120",
        "--skip-training",
        "--work-dir",
        str(tmp_path),
    )
    sizes = [number(row[0]) for row in table_rows(report, "120") + table_rows(report, "240")]
    assert 120 in sizes and 240 in sizes
    assert table_rows(report, "1.5"), report


def test_inference_latency_reports_latency_throughput_and_memory(tmp_path):
    report = run_benchmark(
        "inference_latency.py",
        "--models",
        "acnt",
        "--actors",
        "4",
        "--repeats",
        "3",
        "--cli-repeats",
        "1",
        "--load-repeats",
        "1",
        "--batch-sizes",
        "1,8",
        "--data-dir",
        str(tmp_path / "data"),
        "--work-dir",
        str(tmp_path / "work"),
    )
    rows = table_rows(report, "acnt")
    assert len(rows) == 4, report  # one row in each of the four tables
    latency, _, throughput, memory = rows
    assert number(latency[3]) > 0  # end-to-end milliseconds
    assert number(throughput[1]) > 0  # predict_files clips/s
    assert number(memory[1]) > 100  # MiB after importing torch


def test_training_throughput_reports_clips_per_second_and_data_wait(tmp_path):
    report = run_benchmark(
        "training_throughput.py",
        "--actors",
        "4",
        "--epochs",
        "2",
        "--work-dir",
        str(tmp_path),
        "data.split=random",
    )
    (row,) = table_rows(report, "acnt")
    assert row[1] == "(1, 64, 94)"  # the logmel config's input shape
    assert number(row[4]) > 0 and 0 <= number(row[5]) < 100  # clips/s, data wait %


def test_model_epoch_time_times_pairs_and_names_the_ones_that_do_not_fit(tmp_path):
    report = run_benchmark(
        "model_epoch_time.py",
        "--actors",
        "6",
        "--epochs",
        "2",
        "--models",
        "acnt",
        "cnn2ch",
        "--features",
        "logmel",
        "--data-dir",
        str(tmp_path / "data"),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    (acnt,) = table_rows(report, "acnt")
    (cnn2ch,) = table_rows(report, "cnn2ch")
    assert number(acnt[3]) == 636872 and number(acnt[4]) > 0  # parameters, s / epoch
    assert "does not fit: it needs 2 input channels" in cnn2ch[2]


def test_cache_verification_reports_each_entry_and_each_hash(tmp_path):
    report = run_benchmark(
        "cache_verification.py", "--clips", "16", "--repeats", "1", "--work-dir", str(tmp_path)
    )
    for kind in ("waveforms", "features"):
        (row,) = table_rows(report, kind)
        assert all(number(cell) > 0 for cell in row[2:7]), row
    assert {row[0] for row in table_rows(report, "")} >= {"sha256 (kept)", "blake2b", "crc32"}


def test_predict_memory_reports_block_decoding_below_the_whole_file(tmp_path):
    report = run_benchmark("predict_memory.py", "--seconds", "20")
    (row,) = table_rows(report, "20 s")
    whole_peak, block_peak = number(row[3]), number(row[4])
    assert 0 < block_peak < whole_peak, row


def test_ssl_features_reports_every_encoder_and_head(tmp_path):
    report = run_benchmark(
        "ssl_features.py",
        "--tiny",
        "--clips",
        "16",
        "--actors",
        "6",
        "--duration",
        "1",
        "--epochs",
        "2",
        "--work-dir",
        str(tmp_path),
    )
    for encoder in ("wav2vec2_base", "hubert_base", "wavlm_base_plus", "data2vec_audio_base", "whisper_base"):
        (row,) = table_rows(report, encoder)
        assert row[2] == "3 × 32" and row[4] == "cpu"  # tiny: 3 hidden states of 32 values
        assert number(row[5]) > 0  # clips / s
        frames = number(row[3])  # 49 of a 1 s clip for the wav2vec2-style encoders, 50 for Whisper
        # float16 bytes per clip for pooling none, mean and mean_std
        assert [number(cell) for cell in row[6:9]] == [3 * 32 * frames * 2, 3 * 32 * 2, 3 * 64 * 2]
    for model in ("ssl_head", "ssl_head_emobox"):
        rows = [row for row in table_rows(report, model) if row[0].strip("`") == model]
        assert [row[1] for row in rows] == ["none", "mean"], report
        assert [row[2] for row in rows] == ["(3, 32, 49)", "(3, 32, 1)"]
        assert all(number(row[5]) > 0 for row in rows)  # s / epoch


def test_ssl_finetune_step_reports_both_checkpointing_settings(tmp_path):
    report = run_benchmark(
        "ssl_finetune_step.py", "--tiny", "--steps", "1", "--duration", "1", "--work-dir", str(tmp_path)
    )
    rows = table_rows(report, "wavlm_base_plus")
    assert [row[1] for row in rows] == ["on", "off"], report
    for row in rows:
        assert number(row[3]) > 0 and number(row[4]) > 0  # s / step, clips / s
        assert number(row[5]) > 0  # peak memory


def test_predict_startup_reports_predict_beside_import_torch(tmp_path):
    report = run_benchmark(
        "predict_startup.py",
        "--rounds",
        "1",
        "--data-dir",
        str(tmp_path / "data"),
        "--work-dir",
        str(tmp_path / "work"),
    )
    (torch_row,) = table_rows(report, 'python -c "import torch"')
    (predict_row,) = table_rows(report, "predict, one 3 s file")
    assert number(torch_row[1]) > 0 and number(predict_row[1]) > 0
    assert predict_row[4].endswith("×")


def test_serve_load_reports_both_batching_modes_without_errors(tmp_path):
    report = run_benchmark(
        "serve_load.py",
        "--clients",
        "2",
        "--requests",
        "20",
        "--rounds",
        "1",
        "--files",
        "4",
        "--data-dir",
        str(tmp_path / "data"),
        "--work-dir",
        str(tmp_path / "work"),
    )
    rows = table_rows(report, "on") + table_rows(report, "off")
    assert [row[0] for row in rows] == ["on", "off"], report
    for row in rows:
        assert number(row[3]) > 0  # req/s
        assert number(row[7]) == 0  # errors


def test_compile_step_reports_every_setting_and_the_steps_in_turn(tmp_path):
    """A tiny ACNT (compiling it takes about a minute per compiled process on 2 cores)."""
    report = run_benchmark(
        "compile_step.py",
        "--models",
        "acnt",
        "--steps",
        "1",
        "--batch",
        "4",
        "--last-batch",
        "3",
        "--duration",
        "0.5",
        "--work-dir",
        str(tmp_path),
        "model.net.cnn_channels=[4,8]",
        "model.net.transformer_dim=16",
        "model.net.num_heads=2",
        "model.net.num_layers=1",
        "model.net.ff_dim=16",
    )
    rows = table_rows(report, "acnt")
    settings = [(row[1], row[2]) for row in rows[:4]]
    assert settings == [("off", "off"), ("off", "on"), ("on", "off"), ("on", "on")], report
    assert all(number(row[3]) > 0 and number(row[4]) > 0 for row in rows[:4])
    assert "(" in rows[2][3]  # the compiled row's first step on a warm cache
    (in_turn,) = rows[4:]
    assert all(number(cell) > 0 for cell in in_turn[1:]), report


def test_the_gpu_benchmark_script_runs_every_part_in_its_cpu_smoke_mode(tmp_path):
    """experiments/benchmarks/gpu/run.sh, as the GPU machine will run it, at tiny size on the CPU
    (SMOKE=1): every step exits 0 and each of the files that come back is written."""
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu" / "run.sh")],
        cwd=ROOT,
        env={
            **os.environ,
            "SMOKE": "1",
            "PY": sys.executable,
            "OUT": str(out),
            "WORK": str(tmp_path / "work"),
        },
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (out / "gpu_report.md").read_text()
    steps = {row[0]: row[1] for row in table_rows(report, "") if len(row) == 3 and row[1].isdigit()}
    expected = {"prepare", "a_acnt_device", "a_acnt_host", "b_throughput_device", "b_throughput_host"}
    expected |= {"d_data_pipeline", "c_prepare_recipes", "c_seed_sweep", "c_report"}
    assert expected <= set(steps) and all(steps[name] == "0" for name in expected), steps
    (device_wall,) = re.findall(r"data\.placement=device \*\*([0-9.]+) s\*\*", report)
    assert float(device_wall) > 0
    summary = pd.read_csv(out / "seed_study" / "summary.csv")
    assert len(summary) == 10 and set(summary["data.split"]) == {"actor", "random"}
    assert (out / "seed_study" / "report.png").stat().st_size > 0 and (out / "logs.tar.gz").stat().st_size > 0


def test_variable_length_scale_reports_build_and_padding(tmp_path):
    report = run_benchmark(
        "variable_length_scale.py", "--scale", "0.0002", "--epochs", "1", "--work-dir", str(tmp_path / "w")
    )
    (plain,) = table_rows(report, "plain shuffle")
    (bucketed,) = table_rows(report, "length bucketing")
    assert number(bucketed[1]) < number(plain[1]) / 5
    assert number(table_rows(report, "clips per second")[0][1]) > 0
    assert not (tmp_path / "w").exists()  # removed unless --keep


def test_vad_segmenter_reports_both_paths_and_the_same_segments(small_demo_root):
    report = run_benchmark(
        "vad_segmenter.py", "--data", str(small_demo_root), "--seconds", "12", "--repeats", "1"
    )
    rows = table_rows(report, "torch") + table_rows(report, "onnx")
    assert [row[0].split()[0] for row in rows] == ["torch", "onnx"], report
    for row in rows:
        assert number(row[2]) > 0 and number(row[5]) > 0  # median seconds, segments found
    assert "within one 32 ms frame: yes" in report
