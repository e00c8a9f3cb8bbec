"""EmoDB (data=emodb): its file names, a fixture tree in the release's layout, and its protocol."""

from pathlib import Path

import pytest

from ser_lightning.data.corpora import CORPORA, EmoDBCorpus, build_corpus, parse_emodb_name
from ser_lightning.data.corpora.emodb import EMODB_EMOTIONS, EMODB_SPEAKERS, EmoDBNameError
from ser_lightning.data.corpora.sources import SOURCES
from ser_lightning.data.splits import make_split, split_indices
from ser_lightning.data.utterances import UTTERANCE_COLUMNS
from ser_lightning.labels import KNOWN_EMOTIONS

from .helpers.configs import compose_train


def emodb_tree(root: Path, tone_writer, names: list[str]) -> Path:
    for i, name in enumerate(names):
        tone_writer(root / "wav" / name, seconds=0.05, freq=200.0 + 15.0 * i)
    return root


def test_emodb_names_and_codes():
    fields = parse_emodb_name("wav/03a01Fa.wav")
    assert (fields.speaker, fields.text, fields.emotion, fields.version, fields.gender) == (
        "03",
        "a01",
        "F",
        "a",
        "male",
    )
    assert parse_emodb_name("16b10Td.wav").gender == "female"
    assert sorted(EMODB_SPEAKERS) == ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    assert sum(g == "male" for g in EMODB_SPEAKERS.values()) == 5
    assert set(EMODB_EMOTIONS.values()) <= set(KNOWN_EMOTIONS)
    assert EMODB_EMOTIONS["L"] == "boredom" and EMODB_EMOTIONS["W"] == "angry"


@pytest.mark.parametrize(
    "name, message",
    [
        ("01a01Fa.wav", r"unknown speaker code '01'.*valid: 03, 08"),
        ("03a03Fa.wav", r"unknown text code 'a03'.*a01, a02, a04"),
        ("03a01Xa.wav", r"unknown emotion code 'X'.*W, L, E, A, F, T, N"),
        ("03a01F.wav", "does not follow the EmoDB scheme"),
        ("erkennung.wav", "does not follow the EmoDB scheme"),
    ],
)
def test_emodb_bad_names_say_what_is_valid(name, message):
    with pytest.raises(EmoDBNameError, match=message):
        parse_emodb_name(name)


def test_emodb_scan_of_the_release_layout(tmp_path, tone_writer):
    names = ["03a01Fa.wav", "03a01Wb.wav", "08b10Lc.wav", "16a07Ea.wav", "10b03Ad.wav", "13a05Ta.wav"]
    root = emodb_tree(tmp_path / "emodb", tone_writer, [*names, "09a02Nb.wav", "01a01Fa.wav", "03a01Xa.wav"])
    (root / "wav" / "14a04Na.wav").write_bytes(b"")  # an interrupted copy
    tone_writer(root / "copy" / "wav" / "03a01Fa.wav", seconds=0.05)  # unpacked twice
    (root / "lablaut").mkdir()  # the archive's other folders hold no .wav
    (root / "lablaut" / "03a01Fa.lab").write_text("x")
    scan = build_corpus("emodb", str(root), ["speech"]).scan()
    table = scan.table
    assert list(table.columns) == list(UTTERANCE_COLUMNS)
    by_name = {Path(p).name: row for p, row in zip(table["path"], table.to_dict("records"), strict=True)}
    assert set(by_name) == {*names, "09a02Nb.wav"}
    assert by_name["08b10Lc.wav"]["emotion"] == "boredom" and by_name["08b10Lc.wav"]["gender"] == "female"
    assert by_name["16a07Ea.wav"]["emotion"] == "disgust" and by_name["10b03Ad.wav"]["emotion"] == "fearful"
    assert by_name["03a01Wb.wav"]["actor"] == "03" and by_name["03a01Wb.wav"]["statement"] == "a01"
    assert set(table["corpus"]) == {"emodb"} and set(table["intensity"]) == {"unspecified"}
    why = {Path(r.path).relative_to(root).as_posix(): r.reason for r in scan.rejected}
    assert set(why) == {"wav/01a01Fa.wav", "wav/03a01Xa.wav", "wav/14a04Na.wav", "wav/03a01Fa.wav"}
    assert "unknown speaker code" in why["wav/01a01Fa.wav"] and "empty" in why["wav/14a04Na.wav"]
    assert "same recording as" in why["wav/03a01Fa.wav"]  # the copy/ one sorts first and is kept


def test_emodb_missing_folder_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="EmoDB folder .* does not exist.*emodb.bilderbar.info"):
        EmoDBCorpus(str(tmp_path / "nowhere")).scan()
    with pytest.raises(ValueError, match="EmoDB holds speech only"):
        EmoDBCorpus(str(tmp_path), vocal_channels=["song"])
    assert SOURCES["emodb"].home == "http://emodb.bilderbar.info/" and CORPORA["emodb"] is EmoDBCorpus


def test_emodb_leave_one_speaker_out_has_ten_folds(tmp_path, tone_writer):
    names = [f"{s}a01{e}a.wav" for s in EMODB_SPEAKERS for e in ("W", "N", "T")]
    table = EmoDBCorpus(str(emodb_tree(tmp_path, tone_writer, names))).scan().table
    speakers = sorted(EMODB_SPEAKERS)
    for fold in range(10):
        split = make_split("loso", (0.7, 0.15, 0.15), seed=3, fold=fold)
        rows = split_indices(split(table))
        actors = {name: set(table["actor"].iloc[idx]) for name, idx in rows.items()}
        assert actors["test"] == {speakers[fold]}
        assert actors["val"] and not actors["val"] & actors["train"] and speakers[fold] not in actors["train"]
        # one validation actor of each gender (round(4 or 5 * 0.15 / 0.85) = 1 per gender)
        assert sorted(table.loc[table["actor"].isin(actors["val"]), "gender"].unique()) == ["female", "male"]
        assert split.describe(table)["num_folds"] == 10
    with pytest.raises(ValueError, match=r"data.fold=10 must be in 0..9"):
        make_split("loso", (0.7, 0.15, 0.15), seed=3, fold=10)(table)


def test_emodb_config_is_leave_one_speaker_out_with_its_own_labels(tmp_path):
    cfg = compose_train(["data=emodb"], tmp_path)
    assert (cfg.data.corpus, cfg.data.split, cfg.data.labels) == ("emodb", "loso", "corpus")
