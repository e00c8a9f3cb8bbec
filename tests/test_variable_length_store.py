"""Whole-length caches of a corpus of clips of different lengths, batched by length, through a network."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.data.bucketing import LengthBucketedShuffle, padding_share
from ser_lightning.data.feature_store import FeatureStore
from ser_lightning.data.loading import collate_batch
from ser_lightning.data.ragged import RaggedUtterances
from ser_lightning.data.sampling import EpochSeededShuffle
from ser_lightning.data.variable_length import WholeClipStore, load_whole, prefetched, whole_length
from ser_lightning.features.logmel import LogMel
from ser_lightning.models import CRNNAttention
from tests.helpers.corpora import ragged_tone_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = ragged_tone_corpus(tmp_path_factory.mktemp("ragged"))
    paths = sorted(str(p) for p in root.rglob("*.wav"))
    labels = np.array([int(p.split("/")[-1].split("-")[2]) - 1 for p in paths])
    return pd.DataFrame({"path": paths}), labels


@pytest.fixture(scope="module")
def store(corpus, tmp_path_factory):
    features = LogMel(n_mels=16, n_fft=256, hop_length=128)
    return FeatureStore(features, AudioSettings(duration=3.0), str(tmp_path_factory.mktemp("cache")))


def test_whole_clips_are_cached_at_their_own_length_once(corpus, store, monkeypatch):
    table, _ = corpus
    whole = WholeClipStore(store)
    key = whole.ensure(table)

    def no_header_reads(*args):
        raise AssertionError("a warm run reads the lengths from the cache, not from the files")

    monkeypatch.setattr("ser_lightning.data.variable_length.whole_length", no_header_reads)
    assert whole.ensure(table) == key
    assert store.events[-4:] == [
        "built whole-length waveforms",
        "built whole-length features",
        "reused whole-length waveforms",
        "reused whole-length features",
    ]
    arrays = whole.load(key)
    assert isinstance(arrays.waveforms.data, np.memmap)
    lengths = arrays.waveforms.lengths
    assert lengths.min() == 3200 and lengths.max() == 19200  # 0.2 s and 1.2 s at 16 kHz
    for row in (0, 5, 17):
        path = table["path"][row]
        expected = load_whole(path, store.audio, whole_length(path, store.audio))
        np.testing.assert_array_equal(arrays.waveforms[row], expected)
        alone = store.features.extract(torch.from_numpy(expected)[None])[0].numpy()
        np.testing.assert_allclose(np.moveaxis(arrays.features[row], 0, -1), alone, atol=1e-5)


def test_prefetched_items_come_in_order_and_lazily():
    made = []

    def make(i):
        made.append(i)
        return np.full(3, i)

    items = prefetched(make, 20, workers=3)
    assert made == []  # nothing before the first item is asked for
    assert [int(item[0]) for item in items] == list(range(20))


def test_a_network_trains_and_scores_bucketed_padded_batches_of_whole_clips(corpus, store):
    table, labels = corpus
    whole = WholeClipStore(store)
    arrays = whole.load(whole.ensure(table))
    rows = np.arange(len(table))
    train = RaggedUtterances(arrays.features, rows, labels, "features", max_length=80, time_last=True)
    frames = train.lengths()
    sampler = LengthBucketedShuffle(frames, 16, seed=0, item_seeds=True)
    plain = EpochSeededShuffle(len(rows), seed=0)
    assert padding_share(frames, list(sampler), 16) < padding_share(frames, list(plain), 16)
    torch.manual_seed(0)
    net = CRNNAttention((1, 16, 80), 8, conv_channels=(4, 8), lstm_hidden=8)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    loader = DataLoader(train, batch_size=16, sampler=sampler, collate_fn=collate_batch)
    losses = []
    for _ in range(4):
        for batch in loader:
            features = store.features.normalize_padded(batch["features"], batch["lengths"])
            loss = torch.nn.functional.cross_entropy(net(features, batch["lengths"]), batch["label"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    assert np.mean(losses[-12:]) < np.mean(losses[:12])
    net.eval()
    test = RaggedUtterances(arrays.features, rows[:40], labels, "features", time_last=True)  # whole clips
    batch = next(iter(DataLoader(test, batch_size=40, collate_fn=collate_batch)))
    with torch.no_grad():
        together = net(store.features.normalize_padded(batch["features"], batch["lengths"]), batch["lengths"])
        for i in (0, 13, 39):
            clip = torch.from_numpy(np.moveaxis(np.array(arrays.features[i]), 0, -1))[None]
            alone = net(store.features.normalize(clip))
            torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=1e-5)
