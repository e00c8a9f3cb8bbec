import numpy as np
import pytest
import soundfile as sf

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.data.audio import load_waveform
from ser_lightning.decoding import AudioDecodeError, read_audio


def test_stereo_is_mixed_and_resampled(tmp_path, tone_writer):
    path = tone_writer(tmp_path / "stereo.wav", seconds=1.0, sample_rate=48000, freq=440.0, channels=2)
    wave = read_audio(path, 16000)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert abs(len(wave) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440.0) < 2.0  # the tone survives resampling
    # mean of channels with amplitudes 0.25 and 0.5
    assert np.max(np.abs(wave)) == pytest.approx(0.375, abs=0.01)


def test_crop_pad_and_peak_normalise(tmp_path, tone_writer):
    short = tone_writer(tmp_path / "short.wav", seconds=0.5, amplitude=0.2)
    settings = AudioSettings(sample_rate=16000, duration=1.0)
    wave = load_waveform(short, settings)
    assert wave.shape == (16000,)
    assert np.max(np.abs(wave[:8000])) == pytest.approx(1.0, abs=1e-3)
    assert np.all(wave[8001:] == 0.0)

    long = tone_writer(tmp_path / "long.wav", seconds=3.0)
    centre = load_waveform(long, AudioSettings(duration=1.0, crop="center", peak_normalize=False))
    raw = read_audio(long, 16000)
    np.testing.assert_array_equal(centre, raw[16000:32000])
    start = load_waveform(long, AudioSettings(duration=1.0, crop="start", offset=0.25, peak_normalize=False))
    np.testing.assert_array_equal(start, raw[4000:20000])


def test_silence_stays_finite(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(8000), 16000)
    wave = load_waveform(path, AudioSettings(duration=1.0))
    assert np.all(wave == 0.0) and np.all(np.isfinite(wave))


def test_undecodable_file_names_the_file(tmp_path):
    bad = tmp_path / "03-01-01-01-01-01-01.wav"
    bad.write_text("this is not audio")
    with pytest.raises(AudioDecodeError, match="03-01-01-01-01-01-01.wav.*remove it"):
        load_waveform(bad, AudioSettings())


@pytest.mark.parametrize("kwargs", [{"duration": 0}, {"sample_rate": -1}, {"crop": "middle"}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        AudioSettings(**kwargs)
