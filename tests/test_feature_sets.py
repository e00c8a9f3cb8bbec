"""mfcc, mfcc_mel and handcrafted68 against librosa and against the shapes they announce."""

import warnings

import librosa
import numpy as np
import pytest
import soxr
import torch

from ser_lightning.features import MFCC, Handcrafted68, LogMel, MFCCMel
from ser_lightning.features.handcrafted import FEATURE_BLOCKS, NUM_FEATURES


def voiced_signal(sr: int, seconds: float = 1.0) -> np.ndarray:
    """A known signal with pitch, harmonics, a glide and some noise (no silent bands)."""
    t = np.arange(int(sr * seconds)) / sr
    f0 = 180 + 60 * t / seconds  # glide 180 -> 240 Hz
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum(0.4 / k * np.sin(k * phase) for k in range(1, 8))
    wave = wave + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    return (0.8 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.mark.parametrize("n_mfcc", [13, 20, 40])
@pytest.mark.parametrize(("deltas", "layout"), [(0, "rows"), (2, "rows"), (1, "channels"), (2, "channels")])
def test_mfcc_shapes_are_what_they_announce(n_mfcc, deltas, layout):
    features = MFCC(n_mfcc=n_mfcc, deltas=deltas, delta_layout=layout)
    out = features(torch.randn(2, 24000))
    assert tuple(out.shape[1:]) == features.output_shape(24000)
    expected = (1 + deltas, n_mfcc) if layout == "channels" else (1, n_mfcc * (1 + deltas))
    assert out.shape[1:3] == expected


def test_mfcc_matches_librosa_and_deltas_are_librosa_deltas():
    sr = 16000
    wave = voiced_signal(sr)
    features = MFCC(
        sample_rate=sr,
        n_mfcc=20,
        n_mels=64,
        n_fft=1024,
        hop_length=256,
        top_db=80.0,
        deltas=1,
        delta_layout="channels",
        normalization="none",
    )
    ours = features(torch.from_numpy(wave)[None])[0].numpy()  # (2, 20, frames)
    # torchaudio's mel scale is HTK without area normalisation, and it pads frames by reflection
    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=sr,
        n_fft=1024,
        hop_length=256,
        n_mels=64,
        htk=True,
        norm=None,
        power=2.0,
        pad_mode="reflect",
    )
    reference = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=80.0), n_mfcc=20)
    assert ours.shape[1:] == reference.shape
    np.testing.assert_allclose(ours[0], reference, atol=0.05 * np.abs(reference).max())
    # Δ: the same regression as librosa's; compare away from the edges, where padding differs
    delta = librosa.feature.delta(reference, width=9)
    np.testing.assert_allclose(ours[1][:, 4:-4], delta[:, 4:-4], atol=0.02 * np.abs(delta).max())


def test_mfcc_mel_stacks_mfcc_and_logmel_on_one_grid():
    sr = 16000
    wave = torch.from_numpy(voiced_signal(sr, 1.5))[None]
    settings = dict(sample_rate=sr, n_mels=40, n_fft=1024, hop_length=512, normalization="none")
    both = MFCCMel(**settings)(wave)
    assert tuple(both.shape[1:]) == MFCCMel(**settings).output_shape(wave.shape[-1]) == (2, 40, 47)
    torch.testing.assert_close(both[:, 1:], LogMel(**settings)(wave))
    torch.testing.assert_close(both[:, :1], MFCC(n_mfcc=40, **settings)(wave))


def test_two_channel_normalisation_is_per_channel():
    wave = torch.randn(4, 16000)
    out = MFCCMel(normalization="utterance")(wave)
    assert torch.allclose(out.mean(dim=(2, 3)), torch.zeros(4, 2), atol=1e-4)
    assert torch.allclose(out.std(dim=(2, 3)), torch.ones(4, 2), atol=1e-3)

    dataset = MFCCMel(normalization="dataset")
    dataset.fit_normalization(dataset.extract(wave).numpy())
    assert dataset.dataset_mean.shape == (2, 40)
    normalised = dataset(wave)
    assert torch.allclose(normalised.mean(dim=(0, 3)), torch.zeros(2, 40), atol=1e-3)


