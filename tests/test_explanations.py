"""`eval explain=true` on a tiny network trained on the tone corpus: integrated gradients per
class, the penultimate embedding and its silhouettes, checked against independent computations."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import silhouette_score
from torch.utils.data import DataLoader

from ser_lightning.data.evaluation_data import build_eval_datamodule, eval_data_config
from ser_lightning.data.loading import collate_batch
from ser_lightning.eval import evaluate
from ser_lightning.model import SERModel
from ser_lightning.reporting.explanations import (
    ExplainSettings,
    chosen_positions,
    classifier_layer,
    explain_clips,
)
from ser_lightning.train import train
from ser_lightning.utils.errors import InvalidSetting

from .helpers.configs import compose_train
from .helpers.corpora import TINY_RUN, ragged_tone_corpus, tone_corpus

RUN = [*TINY_RUN, "trainer.max_epochs=2", "print_config=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tone_corpus(tmp_path_factory.mktemp("tones") / "corpus")
    run_dir, cache = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, objects = train(compose_train([*RUN, f"data.root={root}"], run_dir, cache))
    finally:
        torch.set_num_threads(threads)
    return SimpleNamespace(root=root, cache=cache, ckpt=objects["summary"]["best_checkpoint"])


def eval_config(trained, tmp_path, *overrides):
    machine = [f"paths.data_dir={trained.root.parent}", f"paths.cache_dir={trained.cache}"]
    return compose_train(
        [f"ckpt_path={trained.ckpt}", "device=cpu", *machine, *overrides], tmp_path, config_name="eval"
    )


def test_chosen_positions_take_each_class_in_turn():
    labels = np.array([0, 0, 0, 0, 1, 2, 2])
    speakers = np.array(["a", "a", "b", "b", "a", "a", "b"])
    assert chosen_positions(labels, speakers, 4).tolist() == [0, 2, 4, 5]
    assert chosen_positions(labels, speakers, 5).tolist() == [0, 2, 4, 5, 6]
    assert chosen_positions(labels, speakers, 100).tolist() == list(range(7))


def test_eval_explain_writes_class_maps_bands_and_the_embedding(trained, tmp_path):
    cfg = eval_config(
        trained, tmp_path, "explain=true", "explain_settings.max_clips=24", "explain_settings.steps=16"
    )
    _, summary = evaluate(cfg)
    explained = summary["explanations"]
    folder = tmp_path / "explanations"
    model = SERModel.load_from_checkpoint(trained.ckpt)
    maps = np.load(folder / "class_attributions.npy")
    assert maps.shape == (len(model.labels), *model.input_shape)
    assert explained["clips"] == 24 and sum(explained["clips_per_class"].values()) == 24
    assert set(explained["clips_per_class"].values()) == {3}  # 8 classes in turn
    for label in model.labels:
        assert (folder / f"class_{label}.png").stat().st_size > 5_000
    for name in (
        "bands.png",
        "embedding.png",
        "embedding.csv",
        "band_contributions.csv",
        "explanations.json",
    ):
        assert (folder / name).is_file()
    bands = pd.read_csv(folder / "band_contributions.csv")
    assert bands.shape == (len(model.labels), 2 + model.input_shape[1])
    # a band's contribution is its mean map summed over channels and frames
    np.testing.assert_allclose(
        bands.filter(like="band_").to_numpy(), maps.sum(axis=(1, 3)), rtol=1e-4, atol=1e-6
    )

    # the silhouettes are scikit-learn's on the written embedding
    embedding = np.load(folder / "embedding.npy")
    clips = pd.read_csv(folder / "embedding.csv")
    emb = explained["embedding"]
    assert emb["silhouette_emotion"] == pytest.approx(silhouette_score(embedding, clips["emotion"]))
    assert emb["silhouette_speaker"] == pytest.approx(
        silhouette_score(embedding, clips["speaker"].astype(str))
    )
    assert emb["clusters_by"] == (
        "speaker" if emb["silhouette_speaker"] > emb["silhouette_emotion"] else "emotion"
    )
    assert json.loads((tmp_path / "eval.json").read_text())["explanations"]["clips"] == 24


def test_attributions_add_up_to_the_logit_difference_and_the_embedding_feeds_the_classifier(trained):
    model = SERModel.load_from_checkpoint(trained.ckpt)
    datamodule = _datamodule(trained, model)
    settings = ExplainSettings(max_clips=16, steps=64, batch_size=8)
    explained = explain_clips(model, datamodule, "test", torch.device("cpu"), settings)
    assert len(explained.rows) == 16
    # completeness: each clip's attributions sum to its true-class logit minus the zero baseline's
    # (logit_gaps come from two plain forward passes), up to Captum's convergence delta
    sums = explained.band_contributions.sum(axis=1)
    np.testing.assert_allclose(sums - explained.logit_gaps, explained.deltas, atol=1e-4)
    assert np.abs(explained.deltas).max() < 0.05 * np.abs(explained.logit_gaps).max()
    # the embedding is the classifier's input: the classifier turns it into the predicted class
    batch = next(iter(DataLoader(datamodule.dataset("test"), batch_size=4, collate_fn=collate_batch)))
    layer = classifier_layer(model, model.inputs(batch), None)
    with torch.no_grad():
        logits = layer(torch.as_tensor(explained.embeddings, dtype=torch.float32))
    assert logits.argmax(dim=1).numpy().tolist() == explained.predicted.tolist()


def _datamodule(trained, model):
    from ser_lightning.checkpoint import RECORD_KEY, read_checkpoint

    record = read_checkpoint(trained.ckpt)[RECORD_KEY]
    machine = {"data_dir": str(trained.root.parent), "cache_dir": str(trained.cache)}
    data, _ = eval_data_config(None, record, str(trained.ckpt), machine)
    datamodule = build_eval_datamodule(data, model, "test")
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule


def test_bad_explain_settings_name_the_setting():
    with pytest.raises(InvalidSetting, match=r"explain_settings\.steps=0"):
        ExplainSettings(steps=0)
    with pytest.raises(InvalidSetting, match=r"explain_settings has no \['max_clip'\]"):
        ExplainSettings.from_config({"max_clip": 3})


@pytest.mark.slow
def test_whole_clips_are_explained_on_bins_of_each_clips_own_length(tmp_path):
    from .test_variable_length_run import SMALL_CRNN, WHOLE_CLIPS

    corpus = ragged_tone_corpus(tmp_path / "ragged")
    overrides = [
        *WHOLE_CLIPS,
        *SMALL_CRNN,
        f"data.root={corpus}",
        "debug=limit",
        "trainer.max_epochs=1",
        "test=false",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(compose_train(overrides, tmp_path / "run", tmp_path / "cache"))
    finally:
        torch.set_num_threads(threads)
    trained = SimpleNamespace(
        root=corpus, cache=tmp_path / "cache", ckpt=tmp_path / "run" / "checkpoints" / "last.ckpt"
    )
    model = SERModel.load_from_checkpoint(trained.ckpt)
    settings = ExplainSettings(max_clips=8, steps=32, time_bins=5)
    explained = explain_clips(model, _datamodule(trained, model), "test", torch.device("cpu"), settings)
    assert explained.class_maps.shape == (len(model.labels), *model.input_shape[:2], 5)
    # completeness holds on each clip's own frames (the padding of a batch takes no share)
    sums = explained.band_contributions.sum(axis=1)
    np.testing.assert_allclose(sums - explained.logit_gaps, explained.deltas, atol=1e-4)
    assert np.abs(explained.deltas).max() < 0.1 * np.abs(explained.logit_gaps).max()
