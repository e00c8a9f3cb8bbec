"""Finding and decoding predict's inputs (audio, folders, video) and cutting clips into windows."""

import math

import numpy as np
import pytest
import soundfile as sf

from ser_lightning.data.audio import AudioDecodeError, AudioSettings, load_waveform
from ser_lightning.inference.media import collect_inputs, read_media
from ser_lightning.inference.windows import clip_windows

from .media_helpers import write_video

SR = 16000


def speechy(seconds: float, seed: int = 0) -> np.ndarray:
    """A tone with a moving pitch and a loudness contour plus a little noise (not a pure tone)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    pitch = 180 + 40 * np.sin(2 * np.pi * 0.7 * t)
    wave = np.sin(2 * np.pi * np.cumsum(pitch) / SR) * (0.3 + 0.2 * np.sin(2 * np.pi * 1.3 * t) ** 2)
    return (wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_short_and_cropped_clips_are_exactly_the_training_input(tmp_path):
    settings = AudioSettings(sample_rate=SR, duration=1.0, offset=0.1, crop="center", peak_normalize=True)
    for seconds in (0.6, 2.3):
        path = tmp_path / f"clip_{seconds}.wav"
        sf.write(path, speechy(seconds) * 0.4, SR, subtype="FLOAT")
        expected = load_waveform(path, settings)
        mode = "windows" if seconds < 1.0 else "crop"
        clip = clip_windows(read_media(path, SR), settings, hop=0.5, long_clips=mode)
        assert len(clip) == 1
        np.testing.assert_array_equal(clip.take([0])[0], expected)
        start, end = clip.spans()[0]
        assert start == pytest.approx(0.1 if seconds < 1.0 else 0.1 + (seconds - 0.1 - 1.0) / 2, abs=1e-4)
        assert end == pytest.approx(min(seconds, start + 1.0), abs=1e-4)


def test_long_clips_are_covered_by_evenly_spread_windows():
    settings = AudioSettings(sample_rate=SR, duration=1.5, offset=0.0, crop="center", peak_normalize=True)
    wave = speechy(4.0) * 0.5
    clip = clip_windows(wave, settings, hop=0.75)
    # 4.0 s with 1.5 s windows at most 0.75 s apart: 1 + ceil(2.5 / 0.75) = 5 windows
    assert len(clip) == 1 + math.ceil((4.0 - 1.5) / 0.75) == 5
    spans = clip.spans()
    assert spans[0] == (0.0, 1.5) and spans[-1] == pytest.approx((2.5, 4.0))
    assert np.allclose(np.diff([s for s, _ in spans]), 2.5 / 4)
    windows = clip.take(np.arange(len(clip)))
    normalised = wave / np.abs(wave).max()  # peak-normalised over the whole clip, as in training
    for (start, _), window in zip(spans, windows, strict=True):
        begin = int(round(start * SR))
        np.testing.assert_allclose(
            window, normalised[begin : begin + settings.num_samples], rtol=0, atol=1e-7
        )


def test_bad_window_settings_are_refused():
    settings = AudioSettings(sample_rate=SR, duration=1.0)
    with pytest.raises(ValueError, match="long_clips"):
        clip_windows(speechy(2.0), settings, hop=0.5, long_clips="sliding")
    with pytest.raises(ValueError, match="hop"):
        clip_windows(speechy(2.0), settings, hop=0.0)


def test_inputs_are_collected_recursively_with_errors_for_the_rest(tmp_path):
    root = tmp_path / "in"
    for rel in ("a.wav", "sub/b.flac", "sub/deeper/c.ogg", "sub/notes.txt"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".txt"):
            path.write_text("not audio")
        else:
            sf.write(path, speechy(0.3), SR)
    (tmp_path / "empty").mkdir()
    (tmp_path / "readme.md").write_text("x")
    inputs = [
        str(root),
        str(root / "a.wav"),
        str(tmp_path / "missing.wav"),
        str(tmp_path / "empty"),
        str(tmp_path / "readme.md"),
    ]
    files, errors = collect_inputs(inputs)
    assert [p.relative_to(root).as_posix() for p in files] == ["a.wav", "sub/b.flac", "sub/deeper/c.ogg"]
    messages = {e.path: e.message for e in errors}
    assert "does not exist" in messages[str(tmp_path / "missing.wav")]
    assert "holds no audio or video files" in messages[str(tmp_path / "empty")]
    assert "not a supported audio or video file" in messages[str(tmp_path / "readme.md")]


@pytest.mark.parametrize(
    "suffix,subtype", [(".flac", "PCM_16"), (".ogg", "VORBIS"), (".mp3", "MPEG_LAYER_III")]
)
def test_compressed_audio_decodes_like_the_wav(tmp_path, suffix, subtype):
    wave = speechy(1.0) * 0.5
    sf.write(tmp_path / "ref.wav", wave, SR, subtype="FLOAT")
    sf.write(tmp_path / f"clip{suffix}", wave, SR, subtype=subtype)
    reference = read_media(tmp_path / "ref.wav", SR)
    decoded = read_media(tmp_path / f"clip{suffix}", SR)
    n = min(len(reference), len(decoded))
    assert abs(len(decoded) - len(reference)) < 0.1 * SR
    if suffix == ".flac":
        np.testing.assert_allclose(decoded[:n], reference[:n], atol=1e-4)
    else:  # lossy codecs: the same signal, within coding noise
        lag = max(range(0, 1200), key=lambda k: float(np.dot(decoded[k : k + 8000], reference[:8000])))
        corr = np.corrcoef(decoded[lag : lag + 8000], reference[:8000])[0, 1]
        assert corr > 0.95


@pytest.mark.parametrize(
    "suffix,codec", [(".mkv", "flac"), (".mov", "pcm_s16le"), (".avi", "pcm_s16le"), (".mp4", "aac")]
)
def test_video_audio_tracks_decode_like_the_audio(tmp_path, suffix, codec):
    wave = speechy(1.2) * 0.5
    video = write_video(tmp_path / f"talk{suffix}", wave, SR, audio_codec=codec)
    decoded = read_media(video, SR)
    if codec == "aac":  # lossy, and the encoder pads the last frame
        assert len(wave) <= len(decoded) < len(wave) + 2048
        np.testing.assert_allclose(decoded[: len(wave)], wave, atol=0.02)
    else:
        np.testing.assert_allclose(decoded, wave, atol=1e-4)


def test_unreadable_inputs_raise_errors_that_name_the_file(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt definitely not audio")
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        read_media(broken, SR)
    silent_film = write_video(tmp_path / "silent.mp4", None, seconds=0.5)
    with pytest.raises(AudioDecodeError, match="silent.mp4.*no audio track"):
        read_media(silent_film, SR)
