"""data=emobox: EmoBox's own metadata (jsonl fold lists, label_map.json) over a fixture tree."""

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from ser_lightning.data.corpora import CORPORA, EmoBoxCorpus, build_corpus
from ser_lightning.data.corpora.emobox import emobox_speaker
from ser_lightning.data.corpora.emobox_meta import parse_membership, read_label_map, wav_path
from ser_lightning.data.datamodule import build_data_module
from ser_lightning.data.splits import SPLITS, EmoBoxListSplit, make_split
from ser_lightning.data.utterances import UTTERANCE_COLUMNS
from ser_lightning.features import LogMel
from ser_lightning.train import train
from ser_lightning.utils.errors import InvalidSetting, UserError

from .helpers.configs import compose_train
from .helpers.runs import assert_complete_test_result

DATASET = "emodb"
# EmoBox's own label map of EmoDB, spelling included ("boredem", "Neutral")
LABEL_MAP = {"anger": "Angry", "boredem": "Boredom", "Neutral": "Neutral", "sad": "Sad", "happy": "Happy"}
SPEAKERS = ("03", "08", "09", "10")
CODES = {"anger": "W", "boredem": "L", "neutral": "N", "sad": "T", "happy": "F"}
CLIP_SECONDS = 0.5
FOLD_TESTS = ({"03", "08"}, {"09", "10"})  # EmoBox fold 1 tests speakers 03 and 08, fold 2 the others


def utterances() -> list[tuple[str, str, str]]:
    """(key, wav, emo) of the fixture: 4 speakers x 5 emotions x 2 takes = 40 utterances."""
    out = []
    for speaker in SPEAKERS:
        for emo, code in CODES.items():
            for take in "ab":
                stem = f"{speaker}a0{1 if take == 'a' else 2}{code}{take}"
                out.append((f"{DATASET}-{stem}", f"downloads/emodb/wav/{stem}.wav", emo))
    return out


def line(key: str, wav: str, emo: str, **extra) -> str:
    item = {"key": key, "dataset": DATASET, "wav": wav, "type": "raw", "sample_rate": 16000}
    item |= {"num_frame": 800.0, "task": "category", "length": 0.05, "emo": emo, "channel": 1, **extra}
    return json.dumps(item)


# lines that must be rejected, appended to fold 1's train list, with what the reason says
BAD_LINES = {
    '{"key": "emodb-broken", "wav": ': "not a JSON line",
    json.dumps(
        {"key": "emodb-03a04Wa", "wav": "downloads/emodb/wav/03a04Wa.wav", "length": 1}
    ): "lacks the field",
    line("emodb-16a01Wa", "downloads/emodb/wav/16a01Wa.wav", "anger"): "is missing under data.root",
    line("emodb-09a01Wa", "downloads/emodb/wav/09a01Wa.wav", "anger"): "duplicate key",
    line("emodb-10a07Wa", "downloads/emodb/wav/10a07Wa.wav", "joy"): "unknown emo 'joy'",
    line("emodb-x", "{data_root}/../outside.wav", "anger"): "leaves data.root",
    line("emodb-y", "/mnt/lustre/emobox/downloads/emodb/wav/03a01Wa.wav", "anger"): "absolute path",
}


@pytest.fixture
def emobox(tmp_path, tone_writer):
    """An EmoBox metadata tree (2 folds, label_map.json, bad lines) and the audio root it names."""
    meta, root = tmp_path / "EmoBox" / "data", tmp_path / "audio"
    for i, (_, wav, _) in enumerate(utterances()):
        tone_writer(root / wav, seconds=CLIP_SECONDS, freq=200.0 + 10 * i)
    tone_writer(tmp_path / "outside.wav", seconds=0.05)  # exists, but outside data.root
    (meta / DATASET).mkdir(parents=True)
    (meta / DATASET / "label_map.json").write_text(json.dumps(LABEL_MAP))
    lists = {}
    for fold, test_speakers in enumerate(FOLD_TESTS, start=1):
        for part in ("train", "test"):
            rows = [u for u in utterances() if (u[0][6:8] in test_speakers) == (part == "test")]
            # half of the lines name their wav behind EmoBox's {data_root} placeholder
            text = [line(k, ("{data_root}/" + w) if i % 2 else w, e) for i, (k, w, e) in enumerate(rows)]
            if (fold, part) == (1, "train"):
                text += list(BAD_LINES)
            path = meta / DATASET / f"fold_{fold}" / f"{DATASET}_{part}_fold_{fold}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(text) + "\n")
            lists[fold, part] = {k for k, _, _ in rows}
    return {"meta": meta, "root": root, "lists": lists}


