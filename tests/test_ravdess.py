from pathlib import Path

import pytest

from ser_lightning.data.corpora.ravdess import RavdessCorpus, RavdessNameError, parse_ravdess_name


def test_parse_all_fields():
    fields = parse_ravdess_name("Actor_07/03-01-05-02-01-02-07.wav")
    assert fields.modality == "03" and fields.vocal_channel == "01"
    assert fields.emotion == "05" and fields.intensity == "02"
    assert fields.statement == "01" and fields.repetition == "02" and fields.actor == "07"
    assert fields.gender == "male"
    assert parse_ravdess_name("03-01-01-01-01-01-12.wav").gender == "female"


@pytest.mark.parametrize(
    "name, message",
    [
        ("03-01-09-01-01-01-01.wav", "unknown emotion code '09'"),
        ("03-03-01-01-01-01-01.wav", "unknown vocal channel code '03'"),
        ("03-01-02-03-01-01-01.wav", "unknown intensity code '03'"),
        ("03-01-01-02-01-01-01.wav", "strong intensity for neutral"),
        ("03-01-01-01-01-01-00.wav", "actor code '00'"),
        ("03-01-01-01-01-01.wav", "does not follow the RAVDESS scheme"),
        ("happy_clip.wav", "does not follow the RAVDESS scheme"),
        ("03-01-1-01-01-01-01.wav", "does not follow the RAVDESS scheme"),
    ],
)
def test_invalid_names_say_what_is_wrong(name, message):
    with pytest.raises(RavdessNameError, match=message):
        parse_ravdess_name(name)


def _corpus(tmp_path: Path, tone_writer, names: list[str]) -> Path:
    for name in names:
        tone_writer(tmp_path / name, seconds=0.1)
    return tmp_path


def test_scan_reports_rejected_and_filtered_files(tmp_path, tone_writer):
    root = _corpus(
        tmp_path,
        tone_writer,
        [
            "Actor_01/03-01-05-01-01-01-01.wav",  # angry, male
            "Actor_02/03-01-04-02-02-01-02.wav",  # sad strong, female
            "Actor_01/03-02-03-01-01-01-01.wav",  # song: filtered by default
            "Actor_01/03-01-09-01-01-01-01.wav",  # unknown emotion
            "Actor_01/notes.wav",  # not a RAVDESS name
            "Actor_02/03-01-03-01-01-01-05.wav",  # actor 05 inside Actor_02: mislabeled folder
            "nested/deeper/03-01-08-01-01-01-03.wav",  # found recursively
        ],
    )
    scan = RavdessCorpus(str(root)).scan()
    table = scan.table
    assert list(table["emotion"]) == ["angry", "sad", "surprised"]
    assert list(table["label"]) == [4, 3, 7]
    assert list(table["gender"]) == ["male", "female", "male"]
    assert list(table["intensity"]) == ["normal", "strong", "normal"]
    assert set(table["vocal_channel"]) == {"speech"}
    assert scan.excluded_by_filter == 1
    reasons = {Path(r.path).name: r.reason for r in scan.rejected}
    assert set(reasons) == {"03-01-09-01-01-01-01.wav", "notes.wav", "03-01-03-01-01-01-05.wav"}
    assert "unknown emotion" in reasons["03-01-09-01-01-01-01.wav"]
    assert "Actor_02" in reasons["03-01-03-01-01-01-05.wav"]
    assert "3 rejected" in scan.summary() and "1 excluded" in scan.summary()


def test_song_and_both_channels(tmp_path, tone_writer):
    root = _corpus(
        tmp_path, tone_writer, ["Actor_01/03-01-05-01-01-01-01.wav", "Actor_01/03-02-03-01-01-01-01.wav"]
    )
    assert list(RavdessCorpus(str(root), vocal_channels=["song"]).scan().table["emotion"]) == ["happy"]
    both = RavdessCorpus(str(root), vocal_channels=["speech", "song"]).scan().table
    assert sorted(both["vocal_channel"]) == ["song", "speech"]
    with pytest.raises(ValueError, match="vocal_channels"):
        RavdessCorpus(str(root), vocal_channels=["opera"])


def test_missing_or_empty_root_explains_where_to_get_ravdess(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*zenodo.*data=demo"):
        RavdessCorpus(str(tmp_path / "nowhere")).scan()
    with pytest.raises(FileNotFoundError, match="no .wav files.*1188976.*data=demo"):
        RavdessCorpus(str(tmp_path)).scan()


def test_files_in_hidden_folders_are_not_corpus_files_and_are_counted_in_the_log(
    tmp_path, tone_writer, caplog
):
    # A killed unpack leaves a full copy in `.unpack-*`; a download leaves `.download/`. Read as
    # corpus files they would be kept first (sorted order) and the real files rejected as copies.
    names = ["Actor_01/03-01-05-01-01-01-01.wav", "Actor_02/03-01-04-02-02-01-02.wav"]
    root = _corpus(tmp_path, tone_writer, names)
    for name in names:
        tone_writer(root / ".unpack-1a2b3c4d" / name, seconds=0.1)
    tone_writer(root / ".download" / "Actor_03" / "03-01-02-01-01-01-03.wav", seconds=0.1)
    with caplog.at_level("INFO", logger="ser_lightning.data.corpora.common"):
        scan = RavdessCorpus(str(root)).scan()
    assert sorted(scan.table["path"]) == sorted(str(root / name) for name in names)
    assert scan.rejected == []
    notes = [r.getMessage() for r in caplog.records if "hidden" in r.getMessage()]
    assert len(notes) == 1 and "3 audio files" in notes[0] and ".unpack-1a2b3c4d" in notes[0]
