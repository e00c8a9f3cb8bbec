"""Each augmentation does what its config says, on known signals."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import beta

from ser_lightning.augment.batch import BatchAugmentation
from ser_lightning.augment.mixup import MixedBatch, Mixup
from ser_lightning.augment.spectrogram import SpecAugment
from ser_lightning.augment.waveform import build_waveform_augmentation
from ser_lightning.data.augmentation import check_augmentation, for_data_module, for_lightning_module
from ser_lightning.module_settings import batch_augmentation

SR = 16000


def batch_augmentation_of(node: dict, input_shape: tuple[int, int, int]) -> BatchAugmentation:
    """The LightningModule's batch augmentation from an `augmentation` config node, as a run builds it."""
    return batch_augmentation(**for_lightning_module(node), input_shape=input_shape)


def augmenter(**transforms):
    """A WaveformAugmentation of the given `name={_target_ ..., p ...}` transforms."""
    return build_waveform_augmentation({"transforms": transforms}, SR)


def tone(freq: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(wave: np.ndarray) -> float:
    """Peak of the Hann-windowed spectrum, refined by parabolic interpolation (Hz)."""
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave)), n=8 * len(wave)))
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / (8 * len(wave))


# ------------------------------------------------------------------ waveform level
def test_polarity_inversion_negates():
    wave = np.random.default_rng(0).normal(size=SR).astype(np.float32)
    out = augmenter(flip={"_target_": "audiomentations.PolarityInversion", "p": 1.0})(wave)
    np.testing.assert_array_equal(out, -wave)


def test_gain_stays_within_its_db_range():
    gain = augmenter(
        gain={"_target_": "audiomentations.Gain", "min_gain_db": -6.0, "max_gain_db": 3.0, "p": 1.0}
    )
    wave = tone(300.0)
    gains_db = np.array(
        [20 * np.log10(np.max(np.abs(gain(wave))) / np.max(np.abs(wave))) for _ in range(400)]
    )
    assert gains_db.min() >= -6.0 - 1e-4 and gains_db.max() <= 3.0 + 1e-4
    assert gains_db.min() < -5.5 and gains_db.max() > 2.5  # the whole range is used


