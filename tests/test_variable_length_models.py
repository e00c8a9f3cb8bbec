"""Padded batches of variable-length clips: every clip gets the output it gets alone."""

import pytest
import torch
from torch import nn

from ser_lightning.models import ACNT, CNNBiLSTMMHA, CRNNAttention
from ser_lightning.models.layers import AttentionPooling, AttentiveStatisticsPooling, ResidualConvBlock
from ser_lightning.models.masking import (
    lengths_mask,
    masked_max_pool,
    masked_mean,
    pooled_lengths,
    zero_beyond,
)
from ser_lightning.models.requirements import IncompatibleFeaturesError, check_accepts_lengths

LENGTHS = [37, 64, 5, 50]


def padded_batch(channels=1, n_features=16, lengths=LENGTHS, seed=0):
    generator = torch.Generator().manual_seed(seed)
    clips = [torch.randn(channels, n_features, n, generator=generator) for n in lengths]
    batch = torch.zeros(len(clips), channels, n_features, max(lengths))
    for i, clip in enumerate(clips):
        batch[i, ..., : clip.size(-1)] = clip
    for i, n in enumerate(lengths):
        batch[i, ..., n:] = 7.0
    return clips, batch, torch.tensor(lengths)


def assert_padded_batch_matches_single_clips(net, channels=1, n_features=16):
    torch.manual_seed(0)
    net.eval()
    clips, batch, lengths = padded_batch(channels, n_features)
    with torch.no_grad():
        together = net(batch, lengths)
        for i, clip in enumerate(clips):
            alone = net(clip.unsqueeze(0))
            torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=1e-5)
            assert torch.equal(net(clip.unsqueeze(0)), alone)  # no state left behind


@pytest.mark.parametrize(
    "make",
    [
        lambda: CRNNAttention((1, 16, 64), 4),
        lambda: CRNNAttention((1, 16, 64), 4, frontend="conv1d", lstm_layers=2, attention_dim=8),
        lambda: CRNNAttention((1, 16, 64), 4, pool=3),
        lambda: CNNBiLSTMMHA((1, 16, 64), 4, cnn_channels=(8, 16), lstm_hidden=8, lstm_layers=2, num_heads=2),
        lambda: ACNT((1, 16, 64), 4, cnn_channels=(4, 8), transformer_dim=16, num_heads=2, ff_dim=32),
        lambda: ACNT((1, 16, 64), 4, cnn_channels=(4, 8, 8), transformer_dim=16, use_transformer=False),
    ],
    ids=["crnn_attn", "crnn_attn_conv1d", "crnn_attn_pool3", "cnn_bilstm_mha", "acnt", "acnt_no_transformer"],
)
def test_a_padded_batch_gives_each_clip_its_single_clip_logits(make):
    assert_padded_batch_matches_single_clips(make())


def test_models_without_lengths_compute_as_before():
    net = CRNNAttention((1, 16, 64), 4).eval()
    batch = torch.randn(3, 1, 16, 64)
    with torch.no_grad():
        assert torch.allclose(net(batch), net(batch, torch.tensor([64, 64, 64])), atol=1e-5)


def test_masked_pooling_and_attention_match_the_unpadded_clips():
    torch.manual_seed(0)
    x = torch.randn(3, 9, 6)
    lengths = torch.tensor([9, 4, 1])
    mask = lengths_mask(lengths, 9)
    for pooling in (AttentionPooling(6), AttentionPooling(6, hidden=5), AttentiveStatisticsPooling(6, 4)):
        together = pooling(x, mask)
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(together[i], pooling(x[i : i + 1, :n])[0], atol=1e-5, rtol=1e-5)
    means = masked_mean(x, mask)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(means[i], x[i, :n].mean(dim=0))


def test_masked_max_pool_and_residual_blocks_follow_the_frame_counts():
    x = -torch.ones(2, 1, 5)
    pooled, lengths = masked_max_pool(nn.MaxPool1d(2, ceil_mode=True), x, torch.tensor([5, 3]), 2)
    assert lengths.tolist() == [3, 2] and pooled[1].tolist() == [[-1.0, -1.0, 0.0]]
    assert pooled_lengths(torch.tensor([7]), 1).tolist() == [7]
    block = ResidualConvBlock(2, 3, dims=1).eval()
    _, batch, lengths = padded_batch(1, 2)
    with torch.no_grad():
        out, out_lengths = block.forward_masked(zero_beyond(batch[:, 0], lengths), lengths)
        for i, n in enumerate(LENGTHS):
            alone = block(batch[i : i + 1, 0, :, :n])
            torch.testing.assert_close(out[i : i + 1, :, : alone.size(-1)], alone, atol=1e-5, rtol=1e-5)
            assert out_lengths[i] == alone.size(-1) and out[i, :, out_lengths[i] :].abs().sum() == 0


def test_acnt_refuses_a_batch_longer_than_its_positions():
    net = ACNT((1, 16, 64), 4, cnn_channels=(4,), transformer_dim=16, num_heads=2, pe_max_len=40).eval()
    with pytest.raises(Exception, match="pe_max_len"):
        net(torch.zeros(1, 1, 16, 100), torch.tensor([100]))


def test_a_fixed_width_model_refuses_variable_length_naming_the_fix():
    with pytest.raises(IncompatibleFeaturesError, match=r"data\.duration=3\.0.*crnn_attn"):
        check_accepts_lengths({"_target_": "ser_lightning.models.CNN2Ch"})


@pytest.mark.parametrize(
    "target",
    [
        "ser_lightning.models.CRNNAttention",
        "ser_lightning.models.CNNBiLSTMMHA",
        "ser_lightning.models.ACNT",
        "ser_lightning.models.SSLHead",
        "ser_lightning.models.SSLFinetune",
    ],
)
def test_masking_models_accept_variable_length(target):
    check_accepts_lengths({"_target_": target})
