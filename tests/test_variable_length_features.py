"""Features and SpecAugment on padded batches: frame counts from sample lengths, nothing past a clip's end."""

import numpy as np
import pytest
import torch

from ser_lightning.augment.spectrogram import SpecAugment
from ser_lightning.features.logmel import LogMel
from ser_lightning.features.mfcc import MFCC

SAMPLE_LENGTHS = [4000, 16000, 900, 9999]


def padded_waves():
    generator = torch.Generator().manual_seed(0)
    waves = torch.zeros(len(SAMPLE_LENGTHS), max(SAMPLE_LENGTHS))
    for i, n in enumerate(SAMPLE_LENGTHS):
        waves[i, :n] = torch.randn(n, generator=generator) * 0.1
    return waves, torch.tensor(SAMPLE_LENGTHS)


@pytest.mark.parametrize(
    "features", [LogMel(hop_length=160), LogMel(normalization="none"), MFCC(n_mfcc=20)], ids=str
)
def test_a_padded_batch_gives_each_clip_its_single_clip_features(features):
    waves, lengths = padded_waves()
    extracted, frames = features.extract_padded(waves, lengths)
    assert frames.tolist() == features.frame_lengths(lengths).tolist()
    normalised = features.normalize_padded(extracted, frames)
    for i, n in enumerate(SAMPLE_LENGTHS):
        alone = features(waves[i : i + 1, :n])[0]
        assert alone.shape[-1] == frames[i]
        torch.testing.assert_close(normalised[i, ..., : frames[i]], alone, atol=1e-5, rtol=1e-5)
        assert normalised[i, ..., frames[i] :].abs().sum() == 0


def test_dataset_normalisation_of_a_padded_batch_zeroes_the_padding():
    features = LogMel(normalization="dataset")
    features.fit_normalization(np.random.default_rng(0).normal(size=(4, 1, 64, 20)).astype(np.float32))
    waves, lengths = padded_waves()
    extracted, frames = features.extract_padded(waves, lengths)
    normalised = features.normalize_padded(extracted, frames)
    torch.testing.assert_close(normalised[1], features.normalize(extracted)[1])
    assert normalised[2, ..., frames[2] :].abs().sum() == 0


def test_specaugment_masks_no_frame_past_a_clips_end():
    torch.manual_seed(0)
    augment = SpecAugment(freq_mask_param=4, time_mask_param=30, num_time_masks=3).train()
    features = torch.ones(64, 1, 16, 100)
    lengths = torch.randint(5, 100, (64,))
    out = augment(features, lengths)
    masked_frames = (out == 0).all(dim=2)[:, 0]  # (batch, frames) wholly masked in time
    positions = torch.arange(100)
    assert not (masked_frames & (positions >= lengths[:, None])).any()
    assert masked_frames.any()  # masks do fall inside the clips
    assert torch.equal(augment.eval()(features, lengths), features)


def test_specaugment_without_lengths_draws_as_before():
    augment = SpecAugment(freq_mask_param=4, time_mask_param=10).train()
    features = torch.ones(8, 1, 16, 50)
    torch.manual_seed(3)
    first = augment(features)
    torch.manual_seed(3)
    assert torch.equal(first, features * augment.keep_mask(features.shape, features.device, features.dtype))
