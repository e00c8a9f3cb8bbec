"""The cross-corpus matrix: a tiny model per corpus, each tested on every corpus with a shared label set."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from omegaconf import open_dict
from rich.console import Console

from ser_lightning.checkpoint import RECORD_KEY, read_checkpoint
from ser_lightning.cross_corpus import check_settings, cross_corpus
from ser_lightning.eval import evaluate
from ser_lightning.utils.errors import InvalidSetting

from .helpers.configs import compose_train
from .helpers.corpora import TINY_RUN, small_demo_overrides

FOUR = ["neutral", "happy", "sad", "angry"]
FOUR_CLASS_MAP = {"calm": "neutral", "excited": "happy"}
# a few batches of a small network on 0.3 s clips (TINY_RUN without its corpus)
TRAIN = [
    *(o for o in TINY_RUN if not o.startswith("data=")),
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "print_config=false",
]


def matrix_config(tmp_path, cache, corpora: dict[str, list[str]]):
    cfg = compose_train([], tmp_path, cache, config_name="cross_corpus")
    with open_dict(cfg):
        cfg.corpora = list(corpora)
        cfg.corpus_overrides = corpora
        cfg.train_overrides = TRAIN
        cfg.eval_overrides = ["device=cpu"]
    return cfg


def test_the_matrix_of_two_corpora(tone_root, small_demo_root, tmp_path, one_torch_thread):
    corpora = {
        "tones": ["data=ravdess", f"data.root={tone_root}"],
        "demo": small_demo_overrides(small_demo_root),
    }
    cache = tmp_path / "cache"
    cfg = matrix_config(tmp_path, cache, corpora)
    printed = io.StringIO()
    cells = cross_corpus(cfg, console=Console(file=printed, width=220))

    assert [(c.train, c.test) for c in cells] == [(a, b) for a in corpora for b in corpora]
    matrix = pd.read_csv(tmp_path / "cross_corpus_ua.csv", index_col=0)
    assert matrix.shape == (2, 2) and list(matrix.index) == list(corpora) == list(matrix.columns)
    frame = pd.read_csv(tmp_path / "cross_corpus.csv")
    assert len(frame) == 4 and {"ua", "ua_low", "ua_high", "protocol_hash"} <= set(frame.columns)
    assert (tmp_path / "cross_corpus.png").stat().st_size > 0
    markdown = (tmp_path / "cross_corpus.md").read_text()
    assert "| **tones** |" in markdown and cells[1].text() in markdown
    text = printed.getvalue()
    assert "Cross-corpus UA (neutral, happy, sad, angry)" in text and "mean off-diagonal" in text

    for cell in cells:
        assert cell.ua_low is not None and cell.ua_low <= cell.ua <= cell.ua_high
        summary = json.loads((tmp_path / "train" / cell.train / "summary.json").read_text())
        assert summary["labels"] == FOUR
        if cell.train == cell.test:
            # the diagonal: the training run's own test split and protocol
            assert cell.split == "test" and cell.ua == pytest.approx(summary["metrics"]["test/ua"])
            assert cell.protocol_hash == summary["protocol_card"]["hash"]
            assert summary["protocol_card"]["label_map"] == FOUR_CLASS_MAP
            continue
        # another corpus: an eval of the checkpoint on all its files gives the cell, and with no map
        # of its own, eval harmonises the corpus with the map the checkpoint records
        ckpt = summary["best_checkpoint"]
        assert read_checkpoint(ckpt)[RECORD_KEY]["data"]["label_map"] == FOUR_CLASS_MAP
        eval_cfg = compose_train(
            [f"ckpt_path={ckpt}", "split=all", "device=cpu", *corpora[cell.test]],
            tmp_path / "check" / cell.train,
            cache,
            config_name="eval",
        )
        report, scored = evaluate(eval_cfg)
        assert cell.split == "all" and cell.ua == pytest.approx(report.metrics["ua"], abs=1e-9)
        assert cell.files == report.metrics["num_files"]
        assert cell.protocol_hash == scored["protocol_card"]["hash"]
        assert scored["protocol_card"]["label_map"] == FOUR_CLASS_MAP
        assert [cell.ua_low, cell.ua_high] == pytest.approx(scored["intervals"]["intervals"]["ua"])

    # run again in the same folder: every run and test is reused, the matrix is the same
    again = cross_corpus(cfg, console=Console(file=io.StringIO()))
    assert again == cells


def test_bad_matrix_settings_are_named(tmp_path):
    cfg = matrix_config(tmp_path, tmp_path / "cache", {"ravdess": []})
    with pytest.raises(InvalidSetting, match=r"corpora=\['ravdess'\] must list at least two"):
        check_settings(cfg)
    with open_dict(cfg):
        cfg.corpora = ["ravdess", "nowhere"]
        cfg.corpus_overrides = {}
    with pytest.raises(InvalidSetting, match="'nowhere' is not a data config"):
        check_settings(cfg)
    with open_dict(cfg):
        cfg.corpora = ["ravdess", "crema_d"]
        cfg.label_map = "five_class"
    with pytest.raises(InvalidSetting, match="label_map=five_class is not a label map"):
        check_settings(cfg)
    with open_dict(cfg):
        cfg.label_map = "four_class"
        cfg.corpus_overrides = {"tess": ["data.root=/x"]}
    with pytest.raises(InvalidSetting, match="corpus_overrides must map corpora of the list"):
        check_settings(cfg)
    with open_dict(cfg):
        cfg.corpus_overrides = {"ravdess": ["data.root=/x"]}
    _, overrides = check_settings(cfg)
    assert overrides == {
        "ravdess": ["data=ravdess", "+label_map=four_class", "data.root=/x"],
        "crema_d": ["data=crema_d", "+label_map=four_class"],
    }
