"""model=ssl_finetune: a tiny pretrained-encoder folder trained with its head from the waveform,
through the real configs; its checkpoint is scored by eval and predict as training scored it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from ser_lightning.export import export
from ser_lightning.models import SSLFinetune
from ser_lightning.train import StartupError, build, train

from .helpers.configs import compose_train
from .helpers.corpora import small_demo_overrides
from .helpers.scoring import check_eval_and_predict_agree_with_training
from .test_ssl_training import TINY_WAVLM


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finetune") / "tiny_wavlm"
    torch.manual_seed(0)
    transformers.WavLMModel(transformers.WavLMConfig(**TINY_WAVLM)).eval().save_pretrained(folder)
    return folder


def finetune_overrides(root: Path, folder: Path, *more: str) -> list[str]:
    return small_demo_overrides(root) + [
        "model=ssl_finetune",
        f"model.net.encoder={folder}",
        "model.net.hidden_dim=32",
        "model.net.attention_dim=16",
        "logger=csv",
        "seed=3",
        *more,
    ]


@pytest.fixture(scope="module")
def finetuned(small_demo_root, encoder_folder, tmp_path_factory) -> dict:
    """Two short epochs (6 steps of 8 clips each) with waveform augmentation in the DataLoader workers; the
    encoder is frozen in the first and warmed up over 4 steps in the second."""
    root = tmp_path_factory.mktemp("finetune_run")
    overrides = finetune_overrides(
        small_demo_root,
        encoder_folder,
        "augmentation=waveform",
        "model.net.freeze_epochs=1",
        "model.net.warmup_steps=4",
        "model.net.encoder_lr=1e-3",
        "model.scheduler=null",
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=6",
        "+trainer.limit_val_batches=1",
        "data.batch_size=8",
        # the checkpoint tested and scored below is the last epoch's, whichever validated best
        "callbacks.model_checkpoint.monitor=null",
    )
    cfg = compose_train(overrides, root / "run", root / "cache")
    metrics, objects = train(cfg)
    return {"root": root, "metrics": metrics, "objects": objects, "run": root / "run"}


def pretrained_state(folder: Path) -> dict[str, torch.Tensor]:
    return transformers.WavLMModel.from_pretrained(folder).state_dict()


@pytest.mark.slow  # the module's fine-tuning run takes minutes on 2 cores
def test_the_encoder_trains_at_its_own_warmed_up_rate_but_its_front_end_stays(finetuned, encoder_folder):
    model, datamodule = finetuned["objects"]["model"], finetuned["objects"]["datamodule"]
    assert isinstance(model.model.net, SSLFinetune)
    # the input is the waveform: the train split went through the augmenting workers
    assert datamodule.train_input == "waveform"
    assert model.model.input_shape == (1, 1, datamodule.audio.num_samples)
    groups = {g["name"]: g for g in model.trainer.optimizers[0].param_groups}
    # 12 steps: the encoder trained from step 6 on; by step 11 its warm-up (4 steps) was over
    assert groups["encoder"]["lr"] == pytest.approx(1e-3)
    assert groups["encoder"]["lr_scale"] == 1.0
    assert groups["head"]["lr"] == pytest.approx(1e-3)
    # the module holds the weights of the checkpoint it was tested with: the last epoch's
    prefix = "encoder."
    after = {
        k.removeprefix(prefix): v.cpu()
        for k, v in model.model.net.state_dict().items()
        if k.startswith(prefix)
    }
    before = pretrained_state(encoder_folder)
    assert sorted(after) == sorted(before)
    front_end = [k for k in before if k.startswith("feature_extractor.")]
    assert front_end and all(torch.equal(before[k], after[k]) for k in front_end)
    changed = [k for k in before if k.startswith("encoder.layers.") and not torch.equal(before[k], after[k])]
    assert changed, "no transformer weight of the encoder was trained"
    assert all(torch.isfinite(v).all() for v in after.values())


def test_the_frozen_epochs_leave_the_encoder_and_the_warm_up_then_rises(encoder_folder):
    net = SSLFinetune((1, 1, 8000), 8, str(encoder_folder), freeze_epochs=2, warmup_steps=4)
    # built in training mode like any new module (Lightning keeps the modes it finds)
    assert net.training and net.encoder.training
    steps_per_epoch = 5
    assert net.training_step_schedule(0, 0, steps_per_epoch) is None and net.encoder_frozen
    assert net.training_step_schedule(1, 9, steps_per_epoch) is None
    scales = [net.training_step_schedule(2, step, steps_per_epoch) for step in range(10, 16)]
    assert not net.encoder_frozen
    assert scales == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    # while frozen, a training forward pass builds no graph through the encoder
    net.train()
    net.training_step_schedule(0, 0, steps_per_epoch)
    net(torch.randn(2, 1, 1, 8000)).sum().backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert net.encoder.training, "the encoder goes back to training mode after a frozen pass"
    net.training_step_schedule(2, 10, steps_per_epoch)
    net(torch.randn(2, 1, 1, 8000)).sum().backward()
    assert net.encoder.encoder.layers[0].feed_forward.output_dense.weight.grad is not None
    assert all(p.grad is None for p in net.encoder.feature_extractor.parameters())


def test_gradient_checkpointing_gives_the_same_gradients(encoder_folder):
    torch.manual_seed(0)
    waves = torch.randn(2, 1, 1, 8000)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(1)
        net = SSLFinetune(
            (1, 1, 8000), 8, str(encoder_folder), gradient_checkpointing=checkpointing, encoder_masking=False
        )
        net.train()
        net.encoder.config.layerdrop = 0.0
        for module in net.modules():  # no dropout: the two passes must see the same network
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        net(waves).sum().backward()
        grads.append(net.encoder.encoder.layers[1].attention.q_proj.weight.grad.clone())
        assert net.encoder.is_gradient_checkpointing is checkpointing
    torch.testing.assert_close(grads[0], grads[1])


def test_spectrogram_features_are_refused_at_start_up(small_demo_root, encoder_folder, tmp_path):
    cfg = compose_train(
        finetune_overrides(small_demo_root, encoder_folder, "features=logmel"),
        tmp_path / "run",
        tmp_path / "c",
    )
    with pytest.raises(
        StartupError, match="takes Waveform features only. Features that fit: features=waveform"
    ):
        build(cfg)


@pytest.mark.slow  # the module's fine-tuning run takes minutes on 2 cores
def test_eval_and_predict_score_a_finetuned_checkpoint_as_training_did(finetuned, small_demo_root, tmp_path):
    ckpt = json.loads((finetuned["run"] / "summary.json").read_text())["best_checkpoint"]
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    # the fine-tuned encoder is part of the model; the digest of what it started from is kept
    assert any(k.startswith("model.net.encoder.encoder.layers.") for k in state)
    assert "model.net.pretrained_sha256" in state
    named = [f"encoder={finetuned['objects']['model'].hparams.net['encoder']}"]
    check_eval_and_predict_agree_with_training(
        finetuned["run"], small_demo_root, finetuned["root"] / "cache", tmp_path, named, named
    )


@pytest.mark.slow  # the module's fine-tuning run takes minutes on 2 cores
def test_a_finetuned_checkpoint_exports_to_onnx_with_its_encoder(finetuned, small_demo_root, tmp_path):
    import onnxruntime

    ckpt = json.loads((finetuned["run"] / "summary.json").read_text())["best_checkpoint"]
    folder = Path(finetuned["objects"]["model"].hparams.net["encoder"])
    clip = sorted(small_demo_root.rglob("*.wav"))[0]
    cfg = compose_train(
        [f"ckpt_path={ckpt}", f"encoder={folder}", f"verify_inputs=[{clip}]"], tmp_path, config_name="export"
    )
    summary = export(cfg)
    assert summary["parity"]["same_predictions"] and summary["parity"]["max_abs_probability_diff"] < 1e-4
    assert summary["onnx_weights"] is None  # a small model: one self-contained file
    # the graph holds the fine-tuned encoder: its weights are in the file, not read from the folder
    session = onnxruntime.InferenceSession(summary["onnx"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["waveform"]
    assert Path(summary["onnx"]).stat().st_size > sum(
        p.numel() * 4 for p in finetuned["objects"]["model"].model.net.encoder.parameters()
    )


def test_a_whisper_encoder_finetunes_from_the_waveform(tmp_path):
    from .test_ssl_features import tiny_model

    tiny_model("whisper").save_pretrained(tmp_path / "whisper")
    net = SSLFinetune((1, 1, 8000), 8, str(tmp_path / "whisper"), layers=[1, 2])
    net.train()
    logits = net(torch.randn(3, 1, 1, 8000) * 0.1)
    assert logits.shape == (3, 8)
    logits.sum().backward()
    # its convolutions and positions stay as they were; its layers learn
    assert net.encoder.conv1.weight.grad is None and not net.encoder.embed_positions.weight.requires_grad
    assert net.encoder.layers[0].fc1.weight.grad is not None
    names = [g["name"] for g in net.parameter_groups(1e-3)]
    assert names == ["head", "encoder"]


@pytest.mark.parametrize("model", ["acnt", "cnn2ch", "ssl_head"])
def test_networks_without_their_own_front_end_refuse_the_waveform(model, small_demo_root, tmp_path):
    cfg = compose_train(
        small_demo_overrides(small_demo_root) + [f"model={model}", "features=waveform"],
        tmp_path,
        tmp_path / "c",
    )
    with pytest.raises(StartupError, match="these are raw waveforms, for networks with their own front end"):
        build(cfg)
