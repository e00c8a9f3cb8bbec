"""MSP-Podcast (data=msp_podcast) on fixture trees in the release layout, and data.split=official."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from ser_lightning.data.corpora import CORPORA, build_corpus
from ser_lightning.data.corpora.msp_podcast import MSP_COLUMNS, MspPodcastCorpus, MspPodcastLabelsError
from ser_lightning.data.corpora.sources import SOURCES
from ser_lightning.data.datamodule import build_data_module
from ser_lightning.data.leakage import find_leakage
from ser_lightning.data.splits import SPLITS, PartitionSplit, make_split
from ser_lightning.data.utterances import UTTERANCE_COLUMNS, make_table
from ser_lightning.features import LogMel
from ser_lightning.labels import KNOWN_EMOTIONS
from ser_lightning.train import train
from ser_lightning.utils.errors import InvalidSetting

from .helpers.audio import write_tone
from .helpers.configs import compose_train
from .helpers.runs import assert_complete_test_result

HEADER = ",".join(MSP_COLUMNS)
CLIP_SECONDS = 0.25

# FileName, EmoClass, SpkrID, Gender, Split_Set: the usable rows of the main fixture.
GOOD_ROWS = [
    ("MSP-PODCAST_0001_0001.wav", "A", "10", "Male", "Train"),
    ("MSP-PODCAST_0001_0002.wav", "H", "10", "Male", "Train"),
    ("MSP-PODCAST_0001_0003.wav", "N", "11", "Female", "Train"),
    ("MSP-PODCAST_0001_0004.wav", "S", "Unknown", "Unknown", "Train"),
    ("MSP-PODCAST_0001_0005.wav", "U", "Unknown", "Female", "Train"),
    ("MSP-PODCAST_0002_0001.wav", "F", "12", "Female", "Development"),
    ("MSP-PODCAST_0002_0002.wav", "D", "", "Male", "Development"),
    ("MSP-PODCAST_0003_0001.wav", "C", "13", "Male", "Test1"),
    ("MSP-PODCAST_0003_0002.wav", "N", "13", "Male", "Test1"),
    ("MSP-PODCAST_0004_0001.wav", "A", "14", "Female", "Test2"),
]


def csv_line(name, code, speaker, gender, partition, act=3.5, val=4.0, dom=2.5) -> str:
    return f"{name},{code},{act},{val},{dom},{speaker},{gender},{partition}"


def msp_tree(root: Path, lines: list[str], audio: list[str]) -> Path:
    """A release-shaped folder: Audios/<name> tones and Labels/labels_consensus.csv."""
    for i, name in enumerate(audio):
        write_tone(root / "Audios" / name, seconds=CLIP_SECONDS, freq=150.0 + 37.0 * i)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join([HEADER, *lines]) + "\n")
    return root


@pytest.fixture
def msp_root(tmp_path) -> Path:
    """The main fixture: the good rows, two excluded codes and one of each rejected case."""
    lines = [csv_line(*row) for row in GOOD_ROWS]
    lines += [
        csv_line("MSP-PODCAST_0005_0001.wav", "O", "15", "Male", "Train"),
        csv_line("MSP-PODCAST_0005_0002.wav", "X", "15", "Male", "Train"),
        csv_line("MSP-PODCAST_0006_0001.wav", "Q", "16", "Male", "Train"),  # unknown code
        csv_line("MSP-PODCAST_0006_0002.wav", "H", "16", "Male", "Train"),  # audio missing
        csv_line("MSP-PODCAST_0006_0003.wav", "H", "16", "Male", "Train"),  # listed twice ...
        csv_line("MSP-PODCAST_0006_0003.wav", "S", "16", "Male", "Train"),  # ... with another label
        csv_line("MSP-PODCAST_0006_0004.wav", "H", "16", "Male", "Test9"),  # unknown partition
        csv_line("../outside.wav", "H", "16", "Male", "Train"),  # escapes Audios/
        csv_line("MSP-PODCAST_0006_0005.wav", "H", "16", "Male", "Train"),  # its audio is empty
    ]
    audio = [row[0] for row in GOOD_ROWS] + [
        "MSP-PODCAST_0005_0001.wav",
        "MSP-PODCAST_0005_0002.wav",
        "MSP-PODCAST_0006_0001.wav",
        "MSP-PODCAST_0006_0003.wav",
        "MSP-PODCAST_0006_0004.wav",
        "MSP-PODCAST_0007_0001.wav",  # no CSV row
    ]
    root = msp_tree(tmp_path / "MSP-Podcast", lines, audio)
    (root / "Audios" / "MSP-PODCAST_0007_0002.wav").write_bytes(b"")  # empty and unlisted
    (root / "Audios" / "MSP-PODCAST_0006_0005.wav").write_bytes(b"")  # empty and listed: rejected once
    return root


def test_registered_with_source_and_config(tmp_path):
    assert CORPORA["msp_podcast"] is MspPodcastCorpus and SPLITS["official"] is PartitionSplit
    source = SOURCES["msp_podcast"]
    assert "MSP-Podcast.html" in source.home and "licence" in source.licence
    assert any("labels_consensus.csv" in step for step in source.steps)
    data = compose_train(["data=msp_podcast"], tmp_path).data
    assert data.corpus == "msp_podcast" and data.split == "official" and data.test_partition is None
    assert list(data.corpus_options.exclude) == ["O", "X"] and data.labels == "corpus"


def test_scan_gives_the_exact_table(msp_root):
    corpus = MspPodcastCorpus(str(msp_root))
    table = corpus.scan().table
    # the consensus ratings (1-7) ride along as the table's dimension columns
    assert list(table.columns) == list(UTTERANCE_COLUMNS) + ["arousal", "valence", "dominance"]
    audio = (msp_root / "Audios").resolve()
    emotions = dict(
        zip(
            "ASHUFDCN",
            ("angry", "sad", "happy", "surprised", "fearful", "disgust", "contempt", "neutral"),
            strict=True,
        )
    )
    expected = pd.DataFrame(
        [
            {
                "path": str(audio / name),
                "emotion": emotions[code],
                "label": KNOWN_EMOTIONS.index(emotions[code]),
                "actor": speaker if speaker not in ("Unknown", "") else f"unknown:{Path(name).stem}",
                "gender": gender.lower() if gender != "Unknown" else "unknown",
                "intensity": "unspecified",
                "statement": Path(name).stem,
                "vocal_channel": "speech",
                "corpus": "msp_podcast",
                "partition": partition,
                "arousal": 3.5,
                "valence": 4.0,
                "dominance": 2.5,
            }
            for name, code, speaker, gender, partition in GOOD_ROWS
        ]
    )
    pd.testing.assert_frame_equal(table, expected)
    # the dimensional ratings stay with the parser, row for row with the table
    assert list(corpus.consensus["path"]) == list(table["path"])
    assert corpus.consensus[["EmoAct", "EmoVal", "EmoDom"]].to_numpy().tolist() == [[3.5, 4.0, 2.5]] * 10
    assert list(corpus.consensus["EmoClass"]) == [row[1] for row in GOOD_ROWS]


def test_unknown_speakers_are_single_file_groups(msp_root):
    table = MspPodcastCorpus(str(msp_root)).scan().table
    unknown = table[table["actor"].str.startswith("unknown:")]
    assert len(unknown) == 3 and unknown["actor"].is_unique  # "Unknown" twice and one empty SpkrID
    assert table.groupby("actor").size().drop(list(unknown["actor"])).to_dict() == {
        "10": 2,
        "11": 1,
        "12": 1,
        "13": 2,
        "14": 1,
    }


def test_rejected_and_excluded_files_say_why(msp_root, caplog):
    corpus = MspPodcastCorpus(str(msp_root))
    with caplog.at_level(logging.INFO, logger="ser_lightning.data.corpora.msp_podcast"):
        scan = corpus.scan()
    why = {Path(r.path).name: r.reason for r in scan.rejected}
    assert set(why) == {
        "MSP-PODCAST_0006_0001.wav",
        "MSP-PODCAST_0006_0002.wav",
        "MSP-PODCAST_0006_0003.wav",
        "MSP-PODCAST_0006_0004.wav",
        "labels_consensus.csv:19",
        "MSP-PODCAST_0007_0001.wav",
        "MSP-PODCAST_0007_0002.wav",
        "MSP-PODCAST_0006_0005.wav",
    }
    assert len(scan.rejected) == 9  # the two rows of the repeated FileName, each of the others once
    assert "EmoClass 'Q' is not an emotion code" in why["MSP-PODCAST_0006_0001.wav"]
    assert "line 15" in why["MSP-PODCAST_0006_0002.wav"] and "is missing" in why["MSP-PODCAST_0006_0002.wav"]
    duplicates = [r.reason for r in scan.rejected if r.path.endswith("MSP-PODCAST_0006_0003.wav")]
    assert len(duplicates) == 2 and all("listed 2 times" in reason for reason in duplicates)
    assert "Split_Set 'Test9'" in why["MSP-PODCAST_0006_0004.wav"]
    assert "'../outside.wav' is not a plain file name inside Audios/" in why["labels_consensus.csv:19"]
    assert why["MSP-PODCAST_0007_0001.wav"].startswith("not in labels_consensus.csv")
    assert "empty" in why["MSP-PODCAST_0007_0002.wav"] and "empty" in why["MSP-PODCAST_0006_0005.wav"]
    # O and X: left out on purpose, counted, logged per code, each with its reason
    assert scan.excluded_by_filter == 2
    assert [Path(r.path).name for r in corpus.excluded] == [
        "MSP-PODCAST_0005_0001.wav",
        "MSP-PODCAST_0005_0002.wav",
    ]
    assert "EmoClass O (other)" in corpus.excluded[0].reason and "(no agreement)" in corpus.excluded[1].reason
    assert "2 segments left out by data.corpus_options.exclude (O: 1, X: 1)" in caplog.text


def test_exclude_option(msp_root):
    strict = build_corpus("msp_podcast", str(msp_root), ["speech"], {"exclude": []}).scan()
    why = {Path(r.path).name: r.reason for r in strict.rejected}
    assert strict.excluded_by_filter == 0 and "EmoClass 'O'" in why["MSP-PODCAST_0005_0001.wav"]
    fewer = build_corpus("msp_podcast", str(msp_root), ["speech"], {"exclude": ["o", "x", "C", "D"]}).scan()
    assert fewer.excluded_by_filter == 4 and not {"contempt", "disgust"} & set(fewer.table["emotion"])
    with pytest.raises(InvalidSetting, match=r"does not use: \['Z'\]"):
        build_corpus("msp_podcast", str(msp_root), ["speech"], {"exclude": ["Z"]})
    with pytest.raises(InvalidSetting, match="speech only"):
        MspPodcastCorpus(str(msp_root), vocal_channels=("song",))


def test_wrong_root_and_bad_csv_are_clear(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="does not exist.*Audios/\\*.wav and Labels/labels_consensus.csv"
    ):
        MspPodcastCorpus(str(tmp_path / "nowhere")).scan()
    (tmp_path / "Audios").mkdir()
    with pytest.raises(FileNotFoundError, match=r"lacks \['Labels/labels_consensus.csv'\]"):
        MspPodcastCorpus(str(tmp_path)).scan()
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels" / "labels_consensus.csv").write_text(
        "FileName,EmoClass,SpkrID\nMSP-PODCAST_0001_0001.wav,A,1\n"
    )
    with pytest.raises(
        MspPodcastLabelsError, match=r"lacks \['EmoAct', 'EmoVal', 'EmoDom', 'Gender', 'Split_Set'\]"
    ):
        MspPodcastCorpus(str(tmp_path)).scan()
    (tmp_path / "Labels" / "labels_consensus.csv").write_text(HEADER + "\n")
    with pytest.raises(FileNotFoundError, match="no usable MSP-Podcast segment"):
        MspPodcastCorpus(str(tmp_path)).scan()


def partition_table(partitions: dict[str, int]) -> pd.DataFrame:
    rows = [
        {
            "path": f"/msp/Audios/{partition}_{i}.wav",
            "emotion": "happy" if i % 2 else "sad",
            "actor": f"{partition}-{i % 3}",
            "gender": "female",
            "intensity": "unspecified",
            "statement": f"{partition}_{i}",
            "vocal_channel": "speech",
            "corpus": "msp_podcast",
            "partition": partition,
        }
        for partition, count in partitions.items()
        for i in range(count)
    ]
    return make_table(rows)


def test_official_split_tests_on_test1_by_default(caplog):
    table = partition_table({"Train": 6, "Development": 3, "Test1": 4, "Test2": 2})
    split = make_split("official", [0.7, 0.15, 0.15], 0)
    with caplog.at_level(logging.INFO, logger="ser_lightning.data.splits.partitions"):
        assignment = split(table)
    expected = table["partition"].map(
        {"Train": "train", "Development": "val", "Test1": "test", "Test2": "unused"}
    )
    assert list(assignment) == list(expected) and assignment.name == "split"
    assert "Train -> train (6), Development -> val (3), Test1 -> test (4)" in caplog.text
    assert "left out of the run: Test2 (2 files)" in caplog.text
    record = split.describe(table)
    assert record["test_partition"] == "Test1" and record["left_out"] == {"Test2": 2}
    assert record["speaker_independent"] and record["speakers_in_several_splits"] == 0
    assert record["partitions"] == {"Train": "train", "Development": "val", "Test1": "test"}


def test_official_split_with_test2_chosen(caplog):
    table = partition_table({"Train": 6, "Development": 3, "Test1": 4, "Test2": 2, "Test3": 1})
    split = make_split("official", [0.7, 0.15, 0.15], 0, test_partition="Test2")
    with caplog.at_level(logging.INFO, logger="ser_lightning.data.splits.partitions"):
        assignment = split(table)
    assert assignment.value_counts().to_dict() == {"train": 6, "unused": 5, "val": 3, "test": 2}
    assert set(table.loc[assignment == "test", "partition"]) == {"Test2"}
    assert "left out of the run: Test1 (4 files), Test3 (1 files)" in caplog.text
    assert split.describe(table)["left_out"] == {"Test1": 4, "Test3": 1}


def test_official_split_refusals():
    with pytest.raises(InvalidSetting, match="only applies to data.split=official"):
        make_split("actor", [0.7, 0.15, 0.15], 0, test_partition="Test2")
    with pytest.raises(InvalidSetting, match="not a test partition"):
        make_split("official", [0.7, 0.15, 0.15], 0, test_partition="Development")
    without = partition_table({"Train": 2}).assign(partition="", corpus="crema_d")
    with pytest.raises(InvalidSetting, match="corpus crema_d.*corpora with official partitions: msp_podcast"):
        PartitionSplit()(without)
    with pytest.raises(InvalidSetting, match="Test3 has no files"):
        PartitionSplit(test_partition="Test3")(partition_table({"Train": 2, "Development": 1, "Test1": 1}))


def test_data_module_runs_the_official_partitions(msp_root, tmp_path):
    dm = build_data_module(
        features=LogMel(sample_rate=16000, n_mels=16),
        root=str(msp_root),
        corpus="msp_podcast",
        labels="corpus",
        split="official",
        test_partition="Test2",
        duration=CLIP_SECONDS,
        cache_dir=str(tmp_path / "cache"),
        batch_size=4,
        max_skip_fraction=0.5,
    )
    dm.prepare_data()
    dm.setup("fit")
    manifest = dm.manifest
    assert manifest.split_sizes == {"train": 5, "val": 2, "test": 1}
    split = pd.read_csv(manifest.write_records(tmp_path / "run")["split"])
    assert split.loc[split["split"] == "test", "path"].tolist() == ["Audios/MSP-PODCAST_0004_0001.wav"]
    assert (split.loc[split["partition"] == "Test1", "split"] == "unused").all()
    protocol = manifest.protocol()
    assert protocol["split"] == "official" and protocol["test_partition"] == "Test2"
    assert protocol["left_out"] == {"Test1": 2}


def test_fdr_run_on_the_official_partitions(msp_root, tmp_path):
    cfg = compose_train(
        [
            "data=msp_podcast",
            f"data.root={msp_root}",
            f"data.duration={CLIP_SECONDS}",
            "data.max_skip_fraction=0.5",
            "data.test_partition=Test2",
            "debug=fdr",
        ],
        tmp_path / "run",
        tmp_path / "cache",
    )
    metrics, _ = train(cfg)
    assert_complete_test_result(tmp_path / "run", metrics)
    protocol = json.loads((tmp_path / "run" / "summary.json").read_text())["protocol"]
    assert protocol["split"] == "official" and protocol["test_partition"] == "Test2"
    assert protocol["split_sizes"] == {"train": 5, "val": 2, "test": 1} and protocol["left_out"] == {
        "Test1": 2
    }
    split = pd.read_csv(tmp_path / "run" / "split.csv")
    assert split.groupby("partition")["split"].agg(set).map(sorted).to_dict() == {
        "Development": ["val"],
        "Test1": ["unused"],
        "Test2": ["test"],
        "Train": ["train"],
    }
    rejected = pd.read_csv(tmp_path / "run" / "rejected_files.csv")
    assert len(rejected) == 9  # the scan's rejected files and rows


def test_consensus_keeps_the_ratings_as_floats(tmp_path):
    # a BOM and Windows line ends, a FileName without .wav, a rating that is not a number
    names = ["MSP-PODCAST_0001_0001.wav", "MSP-PODCAST_0001_0002.wav"]
    root = msp_tree(tmp_path, [], names)
    lines = [HEADER, csv_line("MSP-PODCAST_0001_0001", "H", "7", "Male", "Train", act=4)]
    lines.append(csv_line(names[1], "S", "7", "male", "test1", act="n/a", val=1.25))
    (root / "Labels" / "labels_consensus.csv").write_bytes(
        b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    )
    corpus = MspPodcastCorpus(str(root))
    scan = corpus.scan()
    assert not scan.rejected and list(scan.table["partition"]) == ["Train", "Test1"]
    assert list(scan.table["gender"]) == ["male", "male"]
    ratings = corpus.consensus[["EmoAct", "EmoVal", "EmoDom"]]
    assert (ratings.dtypes == "float64").all()
    assert ratings.iloc[0].tolist() == [4.0, 4.0, 2.5] and pd.isna(ratings.iloc[1]["EmoAct"])
    assert ratings.iloc[1]["EmoVal"] == 1.25


def test_leakage_check_leaves_out_the_unused_partitions():
    table = partition_table({"Train": 2, "Development": 1, "Test1": 2, "Test2": 1})
    # rows sorted by path: Development_0, Test1_0, Test1_1, Test2_0, Train_0, Train_1; Test1 shares
    # speaker 'a' and one recording (h6) with Train
    table["actor"] = ["v", "a", "c", "t", "a", "e"]
    assignment = PartitionSplit(test_partition="Test2")(table)
    assert list(assignment) == ["val", "unused", "unused", "test", "train", "train"]
    hashes = ["h1", "h2", "h6", "h4", "h5", "h6"]
    report = find_leakage(table, assignment, "official", True, hashes)
    assert report.speakers_in_several_splits == {} and report.recordings_in_several_splits == []
    assert report.recordings_checked == 4
    tested = find_leakage(
        table, PartitionSplit()(table), "official", True, hashes
    )  # Test1 tested: both found
    assert list(tested.speakers_in_several_splits) == ["a"] and len(tested.recordings_in_several_splits) == 1
