"""The heads for stacks of encoder layers: shapes, the layer mix, pooling, and one training step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.labels import EMOTIONS
from ser_lightning.models import EmoBoxHead, SSLHead
from ser_lightning.models.layers import AttentiveStatisticsPooling, attentive_statistics
from ser_lightning.utils.config import to_plain

from .helpers.configs import compose_train

# (layers, hidden, frames): unpooled encoder output, pooled mean, pooled mean and std, log-mel
SHAPES = [(13, 768, 149), (13, 768, 1), (13, 1536, 1), (1, 64, 94), (3, 16, 7)]


@pytest.mark.parametrize("cls", [SSLHead, EmoBoxHead])
@pytest.mark.parametrize("shape", SHAPES)
def test_heads_give_one_logit_per_class_for_any_stack(cls, shape):
    head = cls(shape, num_classes=5).eval()
    assert head(torch.randn(3, *shape)).shape == (3, 5)


def test_layer_weights_start_equal_sum_to_one_and_learn():
    head = SSLHead((4, 8, 6), num_classes=3)
    torch.testing.assert_close(head.layer_weights(), torch.full((4,), 0.25))
    head(torch.randn(2, 4, 8, 6)).sum().backward()
    assert head.layer_logits.grad is not None and torch.count_nonzero(head.layer_logits.grad) == 4
    with torch.no_grad():
        head.layer_logits.copy_(torch.tensor([2.0, -1.0, 0.5, 0.0]))
    weights = head.layer_weights()
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    assert torch.all(weights > 0) and weights.argmax() == 0


def test_layer_mix_is_the_weighted_sum_of_the_layers():
    head = SSLHead((2, 3, 1), num_classes=2, dropout=0.0).eval()
    with torch.no_grad():
        head.layer_logits.copy_(torch.log(torch.tensor([0.75, 0.25])))
    x = torch.randn(4, 2, 3, 1)
    mixed = 0.75 * x[:, :1] + 0.25 * x[:, 1:]  # one layer holding the mix
    one_layer = SSLHead((1, 3, 1), num_classes=2, dropout=0.0).eval()
    one_layer.project.load_state_dict(head.project.state_dict())
    one_layer.classifier.load_state_dict(head.classifier.state_dict())
    torch.testing.assert_close(head(x), one_layer(mixed))


def test_layer_norm_makes_the_head_blind_to_each_layers_scale():
    head = SSLHead((2, 16, 5), num_classes=3, layer_norm=True).eval()
    x = torch.randn(2, 2, 16, 5)
    rescaled = x * torch.tensor([10.0, 2.0]).view(1, 2, 1, 1)
    torch.testing.assert_close(head(x), head(rescaled), atol=1e-4, rtol=1e-4)
    plain = SSLHead((2, 16, 5), num_classes=3).eval()
    assert not torch.allclose(plain(x), plain(rescaled), atol=1e-3)


def test_attentive_statistics_with_uniform_weights_are_the_mean_and_std():
    x = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [5.0, 2.0], [7.0, 4.0]]])  # (1, time 4, dim 2)
    uniform = torch.full((1, 4), 0.25)
    stats = attentive_statistics(x, uniform)
    # mean (4, 1); population std sqrt(5) for both columns
    torch.testing.assert_close(stats, torch.tensor([[4.0, 1.0, 5.0**0.5, 5.0**0.5]]))
    torch.testing.assert_close(stats[:, 2:], x.std(dim=1, unbiased=False))


def test_attentive_statistics_follow_the_weights():
    x = torch.tensor([[[1.0], [3.0]]])
    stats = attentive_statistics(x, torch.tensor([[0.75, 0.25]]))
    # mean 1.5; E[x²] = 0.75 + 2.25 = 3, variance 3 - 2.25 = 0.75
    torch.testing.assert_close(stats, torch.tensor([[1.5, 0.75**0.5]]))
    # one frame: the frame itself and no spread (the clamp's sqrt(eps))
    stats = attentive_statistics(torch.tensor([[[2.0, -1.0]]]), torch.ones(1, 1))
    torch.testing.assert_close(stats, torch.tensor([[2.0, -1.0, 1e-3, 1e-3]]))


def test_attentive_pooling_with_constant_scores_is_the_plain_mean():
    pool = AttentiveStatisticsPooling(dim=3, attention_dim=4)
    with torch.no_grad():
        pool.score[2].weight.zero_()  # every frame scores the same: uniform attention
    x = torch.randn(2, 9, 3)
    stats = pool(x)
    torch.testing.assert_close(stats[:, :3], x.mean(dim=1))
    torch.testing.assert_close(stats[:, 3:], x.std(dim=1, unbiased=False))


def test_ssl_head_on_one_frame_passes_the_projected_vector_on():
    pooled = SSLHead((13, 768, 1), num_classes=4, hidden_dim=32)
    assert pooled.pooling is None and pooled.classifier[1].in_features == 32
    framed = SSLHead((13, 768, 10), num_classes=4, hidden_dim=32)
    assert framed.pooling is not None and framed.classifier[1].in_features == 64


def test_emobox_head_has_emobox_sizes():
    head = EmoBoxHead((13, 768, 149), num_classes=4)
    assert (head.pre_net.in_features, head.pre_net.out_features) == (768, 256)
    assert (head.post_net.in_features, head.post_net.out_features) == (256, 4)
    assert not any(isinstance(m, torch.nn.Dropout) for m in head.modules())
    assert head.layer == 12


@pytest.mark.parametrize(("layer", "used"), [(None, 4), (1, 1), (-2, 3), (0, 0)])
def test_emobox_head_reads_only_its_layer(layer, used):
    head = EmoBoxHead((5, 8, 6), num_classes=3, layer=layer).eval()
    x = torch.randn(2, 5, 8, 6)
    others = x.clone()
    others[:, [c for c in range(5) if c != used]] = torch.randn(2, 4, 8, 6)
    torch.testing.assert_close(head(x), head(others))
    changed = x.clone()
    changed[:, used] = torch.randn(2, 8, 6)
    assert not torch.allclose(head(x), head(changed))


def test_emobox_head_is_linear_relu_mean_linear():
    head = EmoBoxHead((2, 4, 3), num_classes=2, hidden_dim=5, layer=0)
    x = torch.randn(1, 2, 4, 3)
    frames = x[0, 0].T  # (T, F)
    expected = head.post_net(torch.relu(head.pre_net(frames)).mean(dim=0, keepdim=True))
    torch.testing.assert_close(head(x), expected)


def test_emobox_head_names_a_layer_the_features_lack():
    with pytest.raises(ValueError, match=r"model\.net\.layer=13 .* hold 13 .* one of 0\.\.12, or null"):
        EmoBoxHead((13, 768, 149), num_classes=4, layer=13)
    with pytest.raises(ValueError, match=r"model\.net\.layer=-2 .* hold 1 "):
        EmoBoxHead((1, 64, 94), num_classes=4, layer=-2)


@pytest.mark.parametrize(("model", "net_class"), [("ssl_head", SSLHead), ("ssl_head_emobox", EmoBoxHead)])
def test_each_head_takes_an_optimiser_step_on_log_mel_from_the_real_configs(model, net_class):
    cfg = compose_train([f"model={model}", "logger=none"], Path("/tmp/unused"))
    module = instantiate(
        cfg.model,
        features=to_plain(cfg.features),
        audio=AudioSettings(duration=1.0).to_dict(),
        labels=list(EMOTIONS),
        _recursive_=False,
    )
    assert type(module.model.net) is net_class and module.model.input_shape[0] == 1
    waves = 0.1 * torch.randn(4, module.model.audio.num_samples, generator=torch.Generator().manual_seed(0))
    raw = module.model.features.extract(waves)
    assert tuple(raw.shape[1:]) == module.model.input_shape
    module.train()
    optimizer = module.configure_optimizers()["optimizer"]
    before = {name: p.detach().clone() for name, p in module.model.net.named_parameters()}
    logits = module(module.model.features.normalize(raw))
    loss = module.loss(logits, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    assert logits.shape == (4, len(EMOTIONS)) and torch.isfinite(loss)
    unchanged = [name for name, p in module.model.net.named_parameters() if torch.equal(before[name], p)]
    # one layer: its softmax weight is 1 whatever the logit, so that logit alone has no gradient
    assert unchanged == (["layer_logits"] if model == "ssl_head" else [])
