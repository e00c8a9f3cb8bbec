"""Protocol cards: what a result was measured on, and study tables that refuse to mix protocols."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ser_lightning.data.cache import ArrayCache
from ser_lightning.data.manifest import CorpusSource, prepare_manifest
from ser_lightning.data.protocol_card import card_hash, differing_fields, protocol_card
from ser_lightning.data.splits import ActorSplit
from ser_lightning.metrics import METRIC_DEFINITIONS
from ser_lightning.report import main as report_main
from ser_lightning.reporting.study import build_report
from ser_lightning.reporting.study_protocols import PROTOCOL, ProtocolMismatch


def card_of(root: Path, cache: Path, labels="all", seed: int = 42) -> dict:
    source = CorpusSource("ravdess", str(root), labels=labels)
    return protocol_card(prepare_manifest(source, ActorSplit(seed=seed), ArrayCache(str(cache))))


def test_a_card_names_the_corpus_files_labels_split_rule_and_metrics(tone_root, tmp_path):
    card = card_of(tone_root, tmp_path / "cache")
    assert card["corpus"] == "ravdess" and len(card["corpus_files_sha256"]) == 64
    assert card["labels"][:2] == ["neutral", "calm"] and len(card["labels"]) == 8
    assert card["split"] == {"split": "actor", "speaker_independent": True, "ratios": [0.7, 0.15, 0.15]}
    assert card["repeat"] == {"seed": 42}
    assert card["metrics"] == METRIC_DEFINITIONS and card["label_map"] == {}
    assert len(card["hash"]) == 12 and card["hash"] == card_hash(card)

    # the same corpus elsewhere on disk (relative paths): the same card
    moved = tmp_path / "elsewhere" / "corpus"
    shutil.copytree(tone_root, moved)
    assert card_of(moved, tmp_path / "cache2") == card

    # another split seed is a repeat of the same protocol: same hash, other fold membership
    reseeded = card_of(tone_root, tmp_path / "cache", seed=7)
    assert reseeded["hash"] == card["hash"] and reseeded["repeat"] == {"seed": 7}
    assert reseeded["fold_membership_sha256"] != card["fold_membership_sha256"]

    # other labels, or a file less: another protocol, and the fields that differ are named
    four = card_of(tone_root, tmp_path / "cache", labels=["neutral", "happy", "sad", "angry"])
    assert four["hash"] != card["hash"] and differing_fields(card, four) == ["labels"]
    next(moved.rglob("*.wav")).unlink()
    assert differing_fields(card, card_of(moved, tmp_path / "cache3")) == ["corpus_files_sha256"]


def write_job(sweep: Path, name: str, model: str, ua: float, card: dict) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={model}"]))
    summary = {"metrics": {"test/ua": ua, "test/acc": ua}, "protocol_card": card}
    (job / "summary.json").write_text(json.dumps(summary))
    (job / "job_status.json").write_text(json.dumps({"status": "ok", "overrides": [f"model={model}"]}))


def test_a_study_of_two_protocols_stops_naming_what_differs_unless_allowed(tone_root, tmp_path):
    card = card_of(tone_root, tmp_path / "cache")
    other = card_of(tone_root, tmp_path / "cache", labels=["neutral", "happy", "sad", "angry"])
    same = tmp_path / "same"
    write_job(same, "0", "acnt", 0.5, card)
    write_job(same, "1", "crnn_attn", 0.6, card)
    written = build_report(same)
    assert pd.read_csv(written["results"])[PROTOCOL].tolist() == [card["hash"]] * 2
    assert f"Protocol: `{card['hash']}`" in written["markdown"].read_text()

    mixed = tmp_path / "mixed"
    write_job(mixed, "0", "acnt", 0.5, card)
    write_job(mixed, "1", "crnn_attn", 0.6, other)
    with pytest.raises(
        ProtocolMismatch, match=r"job 0 .* and job 1 .* differ in labels.*--allow-protocol-mismatch"
    ):
        build_report(mixed)
    assert not (mixed / "report.md").exists()
    with pytest.raises(SystemExit) as stopped:  # the command line: one line, no traceback
        report_main([str(mixed)])
    assert stopped.value.code != 0

    report_main([str(mixed), "--allow-protocol-mismatch"])
    markdown = (mixed / "report.md").read_text()
    assert "**Protocols differ**" in markdown and "differ in labels" in markdown
    assert set(pd.read_csv(mixed / "results.csv")[PROTOCOL]) == {card["hash"], other["hash"]}


def test_a_training_run_carries_one_card_in_its_summary_and_its_test_report(tiny_served_model):
    """The card is computed once per run (it hashes every corpus file) and handed to both."""
    run = Path(tiny_served_model.run_dir)
    summary = json.loads((run / "summary.json").read_text())["protocol_card"]
    report = json.loads((run / "test_report" / "metrics.json").read_text())["protocol_card"]
    assert report == summary and summary["hash"] == card_hash(summary)
    assert summary["corpus"] == "ravdess" and summary["split"]["split"] == "actor"
