import librosa
import numpy as np
import pytest
import torch

from ser_lightning.features import LogMel


@pytest.mark.parametrize("num_samples", [16000, 24000, 48000, 12345])
def test_output_shape_is_what_it_announces(num_samples):
    features = LogMel(sample_rate=16000, n_mels=40, hop_length=256)
    out = features(torch.randn(2, num_samples))
    assert tuple(out.shape[1:]) == features.output_shape(num_samples)
    assert out.shape[0] == 2


def test_logmel_matches_librosa():
    sr = 16000
    t = np.arange(sr) / sr
    wave = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32)
    features = LogMel(
        sample_rate=sr, n_fft=1024, hop_length=256, n_mels=64, top_db=None, normalization="none"
    )
    ours = features(torch.from_numpy(wave)[None])[0, 0].numpy()
    reference = librosa.power_to_db(
        librosa.feature.melspectrogram(
            y=wave,
            sr=sr,
            n_fft=1024,
            hop_length=256,
            n_mels=64,
            htk=True,
            norm=None,
            center=True,
            pad_mode="reflect",
            power=2.0,
        ),
        ref=1.0,
        amin=1e-10,
        top_db=None,
    )
    assert ours.shape == reference.shape
    loud = reference > reference.max() - 60  # compare where there is energy
    np.testing.assert_allclose(ours[loud], reference[loud], atol=0.05)


def test_top_db_is_per_utterance():
    features = LogMel(top_db=80.0, normalization="none")
    loud, quiet = torch.randn(1, 16000), 1e-3 * torch.randn(1, 16000)
    together = features(torch.cat([loud, quiet]))
    alone = features(quiet)
    torch.testing.assert_close(together[1:], alone)


def test_utterance_and_dataset_normalisation():
    wave = torch.randn(4, 16000)
    out = LogMel(normalization="utterance")(wave)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(out.std(dim=(1, 2, 3)), torch.ones(4), atol=1e-3)

    dataset = LogMel(normalization="dataset")
    assert dataset.needs_dataset_stats
    with pytest.raises(RuntimeError, match="statistics of the train split"):
        dataset(wave)
    raw = dataset.extract(wave).numpy()
    dataset.fit_normalization(raw)
    assert not dataset.needs_dataset_stats
    normalised = dataset(wave)
    assert torch.allclose(normalised.mean(dim=(0, 1, 3)), torch.zeros(64), atol=1e-3)
    state = dataset.state_dict()
    assert {"dataset_mean", "dataset_std", "dataset_stats_fitted"} <= set(state)

    # statistics travel with a state dict, and loading unfitted ones refuses again
    fresh = LogMel(normalization="dataset")
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(wave), normalised)
    unfitted = LogMel(normalization="dataset").state_dict()
    dataset.load_state_dict(unfitted)
    with pytest.raises(RuntimeError, match="statistics of the train split"):
        dataset(wave)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="normalization"):
        LogMel(normalization="global")
    with pytest.raises(ValueError, match="Nyquist"):
        LogMel(sample_rate=16000, f_max=12000)
