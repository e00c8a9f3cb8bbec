"""The synthetic demo corpus: RAVDESS design and naming, reproducibility, safe regeneration,
and that its audio carries the emotion and speaker cues training relies on."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from ser_lightning.data.corpora.ravdess import parse_ravdess_name
from ser_lightning.demo_corpus import (
    GENERATOR_VERSION,
    MANIFEST_NAME,
    MAX_ACTORS,
    DemoCorpusSpec,
    DemoUtterance,
    ensure_demo_corpus,
    generate_demo_corpus,
    iter_demo_utterances,
    read_manifest,
    synthesize_utterance,
)
from ser_lightning.demo_corpus.__main__ import main
from ser_lightning.labels import EMOTIONS, RAVDESS_EMOTION_CODES

SPEC = DemoCorpusSpec(num_actors=4, duration=1.0, sample_rate=16000, seed=0)
TINY = DemoCorpusSpec(num_actors=4, duration=0.5, sample_rate=16000, seed=0)
RAVDESS_FILE = re.compile(r"^03-01-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d{2})\.wav$")


def wav_files(root: Path) -> list[Path]:
    return sorted(root.glob("Actor_*/*.wav"))


def fields(path: Path) -> dict[str, str]:
    match = RAVDESS_FILE.match(path.name)
    assert match, f"{path.name} does not follow the RAVDESS naming"
    emotion, intensity, statement, repetition, actor = match.groups()
    return {
        "emotion": RAVDESS_EMOTION_CODES[emotion],
        "intensity": intensity,
        "statement": statement,
        "repetition": repetition,
        "actor": actor,
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return ensure_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus", SPEC, progress=False)


@pytest.fixture(scope="module")
def measurements(corpus) -> list[dict]:
    """Per-file median f0 (YIN over voiced frames) and RMS, with the file's RAVDESS fields."""
    rows = []
    for path in wav_files(corpus):
        audio, sr = sf.read(path)
        f0 = librosa.yin(audio, fmin=60, fmax=700, sr=sr, frame_length=1024, hop_length=160)
        frame_rms = librosa.feature.rms(y=audio, frame_length=1024, hop_length=160, center=True)[0]
        voiced = frame_rms[: f0.size] > 0.2 * frame_rms.max()
        rows.append(
            {
                **fields(path),
                "f0": float(np.median(f0[voiced])),
                "rms_db": float(20 * np.log10(np.sqrt(np.mean(audio**2)))),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# Spec and design
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_actors": 5},
        {"num_actors": 2},
        {"num_actors": 100},
        {"seed": -1},
        {"duration": 0.1},
        {"sample_rate": 4000},
    ],
)
def test_spec_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        DemoCorpusSpec(**kwargs)


def test_spec_to_dict_is_plain_and_complete():
    assert DemoCorpusSpec().to_dict() == {
        "num_actors": 24,
        "duration": 3.0,
        "sample_rate": 16000,
        "seed": 0,
    }
    assert DemoCorpusSpec(duration=3).to_dict() == DemoCorpusSpec(duration=3.0).to_dict()


def test_full_design_matches_ravdess():
    utterances = list(iter_demo_utterances(DemoCorpusSpec()))
    assert len(utterances) == 1440
    per_emotion = Counter(u.emotion for u in utterances)
    assert per_emotion == {e: (96 if e == "neutral" else 192) for e in EMOTIONS}
    assert set(Counter(u.actor for u in utterances).values()) == {60}
    assert len({u.relative_path for u in utterances}) == 1440


