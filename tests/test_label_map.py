"""data.label_map: corpus emotion names harmonised onto a shared label set before the label filter."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ser_lightning.data.cache import ArrayCache
from ser_lightning.data.evaluation_data import eval_data_config
from ser_lightning.data.label_sets import check_label_map, harmonise
from ser_lightning.data.manifest import CorpusSource, prepare_manifest
from ser_lightning.data.protocol_card import differing_fields, protocol_card
from ser_lightning.data.splits import ActorSplit
from ser_lightning.utils.errors import InvalidSetting

from .helpers.configs import compose_train

FOUR = ["neutral", "happy", "sad", "angry"]


def test_check_label_map_names_unknown_emotions_and_chains():
    assert check_label_map(None) == {} and check_label_map({}) == {}
    assert check_label_map({"excited": "happy", "calm": "neutral", "sad": "sad"}) == {
        "calm": "neutral",
        "excited": "happy",
    }
    with pytest.raises(InvalidSetting, match=r"data.label_map names unknown emotions \['exited', 'glad'\]"):
        check_label_map({"exited": "glad", "calm": "neutral"})
    with pytest.raises(InvalidSetting, match="calm -> neutral.*applied once"):
        check_label_map({"calm": "neutral", "neutral": "sad"})
    with pytest.raises(InvalidSetting, match="data.label_map=.*must map emotion names"):
        check_label_map(["calm", "neutral"])
    table = pd.DataFrame({"emotion": ["calm", "happy", "excited"]})
    assert list(harmonise(table, {"calm": "neutral", "excited": "happy"})["emotion"]) == [
        "neutral",
        "happy",
        "happy",
    ]
    assert list(table["emotion"]) == ["calm", "happy", "excited"]  # the scan's table is not changed


def manifest_of(root: Path, cache: Path, label_map: dict | None, labels=FOUR):
    source = CorpusSource("ravdess", str(root), labels=labels, label_map=label_map)
    return prepare_manifest(source, ActorSplit(seed=42), ArrayCache(str(cache)))


def test_the_map_renames_before_the_label_filter_and_reaches_the_protocol_card(tone_root, tmp_path):
    plain = manifest_of(tone_root, tmp_path / "cache", None)
    mapped = manifest_of(tone_root, tmp_path / "cache", {"calm": "neutral"})
    counts = mapped.table["emotion"].value_counts()
    # the tone corpus has 24 takes of each emotion: calm takes now count as neutral
    assert counts["neutral"] == 48 and counts["happy"] == 24 and "calm" not in counts
    assert plain.table["emotion"].value_counts()["neutral"] == 24
    assert mapped.label_names == tuple(FOUR) and mapped.label_map == {"calm": "neutral"}
    assert mapped.protocol()["label_map"] == {"calm": "neutral"} and "label_map" not in plain.protocol()
    card, plain_card = protocol_card(mapped), protocol_card(plain)
    assert card["label_map"] == {"calm": "neutral"} and plain_card["label_map"] == {}
    assert "label_map" in differing_fields(card, plain_card) and card["hash"] != plain_card["hash"]
    # labels=corpus: the corpus's emotions after the map (no calm left)
    corpus = CorpusSource("ravdess", str(tone_root), labels="corpus", label_map={"calm": "neutral"})
    assert "calm" not in corpus.label_names and len(corpus.label_names) == 7
    with pytest.raises(InvalidSetting, match="unknown emotions"):
        CorpusSource("ravdess", str(tone_root), label_map={"calm": "relaxed"})


def test_the_four_class_map_composes_and_eval_takes_the_checkpoints_map(tmp_path):
    cfg = compose_train(["data=crema_d", "+label_map=four_class"], tmp_path)
    assert dict(cfg.data.label_map) == {"calm": "neutral", "excited": "happy"}
    assert list(cfg.data.labels) == FOUR
    assert dict(compose_train([], tmp_path).data.label_map) == {}

    # a data config of the command line without a map of its own takes the checkpoint's
    record = {"data": {"root": str(tmp_path), "label_map": {"calm": "neutral"}}}
    chosen = {"_target_": "x", "root": str(tmp_path), "corpus": "ravdess", "label_map": {}}
    paths = {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache")}
    settings, source = eval_data_config(chosen, record, "m.ckpt", paths)
    assert settings["label_map"] == {"calm": "neutral"} and source == "command line"
    chosen["label_map"] = {"excited": "happy"}
    assert eval_data_config(chosen, record, "m.ckpt", paths)[0]["label_map"] == {"excited": "happy"}
