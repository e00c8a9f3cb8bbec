"""The LightningModule: an SERModel trained with a loss, an optimiser, batch augmentation and SER metrics.

The SERModel is features → network → calibrated probabilities.

Built from plain config dicts (net, features, optimizer, scheduler) so that a checkpoint's
hyper-parameters alone rebuild the same model, feature extraction included. The settings
that build parts of it (torch.compile's mode, the batch augmentation) are read in
`module_settings`, the optimiser and scheduler built in `optimisation`, and a loss that is not
finite explained in `nonfinite_loss`.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import CatMetric, MaxMetric, MeanMetric

from ser_lightning.checkpoint import CheckpointError, load_weights, loadable_hparams, read_checkpoint
from ser_lightning.checkpoint_encoder import EncoderFiles
from ser_lightning.dimensions import DIMENSIONS, task_loss
from ser_lightning.features.base import FeatureExtractor
from ser_lightning.labels import EMOTIONS
from ser_lightning.metrics import ConcordanceScore, dimension_scores, ser_metrics
from ser_lightning.model import SERModel
from ser_lightning.module_settings import batch_augmentation, compile_mode
from ser_lightning.nonfinite_loss import NonFiniteLossError, batch_files, non_finite_loss_message
from ser_lightning.optimisation import build_optimizers, scale_encoder_rate
from ser_lightning.utils.config import to_plain
from ser_lightning.utils.errors import InvalidSetting


class SERModule(pl.LightningModule):
    """Speech emotion classifier: trains the SERModel it holds as `model`.

    Batches carry either cached `features` or raw `waveform`s (then features are computed
    here, on the device). Metrics: `train/` and `val/` `acc` (WA), `ua` (UA), `f1` (macro-F1),
    `val/ua_best`, and the loss of every stage. Each is defined once, in ser_lightning.metrics.
    A test step returns its clips' logits; the test stage's scores, `test/acc`, `test/ua`,
    `test/f1` and `test/recall_<emotion>`, come from the one evaluation report that
    ser_lightning.reporting.collector.ReportCollector builds of them.

    With `task` dimensional or multitask (ser_lightning.dimensions) it also learns arousal, valence
    and dominance from `batch["dimensions"]` and logs `val/ccc` (mean over the dimensions),
    `val/ccc_<dimension>`, `val/ccc_best`, and `val/r_<dimension>` and `val/mae_<dimension>` (on
    the corpus's scale, `metrics.dimension_scores` of the epoch's clips); the rating scale of the training corpus is read from
    the data module at fit and kept in the hyper-parameters (`dimension_scale`).
    """

    def __init__(
        self,
        net: dict,
        features: dict,
        optimizer: dict,
        audio: dict,
        scheduler: dict | None = None,
        scheduler_monitor: str = "val/loss",
        labels: list[str] | tuple[str, ...] = EMOTIONS,
        label_smoothing: float = 0.0,
        class_weights: bool = False,
        compile: bool | str = False,
        channels_last: bool | str = "auto",
        spectrogram: dict | None = None,
        mixup: dict | None = None,
        feature_extractor: FeatureExtractor | None = None,
        calibration: dict | None = None,
        task: dict | None = None,
        dimension_scale: dict | None = None,
    ):
        super().__init__()
        # Plain containers only: the hyper-parameters go into checkpoints that must load with
        # weights_only=True, and they alone rebuild this model for eval and predict.
        net, features, optimizer, scheduler = (to_plain(c) for c in (net, features, optimizer, scheduler))
        task, dimension_scale = to_plain(task), to_plain(dimension_scale)
        audio, labels, spectrogram, mixup = (
            to_plain(audio),
            list(labels),
            to_plain(spectrogram),
            to_plain(mixup),
        )
        if mixup is not None and audio.get("duration", 3.0) is None:
            raise InvalidSetting(
                "augmentation.mixup mixes clips of one length; with data.duration=null (whole clips) use "
                "augmentation=specaugment or none, or set data.duration to a clip length in seconds"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise InvalidSetting(f"model.label_smoothing={label_smoothing} must be in [0, 1)")
        mode = compile_mode(compile)
        # `calibration`: the temperature fitted on the validation split after training
        # (ser_lightning.calibration), None before that or when turned off.
        calibration = to_plain(calibration)
        # `feature_extractor`: the run's extractor when the data module already built it from
        # the same `features` config (one per run); the checkpoint keeps the config.
        self.save_hyperparameters(ignore=["feature_extractor"], logger=False)
        self.model = SERModel(
            net, features, audio, labels, calibration, channels_last, feature_extractor, task, dimension_scale
        )
        if mixup is not None and self.model.task.has_dimensions:
            raise InvalidSetting(
                f"augmentation.mixup mixes class labels only; task={self.model.task.name} also learns ratings: "
                "use augmentation=specaugment or none"
            )
        if mode is not None:
            # In place (nn.Module.compile): `model.net` stays the network itself, so the state
            # dict's keys are those of an uncompiled run (no `_orig_mod.`), and a run resumes,
            # is evaluated and exported the same whether or not it was compiled. Compiling
            # happens at the first batch of each kind (train, eval, another batch size).
            self.model.net.compile(mode=mode)
        # SpecAugment and mixup of training batches (the identity outside training_step)
        self.batch_augmentation = batch_augmentation(spectrogram, mixup, self.model.input_shape)
        self.register_buffer("class_weight", torch.ones(len(self.model.labels)))

        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.train_metrics = ser_metrics(len(self.model.labels), "train/")
        self.val_metrics = ser_metrics(len(self.model.labels), "val/")
        self.val_ua_best = MaxMetric()
        self.val_ccc, self.val_ccc_best = ConcordanceScore(len(DIMENSIONS)), MaxMetric()
        self.val_ratings = CatMetric()  # each validation clip's predicted and rated dimensions, normalised

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: dict,
        path: str = "<checkpoint>",
        map_location: str | torch.device | None = "cpu",
        strict: bool = True,
        encoder_files: EncoderFiles | None = None,
    ) -> SERModule:
        """The module of a checkpoint already read (and vetted) by `read_checkpoint`, in eval mode.

        Args:
            checkpoint: what `ser_lightning.checkpoint.read_checkpoint` returned.
            path: the file's name, for error messages.
            map_location: the device to move the module to (None: leave it where it was built).
            strict: every weight of the file must fit the module, and every weight be in the file.
            encoder_files: which pretrained-encoder files a `features=ssl` checkpoint may read.

        Returns:
            The module with the checkpoint's weights and calibration.

        Raises:
            CheckpointError: If the hyper-parameters do not fit this class's constructor, or the
                weights do not fit the module built.
        """
        try:
            module = cls(**loadable_hparams(checkpoint, path, encoder_files))
        except TypeError as err:
            raise CheckpointError(
                f"{str(path)!r}: its hyper_parameters do not fit {cls.__name__}: {err}"
            ) from None
        load_weights(module, checkpoint["state_dict"], path, strict)
        if map_location is not None:
            module.to(map_location)
        return module.eval()

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | Path,
        map_location: str | torch.device | None = "cpu",
        strict: bool = True,
        encoder_files: EncoderFiles | None = None,
        **unsupported: object,
    ) -> SERModule:
        """Read a checkpoint file safely (weights only, vetted config targets) and rebuild its module.

        See ser_lightning.checkpoint. Overrides Lightning's `load_from_checkpoint`.

        Args:
            checkpoint_path: A `.ckpt` file written by `python -m ser_lightning.train`.
            map_location: As in `from_checkpoint`.
            strict: As in `from_checkpoint`.
            encoder_files: Which pretrained-encoder files a `features=ssl` checkpoint may read.
            **unsupported: Lightning's other arguments (hyper-parameter overrides), refused.

        Returns:
            The module, in eval mode.

        Raises:
            TypeError: If any other keyword argument is given: the checkpoint holds its config.
        """
        if unsupported:
            raise TypeError(
                f"SERModule.load_from_checkpoint takes no {sorted(unsupported)}; the checkpoint holds its config"
            )
        checkpoint = read_checkpoint(checkpoint_path, map_location)
        return cls.from_checkpoint(checkpoint, checkpoint_path, map_location, strict, encoder_files)

    def set_calibration(self, calibration: dict | None) -> None:
        """Use `calibration` (a calibration record, None: plain softmax) from now on.

        It is also stored in the hyper-parameters, so the checkpoints written after this hold it.
        """
        self.model.calibration = calibration
        self.hparams.calibration = calibration

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        """Prepare the module for `stage` before Lightning moves it to its device.

        Decides the network's memory layout for the trainer's device; when fitting, fits the
        dataset normalisation statistics and the class weights from the data module's train split.
        """
        # Before Lightning moves the module to its device and wraps it (DDP): the network's
        # layout is decided for the device it will run on (`model.channels_last`).
        if self._trainer is not None:
            self.model.use_device(self.trainer.strategy.root_device)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or stage != "fit":
            return
        if self.model.features.needs_dataset_stats:
            self.model.features.fit_normalization(datamodule.train_features())
        if self.hparams.class_weights:
            self.class_weight.copy_(datamodule.class_weights())
        if self.model.task.has_dimensions:  # refuses a corpus without ratings, naming it
            self.set_dimension_scale(datamodule.require_dimensions().to_dict())
        if getattr(datamodule, "targets", "hard") == "soft":  # refuses a corpus without votes, naming it
            datamodule.require_votes()

    def set_dimension_scale(self, scale: dict) -> None:
        """Report dimensions on `scale` (`{"low", "high"}`) and keep it in the hyper-parameters (checkpoints)."""
        from ser_lightning.dimensions import DimensionScale

        self.model.dimension_scale = DimensionScale.from_dict(scale)
        self.hparams.dimension_scale = self.model.dimension_scale.to_dict()

    # ------------------------------------------------------------------ forward
    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return the logits of normalised features: the model's network (see SERModel.forward)."""
        return self.model(features, lengths)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the cross-entropy of `logits` for `target`, class-weighted and smoothed as set.

        `target` is class indices, or `(batch, classes)` distributions (data.targets=soft), which
        label smoothing mixes with the uniform distribution: (1 - eps) q + eps / classes.
        """
        weight = self.class_weight if self.hparams.class_weights else None
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=self.hparams.label_smoothing)

    def _step(
        self, batch: dict
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        logits, dimensions = self.model.outputs(self.model.inputs(batch), batch.get("lengths"))
        target = batch["label"]
        # data.targets=soft: cross-entropy against the clips' vote distributions (docs/soft_targets.md)
        category_loss = self.loss(logits, batch.get("soft_targets", target)) if logits is not None else None
        loss = task_loss(self.model.task, category_loss, dimensions, batch.get("dimensions"))
        return loss, logits, target, dimensions

    # ------------------------------------------------------------------ stages
    def on_train_start(self) -> None:
        """Reset the validation loss and metrics, so the sanity check's batches do not count."""
        self.val_loss.reset()
        self.val_metrics.reset()

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Scale the encoder's rate of a network that schedules its own parts (see `scale_encoder_rate`)."""
        scale_encoder_rate(self.model.net, self.trainer, self.current_epoch, self.global_step)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Augment the batch, score it and log the training loss and metrics.

        Returns:
            The (mixed, where mixup is on) loss to back-propagate.

        Raises:
            NonFiniteLossError: If the loss is NaN or inf; the message names the batch's files
                and says whether their features or the network are at fault.
        """
        target = batch["label"]
        inputs = self.model.inputs(batch)
        lengths = batch.get("lengths")  # frames per clip of a padded batch of whole clips
        # soft targets (vote distributions) are mixed as labels are: mixup composes with them
        augmented = self.batch_augmentation(inputs, batch.get("soft_targets", target), lengths)
        logits, dimensions = self.model.outputs(augmented.features, lengths)
        category_loss = augmented.loss(logits, self.loss) if logits is not None else None
        loss = task_loss(self.model.task, category_loss, dimensions, batch.get("dimensions"))
        # Before backward: one such step would make every weight NaN, and the run would go on
        # at chance level with nothing but `nan` in its logs.
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self._non_finite_loss_message(loss, inputs, batch))
        self.train_loss(loss)
        # update, not forward: only epoch values are logged, and a per-batch value would copy the
        # confusion matrix to the CPU at every step; update also lets the scores share one matrix
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        if logits is not None:
            self.train_metrics.update(logits, target)  # the batch's own labels, also when mixed
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Score the batch and accumulate the validation loss and metrics, logged per epoch."""
        loss, logits, target, dimensions = self._step(batch)
        self.val_loss(loss)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        if logits is not None:
            self.val_metrics.update(logits, target)
            self.log_dict(self.val_metrics, on_step=False, on_epoch=True, prog_bar=True)
        if dimensions is not None:
            self.val_ccc.update(dimensions, batch["dimensions"])
            self.val_ratings.update(torch.cat([dimensions, batch["dimensions"]], dim=1).detach().float())

    def on_validation_epoch_end(self) -> None:
        """Log `val/ua_best`, the best validation UA so far (not during the sanity check)."""
        if self.model.task.has_dimensions:  # val/ccc: the mean over the dimensions, and each one
            ccc = self.val_ccc.compute()
            self.val_ccc.reset()
            values = {f"val/ccc_{name}": ccc[i] for i, name in enumerate(DIMENSIONS)}
            rated = self.model.dimension_scale.denormalise(self.val_ratings.compute().double().cpu().numpy())
            self.val_ratings.reset()
            scores = dimension_scores(rated[:, : len(DIMENSIONS)], rated[:, len(DIMENSIONS) :], DIMENSIONS)
            values |= {
                f"val/{m}_{name}": float(scores.loc[name, m]) for name in DIMENSIONS for m in ("r", "mae")
            }
            self.log_dict({"val/ccc": ccc.mean(), **values}, prog_bar=False)
        if self.trainer.sanity_checking:  # sanity-check batches must not count towards the best score
            return
        if self.model.task.has_dimensions:
            self.val_ccc_best(ccc.mean())
            self.log("val/ccc_best", self.val_ccc_best.compute(), sync_dist=True, prog_bar=True)
        if not self.model.task.has_categories:
            return
        self.val_ua_best(self.val_metrics["ua"].compute())
        self.log("val/ua_best", self.val_ua_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        """Return the batch's table rows, labels and logits for ReportCollector; log the test loss."""
        has_ratings = "dimensions" in batch or not self.model.task.has_dimensions
        if has_ratings:  # eval's loaders of a split carry no ratings: the report reads them from the table
            loss, logits, target, dimensions = self._step(batch)
            self.test_loss(loss)
            self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        else:
            logits, dimensions = self.model.outputs(self.model.inputs(batch), batch.get("lengths"))
            target = batch["label"]
        # Each clip's table row, label, logits and normalised dimensions: ReportCollector scores
        # them, once, into the evaluation report that the other test metrics are logged from.
        return {"row": batch["row"], "target": target, "logits": logits, "dimensions": dimensions}

    # ------------------------------------------------------------------ a loss that is not finite
    def _non_finite_loss_message(self, loss: torch.Tensor, inputs: torch.Tensor, batch: dict) -> str:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        manifest = getattr(datamodule, "manifest", None)
        files = batch_files(batch, manifest.table if manifest is not None else None)
        return non_finite_loss_message(loss, inputs, files, self.current_epoch, self.global_step)

    # ------------------------------------------------------------------ checkpoints
    # Metric states are not in the state dict; the best validation UA so far must survive a
    # resume, or `val/ua_best` (what sweeps optimise) would restart from the resumed epoch.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the best validation UA and CCC so far in the checkpoint (metric states are not in the state dict)."""
        if self.val_ua_best.update_count:
            checkpoint["val_ua_best"] = float(self.val_ua_best.compute())
        if self.val_ccc_best.update_count:  # task=dimensional|multitask: what their sweeps optimise
            checkpoint["val_ccc_best"] = float(self.val_ccc_best.compute())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the best validation UA (and CCC) so far from the checkpoint, if it holds them."""
        self.val_ua_best.reset()
        if "val_ua_best" in checkpoint:
            self.val_ua_best.update(torch.tensor(checkpoint["val_ua_best"]))
        self.val_ccc_best.reset()
        if "val_ccc_best" in checkpoint:
            self.val_ccc_best.update(torch.tensor(checkpoint["val_ccc_best"]))

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict:
        """Build the optimizer and scheduler of the `optimizer` and `scheduler` configs (`build_optimizers`).

        Returns:
            Lightning's optimizer dict; with a scheduler, stepped every epoch on
            `scheduler_monitor`.
        """
        hparams = self.hparams
        return build_optimizers(
            self.model.net, self.parameters(), hparams.optimizer, hparams.scheduler, hparams.scheduler_monitor
        )
