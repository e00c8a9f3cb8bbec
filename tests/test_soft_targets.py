"""Annotator votes and data.targets=soft: parsing, distributions, the loss, JS divergence, refusals, a run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from ser_lightning.data.corpora.crema_d import CremaDCorpus
from ser_lightning.data.corpora.iemocap import IemocapCorpus
from ser_lightning.data.corpora.msp_podcast import MspPodcastCorpus
from ser_lightning.data.vote_targets import soft_target_matrix
from ser_lightning.data.votes import (
    OTHER_VOTES,
    VoteTableError,
    has_votes,
    vote_distribution,
    vote_row,
)
from ser_lightning.demo_corpus import DemoCorpusSpec
from ser_lightning.demo_corpus.dimensions import utterance_of
from ser_lightning.demo_corpus.votes import DEMO_RATERS, demo_vote_probabilities, demo_votes
from ser_lightning.metrics import jensen_shannon_divergence
from ser_lightning.reporting.agreement import AgreementSettings, agreement_summary, agreement_table
from ser_lightning.train import train
from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.jobs import StartupError

from .helpers.configs import compose_train
from .helpers.corpora import SMALL_DEMO, small_demo_overrides
from .helpers.models import TINY_NET, module_from_config
from .helpers.runs import assert_complete_test_result
from .test_corpus_iemocap import write_iemocap

CREMA_HEADER = (
    ",localid,pos,ans,ttr,queryType,numTries,clipNum,questNum,subType,clipName,sessionNums,"
    "respEmo,respLevel,dispEmo,dispVal,dispLevel\n"
)


def crema_row(index: int, clip: str, query: int, answer: str) -> str:
    return f"{index},r{index},1,{answer}_50,1,{query},0,1,1,4,{clip},s{index},{answer},50,A,50,X\n"


def test_crema_d_votes_count_the_voice_only_answers_per_clip(tmp_path, tone_writer):
    root = tmp_path / "crema"
    for clip in ("1001_DFA_ANG_XX", "1002_IEO_SAD_HI", "1003_TIE_NEU_XX"):
        tone_writer(root / "AudioWAV" / f"{clip}.wav", seconds=0.1)
    rows = [
        ("1001_DFA_ANG_XX", 1, "A"),
        ("1001_DFA_ANG_XX", 1, "A"),
        ("1001_DFA_ANG_XX", 1, "D"),
        ("1001_DFA_ANG_XX", 2, "N"),  # a face-only rating: not about the audio
        ("1001_DFA_ANG_XX", 3, "N"),  # audio-visual: not about the audio alone
        ("1002_IEO_SAD_HI", 1, "S"),
        ("1002_IEO_SAD_HI", 1, "N"),
        ("1002_IEO_SAD_HI", 1, "X"),  # an answer outside the six: counted as other
    ]
    (root / "finishedResponses.csv").write_text(
        CREMA_HEADER + "".join(crema_row(i, *row) for i, row in enumerate(rows))
    )
    table = CremaDCorpus(str(root)).scan().table.set_index(table_index := "statement")
    assert has_votes(table)
    angry, sad, neutral = table.loc["DFA"], table.loc["IEO"], table.loc["TIE"]
    assert (angry["votes_angry"], angry["votes_disgust"], angry["votes_neutral"]) == (2, 1, 0)
    assert (sad["votes_sad"], sad["votes_neutral"], sad[OTHER_VOTES]) == (1, 1, 1)
    assert neutral.filter(like="votes_").sum() == 0  # not in the vote table: no votes
    assert table_index == "statement"


def test_crema_d_without_the_vote_table_has_no_votes_and_a_broken_one_is_named(tmp_path, tone_writer):
    root = tmp_path / "crema"
    tone_writer(root / "AudioWAV" / "1001_DFA_ANG_XX.wav", seconds=0.1)
    assert not has_votes(CremaDCorpus(str(root)).scan().table)
    (root / "finishedResponses.csv").write_text("clipName,respEmo\n1001_DFA_ANG_XX,A\n")
    with pytest.raises(VoteTableError, match=r"finishedResponses.csv lacks the column\(s\) \['queryType'\]"):
        CremaDCorpus(str(root)).scan()


@pytest.mark.parametrize(("label_set", "column"), [("4class", OTHER_VOTES), ("all", "votes_frustrated")])
def test_iemocap_votes_are_the_evaluators_lines_named_as_the_hard_label(
    tmp_path, tone_writer, label_set, column
):
    """Every fixture turn has `C-E1: Neutral`, `C-E2: Neutral; Frustration` and the actor's `C-F1`:
    1.5 neutral votes and half a vote that 4class leaves out (other) and `all` calls frustrated."""
    write_iemocap(tmp_path / "data", tone_writer)
    table = IemocapCorpus(str(tmp_path / "data"), label_set=label_set).scan().table
    assert len(table) > 0 and has_votes(table)
    np.testing.assert_allclose(table["votes_neutral"], 1.5)
    np.testing.assert_allclose(table[column], 0.5)
    votes = table.filter(like="votes_").sum(axis=1)
    np.testing.assert_allclose(votes, 2.0)  # two evaluators; F1 rates their own turn, not a vote


def test_vote_distribution_renames_like_the_labels_and_counts_what_falls_outside():
    table = pd.DataFrame(
        [
            vote_row(Counter(neutral=3, calm=1, angry=2)),
            vote_row(Counter(surprised=4, whatever=1)),
            vote_row(Counter(happy=1, sad=1)),
        ]
    )
    distribution, outside = vote_distribution(table, ["neutral", "angry", "sad"], {"calm": "neutral"})
    np.testing.assert_allclose(distribution[0], [4 / 6, 2 / 6, 0])
    assert np.isnan(distribution[1]).all()  # every vote is outside the run's labels
    np.testing.assert_allclose(distribution[2], [0, 0, 1])
    np.testing.assert_allclose(outside, [0, 5, 1])


def test_jensen_shannon_divergence_matches_scipy_and_a_hand_value():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(5), size=20), rng.dirichlet(np.ones(5), size=20)
    q[0] = [0, 0, 1, 0, 0]  # zeros in the support
    expected = np.array([jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q, strict=True)])
    np.testing.assert_allclose(jensen_shannon_divergence(p, q), expected, atol=1e-12)
    # [1, 0] against [0.5, 0.5]: m = [0.75, 0.25]; (log2(4/3) + (0.5 log2(2/3) + 0.5 log2 2)) / 2
    hand = (np.log2(4 / 3) + 0.5 * np.log2(0.5 / 0.75) + 0.5 * np.log2(0.5 / 0.25)) / 2
    assert jensen_shannon_divergence([[1.0, 0.0]], [[0.5, 0.5]])[0] == pytest.approx(hand)
    assert jensen_shannon_divergence([[1.0, 0.0]], [[0.0, 1.0]])[0] == pytest.approx(1.0)


def test_the_soft_loss_is_cross_entropy_against_the_votes_with_explicit_smoothing():
    module = module_from_config([*TINY_NET, "model.label_smoothing=0.1"], duration=0.5)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5, 0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]])
    votes = torch.zeros(2, 8)
    votes[0, :2] = torch.tensor([0.75, 0.25])
    votes[1, 7] = 1.0
    log_p = logits.log_softmax(dim=1).numpy().astype(np.float64)
    smoothed = 0.9 * votes.numpy() + 0.1 / 8
    expected = float(-(smoothed * log_p).sum(axis=1).mean())
    assert float(module.loss(logits, votes)) == pytest.approx(expected, rel=1e-5)
    # a one-hot distribution gives the hard label's loss
    assert float(module.loss(logits[1:], votes[1:])) == pytest.approx(
        float(module.loss(logits[1:], torch.tensor([7])))
    )


def test_demo_votes_are_simulated_from_the_design_and_reproducible():
    spec = DemoCorpusSpec(**SMALL_DEMO)
    clear = utterance_of("03-01-05-02-01-01-03.wav")  # strong anger
    votes = demo_votes(spec, clear)
    assert sum(votes.values()) == DEMO_RATERS and votes == demo_votes(spec, clear)
    probabilities = demo_vote_probabilities(spec, clear)
    assert probabilities.sum() == pytest.approx(1.0)
    # the raters mostly hear the acted emotion across the corpus's design
    names = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    hits = [
        demo_vote_probabilities(spec, utterance_of(f"03-01-{e:02d}-02-01-01-{a:02d}.wav")).argmax() == e - 1
        for e in range(2, 9)
        for a in range(1, 7)
    ]
    assert np.mean(hits) > 0.6, names


def test_soft_targets_on_a_corpus_without_votes_stop_naming_it(tone_root, tmp_path):
    overrides = [
        "data=ravdess",
        f"data.root={tone_root}",
        "data.duration=0.3",
        "debug=fdr",
        "data.targets=soft",
    ]
    with pytest.raises(
        InvalidSetting, match=r"data.corpus=ravdess has none here \(corpora with votes: crema_d"
    ):
        train(compose_train(overrides, tmp_path / "run", tmp_path / "cache"))


def test_a_bad_targets_setting_is_named(tone_root, tmp_path):
    overrides = [
        "data=ravdess",
        f"data.root={tone_root}",
        "data.duration=0.3",
        "debug=fdr",
        "data.targets=votes",
    ]
    with pytest.raises(StartupError, match="InvalidSetting: data.targets='votes' is not one of"):
        train(compose_train(overrides, tmp_path / "run", tmp_path / "cache"))


SOFT_RUN = [
    "model=crnn_attn",
    "model.net.conv_channels=[8,16]",
    "model.net.lstm_hidden=16",
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=4",
    "+trainer.limit_val_batches=2",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.lr_monitor=null",
    "logger=none",
    "print_config=false",
    "data.targets=soft",
]


@pytest.mark.slow
def test_a_soft_run_reports_divergence_and_agreement(small_demo_root, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = compose_train(
            small_demo_overrides(small_demo_root) + SOFT_RUN, tmp_path / "run", tmp_path / "cache"
        )
        metrics, _ = train(cfg)
    finally:
        torch.set_num_threads(threads)
    summary = assert_complete_test_result(tmp_path / "run", metrics)
    report = tmp_path / "run" / "test_report"
    agreement = json.loads((report / "agreement.json").read_text())
    assert summary["test_results"]["agreement"] == agreement
    assert (report / "agreement.png").stat().st_size > 0
    clips = pd.read_csv(report / "agreement.csv")
    predictions = pd.read_csv(report / "predictions.csv").set_index("file")
    labels = summary["labels"]
    # the divergence, recomputed with scipy from the predictions and the demo raters' own votes
    spec = DemoCorpusSpec(**SMALL_DEMO)
    expected = []
    for file in clips["file"]:
        counts = demo_votes(spec, utterance_of(file))
        votes = np.array([counts.get(name, 0) for name in labels], dtype=np.float64)
        predicted = predictions.loc[file, [f"prob_{name}" for name in labels]].to_numpy(dtype=np.float64)
        expected.append(jensenshannon(predicted, votes / votes.sum(), base=2) ** 2)
    np.testing.assert_allclose(clips["js_divergence"], expected, atol=1e-5)
    assert agreement["js_divergence"] == pytest.approx(np.mean(expected), abs=1e-5)
    high = clips["agreement"] >= 0.75
    assert agreement["high_agreement_clips"] == int(high.sum()) > 0
    assert agreement["low_agreement_clips"] == int((~high).sum()) > 0
    assert agreement["accuracy_high_agreement"] == pytest.approx(clips["correct"][high].mean())
    assert agreement["abstains_low_agreement"] == int(((clips["confidence"] < 0.5) & ~high).sum())


def test_rows_without_a_vote_for_the_run_labels_train_on_their_hard_label():
    table = pd.DataFrame(
        [vote_row(Counter(angry=2, sad=2)), vote_row(Counter(surprised=3)), vote_row(Counter())]
    )
    targets, without, outside = soft_target_matrix(table, ["angry", "sad", "happy"], {}, np.array([0, 2, 1]))
    np.testing.assert_allclose(targets, [[0.5, 0.5, 0], [0, 0, 1], [0, 1, 0]])
    assert (without, outside) == (2, 3.0)


def test_the_agreement_summary_splits_clips_by_their_majority_share():
    """Four clips by hand: agreement 1, 2/3, 0.5, 0.8 over two labels; threshold 0.75."""
    annotators = np.array([[1.0, 0.0], [2 / 3, 1 / 3], [0.5, 0.5], [0.2, 0.8]])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.55, 0.45], [0.3, 0.7]])
    y_true = np.array([0, 0, 0, 1])
    settings = AgreementSettings(threshold=0.75, min_confidence=0.6)
    table = agreement_table(["a", "b", "c", "d"], y_true, probabilities, annotators, ["x", "y"], settings)
    summary = agreement_summary(table, settings)
    assert table["high_agreement"].tolist() == [True, False, False, True]
    assert (summary["accuracy_high_agreement"], summary["accuracy_low_agreement"]) == (1.0, 0.5)
    # confidence below 0.6: only c (0.55) among the low-agreement b (0.6) and c; none of a, d
    assert (summary["abstains_low_agreement"], summary["abstains_high_agreement"]) == (1, 0)
    expected = np.mean(
        [jensenshannon(p, q, base=2) ** 2 for p, q in zip(probabilities, annotators, strict=True)]
    )
    assert summary["js_divergence"] == pytest.approx(expected)
    with pytest.raises(InvalidSetting, match=r"agreement.threshold=1.5 must lie in \[0, 1\]"):
        AgreementSettings(threshold=1.5)


def test_a_soft_run_on_an_iemocap_tree_reports_the_evaluators_agreement(tmp_path, tone_writer):
    """Every turn of the tree has 1.5 neutral votes of 2 (the other half is Frustration, outside
    4class): each test clip's distribution is all neutral, its agreement 1."""
    from .test_corpus_iemocap import clean_release

    root = clean_release(tmp_path / "IEMOCAP_full_release", tone_writer)
    overrides = ["data=iemocap", f"data.root={root}", "data.duration=0.5", "data.fold=1", "debug=fdr"]
    metrics, _ = train(compose_train([*overrides, "data.targets=soft"], tmp_path / "run", tmp_path / "cache"))
    summary = assert_complete_test_result(tmp_path / "run", metrics)
    agreement = summary["test_results"]["agreement"]
    clips = pd.read_csv(tmp_path / "run" / "test_report" / "agreement.csv")
    predictions = pd.read_csv(tmp_path / "run" / "test_report" / "predictions.csv")
    assert agreement["clips"] == len(clips) == len(predictions) == 10  # Session 2: 12 turns less two xxx
    assert (clips["agreement"] == 1.0).all() and agreement["low_agreement_clips"] == 0
    # against an all-neutral distribution the divergence is JS(p, [1, 0, 0, 0]), by scipy
    probabilities = predictions.set_index("file").loc[clips["file"], [f"prob_{n}" for n in summary["labels"]]]
    expected = [jensenshannon(p, [1.0, 0, 0, 0], base=2) ** 2 for p in probabilities.to_numpy()]
    np.testing.assert_allclose(clips["js_divergence"], expected, atol=1e-5)


