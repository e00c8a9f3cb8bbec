"""Finding and decoding predict's inputs (audio, folders, video) and cutting clips into windows."""

import math
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.data.audio import load_waveform
from ser_lightning.decoding import AudioDecodeError, mix_and_resample
from ser_lightning.inference.containers import UnsupportedContainerError
from ser_lightning.inference.media import (
    MediaTooLongError,
    MediaTooManySamplesError,
    collect_inputs,
    read_media,
    read_with_av,
)
from ser_lightning.inference.windows import clip_windows

from .helpers.video import write_video

REPO = Path(__file__).resolve().parents[1]
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


def write_multichannel(path, seconds: float, channels: int = 8, rate: int = 48000, tone_channel=None):
    """A FLAC of `channels` channels written block by block (an hour of silence is a few MB on disk)."""
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16") as handle:
        for start in range(0, int(seconds * rate), rate):
            block = np.zeros((min(rate, int(seconds * rate) - start), channels), dtype=np.float32)
            if tone_channel is not None:
                t = (start + np.arange(len(block))) / rate
                block[:, tone_channel] = 0.25 * np.sin(2 * np.pi * 220.0 * t)
            handle.write(block)
    return path


def decoding_peak_bytes(path, **options) -> tuple[np.ndarray, int]:
    tracemalloc.start()
    try:
        wave = read_media(path, SR, **options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return wave, peak


def test_many_channels_are_mixed_block_by_block_not_decoded_whole(tmp_path):
    # 60 s of 8-channel 48 kHz audio (silent but one channel): 92 MB as float32 if decoded whole
    path = write_multichannel(tmp_path / "eight.flac", 60.0, tone_channel=3)
    wave, peak = decoding_peak_bytes(path)
    assert len(wave) == 60 * SR and 0.025 < np.abs(wave).max() < 0.035  # the tone, mixed with 7 silences
    # the mono 16 kHz result (3.8 MB) and a block at a time, not the 8 channels at 48 kHz (24x it)
    assert peak < 4 * wave.nbytes, f"peak {peak / 1e6:.1f} MB for a {wave.nbytes / 1e6:.1f} MB result"


def test_block_decoding_gives_training_samples_exactly(tmp_path):
    # resampled (44.1 kHz) and mixed (3 channels): the same samples as decoding the whole file at once
    rng = np.random.default_rng(1)
    data = (0.3 * rng.standard_normal((int(3.7 * 44100), 3))).astype(np.float32)
    path = tmp_path / "three.wav"
    sf.write(path, data, 44100, subtype="FLOAT")
    whole, rate = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(read_media(path, SR), mix_and_resample(whole, rate, SR))


def test_files_longer_than_max_duration_are_refused_naming_the_key(tmp_path):
    path = write_multichannel(tmp_path / "long.flac", 30.0)
    with pytest.raises(MediaTooLongError, match=r"long\.flac.* lasts 30\.0 s.*max_duration_s=20 s"):
        read_media(path, SR, max_duration_s=20)
    video = write_video(tmp_path / "talk.mkv", speechy(3.0), SR, audio_codec="flac")
    with pytest.raises(MediaTooLongError, match=r"talk\.mkv.*max_duration_s=2 s"):
        read_media(video, SR, max_duration_s=2)
    assert len(read_media(path, SR, max_duration_s=30)) == 30 * SR


def hide_flac_length(path):
    """Zero the total-samples field of the FLAC STREAMINFO, as encoders writing to a pipe leave it."""
    data = bytearray(path.read_bytes())
    # after "fLaC", a 4-byte block header and 10 bytes of block/frame sizes: 20 bits rate, 3 bits
    # channels, 5 bits depth, then the 36-bit sample count
    fields = int.from_bytes(data[18:26], "big")
    data[18:26] = (fields & ~((1 << 36) - 1)).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def test_a_file_whose_header_hides_its_length_is_cut_off_while_decoding(tmp_path):
    path = hide_flac_length(write_multichannel(tmp_path / "streamed.flac", 3.0, 2, tone_channel=0))
    assert sf.info(path).frames > 10**18  # libsndfile: length unknown
    assert len(read_media(path, SR)) == 3 * SR
    with pytest.raises(MediaTooLongError, match=r"streamed\.flac.*decodes to more audio.*max_duration_s=1 s"):
        read_media(path, SR, max_duration_s=1)


def test_a_sample_limit_refuses_high_rates_and_many_channels_from_the_header_or_while_decoding(tmp_path):
    """max_samples counts all channels at the file's own rate: what decoding costs."""
    path = write_multichannel(tmp_path / "wide.flac", 2.0, 4)  # 2 s x 4 channels at 48 kHz
    with pytest.raises(
        MediaTooManySamplesError, match=r"wide\.flac.*decodes to 384,000 samples.*more than the 300,000"
    ):
        read_media(path, SR, max_duration_s=10, max_samples=300_000)
    assert len(read_media(path, SR, max_duration_s=10, max_samples=384_000)) == 2 * SR
    hidden = hide_flac_length(write_multichannel(tmp_path / "streamed.flac", 2.0, 4))
    with pytest.raises(MediaTooManySamplesError, match=r"streamed\.flac.*decodes to more samples than that"):
        read_media(hidden, SR, max_samples=300_000)
    video = write_video(tmp_path / "talk.mkv", speechy(3.0), SR, audio_codec="flac")
    with pytest.raises(MediaTooManySamplesError, match=r"talk\.mkv"):
        read_media(video, SR, max_samples=SR)


@pytest.mark.parametrize(
    "name,content,kind",
    [
        ("self.wav", b"ffconcat version 1.0\nfile self.wav\n", "an FFmpeg concat list"),
        ("list.m3u8", b"#EXTM3U\n#EXTINF:1.0,\n{secret}\n#EXT-X-ENDLIST\n", "an HLS/M3U playlist"),
        ("list.mp4", b"\xef\xbb\xbf#EXTM3U\n#EXTINF:1.0,\n{secret}\n", "an HLS/M3U playlist"),
        ("manifest.mkv", b'<?xml version="1.0"?><MPD><BaseURL>{secret}</BaseURL></MPD>', "an XML document"),
    ],
)
def test_playlists_are_refused_whatever_their_name(tmp_path, name, content, kind):
    """A playlist or file list names other files for FFmpeg to open: predict (and the server) never
    decode one, whatever its extension."""
    secret = tmp_path / "secret.wav"
    sf.write(secret, speechy(1.0), SR)
    path = tmp_path / name
    path.write_bytes(content.replace(b"{secret}", str(secret).encode()))
    with pytest.raises(UnsupportedContainerError, match=rf"{name}.*it is {kind}.*not a recording"):
        read_media(path, SR)


def test_ffmpeg_opens_audio_and_video_containers_only(tmp_path):
    """The whitelist is enforced by FFmpeg itself: a format outside it is refused even when no
    check of the first bytes knows it (here FFmpeg's own text subtitle format)."""
    path = tmp_path / "subtitles.media"
    path.write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n\n2\n00:00:03,000 --> 00:00:04,000\nagain\n")
    with pytest.raises(AudioDecodeError, match="not an audio or video container this decoder opens"):
        read_with_av(path, SR)


@pytest.mark.parametrize(
    "module,kept_out",
    [
        ("ser_lightning.decoding", ("ser_lightning.data", "ser_lightning.inference")),
        ("ser_lightning.data.audio", ("ser_lightning.inference",)),
        ("ser_lightning.inference.media", ("ser_lightning.data",)),
        ("ser_lightning.audio_settings", ("ser_lightning.data", "ser_lightning.inference")),
        ("ser_lightning.inference.windows", ("ser_lightning.data",)),
        ("ser_lightning.inference.timeline", ("ser_lightning.data",)),
    ],
)
def test_decoding_sits_below_training_and_prediction(module, kept_out):
    """Training's conditioning and prediction's media reading share ser_lightning.decoding and
    never import each other (a fresh interpreter, so that nothing else imported them first)."""
    code = f"import sys, {module}\nprint(sorted(m for m in sys.modules if m.startswith({kept_out!r})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"importing {module} imported {done.stdout.strip()}"
