"""IEMOCAP on a fixture tree in the release's exact layout: labels, speakers, faults, sessions split."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from ser_lightning.data.corpora import CORPORA, IemocapCorpus, build_corpus
from ser_lightning.data.corpora.iemocap_evaluation import (
    AnnotatorCategories,
    AnnotatorRatings,
    parse_emo_evaluation,
)
from ser_lightning.data.corpora.iemocap_layout import find_sessions, parse_utterance_id
from ser_lightning.data.splits import SPLITS, LeaveOneSessionOutSplit, make_split, speaker_session
from ser_lightning.train import train
from ser_lightning.utils.errors import InvalidSetting

from .helpers.configs import compose_train
from .helpers.runs import assert_complete_test_result

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
ANNOTATORS = (
    "C-E1:\tNeutral;\t()\n"
    "C-E2:\tNeutral; Frustration;\t(calm)\n"
    "C-F1:\tNeutral;\t()\n"
    "A-E1:\tval 3; act 2; dom  2;\t()\n"
    "A-F1:\tval 2; act 3; dom  3;\t(mildly aggravated)\n"
)
# dialog -> its turns (utterance id, label code); every id gets a .wav unless listed in NO_AUDIO
DIALOGS: dict[str, list[tuple[str, str]]] = {
    "Ses01F_impro01": [
        ("Ses01F_impro01_F000", "neu"),
        ("Ses01F_impro01_M000", "ang"),
        ("Ses01F_impro01_F001", "exc"),
        ("Ses01F_impro01_M001", "xxx"),
    ],
    "Ses01F_script01_1": [
        ("Ses01F_script01_1_F000", "sad"),
        ("Ses01F_script01_1_M000", "hap"),
        ("Ses01F_script01_1_M001", "fru"),
        ("Ses01F_script01_1_F001", "abc"),  # unknown code
    ],
    "Ses02M_impro02": [
        ("Ses02M_impro02_F000", "hap"),
        ("Ses02M_impro02_M000", "sad"),
        ("Ses02M_impro02_F001", "oth"),
        ("Ses02M_impro02_M001", "neu"),  # listed without audio
    ],
    "Ses02M_script02_2": [
        ("Ses02M_script02_2_F000", "ang"),
        ("Ses02M_script02_2_M000", "neu"),
        ("Ses02M_script02_2_M000", "ang"),  # listed twice, different labels
        ("Ses02M_script02_2_M001", "sur"),
    ],
    "Ses03M_impro03": [
        ("Ses03M_impro03_F000", "neu"),
        ("Ses03M_impro03_M000", "exc"),
        ("Ses03M_impro03_F001", "fea"),
    ],
    "Ses03M_script03_1": [
        ("Ses03M_script03_1_F000", "sad"),
        ("Ses03M_script03_1_F000", "sad"),  # listed twice, same label
        ("Ses03M_script03_1_M000", "ang"),
        ("Ses03M_script03_1_M001", "dis"),
    ],
}
NO_AUDIO = {"Ses02M_impro02_M001"}
BAD_TURN = "[12.0000 - ]\tSes01F_impro01_F002\tneu\t[2.5000, 2.5000, 2.5000]\n"  # its audio exists
KEPT_4CLASS = {
    "Ses01F_impro01_F000": ("neutral", "Ses01F", "female", "impro01"),
    "Ses01F_impro01_M000": ("angry", "Ses01M", "male", "impro01"),
    "Ses01F_impro01_F001": ("happy", "Ses01F", "female", "impro01"),
    "Ses01F_script01_1_F000": ("sad", "Ses01F", "female", "script01_1"),
    "Ses01F_script01_1_M000": ("happy", "Ses01M", "male", "script01_1"),
    "Ses02M_impro02_F000": ("happy", "Ses02F", "female", "impro02"),
    "Ses02M_impro02_M000": ("sad", "Ses02M", "male", "impro02"),
    "Ses02M_script02_2_F000": ("angry", "Ses02F", "female", "script02_2"),
    "Ses03M_impro03_F000": ("neutral", "Ses03F", "female", "impro03"),
    "Ses03M_impro03_M000": ("happy", "Ses03M", "male", "impro03"),
    "Ses03M_script03_1_F000": ("sad", "Ses03F", "female", "script03_1"),
    "Ses03M_script03_1_M000": ("angry", "Ses03M", "male", "script03_1"),
}


def write_iemocap(root: Path, tone_writer) -> Path:
    """An IEMOCAP_full_release tree under root with the faults the parser must report."""
    release = root / "IEMOCAP_full_release"
    tone = 0
    for dialog, turns in DIALOGS.items():
        session = release / f"Session{int(dialog[3:5])}"
        text = HEADER
        for i, (utterance, code) in enumerate(turns):
            text += f"[{i * 2.5:.4f} - {i * 2.5 + 1.9:.4f}]\t{utterance}\t{code}\t[2.5000, 3.0000, 2.0000]\n"
            text += (
                ANNOTATORS
                + ("A-E2:\tval ; act 2;\t()\n" if utterance == "Ses01F_impro01_F000" else "")
                + "\n"
            )
            wav = session / "sentences" / "wav" / dialog / f"{utterance}.wav"
            if utterance not in NO_AUDIO and not wav.exists():
                tone_writer(wav, seconds=0.1, freq=200.0 + 10 * tone)
                tone += 1
        if dialog == "Ses01F_impro01":
            text += BAD_TURN + ANNOTATORS + "\n"
            tone_writer(
                session / "sentences/wav" / dialog / "Ses01F_impro01_F002.wav", seconds=0.1, freq=900.0
            )
        if dialog == "Ses02M_impro02":
            text += "this line is no turn\n"
        if dialog == "Ses03M_impro03":  # an id that would lead outside data.root: refused, never opened
            text += "[20.0000 - 21.0000]\t../../../Ses03M_impro03_F009\tneu\t[2.5000, 2.5000, 2.5000]\n"
        (session / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
        (session / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text(text)
    session1 = release / "Session1"
    # other files of the release that are not sentence labels or sentence audio: never read
    (session1 / "dialog/EmoEvaluation/Categorical").mkdir(parents=True)
    (session1 / "dialog/EmoEvaluation/Categorical/Ses01F_impro01_e2_cat.txt").write_text(
        "Ses01F_impro01_F000 :Anger; ()\n"
    )
    tone_writer(session1 / "dialog/wav/Ses01F_impro01.wav", seconds=0.2)
    # faults: audio without a label line, a copy in a folder its name contradicts, macOS metadata
    tone_writer(
        release / "Session3/sentences/wav/Ses03M_impro03/Ses03M_impro03_M001.wav", seconds=0.1, freq=950.0
    )
    tone_writer(session1 / "sentences/wav/Ses01F_impro01/Ses01F_script01_1_F000.wav", seconds=0.1, freq=990.0)
    (session1 / "sentences/wav/Ses01F_impro01/._Ses01F_impro01_F000.wav").write_bytes(
        b"\0\x05\x16\x07" * 1024
    )
    return release


@pytest.fixture
def iemocap_root(tmp_path, tone_writer) -> Path:
    return write_iemocap(tmp_path / "data", tone_writer)


def by_name(items) -> dict[str, str]:
    return {Path(item.path).name: item.reason for item in items}


def test_utterance_ids_name_their_own_speaker():
    uid = parse_utterance_id("Ses01F_impro01_M003")
    assert (uid.session, uid.dialog, uid.scenario, uid.kind, uid.gender, uid.speaker) == (
        1,
        "Ses01F_impro01",
        "impro01",
        "improvised",
        "male",
        "Ses01M",
    )
    assert parse_utterance_id("Ses05M_script01_1b_F011").dialog == "Ses05M_script01_1b"
    assert parse_utterance_id("Ses05M_script01_1b_F011").kind == "scripted"
    for bad in ("Ses06F_impro01_F000", "Ses01F_impro01", "../Ses01F_impro01_F000", "Ses01F_talk01_F000"):
        with pytest.raises(ValueError, match="not an IEMOCAP utterance id"):
            parse_utterance_id(bad)


def test_emo_evaluation_keeps_times_vad_and_every_annotator():
    text = HEADER + "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 3.0000, 2.0000]\n" + ANNOTATORS
    text += "A-E2:\tval ; act 2;\t()\n\n[1.0 - 2.0]\tSes01F_impro01_F001\n"
    parsed = parse_emo_evaluation(text, "Ses01F_impro01.txt")
    [turn] = parsed.turns
    assert (turn.utterance, turn.label, turn.start, turn.end, turn.line) == (
        "Ses01F_impro01_F000",
        "neu",
        6.2901,
        8.2357,
        3,
    )
    assert (turn.valence, turn.activation, turn.dominance) == (2.5, 3.0, 2.0)
    assert turn.categories == [
        AnnotatorCategories("E1", ("Neutral",)),
        AnnotatorCategories("E2", ("Neutral", "Frustration"), "calm"),
        AnnotatorCategories("F1", ("Neutral",)),
    ]
    assert turn.ratings == [
        AnnotatorRatings("E1", 3, 2, 2),
        AnnotatorRatings("F1", 2, 3, 3, "mildly aggravated"),
    ]
    [bad_rating] = parsed.annotator_problems
    assert bad_rating.line == 9 and bad_rating.utterance == "Ses01F_impro01_F000"
    [bad_turn] = parsed.problems
    assert bad_turn.where == "Ses01F_impro01.txt:11" and bad_turn.utterance == "Ses01F_impro01_F001"


def test_scan_gives_the_exact_table_and_says_what_it_left_out(iemocap_root, caplog):
    corpus = build_corpus("iemocap", str(iemocap_root.parent), ["speech"])
    assert CORPORA["iemocap"] is IemocapCorpus and corpus.label_set == "4class"
    with caplog.at_level(logging.INFO, logger="ser_lightning.data.corpora"):
        scan = corpus.scan()
    table = scan.table
    got = {
        Path(row.path).stem: (row.emotion, row.actor, row.gender, row.statement) for row in table.itertuples()
    }
    assert got == KEPT_4CLASS
    assert set(table["corpus"]) == {"iemocap"} and set(table["intensity"]) == {"unspecified"}
    assert table["actor"].nunique() == 6 and all(Path(p).is_absolute() for p in table["path"])
    assert all(
        "sentences/wav" in p and Path(p).parent.name == Path(p).stem.rsplit("_", 1)[0] for p in table["path"]
    )

    rejected = by_name(scan.rejected)
    assert (
        "its label line" in rejected["Ses01F_impro01_F002.wav"]
        and "cannot be read" in rejected["Ses01F_impro01_F002.wav"]
    )
    assert "unknown label code 'abc'" in rejected["Ses01F_script01_1_F001.wav"]
    assert "the audio file is missing" in rejected["Ses02M_impro02_M001.wav"]
    assert "listed with different labels (neu at" in rejected["Ses02M_script02_2_M000.wav"]
    assert "no label line for Ses03M_impro03_M001" in rejected["Ses03M_impro03_M001.wav"]
    assert "macOS metadata" in rejected["._Ses01F_impro01_F000.wav"]
    misplaced = [r for r in scan.rejected if "Ses01F_impro01/Ses01F_script01_1_F000.wav" in r.path]
    assert len(misplaced) == 1 and "its place contradicts its name" in misplaced[0].reason
    second = [r for r in scan.rejected if r.path.endswith("Ses03M_script03_1.txt:10")]
    assert len(second) == 1 and "a second listing of Ses03M_script03_1_F000" in second[0].reason
    stray = [r for r in scan.rejected if "this line is no turn" in r.reason]
    assert len(stray) == 1 and "Ses02M_impro02.txt:" in stray[0].path
    escape = [
        r for r in scan.rejected if r.reason.startswith("'../../../Ses03M_impro03_F009' is not an IEMOCAP")
    ]
    assert len(escape) == 1 and escape[0].path.endswith("Ses03M_impro03.txt:24")
    assert len(scan.rejected) == 10

    assert scan.excluded_by_filter == 6 == len(corpus.excluded)
    excluded = by_name(corpus.excluded)
    assert (
        excluded["Ses01F_impro01_M001.wav"] == "label xxx: the annotators did not agree (no majority label)"
    )
    assert excluded["Ses02M_impro02_F001.wav"].startswith("label oth:")
    assert excluded["Ses01F_script01_1_M001.wav"] == "label fru (frustrated) is not in label_set=4class"
    assert "6 utterances excluded (label_set=4class, sessions_type=both)" in caplog.text
    assert "1 label xxx: the annotators did not agree" in caplog.text
    assert "1 annotator lines of" in caplog.text  # the unreadable rating line, its turn still labelled

    turn = corpus.turns["Ses01F_impro01_F000"]
    assert (turn.start, turn.end, turn.valence, turn.activation, turn.dominance) == (0.0, 1.9, 2.5, 3.0, 2.0)
    assert [c.annotator for c in turn.categories] == ["E1", "E2", "F1"] and len(turn.ratings) == 2
    assert corpus.turns["Ses01F_impro01_M001"].label == "xxx"  # annotations kept for excluded turns too
    assert len(corpus.evaluations) == 6  # the Categorical/ sub-folder is not read


@pytest.mark.parametrize(
    "label_set, emotions, excluded",
    [
        ("4class", {"neutral": 2, "happy": 4, "angry": 3, "sad": 3}, 6),
        ("4class_noexc", {"neutral": 2, "happy": 2, "angry": 3, "sad": 3}, 8),
        (
            "all",
            {
                "neutral": 2,
                "happy": 2,
                "excited": 2,
                "angry": 3,
                "sad": 3,
                "frustrated": 1,
                "fearful": 1,
                "surprised": 1,
                "disgust": 1,
            },
            2,
        ),
    ],
)
def test_label_sets(iemocap_root, label_set, emotions, excluded):
    corpus = build_corpus("iemocap", str(iemocap_root), ["speech"], {"label_set": label_set})
    scan = corpus.scan()
    assert scan.table["emotion"].value_counts().to_dict() == emotions
    assert scan.excluded_by_filter == excluded and len(scan.rejected) == 10


@pytest.mark.parametrize("sessions_type, kind", [("improvised", "impro"), ("scripted", "script")])
def test_sessions_type_keeps_one_kind_of_dialog(iemocap_root, sessions_type, kind):
    corpus = IemocapCorpus(str(iemocap_root), sessions_type=sessions_type)
    scan = corpus.scan()
    assert scan.table["statement"].str.startswith(kind).all()
    assert len(scan.table) == sum(stmt.startswith(kind) for *_, stmt in KEPT_4CLASS.values())
    other = "scripted" if sessions_type == "improvised" else "improvised"
    assert any(item.reason == f"{other} dialog (sessions_type={sessions_type})" for item in corpus.excluded)


def test_bad_options_and_wrong_roots_say_what_to_do(tmp_path, iemocap_root):
    with pytest.raises(InvalidSetting, match=r"label_set='5class' is not known; choose from \['4class'"):
        build_corpus("iemocap", str(iemocap_root), ["speech"], {"label_set": "5class"})
    with pytest.raises(InvalidSetting, match="sessions_type='spontaneous'"):
        IemocapCorpus(str(iemocap_root), sessions_type="spontaneous")
    with pytest.raises(
        FileNotFoundError, match="does not exist.*IEMOCAP_full_release/Session1..Session5.*sail.usc.edu"
    ):
        IemocapCorpus(str(tmp_path / "nowhere")).scan()
    (tmp_path / "empty" / "wav").mkdir(parents=True)
    with pytest.raises(
        FileNotFoundError, match=r"holds no Session1..Session5 folders.*sentences/wav/<dialog>"
    ):
        IemocapCorpus(str(tmp_path / "empty")).scan()


def test_a_second_copy_of_a_session_is_reported_not_read(tmp_path, tone_writer):
    for copy in ("", "backup/"):
        tone_writer(
            tmp_path / f"{copy}Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav", seconds=0.1
        )
    sessions, rejected = find_sessions(tmp_path)
    assert sessions == {1: tmp_path / "Session1"}
    assert [r.path for r in rejected] == [str(tmp_path / "backup/Session1")] and "second copy" in rejected[
        0
    ].reason


# ----------------------------------------------------------------------------- data.split=sessions
@pytest.mark.parametrize("fold", [0, 1, 2])
def test_sessions_split_tests_exactly_one_sessions_two_speakers(iemocap_root, fold):
    table = IemocapCorpus(str(iemocap_root)).scan().table
    splitter = make_split("sessions", (0.7, 0.15, 0.15), 3, fold=fold)
    assert SPLITS["sessions"] is LeaveOneSessionOutSplit and splitter == LeaveOneSessionOutSplit(
        fold=fold, seed=3
    )
    assignment = splitter(table)
    tested = set(table.loc[assignment == "test", "actor"])
    assert tested == {f"Ses0{fold + 1}F", f"Ses0{fold + 1}M"}
    assert (assignment[table["actor"].str.startswith(f"Ses0{fold + 1}")] == "test").all()
    assert assignment.groupby(table["actor"]).nunique().max() == 1  # no speaker in two splits
    record = splitter.describe(table)
    assert record["test_session"] == fold + 1 and record["num_folds"] == 5
    assert record["val_actors"] and not set(record["val_actors"]) & tested
    assert set(table.loc[assignment == "val", "actor"]) == set(record["val_actors"])


def test_sessions_split_refuses_folds_it_cannot_test(iemocap_root):
    table = IemocapCorpus(str(iemocap_root)).scan().table
    with pytest.raises(InvalidSetting, match=r"data.fold=5 must be in 0..4"):
        LeaveOneSessionOutSplit(fold=5)(table)
    with pytest.raises(
        InvalidSetting, match=r"session 5, which the table lacks \(sessions present: \[1, 2, 3\]\)"
    ):
        LeaveOneSessionOutSplit(fold=4)(table)
    ravdess_like = table.assign(actor=["01", "02"] * (len(table) // 2))
    with pytest.raises(InvalidSetting, match="needs IEMOCAP speakers"):
        LeaveOneSessionOutSplit(fold=0)(ravdess_like)
    assert speaker_session("iemocap:Ses04M") == 4 and speaker_session("1001") is None


# ------------------------------------------------------------------------------------ end to end
def clean_release(root: Path, tone_writer) -> Path:
    """Three sessions, one improvised dialog each; each speaker says each 4-class emotion once (+ xxx)."""
    codes = ("neu", "hap", "exc", "ang", "sad", "xxx")
    for session in (1, 2, 3):
        dialog = f"Ses0{session}F_impro01"
        text = HEADER
        for i, (speaker, code) in enumerate((s, c) for s in "FM" for c in codes):
            utterance = f"{dialog}_{speaker}{i:03d}"
            text += (
                f"[{i:.4f} - {i + 0.5:.4f}]\t{utterance}\t{code}\t[2.5000, 2.5000, 2.5000]\n{ANNOTATORS}\n"
            )
            freq = 150.0 + 80 * codes.index(code) + 10 * session + (5 if speaker == "M" else 0)
            tone_writer(
                root / f"Session{session}/sentences/wav/{dialog}/{utterance}.wav", seconds=0.5, freq=freq
            )
        (root / f"Session{session}/dialog/EmoEvaluation").mkdir(parents=True)
        (root / f"Session{session}/dialog/EmoEvaluation/{dialog}.txt").write_text(text)
    return root


def test_fdr_run_on_iemocap_tests_one_session(tmp_path, tone_writer):
    root = clean_release(tmp_path / "IEMOCAP_full_release", tone_writer)
    run_dir = tmp_path / "run"
    cfg = compose_train(
        ["data=iemocap", f"data.root={root}", "data.duration=0.5", "data.fold=1", "debug=fdr"],
        run_dir,
        tmp_path / "cache",
    )
    assert cfg.data.split == "sessions" and cfg.data.corpus_options.label_set == "4class"
    metrics, _ = train(cfg)
    summary = assert_complete_test_result(run_dir, metrics)
    assert summary["labels"] == ["neutral", "happy", "sad", "angry"]
    protocol = summary["protocol"]
    assert (protocol["split"], protocol["fold"], protocol["test_session"]) == ("sessions", 1, 2)
    assert protocol["test_actors"] == ["Ses02F", "Ses02M"]
    split = pd.read_csv(run_dir / "split.csv")
    assert set(split.loc[split["split"] == "test", "actor"]) == {"Ses02F", "Ses02M"}
    assert len(split) == 30  # 36 turns less the six xxx
