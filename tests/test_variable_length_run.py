"""A training run on whole clips of different lengths (data.duration=null): it trains, tests and scores."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ser_lightning.data.datamodule import build_data_module
from ser_lightning.data.loading import collate_batch
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
