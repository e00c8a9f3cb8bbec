import pytest
import torch

from ser_lightning.models import ACNT


@pytest.mark.parametrize("shape", [(1, 64, 188), (1, 40, 174), (1, 128, 300), (2, 13, 50), (1, 8, 9)])
def test_acnt_sizes_itself_from_the_feature_shape(shape):
    model = ACNT(shape, num_classes=8)
    logits = model(torch.randn(3, *shape))
    assert logits.shape == (3, 8) and torch.isfinite(logits).all()


def test_without_transformer_and_layer_count():
    with_t = ACNT((1, 64, 100), 8)
    without = ACNT((1, 64, 100), 8, use_transformer=False)
    assert without(torch.randn(2, 1, 64, 100)).shape == (2, 8)
    assert sum(p.numel() for p in without.parameters()) < sum(p.numel() for p in with_t.parameters())
    assert len(with_t.transformer.layers) == 2


def test_initialisation_schemes():
    model = ACNT((1, 64, 100), 8)
    conv = model.cnn[0].body[0]
    std = conv.weight.std().item()
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert std == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.25)  # Kaiming, fan_out, ReLU
    linear = model.project
    bound = (6.0 / (linear.in_features + linear.out_features)) ** 0.5
    assert linear.weight.abs().max().item() <= bound + 1e-6  # Xavier uniform
    assert torch.all(linear.bias == 0)


def test_clear_errors_for_impossible_settings():
    with pytest.raises(ValueError, match="pe_max_len"):
        ACNT((1, 64, 4000), 8, pe_max_len=100)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        ACNT((1, 64, 100), 8, transformer_dim=130, num_heads=4)
