"""Bad audio on disk: each test makes the bad file itself and checks what the framework does.

Readable oddities (stereo, 8/24-bit, 8/96 kHz, 0.05 s, silence, NaN samples, 10 minutes) are
decoded to finite fixed-length waveforms whose features and loss stay finite; unreadable or
unlabelable files are left out before splitting, listed with their reason, and never
attached to a wrong label.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

import ser_lightning.data.feature_store as feature_store_module
import ser_lightning.data.quality as quality_module
from ser_lightning.audio_settings import AudioSettings
from ser_lightning.data.audio import load_waveform
from ser_lightning.data.corpora.ravdess import parse_ravdess_name
from ser_lightning.data.datamodule import SERDataModule, build_data_module
from ser_lightning.data.quality import SkipPolicy, UnusableFilesError, check_audio_file
from ser_lightning.decoding import AudioDecodeError, read_audio
from ser_lightning.features import LogMel
from ser_lightning.models import ACNT
from ser_lightning.nonfinite_loss import NonFiniteLossError
from ser_lightning.train import train

from .helpers.audio import write_tone
from .helpers.configs import compose_train
from .helpers.corpora import TINY_RUN, tone_corpus

SETTINGS = AudioSettings(sample_rate=16000, duration=0.5)


# ------------------------------------------------------------------ files the tests make
def tone_wave(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def truncated(path: Path, keep: float = 0.5) -> Path:
    """A PCM WAV cut off mid-data, as an interrupted copy leaves it (the header is intact)."""
    write_tone(path, seconds=0.5)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def header_only(path: Path) -> Path:
    write_tone(path, seconds=0.5)
    path.write_bytes(path.read_bytes()[:44])
    return path


def cut_header(path: Path) -> Path:
    write_tone(path, seconds=0.5)
    path.write_bytes(path.read_bytes()[:20])
    return path


def empty(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def text_named_wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("emotion,angry\nthis is a spreadsheet saved with the wrong extension\n")
    return path


UNREADABLE = {
    "empty file": (empty, "Format not recognised"),
    "text file named .wav": (text_named_wav, "Format not recognised"),
    "truncated data": (truncated, "truncated .*declares 8000 frames, the file holds 3989"),
    "header only": (header_only, "truncated"),
    "header cut short": (cut_header, "Malformed"),
}


# ------------------------------------------------------------------ readable oddities
def _finite_features_and_loss(wave: np.ndarray) -> None:
    """Log-mel, per-utterance normalisation, a forward pass, the loss and its gradients: all finite."""
    features = LogMel(sample_rate=16000, n_mels=32, n_fft=512, hop_length=256)
    batch = torch.from_numpy(np.stack([wave, wave]))
    feats = features(batch)
    assert torch.isfinite(feats).all()
    net = ACNT(
        tuple(feats.shape[1:]),
        8,
        cnn_channels=[4, 8],
        transformer_dim=16,
        num_heads=2,
        num_layers=1,
        ff_dim=16,
    )
    loss = F.cross_entropy(net(feats), torch.tensor([0, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    "rate, channels, subtype",
    [
        (48000, 2, "PCM_16"),
        (16000, 1, "PCM_U8"),
        (16000, 1, "PCM_24"),
        (8000, 1, "PCM_16"),
        (96000, 1, "PCM_16"),
    ],
    ids=["stereo-48k", "8-bit", "24-bit", "8kHz", "96kHz"],
)
def test_readable_formats_become_the_same_tone(tmp_path, rate, channels, subtype):
    path = write_tone(
        tmp_path / "clip.wav", seconds=0.5, sample_rate=rate, freq=440.0, channels=channels, subtype=subtype
    )
    wave = load_waveform(path, SETTINGS)
    assert wave.shape == (8000,) and wave.dtype == np.float32 and np.isfinite(wave).all()
    assert np.max(np.abs(wave)) == pytest.approx(1.0, abs=1e-3)  # peak-normalised
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440.0) <= 2.0  # mixed and resampled, not garbled
    _finite_features_and_loss(wave)


def test_a_clip_of_50_ms_is_padded(tmp_path):
    path = write_tone(tmp_path / "blip.wav", seconds=0.05, sample_rate=44100)
    wave = load_waveform(path, SETTINGS)
    assert wave.shape == (8000,)
    assert np.abs(wave[:790]).max() > 0.5 and np.all(wave[820:] == 0.0)
    _finite_features_and_loss(wave)


def test_silence_and_non_finite_samples_stay_finite(tmp_path):
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(8000), 16000, subtype="PCM_16")
    wave = load_waveform(silence, SETTINGS)
    assert np.all(wave == 0.0)
    _finite_features_and_loss(wave)

    # A float WAV can hold NaN and inf; they must not reach a feature.
    poisoned = tone_wave(0.5, 16000).astype(np.float32)
    poisoned[100:200] = np.nan
    poisoned[300] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, poisoned, 16000, subtype="FLOAT")
    wave = load_waveform(path, SETTINGS)
    assert np.isfinite(wave).all() and np.all(wave[100:200] == 0.0)
    _finite_features_and_loss(wave)

    # Dataset statistics of silent clips (zero variance per band) must not divide by zero.
    features = LogMel(sample_rate=16000, n_mels=32, n_fft=512, hop_length=256, normalization="dataset")
    silent = features.extract(torch.zeros(4, 8000))
    features.fit_normalization(silent.numpy())
    assert torch.isfinite(features.normalize(silent)).all()


FLOAT32_MAX = float(np.finfo(np.float32).max)


def loud_float_wav(
    path: Path, peak: float, channels: int = 1, rate: int = 44100, seconds: float = 0.5, freq: float = 440.0
) -> Path:
    """A square wave (440 Hz) of `peak` as a float WAV: its edges make any resampler overshoot the peak."""
    t = np.arange(int(seconds * rate)) / rate
    square = peak * np.sign(np.sin(2 * np.pi * freq * t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([square] * channels, axis=1).astype(np.float32), rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize(
    "peak, channels",
    [(1.0, 1), (1e38, 1), (FLOAT32_MAX, 1), (FLOAT32_MAX, 2)],
    ids=["full-scale", "1e38", "float32-max", "float32-max-stereo"],
)
def test_a_float_wav_at_the_float_limit_is_resampled_to_a_finite_bounded_wave(tmp_path, peak, channels):
    # 44.1 kHz -> 16 kHz: the resampler overshoots the peak by ~70 % at each edge, which near the
    # float32 limit is inf (NaN once peak-normalised); the channel mean overflows the same way.
    path = loud_float_wav(tmp_path / "loud.wav", peak, channels)
    wave = load_waveform(path, SETTINGS)
    assert wave.shape == (8000,) and np.isfinite(wave).all()
    assert np.abs(wave).max() == pytest.approx(1.0)  # peak-normalised, not zeroed to silence
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440.0) <= 2.0  # the tone survives

    raw = load_waveform(path, AudioSettings(sample_rate=16000, duration=0.5, peak_normalize=False))
    assert np.isfinite(raw).all() and np.abs(raw).max() >= min(peak, FLOAT32_MAX / 2)
    _finite_features_and_loss(wave)


def test_the_waveform_cache_of_a_float_wav_at_the_float_limit_is_finite_and_bounded(tmp_path):
    root = tone_corpus(tmp_path / "corpus")
    loud = loud_float_wav(root / ravdess_name(5, 3, 2, 2), FLOAT32_MAX, channels=2)
    dm = make_dm(root, tmp_path / "cache")
    dm.prepare_data()
    dm.setup("fit")
    row = int(np.flatnonzero(dm.manifest.table["path"].map(lambda p: Path(p).resolve() == loud.resolve()))[0])
    cached = np.asarray(dm.arrays.waveforms[row])
    assert np.isfinite(cached).all() and np.abs(cached).max() == pytest.approx(1.0)
    assert np.isfinite(np.asarray(dm.arrays.features)).all()


def test_a_ten_minute_file_is_read_around_its_crop(tmp_path):
    rate = 16000
    second = (0.5 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)).astype(np.float32)
    ramp = np.repeat(np.linspace(0.1, 1.0, 600, dtype=np.float32), rate)  # loudness marks the position
    path = tmp_path / "talk.wav"
    sf.write(path, np.tile(second, 600) * ramp, rate, subtype="PCM_16")
    settings = AudioSettings(sample_rate=rate, duration=3.0, peak_normalize=False)

    tracemalloc.start()
    try:
        wave = load_waveform(path, settings)
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The whole file as float32 is 38 MB; the crop with its context is a few hundred kB.
    assert peak_bytes < 4_000_000, f"decoding took {peak_bytes / 1e6:.1f} MB"
    full = read_audio(path, rate)
    begin = (len(full) - settings.num_samples) // 2
    np.testing.assert_array_equal(wave, full[begin : begin + settings.num_samples])

    resampled = load_waveform(path, AudioSettings(sample_rate=8000, duration=3.0, peak_normalize=False))
    assert resampled.shape == (24000,) and np.isfinite(resampled).all()
    assert np.abs(resampled).max() == pytest.approx(np.abs(wave).max(), rel=0.02)  # the same (middle) stretch


# ------------------------------------------------------------------ unreadable files
@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_unreadable_files_are_refused_naming_file_and_reason(tmp_path, kind):
    make, reason = UNREADABLE[kind]
    path = make(tmp_path / "03-01-05-01-01-01-01.wav")
    with pytest.raises(AudioDecodeError, match=rf"03-01-05-01-01-01-01\.wav.*{reason}.*remove it"):
        load_waveform(path, SETTINGS)
    assert check_audio_file(path) is not None


# ------------------------------------------------------------------ a corpus with bad files
GOOD_ACTORS = range(1, 7)  # 3 male, 3 female: enough for a speaker-independent split


def ravdess_name(emotion: int, actor: int, statement: int = 1, repetition: int = 1) -> str:
    return f"Actor_{actor:02d}/03-01-{emotion:02d}-01-{statement:02d}-{repetition:02d}-{actor:02d}.wav"


def messy_corpus(root: Path) -> dict[str, str]:
    """192 good takes in odd but readable formats, plus bad files; returns {bad name: stage}."""
    formats = [(16000, 1, "PCM_16"), (48000, 2, "PCM_16"), (8000, 1, "PCM_U8"), (96000, 1, "PCM_24")]
    for actor in GOOD_ACTORS:
        for emotion in range(1, 9):
            for statement in (1, 2):
                for repetition in (1, 2):
                    rate, channels, subtype = formats[(emotion + statement + repetition) % len(formats)]
                    write_tone(
                        root / ravdess_name(emotion, actor, statement, repetition),
                        seconds=0.3,
                        sample_rate=rate,
                        channels=channels,
                        subtype=subtype,
                        # each actor's own pitch: identical takes of two speakers would be leakage
                        freq=110.0 * emotion + actor,
                    )
    sf.write(root / "Actor_01/03-01-02-02-01-01-01.wav", np.zeros(4000), 16000)  # silent, still a take
    bad = {
        "Actor_02/03-01-03-02-01-01-02.wav": empty,
        "Actor_03/03-01-04-02-01-01-03.wav": truncated,
        "Actor_04/03-01-05-02-01-01-04.wav": text_named_wav,
    }
    for name, make in bad.items():
        make(root / name)
    write_tone(root / "Actor_05/03-01-09-01-01-01-05.wav", seconds=0.3)  # emotion code 09 does not exist
    write_tone(root / "Actor_06/angry_take_final.wav", seconds=0.3)  # fits no parser
    return {
        **{n: "audio" for n in bad},
        "Actor_05/03-01-09-01-01-01-05.wav": "label",
        "Actor_06/angry_take_final.wav": "label",
    }


@pytest.fixture(scope="module")
def messy_root(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("messy") / "corpus"
    return root, messy_corpus(root)


def make_dm(root: Path, cache: Path, **kwargs) -> SERDataModule:
    return build_data_module(
        features=LogMel(sample_rate=16000, n_mels=16, n_fft=256, hop_length=128),
        root=str(root),
        duration=0.3,
        cache_dir=str(cache),
        batch_size=8,
        **{"max_skip_fraction": 0.05, **kwargs},
    )


def test_bad_files_are_left_out_listed_and_never_mislabeled(messy_root, tmp_path, monkeypatch):
    root, bad = messy_root
    dm = make_dm(root, tmp_path / "cache")
    dm.prepare_data()
    dm.setup("fit")

    table = dm.manifest.table
    assert len(table) == 193  # 192 good takes + the silent one
    kept = {str(Path(p).relative_to(root)) for p in table["path"]}
    assert not kept & set(bad)
    # every kept file carries the emotion its own name says
    codes = np.array([int(parse_ravdess_name(p).emotion) - 1 for p in table["path"]])
    np.testing.assert_array_equal(table["label"].to_numpy(), codes)

    # the caches are aligned with the table, rows after the dropped files included
    assert dm.arrays.waveforms.shape == (193, dm.audio.num_samples) and dm.arrays.features.shape[0] == 193
    for row in (0, 40, 100, 192):
        np.testing.assert_array_equal(dm.arrays.waveforms[row], load_waveform(table["path"][row], dm.audio))

    written = dm.manifest.write_records(tmp_path / "run")
    rejected = pd.read_csv(written["rejected"])
    assert {
        str(Path(p).relative_to(root)): s for p, s in zip(rejected["path"], rejected["stage"], strict=True)
    } == bad
    reasons = dict(zip(rejected["path"].map(lambda p: Path(p).name), rejected["reason"], strict=True))
    assert "truncated" in reasons["03-01-04-02-01-01-03.wav"]
    assert "unknown emotion code '09'" in reasons["03-01-09-01-01-01-05.wav"]
    split = pd.read_csv(written["split"])
    assert len(split) == 193 and not set(split["path"]) & set(bad)

    # a second run reads no audio to know which files are bad, and leaves out the same ones
    def no_reading(*args, **kwargs):
        raise AssertionError("audio was read although the caches were warm")

    monkeypatch.setattr(quality_module, "check_audio_file", no_reading)
    monkeypatch.setattr(feature_store_module, "load_waveform", no_reading)
    again = make_dm(root, tmp_path / "cache")
    again.setup("fit")
    assert again.cache_events == ["reused waveforms", "reused features"]
    assert [r.path for r in again.manifest.scan.rejected] == [r.path for r in dm.manifest.scan.rejected]
    np.testing.assert_array_equal(again.arrays.features, dm.arrays.features)


def test_on_error_raise_and_the_skip_limit_stop_before_any_cache(messy_root, tmp_path):
    root, bad = messy_root
    with pytest.raises(
        UnusableFilesError, match=r"5 of 198 files cannot be used \(data.on_error=raise\)"
    ) as err:
        make_dm(root, tmp_path / "cache", on_error="raise").prepare_data()
    assert {str(Path(r.path).relative_to(root)) for r in err.value.rejected} == set(bad)
    assert "03-01-03-02-01-01-02.wav" in str(err.value)  # the message names the files

    with pytest.raises(UnusableFilesError, match=r"5 of 198 files \(2.5%\).*data.max_skip_fraction=0.02"):
        make_dm(root, tmp_path / "cache", max_skip_fraction=0.02).prepare_data()
    assert not list((tmp_path / "cache").glob("*.npy"))  # no waveform or feature work was done


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"on_error": "ignore"}, "data.on_error='ignore'"),
        ({"max_skip_fraction": 1.5}, "data.max_skip_fraction=1.5"),
    ],
)
def test_skip_policy_mistakes_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SkipPolicy(**kwargs)


def test_a_run_lists_and_counts_what_it_skipped(messy_root, tmp_path):
    root, bad = messy_root
    overrides = [*TINY_RUN, f"data.root={root}", "debug=fdr", "print_config=false"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(compose_train(overrides, tmp_path / "run", tmp_path / "cache"))
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped_files"] == {"label": 2, "audio": 3}
    assert len(pd.read_csv(tmp_path / "run" / "rejected_files.csv")) == len(bad)

    # a run that stops on them still leaves the full list in its directory
    with pytest.raises(UnusableFilesError, match=r"(?s)data.max_skip_fraction=0.01.*rejected_files.csv"):
        train(
            compose_train(
                [*overrides, "data.max_skip_fraction=0.01"], tmp_path / "stopped", tmp_path / "cache"
            )
        )
    listed = pd.read_csv(tmp_path / "stopped" / "rejected_files.csv")
    assert len(listed) == len(bad) and set(listed["stage"]) == {"label", "audio"}
    assert not (tmp_path / "stopped" / "split.csv").exists()


# ------------------------------------------------------------------ a loss that is not finite
@pytest.fixture(scope="module")
def loud_corpus(tmp_path_factory) -> tuple[Path, set[str]]:
    """The tone corpus with one unscaled float WAV (samples of 1e30) per actor; returns (root, their names)."""
    root = tone_corpus(tmp_path_factory.mktemp("loud") / "corpus")
    loud = {
        # a pitch of its own per actor: one sound under six speakers' names would stop training as leakage
        loud_float_wav(root / ravdess_name(5, actor, 2, 2), 1e30, rate=16000, freq=440.0 + 10 * actor).name
        for actor in range(1, 7)
    }
    return root, loud


def stopped_run(root: Path, run_dir: Path, *overrides: str) -> str:
    """Train on `root` until a NonFiniteLossError; returns its message."""
    cfg = compose_train([*TINY_RUN, f"data.root={root}", "print_config=false", *overrides], run_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(NonFiniteLossError) as err:
            train(cfg)
    finally:
        torch.set_num_threads(threads)
    return str(err.value)


def listed_files(message: str) -> set[str]:
    return {Path(line.strip()).name for line in message.splitlines() if line.startswith("  ")}


def test_features_that_are_not_finite_stop_training_naming_the_files(loud_corpus, tmp_path):
    # The loud files' waveforms are finite, but without peak normalisation their power spectrum
    # overflows float32: their log-mel features, and so the loss, are not finite.
    root, loud = loud_corpus
    message = stopped_run(root, tmp_path / "run", "data.peak_normalize=false")
    assert "training loss is nan" in message and "data.peak_normalize=true" in message
    split = pd.read_csv(tmp_path / "run" / "split.csv")
    train_files = {Path(p).name for p in split.loc[split["split"] == "train", "path"]}
    named = listed_files(message)
    assert named and named <= loud & train_files  # the loud files of the batch, and no other file


def test_a_diverging_network_stops_training_naming_the_batch(loud_corpus, tmp_path):
    root, _ = loud_corpus  # peak-normalised: every input is finite
    message = stopped_run(root, tmp_path / "run", "model.optimizer.lr=1e30")
    assert "features of its files are finite, so the network diverged" in message
    assert "model.optimizer.lr" in message
    named = listed_files(message)
    assert len(named) == 16 and all((root / f"Actor_{n[-6:-4]}" / n).is_file() for n in named)
