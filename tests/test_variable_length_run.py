"""A training run on whole clips of different lengths (data.duration=null): it trains, tests and scores."""

import io

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ser_lightning.data.datamodule import build_data_module
from ser_lightning.data.loading import collate_batch
from ser_lightning.data.variable_length import load_whole, whole_length
from ser_lightning.features.logmel import LogMel
from ser_lightning.model import SERModel
from ser_lightning.train import train
from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.jobs import StartupError

from .helpers.configs import compose_train
from .helpers.corpora import ragged_tone_corpus

WHOLE_CLIPS = [
    "data=ravdess",
    "data.duration=null",
    "data.max_duration_s=0.8",
    "data.batch_size=16",
    "features.n_mels=16",
    "features.n_fft=256",
    "features.hop_length=128",
    "augmentation=specaugment",
    "augmentation.spectrogram.time_mask_param=5",
    "augmentation.spectrogram.freq_mask_param=4",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]
SMALL_CRNN = ["model=crnn_attn", "model.net.conv_channels=[4,8]", "model.net.lstm_hidden=8"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return ragged_tone_corpus(tmp_path_factory.mktemp("ragged_run"))


def test_a_whole_clip_run_trains_tests_and_its_checkpoint_scores_padded_batches(corpus, tmp_path):
    overrides = [*WHOLE_CLIPS, *SMALL_CRNN, f"data.root={corpus}", "debug=limit", "trainer.max_epochs=2"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics, objects = train(compose_train(overrides, tmp_path / "run", tmp_path / "cache"))
    finally:
        torch.set_num_threads(threads)
    assert "test/ua" in metrics and np.isfinite(metrics["test/ua"])
    assert (tmp_path / "run" / "summary.json").is_file()
    assert "built whole-length features" in objects["datamodule"].cache_events
    datamodule = objects["datamodule"]
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["features"].shape[-1] <= 12800 // 128 + 1  # the 0.8 s cap, in frames
    model = SERModel.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert model.audio.whole_clips
    test = datamodule.dataset("test")
    batch = next(iter(DataLoader(test, batch_size=8, collate_fn=collate_batch)))
    assert len(set(batch["lengths"].tolist())) > 1  # whole clips of different lengths
    with torch.no_grad():
        together = model.probabilities(batch)
        for i in range(8):
            n = int(batch["lengths"][i])
            alone = model.probabilities({"features": batch["features"][i : i + 1, ..., :n]})
            torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=1e-5)


def test_a_fixed_width_model_refuses_whole_clips_at_start_up(corpus, tmp_path):
    overrides = [*WHOLE_CLIPS, f"data.root={corpus}", "model=cnn2ch", "features=mfcc_mel", "debug=fdr"]
    with pytest.raises(StartupError, match=r"CNN2Ch.*fixed-length.*data\.duration=3\.0.*crnn_attn"):
        train(compose_train(overrides, tmp_path / "run", tmp_path / "cache"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"duration": 3.0, "max_duration_s": 2.0}, r"data\.max_duration_s=2\.0 caps whole clips"),
        ({"duration": None, "max_duration_s": 0.0}, r"data\.max_duration_s=0\.0 must be a positive"),
        ({"duration": None, "placement": "device"}, r"data\.placement=device"),
        ({"duration": None, "train_input": "waveform"}, r"data\.train_input=waveform"),
    ],
)
def test_settings_whole_clips_cannot_take_are_refused_naming_the_fix(corpus, tmp_path, settings, message):
    with pytest.raises(InvalidSetting, match=message):
        build_data_module(LogMel(), str(corpus), cache_dir=str(tmp_path), **settings)


def test_a_whole_clip_checkpoint_predicts_each_file_whole_and_evaluates(corpus, tmp_path):
    from ser_lightning.predict import predict

    overrides = [*WHOLE_CLIPS, *SMALL_CRNN, f"data.root={corpus}", "debug=limit", "trainer.max_epochs=1"]
    train(compose_train([*overrides, "test=false"], tmp_path / "run", tmp_path / "cache"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    files = sorted(corpus.rglob("*.wav"))[:5]
    cfg = compose_train(
        [f"ckpt_path={ckpt}", "inputs=[]", "device=cpu"], tmp_path / "p", config_name="predict"
    )
    cfg.inputs = [str(p) for p in files]
    results = predict(cfg, stream=io.StringIO())
    model = SERModel.load_from_checkpoint(ckpt)
    settings = model.audio
    for path, result in zip(files, results, strict=True):
        samples = whole_length(str(path), settings)
        wave = torch.from_numpy(load_whole(str(path), settings, samples))[None]
        with torch.no_grad():
            expected = model.probabilities({"waveform": wave})[0].numpy()
        np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    # eval rebuilds the whole-clip data module from the checkpoint's settings and scores its test split
    from ser_lightning.eval import evaluate

    eval_cfg = compose_train(
        [f"ckpt_path={ckpt}", f"paths.data_dir={corpus.parent}", f"paths.cache_dir={tmp_path / 'cache'}"],
        tmp_path / "e",
        config_name="eval",
    )
    report, _ = evaluate(eval_cfg)
    assert np.isfinite(report.metrics["ua"])