def corpus(fixture) -> EmoBoxCorpus:
    return build_corpus(
        "emobox", str(fixture["root"]), ["speech"], {"meta_dir": str(fixture["meta"]), "dataset": DATASET}
    )


def keys_of(table, rows) -> set[str]:
    return {f"{DATASET}-{Path(p).stem}" for p in table["path"].iloc[rows]}


def test_emobox_reader_reproduces_the_fixture_jsonl_folds_exactly(emobox):
    scan = corpus(emobox).scan()
    table = scan.table
    assert list(table.columns) == list(UTTERANCE_COLUMNS) and len(table) == 40
    assert set(table["corpus"]) == {DATASET} and set(table["actor"]) == set(SPEAKERS)
    assert set(table["emotion"]) == {"angry", "boredom", "neutral", "sad", "happy"}
    assert dict(zip(table["actor"], table["gender"], strict=True))["08"] == "female"
    # every bad line rejected, with its file and line number, for its reason
    train1 = emobox["meta"] / DATASET / "fold_1" / f"{DATASET}_train_fold_1.jsonl"
    first_bad = 21  # 20 good lines (speakers 09, 10) come first
    reasons = {r.path: r.reason for r in scan.rejected}
    assert set(reasons) == {f"{train1}:{first_bad + i}" for i in range(len(BAD_LINES))}
    for i, expected in enumerate(BAD_LINES.values()):
        assert expected in reasons[f"{train1}:{first_bad + i}"]
    for fold in (0, 1):
        split = make_split("emobox", (0.7, 0.15, 0.15), seed=5, fold=fold)
        assignment = split(table).to_numpy()
        listed = emobox["lists"]
        assert keys_of(table, assignment == "test") == listed[fold + 1, "test"]
        assert keys_of(table, assignment != "test") == listed[fold + 1, "train"]  # train + val
        described = split.describe(table)
        assert (described["emobox_fold"], described["num_folds"]) == (fold + 1, 2)
        assert "drawn from EmoBox fold" in described["val"] and described["sizes"]["test"] == 20


def test_emobox_validation_is_stratified_by_emotion_and_seeded(emobox):
    table = corpus(emobox).scan().table
    split = make_split("emobox", (0.6, 0.2, 0.2), seed=1, fold=0)
    assignment = split(table)
    val = table[assignment.to_numpy() == "val"]
    # 20 train-list utterances, 4 per emotion: round(4 x 0.2/0.8) = 1 of each emotion
    assert sorted(val["emotion"]) == sorted(set(table["emotion"]))
    assert assignment.equals(make_split("emobox", (0.6, 0.2, 0.2), seed=1, fold=0)(table))
    draws = {tuple(make_split("emobox", (0.6, 0.2, 0.2), seed=s, fold=0)(table)) for s in range(6)}
    assert len(draws) > 1  # the seed chooses


def test_emobox_labels_paths_and_speakers():
    assert wav_path("{data_root}/downloads/emodb/wav/03a01Fa.wav") == "downloads/emodb/wav/03a01Fa.wav"
    assert wav_path("downloads/./emodb/wav/x.wav") == "downloads/emodb/wav/x.wav"
    for bad in ("../x.wav", "{data_root}/a/../../x.wav", "/abs/x.wav", "C:/x.wav"):
        with pytest.raises(ValueError, match="leaves data.root|absolute path"):
            wav_path(bad)
    assert emobox_speaker("iemocap", "iemocap-Ses01F_impro01_M013") == ("Ses01M", "male")
    assert emobox_speaker("emodb", "emodb-16b10Td") == ("16", "female")
    assert emobox_speaker("ravdess", "ravdess-03-01-05-01-01-01-12") == ("12", "female")
    assert emobox_speaker("casia", "casia-liuchanhg-angry-201") == ("casia-liuchanhg-angry-201", "unknown")
    assert parse_membership("emobox:1=train,2=test") == {1: "train", 2: "test"}
    assert parse_membership("a01") is None


