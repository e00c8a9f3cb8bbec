"""The scoring model: features, network and calibration, and the one path from a batch to probabilities.

`SERModel` is a plain `torch.nn.Module`. Training holds one (`ser_lightning.module.SERModule`
adds loss, optimisation and metrics around it); predict, serve, eval and export load one from a
checkpoint without Lightning (`SERModel.load_from_checkpoint`). Both therefore run the same
code on the same weights: features (extraction and normalisation) → network → logits →
calibrated probabilities.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.calibration import probabilities as calibrated_probabilities
from ser_lightning.calibration import temperature_of
from ser_lightning.checkpoint import load_weights, loadable_hparams, model_state, read_checkpoint
from ser_lightning.checkpoint_encoder import EncoderFiles
from ser_lightning.dimensions import DimensionScale, TaskSettings
from ser_lightning.features.base import FeatureExtractor
from ser_lightning.labels import EMOTIONS
from ser_lightning.models.heads import OutputHeads
from ser_lightning.utils.errors import InvalidSetting


def check_channels_last(setting) -> None:
    """Refuse a `model.channels_last` that is not `auto`, true or false.

    Raises:
        InvalidSetting: If `setting` is neither a bool nor "auto".
    """
    if not (isinstance(setting, bool) or setting == "auto"):
        raise InvalidSetting(
            f"model.channels_last={setting!r} must be auto (on for a CUDA device), true or false"
        )


def channels_last_wanted(
    setting: str | bool, net: torch.nn.Module, input_shape: tuple, device: torch.device | str
) -> bool:
    """Whether `model.channels_last` turns the channels-last layout on for `net` on `device`.

    Only a network with 2-D convolutions fed 4-D batches `(batch, C, F, T)` has a layout to
    choose; `auto` chooses it on a CUDA device, where cuDNN's convolutions (tensor cores in
    bf16 above all) run fastest on it, and not on the CPU, where it measured no reliable gain
    (from 0.4× to 1.2× the default layout's speed: experiments/benchmarks/results/compile_step.md);
    `true` turns it on there too.

    Args:
        setting: `model.channels_last`: `auto`, true or false.
        net: the network whose layout is chosen.
        input_shape: `(C, F, T)` of one example, as the features produce it.
        device: where the network runs.

    Returns:
        True when the network's weights and batches should be channels-last.
    """
    if setting is False or len(input_shape) != 3:
        return False
    if not any(isinstance(m, torch.nn.Conv2d) for m in net.modules()):
        return False
    return setting is True or torch.device(device).type == "cuda"


class SERModel(torch.nn.Module):
    """Features, network and calibration temperature of one speech emotion model.

    Built from the plain configs a checkpoint stores, so that its hyper-parameters alone rebuild
    it, feature extraction included.

    Args:
        net: the network config (`_target_` node), sized from the features' output shape.
        features: the feature extractor config (`_target_` node).
        audio: sample rate, duration, offset, crop and peak normalisation of a clip
            (`ser_lightning.audio_settings.AudioSettings`).
        labels: the class order of the network's outputs.
        calibration: the stored calibration record (`ser_lightning.calibration`), None for none.
        channels_last: `model.channels_last`: `auto` (on for a CUDA device), true or false.
        feature_extractor: an extractor already built from `features` (a training run builds one,
            shared with its data module); None builds it here.
        task: the `task` config (ser_lightning.dimensions.TaskSettings; None: categorical).
        dimension_scale: the corpus's rating scale `{"low", "high"}` the dimensions are reported
            on (None until a training run reads it from its data; ser_lightning.dimensions).

    Attributes:
        labels: the class order.
        audio: the clip settings, as AudioSettings.
        features: the feature extractor.
        net: the network.
        input_shape: `(C, F, T)` the features give for one clip, which the network was sized for.
        calibration: the calibration record whose temperature `probabilities` applies.
        task: what the model predicts (TaskSettings).
        heads: the class logits and dimensions read off the network's outputs (models/heads.py).
        dimension_scale: the rating scale of the dimensions (DimensionScale), or None.
    """

    def __init__(
        self,
        net: dict,
        features: dict,
        audio: dict,
        labels: list[str] | tuple[str, ...] = EMOTIONS,
        calibration: dict | None = None,
        channels_last: bool | str = "auto",
        feature_extractor: FeatureExtractor | None = None,
        task: dict | None = None,
        dimension_scale: dict | None = None,
    ):
        super().__init__()
        from hydra.utils import instantiate

        from ser_lightning.models.requirements import build_network, check_accepts_lengths

        check_channels_last(channels_last)
        self.labels = list(labels)
        self.audio = AudioSettings(**audio)
        self.features: FeatureExtractor = (
            feature_extractor if feature_extractor is not None else instantiate(features)
        )
        # kept for the ONNX file's metadata, which describes the features a caller must compute
        self.features_config = features
        self.input_shape = tuple(self.features.output_shape(self.audio.sizing_samples))
        if self.audio.whole_clips:  # padded batches of whole clips: the network must take their lengths
            check_accepts_lengths(net)
        # Checks the network's declared input requirement first: a clear error, not a shape error.
        self.task = TaskSettings.of(task)
        self.heads = OutputHeads(len(self.labels), self.task)
        self.net: torch.nn.Module = build_network(net, self.input_shape, self.heads.width, features)
        self.dimension_scale = DimensionScale.from_dict(dimension_scale) if dimension_scale else None
        self.calibration = calibration
        self.channels_last = channels_last
        # The layout decided for the network: None until the model knows its device (`use_device`,
        # called by SERModule.setup, or at the first batch).
        self._channels_last: bool | None = None

    @classmethod
    def from_hparams(cls, hparams: dict, feature_extractor: FeatureExtractor | None = None) -> SERModel:
        """The model of a checkpoint's (or SERModule's) hyper-parameters, which also hold training settings.

        Args:
            hparams: the hyper-parameters: `net`, `features`, `audio`, `labels`, and optionally
                `calibration`, `channels_last`, `task` and `dimension_scale`.
            feature_extractor: as in the constructor.

        Returns:
            A new, untrained SERModel.
        """
        return cls(
            net=hparams["net"],
            features=hparams["features"],
            audio=hparams["audio"],
            labels=hparams["labels"],
            calibration=hparams.get("calibration"),
            channels_last=hparams.get("channels_last", "auto"),
            feature_extractor=feature_extractor,
            task=hparams.get("task"),
            dimension_scale=hparams.get("dimension_scale"),
        )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: dict,
        path: str | Path = "<checkpoint>",
        map_location: str | torch.device | None = "cpu",
        encoder_files: EncoderFiles | None = None,
    ) -> SERModel:
        """The model of a checkpoint already read (and vetted) by `read_checkpoint`, in eval mode.

        Args:
            checkpoint: what `ser_lightning.checkpoint.read_checkpoint` returned.
            path: the file's name, for error messages.
            map_location: the device to move the model to (None: leave it where it was built).
            encoder_files: which pretrained-encoder files a `features=ssl` or `model=ssl_finetune`
                checkpoint may read (see EncoderFiles; by default no stored folder or file).

        Returns:
            The model with the checkpoint's weights and calibration.
        """
        model = cls.from_hparams(loadable_hparams(checkpoint, path, encoder_files))
        load_weights(model, model_state(checkpoint), path)
        if map_location is not None:
            model.to(map_location)
        return model.eval()

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | Path,
        map_location: str | torch.device | None = "cpu",
        encoder_files: EncoderFiles | None = None,
    ) -> SERModel:
        """Read a checkpoint file safely (see ser_lightning.checkpoint) and rebuild its model.

        Args:
            checkpoint_path: a `.ckpt` file written by `python -m ser_lightning.train`.
            map_location: as in `from_checkpoint`.
            encoder_files: as in `from_checkpoint`.

        Returns:
            The model, in eval mode.
        """
        checkpoint = read_checkpoint(checkpoint_path, map_location)
        return cls.from_checkpoint(checkpoint, checkpoint_path, map_location, encoder_files)

    def inputs(self, batch: dict) -> torch.Tensor:
        """Return the normalised features of a batch of cached `features` or raw `waveform`s.

        Cached features are only normalised; waveforms are extracted and normalised here. A padded
        batch of whole clips (with `lengths`, in frames) is normalised clip by clip.
        """
        if "lengths" in batch:
            return self.features.normalize_padded(batch["features"], batch["lengths"])
        if "features" in batch:
            return self.features.normalize(batch["features"])
        return self.features(batch["waveform"])

    def use_device(self, device: torch.device | str) -> bool:
        """Decide `model.channels_last` for `device`.

        When on, the network's 4-D weights are converted to the channels-last layout, in place
        (the parameters stay the same objects, and a state dict holds values, not layouts, so
        checkpoints are the same either way).

        Args:
            device: where the network will run.

        Returns:
            Whether the channels-last layout is on.
        """
        wanted = channels_last_wanted(self.channels_last, self.net, self.input_shape, device)
        if wanted and not self._channels_last:
            # outside inference mode, which a first batch may come in: weights converted in it
            # would be inference tensors, which training and export cannot use
            with torch.inference_mode(False), torch.no_grad():
                self.net.to(memory_format=torch.channels_last)
        self._channels_last = wanted
        return wanted

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return the logits `(batch, classes)` of normalised features (what `inputs` gives).

        `lengths`: the frames of each clip of a padded batch of whole clips (None: fixed-length clips).
        A `task=dimensional` model has no classes: it returns its normalised dimensions `(batch, 3)`.
        """
        logits, dimensions = self.outputs(features, lengths)
        return logits if logits is not None else dimensions

    def outputs(
        self, features: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Return the class logits and the normalised dimensions of normalised features.

        Args:
            features: what `inputs` gives.
            lengths: the frames of each clip of a padded batch of whole clips (None: fixed-length clips).

        Returns:
            `(logits (batch, classes) or None, dimensions (batch, 3) in [-1, 1] or None)`, as the task has them.
        """
        # The one place batches enter the network (training, scoring and export), after
        # SpecAugment and mixup, which work on the features as they come.
        if self._channels_last is None:
            self.use_device(features.device)
        if self._channels_last and features.dim() == 4:
            features = features.contiguous(memory_format=torch.channels_last)
        return self.heads(self.net(features) if lengths is None else self.net(features, lengths))

    @property
    def temperature(self) -> float:
        """The temperature of the stored calibration (1: none)."""
        return temperature_of(self.calibration)

    def probabilities(self, batch: dict, calibrated: bool = True) -> torch.Tensor:
        """Class probabilities `(batch, classes)` of a batch of cached `features` or raw `waveform`s.

        Args:
            batch: `{"features": ...}` or `{"waveform": ...}` on the model's device.
            calibrated: divide the logits by the stored temperature (False: plain softmax).

        Returns:
            float32 probabilities in the order of `labels`.
        """
        logits = self(self.inputs(batch), batch.get("lengths"))
        return calibrated_probabilities(logits, self.temperature if calibrated else 1.0)

    def dimensions(self, batch: dict) -> torch.Tensor:
        """Arousal, valence and dominance `(batch, 3)` of a batch, on the training corpus's rating scale.

        Args:
            batch: `{"features": ...}` or `{"waveform": ...}` on the model's device.

        Returns:
            float32 values in `ser_lightning.dimensions.DIMENSIONS` order.

        Raises:
            InvalidSetting: If the model has no dimensions (task=categorical) or no stored scale.
        """
        if not self.task.has_dimensions:
            raise InvalidSetting(
                f"this model predicts no arousal/valence/dominance (task={self.task.name}); "
                "train one with task=dimensional or task=multitask"
            )
        return self.scores(batch)[1]

    def scores(self, batch: dict, calibrated: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Everything the model gives for a batch, from one pass: class probabilities and dimensions.

        Args:
            batch: `{"features": ...}` or `{"waveform": ...}` (with `lengths` for a padded batch)
                on the model's device.
            calibrated: divide the logits by the stored temperature (False: plain softmax).

        Returns:
            `(probabilities (batch, classes) or None, dimensions (batch, 3) or None)`, as the task
            has them: float32 probabilities in the order of `labels`, and arousal, valence and
            dominance on the training corpus's rating scale (`DIMENSIONS` order).

        Raises:
            InvalidSetting: If the model has dimensions but no stored scale to report them on.
        """
        logits, normalised = self.outputs(self.inputs(batch), batch.get("lengths"))
        probabilities = (
            None
            if logits is None
            else calibrated_probabilities(logits, self.temperature if calibrated else 1.0)
        )
        if normalised is None:
            return probabilities, None
        if self.dimension_scale is None:
            raise InvalidSetting(
                f"this task={self.task.name} model has no dimension_scale to report its arousal, valence and "
                "dominance on; it is written when training starts: score a checkpoint saved by a training run"
            )
        return probabilities, self.dimension_scale.denormalise(normalised.float())