def test_bad_mfcc_settings_are_refused():
    with pytest.raises(ValueError, match="n_mfcc"):
        MFCC(n_mfcc=80, n_mels=64)
    with pytest.raises(ValueError, match="deltas"):
        MFCC(deltas=3)
    with pytest.raises(ValueError, match="delta_layout"):
        MFCC(delta_layout="stacked")


def librosa_68(y: np.ndarray, sr: int = 22050) -> np.ndarray:
    """The 68 features computed directly with librosa, each from the waveform, as a recipe would."""
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13)
    with warnings.catch_warnings():  # tonnetz's CQT on a short clip warns about its lowest octaves
        warnings.simplefilter("ignore", UserWarning)
        tonnetz = librosa.feature.tonnetz(y=y, sr=sr)
    return np.concatenate(
        [
            mfcc,
            librosa.feature.delta(mfcc),
            librosa.feature.delta(mfcc, order=2),
            librosa.feature.chroma_stft(y=y, sr=sr),
            librosa.feature.spectral_contrast(y=y, sr=sr),
            tonnetz,
            librosa.feature.zero_crossing_rate(y),
            librosa.feature.rms(y=y),
            librosa.feature.spectral_rolloff(y=y, sr=sr),
            librosa.feature.spectral_centroid(y=y, sr=sr),
        ]
    )


def test_handcrafted68_matches_librosa_on_a_known_signal():
    sr = 22050
    wave = voiced_signal(sr, 1.0)
    features = Handcrafted68(sample_rate=sr, max_len=60, normalization="none")
    ours = features(torch.from_numpy(wave)[None])[0, 0].numpy()
    reference = librosa_68(wave)
    assert reference.shape == (NUM_FEATURES, 44) and ours.shape == (68, 60)
    np.testing.assert_allclose(ours[:, :44], reference, rtol=1e-4, atol=1e-4 * float(np.abs(reference).max()))
    assert np.all(ours[:, 44:] == 0)  # zero-padded to max_len
    assert sum(rows for _, rows in FEATURE_BLOCKS) == 68
    # truncation keeps the first frames
    short = Handcrafted68(sample_rate=sr, max_len=20, normalization="none")(torch.from_numpy(wave)[None])
    np.testing.assert_allclose(short[0, 0].numpy(), ours[:, :20])


def test_handcrafted68_resamples_to_22050_inside():
    """16 kHz input is analysed at 22.05 kHz: a 440 Hz tone must land on pitch class A."""
    sr = 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    features = Handcrafted68(sample_rate=sr, normalization="none")
    assert features.output_shape(sr) == (1, 68, 22050 // 512 + 1)
    out = features(torch.from_numpy(tone)[None])[0, 0].numpy()
    chroma = out[39:51].mean(axis=1)
    assert int(np.argmax(chroma)) == 9  # C, C#, D, D#, E, F, F#, G, G#, A
    resampled = soxr.resample(tone, sr, 22050, quality="HQ")
    np.testing.assert_allclose(out[:, :43], librosa_68(resampled)[:, :43], rtol=1e-3, atol=1e-3)


def test_handcrafted68_precompute_uses_worker_processes_and_reports_progress():
    sr = 22050
    waves = np.stack([voiced_signal(sr, 0.5) * (0.2 + 0.1 * i) for i in range(5)])
    features = Handcrafted68(sample_rate=sr, num_workers=2, normalization="none")
    out = np.zeros((5, *features.output_shape(waves.shape[1])), dtype=np.float32)
    reported = []
    features.precompute(waves, out, advance=reported.append, chunk=2)
    assert reported == [2, 2, 1]
    direct = features.extract(torch.from_numpy(waves)).numpy()
    np.testing.assert_allclose(out, direct, rtol=1e-4, atol=1e-3)
    assert features.runs_on_device is False
    assert features.cache_params()["librosa"] == librosa.__version__


def test_handcrafted68_refuses_clips_too_short_for_deltas():
    with pytest.raises(ValueError, match="raise data.duration"):
        Handcrafted68(sample_rate=22050).output_shape(2000)