def test_msp_podcast_votes_are_each_annotators_primary_emotion(tmp_path):
    from .test_corpus_msp_podcast import GOOD_ROWS, csv_line, msp_tree

    root = msp_tree(tmp_path / "msp", [csv_line(*row) for row in GOOD_ROWS], [row[0] for row in GOOD_ROWS])
    first, second = GOOD_ROWS[0][0], GOOD_ROWS[1][0]
    (root / "Labels" / "labels_detailed.csv").write_text(
        "FileName,WorkerID,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom\n"
        f"{first},w1,Angry,,4,2,5\n{first},w2,Angry,,4,2,5\n{first},w3,Contempt,,4,2,5\n"
        f"{second},w1,Surprise,,4,5,4\n{second},w4,Other-Amused,,4,5,4\n"
    )
    table = MspPodcastCorpus(str(root)).scan().table.set_index("statement")
    one, two = table.loc[Path(first).stem], table.loc[Path(second).stem]
    assert (one["votes_angry"], one["votes_contempt"], one[OTHER_VOTES]) == (2, 1, 0)
    assert (two["votes_surprised"], two[OTHER_VOTES]) == (1, 1)
    assert table.filter(like="votes_").sum(axis=1).drop([Path(first).stem, Path(second).stem]).eq(0).all()