def test_more_actors_than_ravdess_add_speakers_and_leave_the_first_24_unchanged(corpus):
    """Past 24 actors (up to 98, two-digit codes) for larger corpora: 96 actors give 5760
    RAVDESS-named files, and a file of a shared actor is the same whatever the actor count."""
    assert MAX_ACTORS == 98 and DemoCorpusSpec(num_actors=98).num_files == 98 * 60
    big = DemoCorpusSpec(num_actors=96, duration=SPEC.duration)
    utterances = list(iter_demo_utterances(big))
    assert len(utterances) == big.num_files == 5760
    assert len({u.relative_path for u in utterances}) == 5760
    assert utterances[:1440] == list(iter_demo_utterances(DemoCorpusSpec(duration=SPEC.duration)))
    for utterance in (utterances[-1], utterances[-61]):  # actors 96 (female) and 95 (male)
        parsed = parse_ravdess_name(utterance.filename)
        assert parsed.actor == f"{utterance.actor:02d}"
        assert parsed.gender == ("female" if utterance.is_female else "male")

    shared = DemoUtterance(actor=3, emotion="sad", intensity="02", statement="01", repetition="02")
    on_disk, _ = sf.read(corpus / shared.relative_path, dtype="int16")  # from the 4-actor SPEC
    np.testing.assert_array_equal(
        np.round(synthesize_utterance(big, shared) * 32767).astype(np.int16), on_disk
    )
    audio = synthesize_utterance(big, utterances[-1])
    assert np.isfinite(audio).all() and 0.05 < np.abs(audio).max() < 1.0
    assert abs(audio.size / big.sample_rate - big.duration) <= 0.1 * big.duration + 1e-3


# --------------------------------------------------------------------------------------------
# Files on disk
# --------------------------------------------------------------------------------------------


def test_counts_follow_ravdess_design(corpus):
    table = [fields(p) for p in wav_files(corpus)]
    assert len(table) == 4 * 60 == SPEC.num_files
    assert Counter(r["emotion"] for r in table) == {e: (16 if e == "neutral" else 32) for e in EMOTIONS}
    assert Counter(r["actor"] for r in table) == {f"{a:02d}": 60 for a in range(1, 5)}
    assert Counter(r["statement"] for r in table) == {"01": 120, "02": 120}
    assert Counter(r["repetition"] for r in table) == {"01": 120, "02": 120}
    for emotion in EMOTIONS:
        intensities = Counter(r["intensity"] for r in table if r["emotion"] == emotion)
        assert intensities == ({"01": 16} if emotion == "neutral" else {"01": 16, "02": 16}), emotion


def test_names_and_folders_agree(corpus):
    files = wav_files(corpus)
    for path in files:
        assert path.parent.name == f"Actor_{fields(path)['actor']}"
    expected = {u.relative_path for u in iter_demo_utterances(SPEC)}
    assert {p.relative_to(corpus) for p in files} == expected
    # Nothing else in the corpus besides the actor folders and the manifest.
    assert {p.name for p in corpus.iterdir()} == {f"Actor_{a:02d}" for a in range(1, 5)} | {MANIFEST_NAME}


def test_manifest_records_spec_and_version(corpus):
    manifest = read_manifest(corpus)
    assert manifest["spec"] == SPEC.to_dict()
    assert manifest["generator_version"] == GENERATOR_VERSION
    assert manifest["num_files"] == 240


def test_audio_format_duration_and_level(corpus):
    durations = []
    for path in wav_files(corpus)[::7]:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (
            16000,
            1,
            "PCM_16",
            "WAV",
        )
        audio, _ = sf.read(path)
        durations.append(audio.size / info.samplerate)
        assert np.isfinite(audio).all()
        assert 0.28 <= np.max(np.abs(audio)) <= 0.9, path.name
        # Leading and trailing silence: the first and last 40 ms are far below the speech.
        edge = int(0.04 * info.samplerate)
        speech_rms = np.sqrt(np.mean(audio**2))
        assert np.sqrt(np.mean(audio[:edge] ** 2)) < 0.05 * speech_rms, path.name
        assert np.sqrt(np.mean(audio[-edge:] ** 2)) < 0.05 * speech_rms, path.name
    durations = np.array(durations)
    assert durations.min() >= 0.9 * SPEC.duration - 1e-3 and durations.max() <= 1.1 * SPEC.duration + 1e-3
    assert durations.std() > 0.01  # clips vary in length like real recordings


# --------------------------------------------------------------------------------------------
# Reproducibility
# --------------------------------------------------------------------------------------------


def test_same_spec_gives_identical_bytes_and_new_seed_differs(corpus, tmp_path):
    again = generate_demo_corpus(tmp_path / "again", SPEC, progress=False)
    other = generate_demo_corpus(tmp_path / "other", DemoCorpusSpec(4, 1.0, 16000, seed=1), progress=False)
    sample = wav_files(corpus)[::11]
    for path in sample:
        relative = path.relative_to(corpus)
        assert (again / relative).read_bytes() == path.read_bytes(), relative
        assert (other / relative).read_bytes() != path.read_bytes(), relative


