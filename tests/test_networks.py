"""The seed networks: the layers their recipes name, any input size, declared input needs."""

import pytest
import torch
from torch import nn

from ser_lightning.models import (
    CNN2Ch,
    CNNBiLSTMMHA,
    CRNNAttention,
    IncompatibleFeaturesError,
    check_compatible,
)
from ser_lightning.models.layers import AttentionPooling


@pytest.mark.parametrize("cls", [CRNNAttention, CNNBiLSTMMHA])
@pytest.mark.parametrize("shape", [(1, 68, 40), (3, 13, 20), (1, 1, 1)])
def test_sequence_networks_take_any_input_size(cls, shape):
    model = cls(shape, num_classes=8)
    assert model(torch.randn(2, *shape)).shape == (2, 8)


def test_crnn_attn_has_the_recipe_layers():
    model = CRNNAttention((1, 128, 300), num_classes=8)
    first = [type(m) for m in model.cnn[0]]
    assert first == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.Dropout2d, nn.MaxPool2d]
    assert (model.cnn[0][0].in_channels, model.cnn[0][0].out_channels, model.cnn[1][0].out_channels) == (
        1,
        32,
        64,
    )
    assert model.cnn[0][3].p == 0.2
    assert model.lstm.input_size == 64 * 32 and model.lstm.hidden_size == 128 and model.lstm.bidirectional
    assert isinstance(model.attention.score, nn.Linear) and model.attention.score.in_features == 256
    assert model.classifier.in_features == 256 and model.dropout.p == 0.2


def test_crnn_attn_conv1d_frontend_convolves_whole_frames():
    model = CRNNAttention(
        (1, 40, 94), 8, frontend="conv1d", conv_channels=[64, 128], lstm_layers=2, attention_dim=32
    )
    assert isinstance(model.cnn[0][0], nn.Conv1d) and model.cnn[0][0].in_channels == 40
    assert model.lstm.num_layers == 2 and isinstance(model.attention.score[1], nn.Tanh)
    with pytest.raises(ValueError, match="frontend"):
        CRNNAttention((1, 40, 94), 8, frontend="conv3d")


def test_cnn_bilstm_mha_has_the_recipe_layers_and_trains_on_a_single_clip():
    model = CNNBiLSTMMHA((1, 68, 862), num_classes=8)
    assert model.lstm.num_layers == 3 and model.lstm.hidden_size == 256 and model.lstm.bidirectional
    assert model.attention.num_heads == 8 and model.attention.embed_dim == 512
    assert any(isinstance(m, nn.GELU) for m in model.cnn.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.head)
    model.train()
    model(torch.randn(1, 1, 68, 50)).sum().backward()  # a last batch of one clip must not crash
    with pytest.raises(ValueError, match="num_heads"):
        CNNBiLSTMMHA((1, 68, 100), 8, lstm_hidden=50, num_heads=8)


def test_cnn2ch_declares_two_channels():
    model = CNN2Ch((2, 40, 94), num_classes=8)
    assert model(torch.randn(3, 2, 40, 94)).shape == (3, 8)
    assert sum(isinstance(m, nn.Conv2d) for m in model.cnn) == 3
    assert sum(isinstance(m, nn.Dropout) for m in model.classifier) == 2
    net = {"_target_": "ser_lightning.models.CNN2Ch"}
    check_compatible(net, {"_target_": "ser_lightning.features.MFCCMel"}, (2, 40, 94))
    with pytest.raises(
        IncompatibleFeaturesError, match=r"needs 2 input channels.*\(1, 40, 94\).*features=mfcc_mel"
    ):
        check_compatible(net, {"_target_": "ser_lightning.features.MFCC"}, (1, 40, 94))


def test_attention_pooling_is_a_convex_combination_over_time():
    pool = AttentionPooling(4)
    same = torch.ones(2, 7, 4) * torch.tensor([1.0, -2.0, 3.0, 0.5])
    torch.testing.assert_close(pool(same), same[:, 0])
    x = torch.randn(2, 7, 4)
    out = pool(x)
    assert torch.all(out <= x.max(dim=1).values + 1e-6) and torch.all(out >= x.min(dim=1).values - 1e-6)