def test_emobox_unknown_label_name_lists_the_known_ones(emobox):
    (emobox["meta"] / DATASET / "label_map.json").write_text(json.dumps({"ang": "Angry", "oth": "Other"}))
    with pytest.raises(UserError, match="'Other', which is not a known emotion.*neutral, calm"):
        read_label_map(emobox["meta"], DATASET)


def test_emobox_wrong_settings_say_what_to_do(emobox, tmp_path):
    with pytest.raises(FileNotFoundError, match="no EmoBox lists for dataset 'nope'.*data.emobox.meta_dir"):
        build_corpus(
            "emobox", str(emobox["root"]), ["speech"], {"meta_dir": str(emobox["meta"]), "dataset": "nope"}
        ).scan()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_corpus(
            "emobox", str(tmp_path / "no"), ["speech"], {"meta_dir": str(emobox["meta"]), "dataset": DATASET}
        ).scan()
    with pytest.raises(FileNotFoundError, match="no usable line.*is data.root"):
        build_corpus(
            "emobox", str(tmp_path), ["speech"], {"meta_dir": str(emobox["meta"]), "dataset": DATASET}
        ).scan()
    table = corpus(emobox).scan().table
    with pytest.raises(InvalidSetting, match=r"data.fold=2 is EmoBox's fold 3.*folds \[1, 2\]"):
        make_split("emobox", (0.7, 0.15, 0.15), 0, fold=2)(table)
    with pytest.raises(InvalidSetting, match="needs the table of data=emobox"):
        make_split("emobox", (0.7, 0.15, 0.15), 0)(table.assign(statement="a01"))
    # a fold with a test list only cannot train
    (emobox["meta"] / DATASET / "fold_2" / f"{DATASET}_train_fold_2.jsonl").unlink()
    scan = corpus(emobox).scan()
    assert any("fold 2 has no train list" in r.reason for r in scan.rejected)
    with pytest.raises(InvalidSetting, match="no usable train utterance.*data.split=test_only"):
        make_split("emobox", (0.7, 0.15, 0.15), 0, fold=1)(scan.table[scan.table["actor"].isin(["09", "10"])])


def test_emobox_config_and_data_module(emobox, tmp_path):
    assert CORPORA["emobox"] is EmoBoxCorpus and SPLITS["emobox"] is EmoBoxListSplit
    overrides = [f"data.root={emobox['root']}", f"data.emobox.meta_dir={emobox['meta']}", "data.fold=1"]
    cfg = compose_train(["data=emobox", f"data.emobox.dataset={DATASET}", *overrides], tmp_path)
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k != "_target_"}
    assert (data["split"], data["labels"], dict(data["corpus_options"])["dataset"]) == (
        "emobox",
        "corpus",
        DATASET,
    )
    dm = build_data_module(
        features=LogMel(sample_rate=16000, n_mels=16),
        **{
            **data,
            "duration": CLIP_SECONDS,
            "cache_dir": str(tmp_path / "cache"),
            "num_workers": 0,
            "batch_size": 8,
            "max_skip_fraction": 0.5,
        },
    )
    dm.prepare_data()
    dm.setup("fit")
    manifest = dm.manifest
    assert manifest.split_sizes["test"] == 20 and manifest.split_sizes["val"] == 5
    assert set(manifest.table["actor"].iloc[manifest.indices["test"]]) == FOLD_TESTS[1]


def test_fdr_run_on_emobox_records_its_fold(emobox, tmp_path):
    cfg = compose_train(
        [
            "data=emobox",
            f"data.root={emobox['root']}",
            f"data.emobox.meta_dir={emobox['meta']}",
            f"data.emobox.dataset={DATASET}",
            f"data.duration={CLIP_SECONDS}",
            "data.max_skip_fraction=0.5",
            "debug=fdr",
        ],
        tmp_path,
        tmp_path / "cache",
    )
    metrics, _ = train(cfg)
    assert_complete_test_result(tmp_path, metrics)
    protocol = json.loads((tmp_path / "summary.json").read_text())["protocol"]
    assert (protocol["split"], protocol["emobox_fold"], protocol["num_folds"]) == ("emobox", 1, 2)
    split = pd.read_csv(tmp_path / "split.csv", dtype={"actor": str})
    assert set(split.loc[split["split"] == "test", "actor"]) == FOLD_TESTS[0]
