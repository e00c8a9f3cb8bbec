"""Class probabilities and dimensions from a trained SERModel, for new files (predict) and waveforms.

Scores go through the model's own `scores` (its feature extractor and normalisation, restored
from the checkpoint, its network and its temperature), the code path training, testing and eval
use: one pass gives each window's class probabilities and, for a model with dimensions, its
arousal, valence and dominance on the training corpus's scale (`inference.window_scores`). (Labelled splits are scored by `trainer.test`: see
ser_lightning.reporting.collector.) What a scored file gives is `inference.results.FilePrediction`;
the device and the decoding threads are set up by `inference.execution`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ser_lightning.conformal import conformal_of
from ser_lightning.inference.execution import resolve_device
from ser_lightning.inference.file_scoring import FileScorer, check_class_settings
from ser_lightning.inference.window_scores import WindowScores
from ser_lightning.inference.windows import ClipWindows
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only
    from ser_lightning.model import SERModel

log = logging.getLogger(__name__)

# The most audio one padded batch of whole clips holds (clips x the longest, in seconds): 32
# windows of 12 s, about what a batch of fixed-length windows of an MSP-Podcast model holds.
PADDED_BATCH_SECONDS = 32 * 12


class Predictor(FileScorer):
    """Batched scoring with a trained SERModel on a device (GPU when available).

    Probabilities are calibrated with the checkpoint's temperature (`calibrated=False`: plain
    softmax); files whose top probability is below `min_confidence` are answered `uncertain`.
    A checkpoint fitted with `calibration=conformal` also gives each file its set of emotions.
    A task=multitask model gives each window its dimensions beside its probabilities, from the
    same pass; a task=dimensional one its dimensions only (`labels` is then empty).

    Raises:
        InvalidSetting: for a batch size under 1, or `min_confidence` or `calibrated=False` on a
            model without classes (`file_scoring.check_class_settings`).
    """

    def __init__(
        self,
        module: SERModel,
        device: str | torch.device = "auto",
        batch_size: int = 32,
        calibrated: bool = True,
        min_confidence: float = 0.0,
    ):
        if batch_size < 1:
            raise InvalidSetting(f"batch_size={batch_size} must be at least 1")
        task = getattr(module, "task", None)  # a baseline's scorer has none: classes only
        has_classes = task is None or task.has_categories
        self.calibrated = calibrated
        self.min_confidence = check_class_settings(has_classes, min_confidence, calibrated)
        self.device = resolve_device(device)
        self.module = module.to(self.device).eval()
        self.batch_size = batch_size
        self.labels = list(module.labels) if has_classes else []
        self.audio = module.audio
        # the sets are fitted on calibrated probabilities: none for plain softmax
        self.conformal = conformal_of(module.calibration) if calibrated and has_classes else None
        scale = module.dimension_scale if task is not None and task.has_dimensions else None
        self.dimension_scale = scale.to_dict() if scale is not None else None

    @torch.inference_mode()
    def _scores(self, batch: dict[str, torch.Tensor]) -> WindowScores:
        batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        probabilities, dimensions = self.module.scores(batch, self.calibrated)
        return WindowScores(
            None if probabilities is None else probabilities.cpu().numpy(),
            None if dimensions is None else dimensions.cpu().numpy(),
        )

    def waveform_scores(self, waveforms: np.ndarray | torch.Tensor) -> WindowScores:
        """Score fixed-length waveforms in batches of `batch_size`, probabilities and dimensions in one pass.

        Args:
            waveforms: `(N, samples)`, at the model's rate and window length.

        Returns:
            Their scores: probabilities `(N, K)` (calibrated unless `calibrated=False`) and/or
            dimensions `(N, 3)`, as the model has them.
        """
        waveforms = torch.as_tensor(np.asarray(waveforms, dtype=np.float32))
        out = [
            self._scores({"waveform": waveforms[i : i + self.batch_size]})
            for i in range(0, len(waveforms), self.batch_size)
        ]
        return WindowScores.concatenate(out) if out else self.empty_scores()

    def waveform_probabilities(self, waveforms: np.ndarray | torch.Tensor) -> np.ndarray | None:
        """Score fixed-length waveforms in batches of `batch_size`: their class probabilities.

        Args:
            waveforms: `(N, samples)`, at the model's rate and window length.

        Returns:
            Their probabilities `(N, K)` (calibrated unless `calibrated=False`); None for a
            model without classes.
        """
        return self.waveform_scores(waveforms).probabilities

    def whole_clip_probabilities(self, clips: Sequence[np.ndarray]) -> np.ndarray | None:
        """Score whole clips of their own lengths: their class probabilities (`whole_clip_scores`).

        Args:
            clips: 1-D conditioned waveforms at the model's rate, of any lengths.

        Returns:
            Their probabilities `(N, K)`, in the order of `clips`; None for a model without classes.
        """
        return self.whole_clip_scores(clips).probabilities

    def whole_clip_scores(self, clips: Sequence[np.ndarray]) -> WindowScores:
        """Score whole clips of their own lengths, for a model trained on whole clips.

        Clips are sorted by length and scored as padded batches of at most `batch_size` clips and
        PADDED_BATCH_SECONDS seconds (clips x the longest; a longer clip goes alone). Each clip's
        features are extracted from its own samples (`FeatureExtractor.extract_padded`), and the
        network takes their frame counts, so every clip gets the scores it gets alone.

        Args:
            clips: 1-D conditioned waveforms at the model's rate, of any lengths.

        Returns:
            Their scores (probabilities and/or dimensions), in the order of `clips`.
        """
        order = sorted(range(len(clips)), key=lambda i: len(clips[i]))  # neighbours in length pad least
        if not order:
            return self.empty_scores()
        budget = PADDED_BATCH_SECONDS * self.audio.sample_rate
        batches: list[list[int]] = [[]]
        for i in order:  # sorted: clip i is the longest yet, so the padded batch is (count + 1) x len(clip i)
            count = len(batches[-1])
            if count and (count >= self.batch_size or (count + 1) * len(clips[i]) > budget):
                batches.append([])
            batches[-1].append(i)
        scored = WindowScores.concatenate(
            [self._padded_scores([clips[c] for c in chosen]) for chosen in batches]
        )
        return scored[np.argsort([c for chosen in batches for c in chosen])]  # back in the order of `clips`

    def _padded_scores(self, clips: list[np.ndarray]) -> WindowScores:
        if len(clips) == 1 or not hasattr(self.module, "features"):  # one clip, or a baseline's pipeline
            alone = [torch.from_numpy(np.asarray(c, np.float32)[None]) for c in clips]
            return WindowScores.concatenate([self._scores({"waveform": wave}) for wave in alone])
        lengths = torch.tensor([len(c) for c in clips], dtype=torch.int64)
        waves = torch.zeros(len(clips), int(lengths.max()))
        for i, clip in enumerate(clips):
            waves[i, : len(clip)] = torch.from_numpy(np.asarray(clip, np.float32))
        with torch.inference_mode():
            features, frames = self.module.features.extract_padded(waves.to(self.device), lengths)
        return self._scores({"features": features, "lengths": frames})

    def clip_scores(self, clips: Sequence[ClipWindows]) -> WindowScores:
        """Score every window of some clips, clip after clip.

        Args:
            clips: the clips' windows (one whole-clip window each for a whole-clip model).

        Returns:
            The scores of all windows, in order.
        """
        if self.audio.whole_clips:
            return self.whole_clip_scores([c.window_view(i) for c in clips for i in range(len(c))])
        stacked = [c.take(np.arange(len(c))) for c in clips]
        return self.waveform_scores(
            np.concatenate(stacked) if stacked else np.zeros((0, self.audio.num_samples), np.float32)
        )
