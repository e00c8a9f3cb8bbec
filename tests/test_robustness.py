"""The robustness conditions: SNRs reached on the mixed signal, seeded, and each corruption's effect."""

import numpy as np
import pandas as pd
import pytest

from ser_lightning.reporting.robustness import condition_clips, robustness_table, standard_conditions
from ser_lightning.reporting.robustness_corruptions import codec_roundtrip, mu_law, snr_db

SR = 16000
STANDARD = {
    "noises": ["white", "babble"],
    "snr_db": [20, 10, 5, 0],
    "babble_talkers": 3,
    "reverb_rt60_s": [0.3],
    "telephone": True,
    "codecs": [{"codec": "mp3", "bitrate": 16000}, {"codec": "opus", "bitrate": 8000}],
    "gain_db": [-20],
}


def speech_like(n: int, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonic tones with a syllable-rate envelope and a little noise, peak-normalised."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    clips = []
    for _ in range(n):
        f0 = rng.uniform(100, 250)
        wave = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 8))
        wave = wave * (0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3, 5) * t)) + 0.01 * rng.standard_normal(
            len(t)
        )
        clips.append(wave / np.abs(wave).max())
    return np.stack(clips).astype(np.float32)


def conditions_by_name():
    return {c.name: c for c in standard_conditions(STANDARD, SR)}


@pytest.mark.parametrize("noise", ["white", "babble"])
@pytest.mark.parametrize("snr", [20, 10, 5, 0])
def test_noise_conditions_reach_the_snr_asked_for(noise, snr):
    clips = speech_like(6)
    speakers = np.array(["a", "a", "b", "b", "c", "c"])
    condition = conditions_by_name()[f"{noise} noise {snr} dB"]
    mixed = condition.apply(clips, speakers, np.random.default_rng(1))
    np.testing.assert_allclose(snr_db(clips, mixed), snr, atol=0.01)


def test_conditions_are_seeded():
    clips, speakers = speech_like(8), np.array(list("abcdefgh"))
    for name in ("white noise 10 dB", "babble noise 5 dB", "reverb RT60 0.3 s"):
        condition = conditions_by_name()[name]
        a = condition.apply(clips, speakers, np.random.default_rng([0, 3]))
        b = condition.apply(clips, speakers, np.random.default_rng([0, 3]))
        c = condition.apply(clips, speakers, np.random.default_rng([1, 3]))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_babble_is_made_of_other_speakers_clips():
    clips = np.zeros((3, 100), np.float32)
    clips[0, :] = 1.0
    clips[1, :] = -1.0
    clips[2, :50] = 1.0
    condition = standard_conditions({"noises": ["babble"], "snr_db": [0], "babble_talkers": 1}, SR)[0]
    mixed = condition.apply(clips, np.array(["a", "a", "b"]), np.random.default_rng(0))
    # clip 0 (speaker a) can only get speaker b's clip 2 as babble: its first half changes, its second does not
    assert np.all(mixed[0, 50:] == 1.0) and np.all(mixed[0, :50] > 1.0)


def test_telephone_band_and_mu_law():
    clips = speech_like(2)
    phone = conditions_by_name()["telephone 8 kHz mu-law"].apply(
        clips, np.array(["a", "b"]), np.random.default_rng(0)
    )
    assert phone.shape == clips.shape
    spectrum = np.abs(np.fft.rfft(phone[0])) ** 2
    freqs = np.fft.rfftfreq(phone.shape[1], 1 / SR)
    assert spectrum[freqs > 4200].sum() < 1e-4 * spectrum.sum()  # nothing above the 8 kHz Nyquist
    assert spectrum[(freqs > 300) & (freqs < 3400)].sum() > 0.9 * spectrum.sum()
    assert len(np.unique(mu_law(np.linspace(-1, 1, 10000)))) <= 256  # 8 bits


@pytest.mark.parametrize("codec, bitrate", [("mp3", 16000), ("opus", 8000)])
def test_codecs_round_trip_aligned_and_lossy(codec, bitrate):
    clip = speech_like(1, seconds=2.0)[0]
    decoded = codec_roundtrip(clip, SR, codec, bitrate)
    assert decoded.shape == clip.shape
    snr = float(snr_db(clip, decoded))
    assert 3.0 < snr < 60.0  # aligned (a misaligned clip would be near 0 dB or below), yet not lossless


def test_gain_is_undone_by_peak_normalisation_but_quantised():
    clips = speech_like(2)
    quiet = conditions_by_name()["gain -20 dB"].apply(clips, np.array(["a", "b"]), np.random.default_rng(0))
    assert np.abs(quiet).max() == pytest.approx(0.1, abs=1e-3)
    restored = condition_clips(quiet, peak_normalize=True)
    assert 30 < float(np.mean(snr_db(clips, restored))) < 80  # 16-bit steps at -20 dB


def test_the_table_scores_clean_first_then_every_condition():
    clips, speakers = speech_like(4), np.array(["a", "b", "c", "d"])
    conditions = standard_conditions({"noises": ["white"], "snr_db": [10, 0], "gain_db": [-20]}, SR)

    def score(waveforms):  # a "model" whose UA is the mean correlation with the clean clips
        ua = float(np.mean([np.corrcoef(w, c)[0, 1] for w, c in zip(waveforms, clips, strict=True)]))
        return {"ua": ua, "accuracy": ua, "macro_f1": ua}

    table = robustness_table(score, clips, speakers, conditions, seed=0, peak_normalize=True)
    assert list(table["condition"]) == ["clean", "white noise 10 dB", "white noise 0 dB", "gain -20 dB"]
    assert table.loc[0, "ua"] == pytest.approx(1.0) and table.loc[0, "ua_change"] == 0.0
    assert table.loc[1, "ua"] > table.loc[2, "ua"]  # more noise, lower score
    np.testing.assert_allclose(table["measured_snr_db"].iloc[1:3], [10, 0], atol=0.01)
    assert pd.isna(table.loc[3, "measured_snr_db"])
    again = robustness_table(score, clips, speakers, conditions, seed=0, peak_normalize=True)
    pd.testing.assert_frame_equal(table, again)
