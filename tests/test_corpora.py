"""The corpus parsers on real-looking file trees written by the tests (tiny tones, real names)."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ser_lightning.data.corpora import (
    CremaDCorpus,
    FolderCorpus,
    RavdessCorpus,
    SaveeCorpus,
    SerEnCorpus,
    TessCorpus,
    build_corpus,
    parse_crema_d_name,
    parse_savee_name,
    parse_tess_name,
)
from ser_lightning.data.corpora.crema_d import CREMA_D_MALE_ACTORS, CremaDNameError
from ser_lightning.data.corpora.savee import SaveeNameError
from ser_lightning.data.corpora.tess import TessNameError
from ser_lightning.data.utterances import UTTERANCE_COLUMNS
from ser_lightning.labels import EMOTIONS


def write_tree(root: Path, tone_writer, names: list[str], seconds: float = 0.05) -> Path:
    """One tone file per name, each of its own pitch: distinct recordings hold distinct bytes."""
    for i, name in enumerate(names):
        tone_writer(root / name, seconds=seconds, freq=220.0 + 20.0 * i)
    return root


def reasons(scan) -> dict[str, str]:
    return {Path(r.path).name: r.reason for r in scan.rejected}


# ------------------------------------------------------------------------------------------ CREMA-D
def test_crema_d_names():
    fields = parse_crema_d_name("AudioWAV/1001_DFA_ANG_XX.wav")
    assert (fields.actor, fields.sentence, fields.emotion, fields.level, fields.gender) == (
        "1001",
        "DFA",
        "ANG",
        "XX",
        "male",
    )
    assert parse_crema_d_name("1091_IEO_SAD_HI.wav").gender == "female"
    assert (
        len(CREMA_D_MALE_ACTORS) == 48
        and min(CREMA_D_MALE_ACTORS) >= 1001
        and max(CREMA_D_MALE_ACTORS) <= 1091
    )


@pytest.mark.parametrize(
    "name, message",
    [
        ("1001_DFA_CAL_XX.wav", "unknown emotion code 'CAL'"),
        ("1001_XYZ_ANG_XX.wav", "unknown sentence code 'XYZ'"),
        ("1001_IEO_ANG_ZZ.wav", "unknown level code 'ZZ'"),
        ("1092_IEO_ANG_HI.wav", "outside CREMA-D's 1001..1091"),
        ("1001_DFA_ANG.wav", "does not follow the CREMA-D scheme"),
        ("1001-DFA-ANG-XX.wav", "does not follow the CREMA-D scheme"),
    ],
)
def test_crema_d_bad_names_say_what_is_wrong(name, message):
    with pytest.raises(CremaDNameError, match=message):
        parse_crema_d_name(name)


def test_crema_d_scan(tmp_path, tone_writer):
    root = write_tree(
        tmp_path / "AudioWAV",
        tone_writer,
        [
            "1001_DFA_ANG_XX.wav",
            "1002_IEO_HAP_HI.wav",
            "1002_IEO_HAP_LO.wav",
            "1005_TIE_NEU_XX.wav",
            "1001_DFA_CAL_XX.wav",  # unknown emotion
            "README_notes.wav",  # not a CREMA-D name
            "copy/1001_DFA_ANG_XX.wav",  # the same recording again
        ],
    )
    (root / "1003_MTI_SAD_XX.wav").write_bytes(b"")  # empty, as an interrupted copy leaves it
    (root / "1004_ITS_FEA_XX.wav").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 1\n"
    )
    scan = CremaDCorpus(str(tmp_path)).scan()
    table = scan.table
    assert list(table.columns) == list(UTTERANCE_COLUMNS)
    assert list(table["emotion"]) == ["angry", "happy", "happy", "neutral"]
    assert list(table["label"]) == [EMOTIONS.index(e) for e in table["emotion"]]
    assert list(table["actor"]) == ["1001", "1002", "1002", "1005"]
    assert list(table["gender"]) == ["male", "female", "female", "male"]
    assert list(table["intensity"]) == ["unspecified", "high", "low", "unspecified"]
    assert set(table["corpus"]) == {"crema_d"} and set(table["vocal_channel"]) == {"speech"}
    why = reasons(scan)
    assert set(why) == {
        "1001_DFA_CAL_XX.wav",
        "README_notes.wav",
        "1001_DFA_ANG_XX.wav",
        "1003_MTI_SAD_XX.wav",
        "1004_ITS_FEA_XX.wav",
    }
    assert "same recording as" in why["1001_DFA_ANG_XX.wav"]
    assert "empty" in why["1003_MTI_SAD_XX.wav"] and "git lfs pull" in why["1004_ITS_FEA_XX.wav"]


def test_crema_d_refuses_song_only_and_explains_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="CREMA-D holds speech only"):
        CremaDCorpus(str(tmp_path), vocal_channels=["song"])
    with pytest.raises(FileNotFoundError, match="does not exist.*AudioWAV.*download crema_d"):
        CremaDCorpus(str(tmp_path / "nowhere")).scan()
    with pytest.raises(FileNotFoundError, match="no .wav files"):
        CremaDCorpus(str(tmp_path)).scan()


# ------------------------------------------------------------------------------------------ TESS
def test_tess_names():
    fields = parse_tess_name("OAF_angry/OAF_back_angry.wav")
    assert (fields.speaker, fields.word, fields.emotion) == ("OAF", "back", "angry")
    assert parse_tess_name("YAF_youth_ps.wav").emotion == "ps"


@pytest.mark.parametrize(
    "name, message",
    [
        ("OA_bite_neutral.wav", "unknown speaker 'OA'"),
        ("YAF_dog_calm.wav", "unknown emotion 'calm'"),
        ("YAF_dog.wav", "does not follow the TESS scheme"),
        ("YAF_pleasant_surprise_dog.wav", "does not follow the TESS scheme"),
    ],
)
def test_tess_bad_names_say_what_is_wrong(name, message):
    with pytest.raises(TessNameError, match=message):
        parse_tess_name(name)


def test_tess_scan_maps_labels_and_checks_folders(tmp_path, tone_writer):
    write_tree(
        tmp_path,
        tone_writer,
        [
            "TESS Toronto emotional speech set data/OAF_angry/OAF_back_angry.wav",
            "TESS Toronto emotional speech set data/OAF_Pleasant_surprise/OAF_back_ps.wav",
            "TESS Toronto emotional speech set data/YAF_fear/YAF_bath_fear.wav",
            "TESS Toronto emotional speech set data/YAF_pleasant_surprised/YAF_bath_ps.wav",
            "TESS Toronto emotional speech set data/OAF_neutral/OA_bite_neutral.wav",  # speaker typo
            "TESS Toronto emotional speech set data/OAF_Sad/OAF_bath_happy.wav",  # wrong folder
            "TESS Toronto emotional speech set data/YAF_sad/OAF_bath_sad.wav",  # wrong speaker folder
            "extra/YAF_fear/YAF_bath_fear.wav",  # a second copy of the set
        ],
    )
    scan = TessCorpus(str(tmp_path)).scan()
    table = scan.table
    assert sorted(zip(table["actor"], table["emotion"], table["statement"], strict=True)) == [
        ("OAF", "angry", "back"),
        ("OAF", "surprised", "back"),
        ("YAF", "fearful", "bath"),
        ("YAF", "surprised", "bath"),
    ]
    assert set(table["gender"]) == {"female"}
    why = reasons(scan)
    assert "unknown speaker 'OA'" in why["OA_bite_neutral.wav"]
    assert "lies in folder OAF_Sad" in why["OAF_bath_happy.wav"]
    assert "lies in folder YAF_sad" in why["OAF_bath_sad.wav"]
    assert "same recording" in why["YAF_bath_fear.wav"]


# ------------------------------------------------------------------------------------------ SAVEE
def test_savee_names_flat_and_in_speaker_folders():
    fields = parse_savee_name("ALL/DC_a01.wav")
    assert (fields.speaker, fields.code, fields.number, fields.sentence) == ("DC", "a", 1, "a01")
    assert parse_savee_name("AudioData/KL/sa15.wav").speaker == "KL"
    assert parse_savee_name("JE_n30.wav").number == 30


@pytest.mark.parametrize(
    "name, message",
    [
        ("XX_a01.wav", "unknown speaker 'XX'"),
        ("DC_c01.wav", "unknown emotion code 'c'"),
        ("DC_a16.wav", "outside 01..15"),
        ("DC_n31.wav", "outside 01..30"),
        ("DC_a00.wav", "outside 01..15"),
        ("a01.wav", "nor CODENN inside a speaker folder"),
        ("AudioData/ZZ/a01.wav", "nor CODENN inside a speaker folder"),
    ],
)
def test_savee_bad_names_say_what_is_wrong(name, message):
    with pytest.raises(SaveeNameError, match=message):
        parse_savee_name(name)


def test_savee_scan(tmp_path, tone_writer):
    write_tree(
        tmp_path,
        tone_writer,
        [
            "AudioData/DC/a01.wav",
            "AudioData/DC/su15.wav",
            "AudioData/JK/n30.wav",
            "ALL/KL_sa03.wav",
            "ALL/DC_a01.wav",  # a flat copy of AudioData/DC/a01.wav, found first
            "ALL/KL_x01.wav",
        ],
    )
    scan = SaveeCorpus(str(tmp_path)).scan()
    table = scan.table
    assert sorted(zip(table["actor"], table["emotion"], table["statement"], strict=True)) == [
        ("DC", "angry", "a01"),
        ("DC", "surprised", "su15"),
        ("JK", "neutral", "n30"),
        ("KL", "sad", "sa03"),
    ]
    assert set(table["gender"]) == {"male"}
    why = reasons(scan)
    assert set(why) == {"a01.wav", "KL_x01.wav"} and "same recording as" in why["a01.wav"]
    assert why["a01.wav"].split("same recording as ")[1].startswith(str(tmp_path / "ALL" / "DC_a01.wav"))


# ------------------------------------------------------------------------------------------ combined
def ser_en_tree(root: Path, tone_writer) -> Path:
    return write_tree(
        root,
        tone_writer,
        [
            "Crema/1001_DFA_ANG_XX.wav",
            "Crema/1002_DFA_SAD_XX.wav",
            "Crema/1002_DFA_XXX_XX.wav",
            "Ravdess/audio_speech_actors_01-24/Actor_01/03-01-02-01-01-01-01.wav",
            "Ravdess/audio_speech_actors_01-24/Actor_02/03-01-08-02-01-01-02.wav",
            "Ravdess/audio_speech_actors_01-24/Actor_02/03-02-03-01-01-01-02.wav",  # song
            "Savee/DC_h01.wav",
            "Savee/JE_su02.wav",
            "Tess/OAF_angry/OAF_back_angry.wav",
            "Tess/YAF_pleasant_surprised/YAF_back_ps.wav",
        ],
    )


def test_ser_en_combines_the_four_corpora(tmp_path, tone_writer):
    root = ser_en_tree(tmp_path / "ser_en", tone_writer)
    scan = SerEnCorpus(str(root)).scan()
    table = scan.table
    assert list(table.columns) == list(UTTERANCE_COLUMNS)
    assert table["corpus"].value_counts().to_dict() == {"crema_d": 2, "ravdess": 2, "savee": 2, "tess": 2}
    assert sorted(table["actor"].unique()) == [
        "crema_d:1001",
        "crema_d:1002",
        "ravdess:01",
        "ravdess:02",
        "savee:DC",
        "savee:JE",
        "tess:OAF",
        "tess:YAF",
    ]
    by_actor = table.set_index("actor")
    assert (
        by_actor.loc["ravdess:01", "emotion"] == "calm" and by_actor.loc["tess:YAF", "emotion"] == "surprised"
    )
    assert by_actor.loc["savee:DC", "gender"] == "male" and by_actor.loc["crema_d:1002", "gender"] == "female"
    assert scan.excluded_by_filter == 1  # the RAVDESS song file, with vocal_channels=[speech]
    assert list(reasons(scan)) == ["1002_DFA_XXX_XX.wav"]
    with_song = SerEnCorpus(str(root), vocal_channels=["speech", "song"]).scan().table
    assert (with_song["vocal_channel"] == "song").sum() == 1


def test_ser_en_missing_part_is_named_and_include_selects(tmp_path, tone_writer):
    root = ser_en_tree(tmp_path / "ser_en", tone_writer)
    for path in (root / "Savee").iterdir():
        path.unlink()
    (root / "Savee").rmdir()
    with pytest.raises(FileNotFoundError, match=r"lacks \['savee'\].*include"):
        SerEnCorpus(str(root)).scan()
    table = SerEnCorpus(str(root), include=["tess", "crema_d"]).scan().table
    assert sorted(table["corpus"].unique()) == ["crema_d", "tess"]
    with pytest.raises(ValueError, match="include"):
        SerEnCorpus(str(root), include=["emodb"])


def test_corpus_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"data.corpus_options has \['cvs'\].*valid options: \['csv'\]"):
        build_corpus(FolderCorpus, str(tmp_path), ["speech"], {"cvs": "x.csv"})
    with pytest.raises(ValueError, match="valid options: none"):
        build_corpus(RavdessCorpus, str(tmp_path), ["speech"], {"include": ["tess"]})
    assert build_corpus(SerEnCorpus, str(tmp_path), ["speech"], {"include": ["tess"]}).include == ["tess"]


# ------------------------------------------------------------------------------------------ folder
def test_folder_csv_relative_absolute_and_rejected_rows(tmp_path, tone_writer):
    audio = write_tree(
        tmp_path / "clips",
        tone_writer,
        ["a/one.wav", "a/two.flac", "b/three.wav", "b/four.wav", "b/five.wav", "unlisted.wav"],
    )
    (audio / "b" / "broken.wav").write_bytes(b"RIFF....not really audio" * 64)
    absolute = (audio / "b" / "four.wav").resolve()
    (audio / "labels.csv").write_text(
        "path,emotion,speaker,gender\n"
        "a/one.wav,happy,s1,female\n"  # line 2
        "a/two.flac, Anger ,s1,f\n"  # line 3: alias, spaces, flac
        f"{absolute},Surprise,s2,M\n"  # line 4: absolute path
        "b/three.wav,hungry,s2,male\n"  # line 5: unknown emotion
        "b/missing.wav,sad,s2,male\n"  # line 6: missing file
        "b/five.wav,sad,,male\n"  # line 7: empty speaker
        "b/broken.wav,sad,s3,male\n"  # line 8: unreadable audio
        "a/one.wav,happy,s1,female\n"  # line 9: listed again, same emotion
        "b/five.wav,sad,s2,robot\n"  # line 10: unknown gender
    )
    scan = FolderCorpus(str(audio)).scan()
    table = scan.table
    assert [Path(p).name for p in table["path"]] == ["one.wav", "two.flac", "four.wav"]
    assert list(table["emotion"]) == ["happy", "angry", "surprised"]
    assert list(table["actor"]) == ["s1", "s1", "s2"] and list(table["gender"]) == [
        "female",
        "female",
        "male",
    ]
    assert set(table["corpus"]) == {"folder"}
    why = [r.reason for r in scan.rejected]
    assert any("line 5: unknown emotion 'hungry'" in r for r in why)
    assert any("line 6: the file does not exist" in r for r in why)
    assert any("line 7: the speaker is empty" in r for r in why)
    assert any("line 8: cannot be read as audio" in r for r in why)
    assert any("line 9: listed again (first at line 2)" in r for r in why)
    assert any("line 10: unknown gender 'robot'" in r for r in why)
    assert len(why) == 6


def test_folder_conflicting_repeats_go_and_speakers_are_optional(tmp_path, tone_writer):
    write_tree(tmp_path, tone_writer, ["x.wav", "y.wav"])
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "my.csv").write_text(
        "path,emotion\n../x.wav,happy\n../x.wav,sad\n../y.wav,neutral\n"
    )
    scan = FolderCorpus(str(tmp_path), csv="meta/my.csv").scan()
    assert list(scan.table["emotion"]) == ["neutral"] and list(scan.table["actor"]) == ["unknown"]
    assert len(scan.rejected) == 2 and all(
        "different emotions at line 2 (happy), line 3 (sad)" in r.reason for r in scan.rejected
    )


def test_folder_same_recording_under_two_paths_is_used_once(tmp_path, tone_writer):
    write_tree(tmp_path, tone_writer, ["a/take1.wav", "a/take2.wav", "b/take3.wav"])
    shutil.copy(tmp_path / "a" / "take1.wav", tmp_path / "b" / "copy_of_take1.wav")
    shutil.copy(tmp_path / "a" / "take2.wav", tmp_path / "b" / "take2_relabelled.wav")
    (tmp_path / "labels.csv").write_text(
        "path,emotion,speaker\n"
        "a/take1.wav,happy,s1\n"  # line 2
        "a/take2.wav,sad,s1\n"  # line 3
        "b/take3.wav,angry,s2\n"  # line 4
        "b/copy_of_take1.wav,happy,s2\n"  # line 5: the bytes of line 2 again
        "b/take2_relabelled.wav,calm,s2\n"  # line 6: the bytes of line 3, another emotion
    )
    scan = FolderCorpus(str(tmp_path)).scan()
    assert [Path(p).name for p in scan.table["path"]] == ["take1.wav", "take3.wav"]
    why = reasons(scan)
    assert set(why) == {"copy_of_take1.wav", "take2.wav", "take2_relabelled.wav"}
    assert "line 5: the same recording as" in why["copy_of_take1.wav"]
    assert "take1.wav (line 2)" in why["copy_of_take1.wav"] and "SHA-256" in why["copy_of_take1.wav"]
    assert "line 3 (sad), line 6 (calm)" in why["take2.wav"] == why["take2_relabelled.wav"]
    # once in the table, a recording can only be in one split
    assert scan.table["path"].is_unique


def test_folder_speaker_spellings_are_one_speaker(tmp_path, tone_writer, caplog):
    names = [f"c{i}.wav" for i in range(8)]
    write_tree(tmp_path, tone_writer, names)
    speakers = ["Spk1", "01", "1", "spk_1", "Actor 01", "speaker2", "002", "m01"]
    rows = "".join(f"{n},happy,{s}\n" for n, s in zip(names, speakers, strict=True))
    (tmp_path / "labels.csv").write_text("path,emotion,speaker\n" + rows)
    with caplog.at_level("WARNING", logger="ser_lightning.data.corpora.folder"):
        table = FolderCorpus(str(tmp_path)).scan().table
    # the first spelling names the speaker; a letter that may mean something (m01) is kept
    assert list(table["actor"]) == ["Spk1"] * 5 + ["speaker2"] * 2 + ["m01"]
    assert "'Spk1' <- '01', '1', 'spk_1', 'Actor 01'" in caplog.text
    assert "'speaker2' <- '002'" in caplog.text


@pytest.mark.parametrize(
    "csv_text, error, message",
    [
        ("file,label\nx.wav,happy\n", ValueError, r"lacks \['path', 'emotion'\]"),
        ("path,emotion\nx.wav,hungry\n", FileNotFoundError, "no usable rows.*unknown emotion 'hungry'"),
        (
            "path,emotion,speaker,gender\nx.wav,happy,a,male\ny.wav,sad,a,female\n",
            ValueError,
            r"more than one gender: \{'a': \['female', 'male'\]\}",
        ),
    ],
)
def test_folder_csv_mistakes_are_clear(tmp_path, tone_writer, csv_text, error, message):
    write_tree(tmp_path, tone_writer, ["x.wav", "y.wav"])
    (tmp_path / "labels.csv").write_text(csv_text)
    with pytest.raises(error, match=message):
        FolderCorpus(str(tmp_path)).scan()


def test_folder_missing_csv_lists_what_is_there(tmp_path):
    (tmp_path / "annotations.csv").write_text("path,emotion\n")
    with pytest.raises(
        FileNotFoundError, match=r"labels.csv' does not exist \(CSV files in .*\['annotations.csv'\]\)"
    ):
        FolderCorpus(str(tmp_path)).scan()


def test_every_parser_fills_the_same_columns(tmp_path, tone_writer):
    write_tree(tmp_path / "r", tone_writer, ["Actor_03/03-01-05-01-01-01-03.wav"])
    (tmp_path / "f").mkdir()
    tone_writer(tmp_path / "f" / "c.wav", seconds=0.05)
    (tmp_path / "f" / "labels.csv").write_text("path,emotion\nc.wav,calm\n")
    tables = [RavdessCorpus(str(tmp_path / "r")).scan().table, FolderCorpus(str(tmp_path / "f")).scan().table]
    combined = pd.concat(tables, ignore_index=True)
    assert list(combined.columns) == list(UTTERANCE_COLUMNS)
    assert combined.dtypes["label"] == "int64" and list(combined["emotion"]) == ["angry", "calm"]
