"""`model.channels_last` and `model.compile`: speed choices that change no result and no checkpoint.

Channels-last is forced on the CPU here (its `auto` turns it on for CUDA devices only): the
outputs, the loss and the state dict must be those of the default layout, a checkpoint saved
with it loads and exports as any other. Compiling is checked to be wired (in place, keys
without `_orig_mod.`) in the fast tests; one slow test trains, validates, tests, resumes and
loads a compiled run end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException

from ser_lightning.checkpoint import CHECKPOINT_FORMAT_VERSION, RECORD_KEY, read_checkpoint
from ser_lightning.inference.onnx_export import compare_with_torch, export_onnx
from ser_lightning.model import SERModel, channels_last_wanted
from ser_lightning.module import SERModule
from ser_lightning.module_settings import batch_augmentation
from ser_lightning.resume import HPARAMS_MAY_DIFFER, RESUME_MAY_DIFFER, changed_keys
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import TINY_RUN
from .helpers.models import TINY_NET, module_from_config

CHANNELS_LAST = ["model.channels_last=true"]
# a 2-channel input (MFCC and log-mel stacked), where the layout of the batch itself changes
CNN2CH = ["model=cnn2ch", "features=mfcc_mel", "model.net.conv_channels=[4,8]", "model.net.fc_dims=[16]"]
SPECAUGMENT = {
    "_target_": "ser_lightning.augment.spectrogram.SpecAugment",
    "freq_mask_param": 4,
    "time_mask_param": 5,
    "p": 1.0,
}
MIXUP = {"_target_": "ser_lightning.augment.mixup.Mixup", "alpha": 0.2, "p": 1.0}


def pair(overrides: list[str]) -> tuple[SERModule, SERModule]:
    """The same network twice, in the default layout and forced to channels-last."""
    torch.manual_seed(0)
    plain = module_from_config(overrides, duration=1.0)
    channels_last = module_from_config([*overrides, *CHANNELS_LAST], duration=1.0)
    channels_last.load_state_dict(plain.state_dict())
    return plain, channels_last


def conv_weights(module: SERModule) -> list[torch.Tensor]:
    return [m.weight for m in module.model.net.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("overrides", [TINY_NET, CNN2CH], ids=["acnt", "cnn2ch"])
def test_channels_last_forced_on_the_cpu_gives_the_same_outputs_loss_and_state(overrides):
    plain, channels_last = pair(overrides)
    waves = torch.randn(4, plain.model.audio.num_samples)
    target = torch.tensor([0, 1, 2, 3])
    with torch.inference_mode():
        expected = plain(plain.model.inputs({"waveform": waves}))
        got = channels_last(channels_last.model.inputs({"waveform": waves}))
    assert channels_last.model._channels_last and not plain.model._channels_last
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(channels_last.loss(got, target), plain.loss(expected, target))
    # a state dict holds values, not layouts: the same keys and equal tensors
    state, plain_state = channels_last.state_dict(), plain.state_dict()
    assert list(state) == list(plain_state)
    assert all(torch.equal(state[k], plain_state[k]) for k in state)


def test_channels_last_training_steps_with_specaugment_and_mixup_match_the_default_layout():
    plain, channels_last = pair(TINY_NET)
    for module in (plain, channels_last):
        module.batch_augmentation = batch_augmentation(SPECAUGMENT, MIXUP, module.model.input_shape)
    features = torch.randn(6, *plain.model.input_shape)
    target = torch.arange(6) % 8
    losses, grads = [], []
    for module in (plain, channels_last):
        # augmentation in training mode; the network's dropout off, whose masks are drawn in
        # memory order and so differ between layouts
        module.train()
        module.model.net.eval()
        torch.manual_seed(1)  # the same masks and mixing for both
        augmented = module.batch_augmentation(module.model.inputs({"features": features}), target)
        loss = augmented.loss(module(augmented.features), module.loss)
        loss.backward()
        losses.append(loss.detach())
        grads.append([w.grad for w in conv_weights(module)])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    for got, expected in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-5)


def test_auto_is_on_for_cuda_devices_only_and_never_without_2d_convolutions():
    acnt = module_from_config(TINY_NET, duration=1.0)
    model = acnt.model
    model(model.inputs({"waveform": torch.randn(2, model.audio.num_samples)}))
    assert model._channels_last is False  # auto, decided at the first batch, on the CPU
    assert all(w.is_contiguous() for w in conv_weights(acnt))
    assert channels_last_wanted("auto", model.net, model.input_shape, "cuda")
    assert not channels_last_wanted(False, model.net, model.input_shape, "cuda")
    conv1d = module_from_config(
        ["model=cnn_bilstm_mha", "model.net.cnn_channels=[8,8]", "model.net.lstm_hidden=8"], duration=1.0
    ).model
    assert not channels_last_wanted(True, conv1d.net, conv1d.input_shape, "cuda")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.channels_last=yes", r"model.channels_last='yes' must be auto"),
        ("model.compile=fast", r"model.compile='fast' must be false, true or one of the modes"),
    ],
)
def test_a_setting_that_is_not_one_of_the_choices_is_refused(override, message):
    with pytest.raises(InstantiationException, match=message):
        module_from_config([*TINY_NET, override], duration=1.0)


def test_a_checkpoint_saved_in_channels_last_loads_and_exports_like_any_other(tmp_path):
    plain, channels_last = pair(TINY_NET)
    waves = torch.randn(3, plain.model.audio.num_samples)
    with torch.inference_mode():
        expected = plain.model(plain.model.inputs({"waveform": waves}))
        channels_last.model(channels_last.model.inputs({"waveform": waves}))  # converts its network
    path = tmp_path / "channels_last.ckpt"
    torch.save(
        {
            "state_dict": channels_last.state_dict(),
            "hyper_parameters": dict(channels_last.hparams),
            RECORD_KEY: {"format_version": CHECKPOINT_FORMAT_VERSION, "data": None, "split": None},
        },
        path,
    )
    assert read_checkpoint(path)["hyper_parameters"]["channels_last"] is True
    for loaded in (SERModule.load_from_checkpoint(path).model, SERModel.load_from_checkpoint(path)):
        assert loaded.channels_last == "auto"  # decided again where it runs
        with torch.inference_mode():
            torch.testing.assert_close(loaded(loaded.inputs({"waveform": waves})), expected)
        assert loaded._channels_last is False
    # the exported graph of the forced model scores as the plain model does
    onnx_path = export_onnx(channels_last.model, tmp_path / "channels_last.onnx")
    diffs = compare_with_torch(plain.model, onnx_path, waves.numpy())
    assert diffs["max_abs_logit_diff"] < 1e-4 and diffs["same_predictions"]


def test_compile_is_in_place_and_keeps_the_state_dict_keys_of_an_uncompiled_network():
    plain = module_from_config(TINY_NET, duration=1.0)
    compiled = module_from_config([*TINY_NET, "model.compile=true"], duration=1.0)
    assert type(compiled.model.net) is type(plain.model.net)
    assert compiled.model.net._compiled_call_impl is not None and plain.model.net._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())
    assert not any("_orig_mod" in key for key in compiled.state_dict())
    with_mode = module_from_config([*TINY_NET, "model.compile=max-autotune"], duration=1.0)
    assert with_mode.model.net._compiled_call_impl is not None


def test_a_run_resumes_with_compile_and_channels_last_changed():
    before = {"model": {"compile": False, "channels_last": "auto", "label_smoothing": 0.1}}
    now = {"model": {"compile": "max-autotune", "channels_last": True, "label_smoothing": 0.1}}
    assert changed_keys(before, now, RESUME_MAY_DIFFER) == []
    assert changed_keys(before["model"], now["model"], HPARAMS_MAY_DIFFER) == []


@pytest.mark.slow
def test_a_compiled_run_trains_validates_tests_resumes_and_loads_for_inference(
    tone_root, tmp_path, one_torch_thread
):
    """A tiny ACNT: one epoch uncompiled in the channels-last layout, then resumed compiled in
    the default layout for a second epoch with validation and testing (about two minutes of
    compiling on 2 cores), then loaded uncompiled for scoring."""
    cache, run_dir = tmp_path / "cache", tmp_path / "run"
    overrides = [
        *TINY_RUN,
        f"data.root={tone_root}",
        "++trainer.limit_train_batches=2",
        "++trainer.limit_val_batches=1",
        "++trainer.limit_test_batches=1",
        "calibration=none",
        "seed=3",
    ]
    train(
        compose_train(
            [*overrides, "model.channels_last=true", "trainer.max_epochs=1", "test=false"], run_dir, cache
        )
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    first_state = read_checkpoint(last)["state_dict"]

    metrics, objects = train(
        compose_train(
            [*overrides, "model.compile=true", "trainer.max_epochs=2", "ckpt_path=last"], run_dir, cache
        )
    )
    assert objects["model"].model.net._compiled_call_impl is not None
    assert objects["trainer"].current_epoch == 2 and np.isfinite(metrics["test/loss"])
    checkpoint = read_checkpoint(last)
    assert checkpoint["hyper_parameters"]["compile"] is True and checkpoint["epoch"] == 1
    state = checkpoint["state_dict"]
    assert list(state) == list(first_state)  # no `_orig_mod.` keys
    assert not all(torch.equal(state[k], first_state[k]) for k in state)  # the second epoch trained

    model = SERModel.load_from_checkpoint(last)
    assert model.net._compiled_call_impl is None
    waves = torch.randn(2, model.audio.num_samples)
    with torch.inference_mode():
        logits = model(model.inputs({"waveform": waves}))
    assert logits.shape == (2, len(model.labels)) and torch.isfinite(logits).all()
