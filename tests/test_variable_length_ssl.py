"""Whole clips through pretrained encoders: a padded batch gives every clip the features and
logits it gets alone. wav2vec2, HuBERT and WavLM encoders whose front end uses layer norm run the
batch once with an attention mask; the group-norm base models, data2vec-audio and Whisper run
each clip alone."""

from __future__ import annotations

import pytest
import torch

from ser_lightning.features.ssl.features import SSLFeatures
from ser_lightning.models.ssl_finetune import SSLFinetune
from ser_lightning.models.ssl_head import EmoBoxHead, SSLHead

from .helpers.models import module_from_config
from .test_ssl_features import FLOAT16_STEP, TINY_CONFIGS
from .test_variable_length_models import assert_padded_batch_matches_single_clips

LENGTHS = [4000, 9001, 2500, 6400]  # samples at 16 kHz
# family, extra config, whether it takes an attention mask
ENCODERS = {
    "wav2vec2_layer_norm": ("wav2vec2", {"feat_extract_norm": "layer", "do_stable_layer_norm": True}, True),
    "wavlm_layer_norm": ("wavlm", {"feat_extract_norm": "layer", "do_stable_layer_norm": True}, True),
    "hubert_layer_norm": ("hubert", {"feat_extract_norm": "layer"}, True),
    "data2vec_audio": ("data2vec_audio", {}, False),
    "wav2vec2_group_norm": ("wav2vec2", {}, False),
    "whisper": ("whisper", {}, False),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("whole_clip_encoders")
    made = {}
    for name, (family, extra, _) in ENCODERS.items():
        config_class, model_class, sizes = TINY_CONFIGS[family]
        torch.manual_seed(0)
        model_class(config_class(**{**sizes, **extra})).eval().save_pretrained(root / name)
        made[name] = root / name
    return made


def padded(lengths=LENGTHS, seed=0):
    generator = torch.Generator().manual_seed(seed)
    clips = [torch.randn(n, generator=generator) * 0.1 for n in lengths]
    batch = torch.zeros(len(clips), max(lengths))
    for i, clip in enumerate(clips):
        batch[i, : len(clip)] = clip
    return clips, batch, torch.tensor(lengths)


# one masked and one clip-by-clip encoder by default; the other families with the slow tests
@pytest.mark.parametrize(
    "name",
    [
        name
        if name in ("wav2vec2_layer_norm", "wav2vec2_group_norm")
        else pytest.param(name, marks=pytest.mark.slow)
        for name in sorted(ENCODERS)
    ],
)
def test_a_padded_batch_gives_each_clip_its_own_encoder_features(name, folders):
    features = SSLFeatures(str(folders[name]))
    assert features.encoder.takes_attention_mask == ENCODERS[name][2]
    clips, batch, lengths = padded()
    together, frames = features.extract_padded(batch, lengths)
    for i, clip in enumerate(clips):
        alone = features.extract(clip[None])
        assert int(frames[i]) == alone.shape[-1] == features.output_shape(len(clip))[2]
        torch.testing.assert_close(together[i : i + 1, ..., : alone.shape[-1]], alone, **FLOAT16_STEP)
        assert not together[i, ..., alone.shape[-1] :].any()  # zero past the clip's end
    for pooling in ("mean", "mean_std"):
        pooled = SSLFeatures(str(folders[name]), layers=[0, 2], pooling=pooling)
        together, frames = pooled.extract_padded(batch, lengths)
        assert frames.tolist() == [1] * len(clips)
        for i, clip in enumerate(clips):
            torch.testing.assert_close(together[i : i + 1], pooled.extract(clip[None]), **FLOAT16_STEP)


def test_without_the_mask_a_layer_norm_encoder_would_give_other_features(folders):
    """What the mask is for: the same padded batch run as plain zero-padded input differs; and
    why data2vec-audio runs clip by clip: even with the mask its padded batch differs."""
    clips, batch, lengths = padded()
    short = LENGTHS.index(min(LENGTHS))
    features = SSLFeatures(str(folders["wav2vec2_layer_norm"]))
    n = features.output_shape(min(LENGTHS))[2]
    unmasked = features.extract(batch)[short, ..., :n]
    assert (unmasked - features.extract(clips[short][None])[0]).abs().max() > 1e-2
    encoder = SSLFeatures(str(folders["data2vec_audio"])).encoder
    mask = (torch.arange(batch.size(1))[None] < lengths[:, None]).long()
    with torch.no_grad():
        masked = encoder.model(batch, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        alone = encoder.model(clips[short][None], output_hidden_states=True).hidden_states[-1]
    assert (masked[short, : alone.size(1)] - alone[0]).abs().max() > 1e-2


def test_clips_at_another_rate_are_resampled_one_by_one(folders):
    features = SSLFeatures(str(folders["hubert_layer_norm"]), sample_rate=22050)
    clips, batch, lengths = padded([5513, 12000, 8000])
    together, frames = features.extract_padded(batch, lengths)
    for i, clip in enumerate(clips):
        alone = features.extract(clip[None])
        torch.testing.assert_close(together[i : i + 1, ..., : int(frames[i])], alone, **FLOAT16_STEP)


@pytest.mark.parametrize(
    "make",
    [lambda: SSLHead((3, 16, 64), 4, hidden_dim=16, attention_dim=8), lambda: EmoBoxHead((3, 16, 64), 4, 16)],
    ids=["ssl_head", "emobox_head"],
)
def test_the_heads_pool_each_clips_own_frames(make):
    assert_padded_batch_matches_single_clips(make(), channels=3, n_features=16)


@pytest.mark.parametrize("name", ["wav2vec2_layer_norm", "wav2vec2_group_norm", "whisper"])
def test_a_finetuned_encoder_scores_a_padded_batch_as_each_clip_alone(name, folders):
    torch.manual_seed(0)
    net = SSLFinetune((1, 1, 8000), 4, str(folders[name]), hidden_dim=16, attention_dim=8).eval()
    clips, batch, lengths = padded()
    with torch.no_grad():
        together = net(batch[:, None, None, :], lengths)
        for i, clip in enumerate(clips):
            alone = net(clip[None, None, None, :])
            torch.testing.assert_close(together[i], alone[0], atol=1e-4, rtol=1e-4)
    # training: the gradient reaches the encoder through the masked batch
    net.train()
    net(batch[:, None, None, :], lengths).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.encoder.parameters())


@pytest.mark.parametrize("model", ["ssl_head", "ssl_head_emobox"])
def test_ssl_heads_build_for_whole_clips(model, folders):
    built = module_from_config(
        ["features=ssl", f"features.encoder={folders['wavlm_layer_norm']}", f"model={model}"], duration=None
    ).model
    assert built.audio.whole_clips
    clips, batch, lengths = padded()
    with torch.no_grad():
        features, frames = built.features.extract_padded(batch, lengths)
        together = built.probabilities({"features": features, "lengths": frames})
        for i, clip in enumerate(clips):
            alone = built.probabilities({"waveform": clip[None]})
            torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # two short training runs over a tiny encoder
@pytest.mark.parametrize("model", ["ssl_head", "ssl_finetune"])
def test_whole_clip_runs_train_over_an_encoder_and_score_each_clip_as_alone(model, folders, tmp_path):
    from pathlib import Path

    import numpy as np

    from ser_lightning.checkpoint_encoder import EncoderFiles
    from ser_lightning.inference.predictor import Predictor
    from ser_lightning.model import SERModel
    from ser_lightning.train import train

    from .helpers.configs import compose_train
    from .helpers.corpora import ragged_tone_corpus
    from .test_variable_length_run import WHOLE_CLIPS

    corpus = ragged_tone_corpus(tmp_path / "corpus")
    encoder = str(folders["wav2vec2_layer_norm"])
    chosen = (
        ["features=ssl", f"features.encoder={encoder}", "model=ssl_head"]
        if model == "ssl_head"
        else ["features=waveform", "model=ssl_finetune", f"model.net.encoder={encoder}"]
    )
    plain = [o for o in WHOLE_CLIPS if not o.startswith(("features.", "augmentation"))]
    overrides = [
        *plain,
        "augmentation=none",
        *chosen,
        f"data.root={corpus}",
        "debug=limit",
        "trainer.max_epochs=1",
    ]
    metrics, _ = train(compose_train(overrides, tmp_path / "run", tmp_path / "cache"))
    assert np.isfinite(metrics["test/ua"])
    scorer = SERModel.load_from_checkpoint(
        tmp_path / "run" / "checkpoints" / "last.ckpt",
        encoder_files=EncoderFiles(models_dir=str(Path(encoder).parent)),
    )
    assert scorer.audio.whole_clips
    clips, _, _ = padded()
    waves = [c.numpy() for c in clips]
    together = Predictor(scorer, device="cpu").whole_clip_probabilities(waves)
    with torch.no_grad():
        for wave, row in zip(waves, together, strict=True):
            alone = scorer.probabilities({"waveform": torch.from_numpy(wave)[None]})[0].numpy()
            np.testing.assert_allclose(row, alone, atol=1e-5)