def corpus_digest(root: Path) -> str:
    """SHA-256 over every file under root: its relative path, then its bytes, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


# Digests of whole tiny corpora (wav files and manifest) from the locked numpy/scipy. They pin
# the generator's output bit for bit: a refactor must keep them; a deliberate change of the
# audio must bump GENERATOR_VERSION (which changes the manifest, so the digest) and re-pin.
# The 8 kHz corpus takes the branches that clip filters and formants below a low Nyquist.
PINNED_DIGESTS = [
    (TINY, "a271c17b6341ee4e7a9ab60d154c4cd42badbe72ddfcafc38da91763faeb2710"),
    (
        DemoCorpusSpec(num_actors=4, duration=0.6, sample_rate=8000, seed=5),
        "c36fc395597cc1d994d986c31b27b5f778341e49933d69e2eaa48157356ee8a8",
    ),
]


@pytest.mark.parametrize(("spec", "expected"), PINNED_DIGESTS, ids=["16kHz-seed0", "8kHz-seed5"])
def test_generated_corpus_bytes_are_pinned(tmp_path, spec, expected):
    root = generate_demo_corpus(tmp_path / "pinned", spec, progress=False)
    assert corpus_digest(root) == expected


def test_a_file_does_not_depend_on_generation_order(corpus):
    """Each file is seeded by its own fields, so rendering it alone reproduces it exactly."""
    utterance = DemoUtterance(actor=3, emotion="fearful", intensity="02", statement="02", repetition="01")
    synthesize_utterance(SPEC, DemoUtterance(2, "happy", "01", "01", "01"))  # unrelated work first
    audio = synthesize_utterance(SPEC, utterance)
    on_disk, _ = sf.read(corpus / utterance.relative_path, dtype="int16")
    np.testing.assert_array_equal(np.round(audio * 32767).astype(np.int16), on_disk)


def test_generate_refuses_non_empty_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        generate_demo_corpus(tmp_path / "root", TINY, progress=False)


# --------------------------------------------------------------------------------------------
# ensure_demo_corpus
# --------------------------------------------------------------------------------------------


def mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_ensure_is_a_no_op_when_up_to_date_and_regenerates_on_spec_change(tmp_path):
    root = tmp_path / "demo"
    assert ensure_demo_corpus(root, TINY, progress=False) == root
    before = mtimes(root)
    ensure_demo_corpus(root, TINY, progress=False)
    assert mtimes(root) == before

    changed = DemoCorpusSpec(num_actors=4, duration=0.5, seed=7)
    sample = root / "Actor_01" / "03-01-05-02-01-01-01.wav"
    old_bytes = sample.read_bytes()
    ensure_demo_corpus(root, changed, progress=False)
    assert read_manifest(root)["spec"] == changed.to_dict()
    assert len(wav_files(root)) == 240
    assert sample.read_bytes() != old_bytes
    # Only the corpus and its lock remain beside it: no staging or retired copies.
    assert {p.name for p in tmp_path.iterdir()} == {"demo", "demo.lock"}


def test_ensure_repairs_a_corpus_with_missing_files(tmp_path):
    root = ensure_demo_corpus(tmp_path / "demo", TINY, progress=False)
    victim = wav_files(root)[0]
    victim.unlink()
    ensure_demo_corpus(root, TINY, progress=False)
    assert victim.exists() and len(wav_files(root)) == 240


def test_ensure_cleans_leftovers_of_a_killed_run_and_keeps_foreign_folders(tmp_path):
    leftover = tmp_path / ".demo.abc123_x.new-tmp"
    (leftover / "Actor_01").mkdir(parents=True)
    neighbour = tmp_path / ".demo.other.abc.new-tmp"  # belongs to a different root name
    neighbour.mkdir()
    ensure_demo_corpus(tmp_path / "demo", TINY, progress=False)
    assert not leftover.exists()
    assert neighbour.exists()


def test_ensure_refuses_to_replace_a_folder_that_is_not_a_demo_corpus(tmp_path):
    root = tmp_path / "real"
    (root / "Actor_01").mkdir(parents=True)
    (root / "Actor_01" / "03-01-01-01-01-01-01.wav").write_bytes(b"not ours")
    with pytest.raises(FileExistsError):
        ensure_demo_corpus(root, TINY, progress=False)
    assert (root / "Actor_01" / "03-01-01-01-01-01-01.wav").read_bytes() == b"not ours"


def test_concurrent_ensure_calls_end_with_one_good_copy(tmp_path):
    root = tmp_path / "demo"
    errors: list[BaseException] = []

    def call() -> None:
        try:
            ensure_demo_corpus(root, TINY, progress=False)
        except BaseException as err:  # collected and re-raised in the main thread
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(wav_files(root)) == 240
    assert read_manifest(root)["spec"] == TINY.to_dict()
    assert {p.name for p in tmp_path.iterdir()} == {"demo", "demo.lock"}


def test_cli_generates_and_summarises(tmp_path, capsys):
    root = tmp_path / "cli"
    assert main(["--root", str(root), "--actors", "4", "--duration", "0.5", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "240 files" in out and "4 actors" in out and "8 emotions" in out
    assert read_manifest(root)["spec"]["seed"] == 3
    assert main(["--root", str(root), "--actors", "3"]) == 2


def test_module_entry_point_generates_the_corpus(tmp_path):
    """`python -m ser_lightning.demo_corpus`, as `make demo` runs it, without runpy's warning that the
    entry module was imported twice."""
    root = tmp_path / "entry"
    command = [sys.executable, "-W", "error::RuntimeWarning:runpy", "-m", "ser_lightning.demo_corpus"]
    command += ["--root", str(root), "--actors", "4", "--duration", "0.5"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "240 files" in done.stdout and "4 actors" in done.stdout
    assert corpus_digest(root) == PINNED_DIGESTS[0][1]


# --------------------------------------------------------------------------------------------
# Acoustic cues
# --------------------------------------------------------------------------------------------


def median_by(rows: list[dict], key: str, **where: str) -> float:
    return float(np.median([r[key] for r in rows if all(r[k] == v for k, v in where.items())]))


def test_male_voices_are_lower_than_female_voices(measurements):
    neutral_f0 = {
        a: median_by(measurements, "f0", actor=a, emotion="neutral") for a in ("01", "02", "03", "04")
    }
    assert max(neutral_f0["01"], neutral_f0["03"]) < min(neutral_f0["02"], neutral_f0["04"])
    assert 80 < neutral_f0["01"] < 170 and 80 < neutral_f0["03"] < 170
    assert 160 < neutral_f0["02"] < 300 and 160 < neutral_f0["04"] < 300


def test_high_arousal_emotions_are_higher_pitched_than_sad(measurements):
    semitone_gaps = {"angry": [], "surprised": []}
    for actor in ("01", "02", "03", "04"):
        sad = median_by(measurements, "f0", actor=actor, emotion="sad")
        for emotion, gaps in semitone_gaps.items():
            gaps.append(12 * np.log2(median_by(measurements, "f0", actor=actor, emotion=emotion) / sad))
    # Surprise is far above sadness for every speaker; anger is above it on average, though
    # actors differ in how they express it (as real actors do).
    assert min(semitone_gaps["surprised"]) > 2.0, semitone_gaps
    assert np.mean(semitone_gaps["angry"]) > 2.0, semitone_gaps
    assert sum(g > 0 for g in semitone_gaps["angry"]) >= 3, semitone_gaps


def test_angry_is_louder_than_sad(measurements):
    gaps = [
        median_by(measurements, "rms_db", actor=a, emotion="angry")
        - median_by(measurements, "rms_db", actor=a, emotion="sad")
        for a in ("01", "02", "03", "04")
    ]
    assert np.mean(gaps) > 1.0, gaps
    assert sum(g > 0 for g in gaps) >= 3, gaps


def test_strong_intensity_exaggerates_the_emotion(measurements):
    """Strong surprise rises further from the speaker's neutral pitch than normal surprise."""
    gaps = []
    for actor in ("01", "02", "03", "04"):
        neutral = median_by(measurements, "f0", actor=actor, emotion="neutral")
        normal = median_by(measurements, "f0", actor=actor, emotion="surprised", intensity="01")
        strong = median_by(measurements, "f0", actor=actor, emotion="surprised", intensity="02")
        gaps.append(12 * np.log2(strong / neutral) - 12 * np.log2(normal / neutral))
    assert np.mean(gaps) > 1.0, gaps
