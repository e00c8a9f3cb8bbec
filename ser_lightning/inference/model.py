"""The model predict and serve run: a checkpoint's feature extractor and network, nothing else.

`SERModule` (ser_lightning.module) is a LightningModule: loading it imports Lightning and
torchmetrics (seconds of start-up, more than torch itself) for losses, metrics and optimisers
that scoring never uses. `InferenceModel` is a plain `torch.nn.Module` built from the same
hyper-parameters by the same code (the features config instantiated, the network built by
`build_network`) and loaded by the same safe loader from the same state dict, so its `inputs`
and `forward` compute what SERModule's do. The training-only constructor arguments of a
checkpoint (optimizer, scheduler, loss settings, augmentation) are accepted and not used.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ser_lightning.calibration import probabilities, temperature_of
from ser_lightning.checkpoint import EncoderFiles, load_checkpoint
from ser_lightning.data.audio import AudioSettings
from ser_lightning.labels import EMOTIONS

# State-dict entries of SERModule that are training state, not part of scoring.
TRAINING_STATE_PREFIXES = ("batch_augmentation.",)


def check_channels_last(setting) -> None:
    if not (isinstance(setting, bool) or setting == "auto"):
        raise ValueError(
            f"model.channels_last={setting!r} must be auto (on for a CUDA device), true or false"
        )


def channels_last_wanted(
    setting, net: torch.nn.Module, input_shape: tuple, device: torch.device | str
) -> bool:
    """Whether `model.channels_last` turns the channels-last layout on for `net` on `device`.

    Only a network with 2-D convolutions fed 4-D batches `(batch, C, F, T)` has a layout to
    choose; `auto` chooses it on a CUDA device, where cuDNN's convolutions (tensor cores in
    bf16 above all) run fastest on it, and not on the CPU, where it measured no reliable gain
    (from 0.4× to 1.2× the default layout's speed: experiments/benchmarks/results/compile_step.md);
    `true` turns it on there too."""
    if setting is False or len(input_shape) != 3:
        return False
    if not any(isinstance(m, torch.nn.Conv2d) for m in net.modules()):
        return False
    return setting is True or torch.device(device).type == "cuda"


class ScoringPath:
    """What turns a batch into calibrated probabilities, shared by `SERModule` (training) and
    `InferenceModel` (scoring), so that both compute the same: a module with `features`, `net`
    and `hparams` (holding the `calibration` record) mixes it in before its nn.Module base."""

    def inputs(self, batch: dict) -> torch.Tensor:
        """Normalised features for a batch of cached features or raw waveforms."""
        if "features" in batch:
            return self.features.normalize(batch["features"])
        return self.features(batch["waveform"])

    # The layout decided for the network (`model.channels_last`): None until the module knows
    # its device (SERModule.setup, or the first batch here).
    _channels_last: bool | None = None

    def use_device(self, device: torch.device | str) -> bool:
        """Decide `model.channels_last` for `device`; when on, the network's 4-D weights are
        converted to the channels-last layout, in place (the parameters stay the same objects,
        and a state dict holds values, not layouts, so checkpoints are the same either way)."""
        wanted = channels_last_wanted(
            self.hparams.get("channels_last", "auto"), self.net, self.input_shape, device
        )
        if wanted and not self._channels_last:
            # outside inference mode, which a first batch may come in: weights converted in it
            # would be inference tensors, which training and export cannot use
            with torch.inference_mode(False), torch.no_grad():
                self.net.to(memory_format=torch.channels_last)
        self._channels_last = wanted
        return wanted

    # True: a compiled network is told from the first batch that the batch dimension varies (the
    # last batch of an epoch is smaller). Off: it did not spare the second compile that the first
    # smaller batch costs (experiments/benchmarks/compile_step.py --dynamic-batch measures it).
    dynamic_batch: bool = False

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # The one place batches enter the network (training, scoring and export), after
        # SpecAugment and mixup, which work on the features as they come.
        if self._channels_last is None:
            self.use_device(features.device)
        if self._channels_last and features.dim() == 4:
            features = features.contiguous(memory_format=torch.channels_last)
        if self.dynamic_batch and getattr(self.net, "_compiled_call_impl", None) is not None:
            torch._dynamo.maybe_mark_dynamic(features, 0)
        return self.net(features)

    @property
    def temperature(self) -> float:
        """The temperature of the stored calibration (1: none)."""
        return temperature_of(self.hparams.get("calibration"))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities of logits (ser_lightning.calibration.probabilities)."""
        return probabilities(logits, self.temperature)


class InferenceModel(ScoringPath, torch.nn.Module):
    """Features and network of a checkpoint, for scoring (see the module docstring)."""

    def __init__(
        self,
        net: dict,
        features: dict,
        audio: dict,
        labels: list[str] | tuple[str, ...] = EMOTIONS,
        calibration: dict | None = None,
        **training_only,
    ):
        super().__init__()
        from hydra.utils import instantiate

        from ser_lightning.models.requirements import build_network

        self.hparams = {
            "net": net,
            "features": features,
            "audio": audio,
            "labels": list(labels),
            "calibration": calibration,
            **training_only,
        }
        self.labels = list(labels)
        self.features = instantiate(features)
        self.audio = AudioSettings(**audio)
        self.input_shape = tuple(self.features.output_shape(self.audio.num_samples))
        self.net = build_network(net, self.input_shape, len(self.labels), features)
        # SERModule's loss weights: training state, kept so that the state dict loads strictly
        self.register_buffer("class_weight", torch.ones(len(self.labels)))

    @classmethod
    def load_from_checkpoint(
        cls, checkpoint_path: str | Path, map_location="cpu", encoder_files: EncoderFiles | None = None
    ) -> InferenceModel:
        """Safe loading, as SERModule.load_from_checkpoint (see ser_lightning.checkpoint)."""
        return load_checkpoint(checkpoint_path, cls, map_location=map_location, encoder_files=encoder_files)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        kept = {k: v for k, v in state_dict.items() if not k.startswith(TRAINING_STATE_PREFIXES)}
        return super().load_state_dict(kept, strict=strict, assign=assign)