@pytest.mark.parametrize("semitones", [2.0, -2.0])
def test_pitch_shift_moves_a_pure_tone_by_the_semitone_ratio(semitones):
    shift = augmenter(
        pitch={
            "_target_": "audiomentations.PitchShift",
            "min_semitones": semitones,
            "max_semitones": semitones,
            "p": 1.0,
        }
    )
    out = shift(tone(440.0))
    assert len(out) == SR and out.dtype == np.float32
    # the stretcher's latency leaves the clip's edges; measure the steady middle
    measured = dominant_frequency(out[SR // 4 : 3 * SR // 4])
    assert measured == pytest.approx(440.0 * 2 ** (semitones / 12), rel=0.005)


def test_time_stretch_keeps_length_and_pitch_and_moves_the_end_of_a_burst():
    stretch = augmenter(
        stretch={
            "_target_": "audiomentations.TimeStretch",
            "min_rate": 1.1,
            "max_rate": 1.1,
            "leave_length_unchanged": True,
            "p": 1.0,
        }
    )
    wave = np.zeros(SR, dtype=np.float32)
    wave[: SR // 2] = tone(500.0, 0.5)  # 0.5 s of tone, then silence
    out = stretch(wave)
    assert len(out) == SR
    assert dominant_frequency(out[1000:6000]) == pytest.approx(500.0, rel=0.005)
    envelope = np.convolve(np.abs(out), np.ones(160) / 160, mode="same")
    end = np.nonzero(envelope > 0.5 * envelope.max())[0].max() / SR
    assert end == pytest.approx(0.5 / 1.1, abs=0.02)  # sped up by 1.1: the burst ends earlier


def pitch_time_stretch(**params):
    return augmenter(pts={"_target_": "ser_lightning.augment.waveform.PitchTimeStretch", "p": 1.0, **params})


def burst_end(out: np.ndarray) -> float:
    """Seconds at which a tone burst's envelope last exceeds half its peak."""
    envelope = np.convolve(np.abs(out), np.ones(160) / 160, mode="same")
    return np.nonzero(envelope > 0.5 * envelope.max())[0].max() / SR


def test_pitch_time_stretch_does_both_changes_in_one_pass_and_keeps_length():
    wave = np.zeros(SR, dtype=np.float32)
    wave[: SR // 2] = tone(500.0, 0.5)  # 0.5 s of tone, then silence
    both = pitch_time_stretch(
        min_semitones=2.0, max_semitones=2.0, pitch_p=1.0, min_rate=1.1, max_rate=1.1, rate_p=1.0
    )(wave)
    assert both.shape == wave.shape and both.dtype == np.float32
    assert dominant_frequency(both[1000:6000]) == pytest.approx(500.0 * 2 ** (2 / 12), rel=0.005)
    assert burst_end(both) == pytest.approx(0.5 / 1.1, abs=0.02)
    # pitch alone: same tempo; rate alone: same pitch (slowed down here, so the burst ends later)
    pitch_only = pitch_time_stretch(min_semitones=-2.0, max_semitones=-2.0, pitch_p=1.0, rate_p=0.0)(wave)
    assert dominant_frequency(pitch_only[1000:6000]) == pytest.approx(500.0 * 2 ** (-2 / 12), rel=0.005)
    assert burst_end(pitch_only) == pytest.approx(0.5, abs=0.02)
    rate_only = pitch_time_stretch(pitch_p=0.0, min_rate=0.9, max_rate=0.9, rate_p=1.0)(wave)
    assert dominant_frequency(rate_only[1000:6000]) == pytest.approx(500.0, rel=0.005)
    assert burst_end(rate_only) == pytest.approx(0.5 / 0.9, abs=0.02)
    # neither drawn: the clip is returned untouched
    wave_copy = wave.copy()
    np.testing.assert_array_equal(pitch_time_stretch(pitch_p=0.0, rate_p=0.0)(wave), wave_copy)


def test_pitch_time_stretch_draws_pitch_and_rate_independently_with_their_probabilities():
    transform = pitch_time_stretch(pitch_p=0.5, rate_p=0.5).compose.transforms[0]
    random.seed(0)
    draws = []
    for _ in range(2000):
        transform.randomize_parameters(np.zeros(SR, dtype=np.float32), SR)
        draws.append((transform.parameters["semitones"], transform.parameters["rate"]))
    semitones, rates = np.array(draws).T
    pitched, stretched = semitones != 0.0, rates != 1.0
    assert pitched.mean() == pytest.approx(0.5, abs=0.04) and stretched.mean() == pytest.approx(0.5, abs=0.04)
    assert (pitched & stretched).mean() == pytest.approx(0.25, abs=0.03)  # independent
    assert -2.0 <= semitones.min() < -1.9 and 1.9 < semitones.max() <= 2.0  # the whole range
    assert 0.9 <= rates.min() < 0.905 and 1.095 < rates.max() <= 1.1
    # the same seed gives the same augmented clip
    wave = tone(300.0)
    augment = pitch_time_stretch()
    random.seed(7)
    first = [augment(wave) for _ in range(4)]
    random.seed(7)
    np.testing.assert_array_equal(np.stack(first), np.stack([augment(wave) for _ in range(4)]))


def test_pitch_time_stretch_refuses_impossible_ranges_by_name():
    with pytest.raises(ValueError, match="(?s)transforms.pts: cannot build.*min_rate <= max_rate"):
        pitch_time_stretch(min_rate=1.2, max_rate=1.1)
    with pytest.raises(ValueError, match="(?s)transforms.pts: cannot build.*pitch_p=1.5"):
        pitch_time_stretch(pitch_p=1.5)
    with pytest.raises(ValueError, match="(?s)transforms.pts: cannot build.*min_semitones"):
        pitch_time_stretch(min_semitones=3.0, max_semitones=1.0)


def test_shift_moves_an_impulse_by_the_configured_seconds():
    shift = augmenter(
        shift={
            "_target_": "audiomentations.Shift",
            "min_shift": 0.2,
            "max_shift": 0.2,
            "shift_unit": "seconds",
            "rollover": False,
            "fade_duration": 0.0,
            "p": 1.0,
        }
    )
    wave = np.zeros(SR, dtype=np.float32)
    wave[1000] = 1.0
    out = shift(wave)
    assert np.nonzero(out)[0].tolist() == [1000 + int(0.2 * SR)]


def test_random_crop_pad_keeps_a_contiguous_window_of_the_configured_fraction():
    crop = augmenter(
        crop={
            "_target_": "ser_lightning.augment.waveform.RandomCropPad",
            "min_fraction": 0.5,
            "max_fraction": 0.8,
            "p": 1.0,
        }
    )
    wave = np.arange(1, SR + 1, dtype=np.float32)  # every sample unique and non-zero
    for _ in range(50):
        out = crop(wave)
        kept = np.nonzero(out)[0]
        assert len(out) == SR and np.all(np.diff(kept) == 1)  # one contiguous window
        assert 0.5 * SR <= len(kept) <= 0.8 * SR
        window = out[kept]
        np.testing.assert_array_equal(np.diff(window), 1.0)  # an uninterrupted slice of the input


def test_gaussian_noise_has_the_configured_amplitude():
    noise = augmenter(
        noise={
            "_target_": "audiomentations.AddGaussianNoise",
            "min_amplitude": 0.01,
            "max_amplitude": 0.02,
            "p": 1.0,
        }
    )
    wave = tone(200.0)
    stds = [np.std(noise(wave) - wave) for _ in range(50)]
    assert 0.0095 <= min(stds) and max(stds) <= 0.0205


def test_probability_zero_leaves_the_clip_alone_and_length_is_kept():
    wave = tone(300.0)
    off = augmenter(gain={"_target_": "audiomentations.Gain", "p": 0.0})
    np.testing.assert_array_equal(off(wave), wave)
    # a transform that changes length (stretch without leave_length_unchanged) is fitted back
    stretch = augmenter(
        stretch={
            "_target_": "audiomentations.TimeStretch",
            "min_rate": 1.1,
            "max_rate": 1.1,
            "leave_length_unchanged": False,
            "p": 1.0,
        }
    )
    assert stretch(wave).shape == wave.shape


def test_waveform_config_mistakes_name_the_key():
    with pytest.raises(ValueError, match="augmentation.waveform.transforms.gain needs a _target_"):
        augmenter(gain={"min_gain_db": -6})
    with pytest.raises(ValueError, match="augmentation.waveform.transforms.pitch: cannot build"):
        augmenter(pitch={"_target_": "audiomentations.PitchShift", "min_semitones": 3, "max_semitones": 1})
    with pytest.raises(ValueError, match=r"augmentation.waveform has unknown keys \['transform'\]"):
        build_waveform_augmentation({"transform": {}}, SR)
    assert build_waveform_augmentation({"transforms": {"gain": None}}, SR) is None  # all off


# ------------------------------------------------------------------ spectrogram level
def masked_bands(masked: torch.Tensor, axis: int) -> torch.Tensor:
    """Width of each example's zeroed band along axis, after checking that it is one band and
    that nothing outside it is zeroed."""
    zeros = masked[:, 0] == 0  # (examples, rows, frames)
    lines = zeros.all(dim=2 if axis == 2 else 1)  # whole rows (axis 2) or whole frames (axis 3) zeroed
    line_length = zeros.shape[2] if axis == 2 else zeros.shape[1]
    assert torch.equal(zeros.sum(dim=(1, 2)), lines.sum(dim=1) * line_length)  # nothing else zeroed
    starts = (lines[:, 1:] & ~lines[:, :-1]).sum(dim=1) + lines[:, 0]
    assert starts.max() <= 1  # one contiguous band per example
    return lines.sum(dim=1)


@pytest.mark.parametrize(
    "axis, params",
    [
        (2, {"freq_mask_param": 8, "time_mask_param": 0}),
        (3, {"freq_mask_param": 0, "time_mask_param": 15}),
    ],
)
def test_masks_zero_bands_of_exactly_the_configured_widths(axis, params):
    torch.manual_seed(0)
    spec = SpecAugment(**params, num_freq_masks=1, num_time_masks=1).train()
    features = torch.ones(1000, 2, 40, 60)
    masked = spec(features)
    np.testing.assert_array_equal(masked[:, 0].numpy(), masked[:, 1].numpy())  # channels share the mask
    widths = masked_bands(masked, axis)
    param = params["freq_mask_param"] if axis == 2 else params["time_mask_param"]
    assert set(widths.tolist()) == set(range(param))  # every width 0 .. param - 1, and no other


def test_spec_augment_probability_and_eval_mode():
    torch.manual_seed(0)
    spec = SpecAugment(freq_mask_param=8, time_mask_param=15, p=0.5).train()
    features = torch.randn(2000, 1, 40, 60) + 5.0  # never zero unless masked
    touched = (spec(features) == 0).flatten(1).any(dim=1).float().mean().item()
    # an example drawn for masking can still get two zero-width masks (1/8 * 1/15)
    assert touched == pytest.approx(0.5 * (1 - 1 / 8 / 15), abs=0.04)
    assert spec.eval()(features) is features


def test_masks_wider_than_the_features_fail_at_start_up():
    with pytest.raises(ValueError, match="freq_mask_param=80 exceeds the 64 feature rows"):
        batch_augmentation_of({"spectrogram": {"freq_mask_param": 80}}, (1, 64, 94))
    with pytest.raises(
        ValueError, match="augmentation.spectrogram.*unexpected keyword argument 'freq_masks'"
    ):
        batch_augmentation_of({"spectrogram": {"freq_masks": 2}}, (1, 64, 94))


# ------------------------------------------------------------------ batch level
def test_mixup_mixes_inputs_and_its_loss_is_the_weighted_sum():
    torch.manual_seed(3)
    batch = 16
    features = torch.eye(batch).view(batch, 1, 1, batch)  # example i is the unit vector e_i
    target = torch.arange(batch) % 8
    mixed = Mixup(alpha=0.4).train()(features, target)
    assert mixed.mixed and 0.5 <= mixed.weight < 1.0
    flat = mixed.features.view(batch, batch)
    for i in range(batch):
        partner = int(torch.argmin(torch.where(flat[i] > 0, flat[i], 2.0))) if (flat[i] > 0).sum() > 1 else i
        expected = mixed.weight * F.one_hot(torch.tensor(i), batch) + (1 - mixed.weight) * F.one_hot(
            torch.tensor(partner), batch
        )
        torch.testing.assert_close(flat[i], expected.float())
        assert mixed.partner[i] == target[partner]
    assert torch.equal(mixed.target, target)

    logits = torch.randn(batch, 8)
    weight = torch.rand(8) + 0.5

    def loss_fn(lg, tg):
        return F.cross_entropy(lg, tg, weight=weight, label_smoothing=0.1)

    expected = mixed.weight * loss_fn(logits, target) + (1 - mixed.weight) * loss_fn(logits, mixed.partner)
    torch.testing.assert_close(mixed.loss(logits, loss_fn), expected)


def test_mixup_weight_follows_beta_folded_above_one_half():
    torch.manual_seed(0)
    mixup = Mixup(alpha=0.2)
    weights = np.array([mixup.sample_weight() for _ in range(1500)])
    assert weights.min() >= 0.5 and weights.max() <= 1.0
    # folded Beta(0.2, 0.2): P(w > 0.9) = 2 * P(Beta > 0.9)
    assert np.mean(weights > 0.9) == pytest.approx(2 * beta.sf(0.9, 0.2, 0.2), abs=0.04)


def test_batch_augmentation_is_the_identity_in_eval_mode_and_holds_no_state():
    augment = batch_augmentation_of(
        {"spectrogram": {"freq_mask_param": 8, "time_mask_param": 15}, "mixup": {"alpha": 0.2}},
        (1, 64, 94),
    )
    assert list(augment.state_dict()) == []  # checkpoints are the same with or without it
    features, target = torch.randn(8, 1, 64, 94), torch.arange(8)
    out = augment.eval()(features, target)
    assert out.features is features and not out.mixed
    trained = augment.train()(features, target)
    assert trained.mixed and not torch.equal(trained.features, features)
    assert isinstance(BatchAugmentation()(features, target), MixedBatch)


def test_augmentation_config_is_checked():
    assert check_augmentation(None)["offline_copies"] == 0
    with pytest.raises(ValueError, match=r"augmentation has unknown keys \['specaugment'\]"):
        check_augmentation({"specaugment": {}})
    with pytest.raises(ValueError, match="offline_copies=2 needs augmentation.waveform"):
        check_augmentation({"offline_copies": 2})
    with pytest.raises(ValueError, match="offline_copies=-1"):
        check_augmentation({"offline_copies": -1, "waveform": {"transforms": {}}})
    # copies asked for, but every transform switched off: refused, not silently no copies
    all_off = {"offline_copies": 2, "waveform": {"transforms": {"gain": None}}}
    with pytest.raises(
        ValueError, match="offline_copies=2 needs waveform transforms.*every augmentation.waveform"
    ):
        for_data_module(all_off, 16000)
    with pytest.raises(ValueError, match="mixup.alpha=0"):
        batch_augmentation_of({"mixup": {"alpha": 0}}, (1, 64, 94))


def test_device_augmentation_nodes_name_their_class():
    # written without `_target_` (as earlier configs were), a node builds the same class
    plain = check_augmentation({"spectrogram": {"freq_mask_param": 8}, "mixup": {"alpha": 0.2}})
    assert plain["spectrogram"] == {
        "_target_": "ser_lightning.augment.spectrogram.SpecAugment",
        "freq_mask_param": 8,
    }
    assert plain["mixup"] == {"_target_": "ser_lightning.augment.mixup.Mixup", "alpha": 0.2}
    assert check_augmentation({"spectrogram": plain["spectrogram"]})["spectrogram"] == plain["spectrogram"]
    assert for_lightning_module(None) == {"spectrogram": None, "mixup": None}
    built = batch_augmentation_of({"spectrogram": plain["spectrogram"], "mixup": plain["mixup"]}, (1, 64, 94))
    assert isinstance(built.spectrogram, SpecAugment) and isinstance(built.mixup, Mixup)
    with pytest.raises(ValueError, match=r"augmentation.mixup._target_='torch.nn.Identity' is refused"):
        check_augmentation({"mixup": {"_target_": "torch.nn.Identity"}})
    with pytest.raises(ValueError, match="augmentation.spectrogram must be a mapping of options or null"):
        check_augmentation({"spectrogram": 8})
