"""Class probabilities from a trained SERModel, for new files (predict) and fixed-length waveforms.

Scores go through the model's own `probabilities` (its feature extractor and normalisation,
restored from the checkpoint, its network and its temperature), the code path training,
testing and eval use. (Labelled splits are scored by `trainer.test`: see
ser_lightning.reporting.collector.) What a scored file gives is `inference.results.FilePrediction`;
the device and the decoding threads are set up by `inference.execution`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ser_lightning.calibration import check_min_confidence
from ser_lightning.conformal import conformal_of
from ser_lightning.decoding import AudioDecodeError
from ser_lightning.inference.execution import resolve_device
from ser_lightning.inference.file_scoring import FileScorer
from ser_lightning.inference.media import DEFAULT_MAX_DURATION_S, InputError, MediaTooLongError
from ser_lightning.inference.results import FilePrediction
from ser_lightning.inference.timeline import (
    Timeline,
    TimelineSettings,
    build_timeline,
    segment_windows,
    speech_segments,
)
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
        self.calibrated = calibrated
        self.min_confidence = check_min_confidence(min_confidence)
        self.device = resolve_device(device)
        self.module = module.to(self.device).eval()
        self.batch_size = batch_size
        self.labels = list(module.labels)
        self.audio = module.audio
        # the sets are fitted on calibrated probabilities: none for plain softmax
        self.conformal = conformal_of(module.calibration) if calibrated else None

    @torch.inference_mode()
    def _probabilities(self, key: str, batch: torch.Tensor) -> np.ndarray:
        batch = {key: batch.to(self.device, non_blocking=True)}
        return self.module.probabilities(batch, self.calibrated).cpu().numpy()

    def waveform_probabilities(self, waveforms: np.ndarray | torch.Tensor) -> np.ndarray:
        """Score fixed-length waveforms in batches of `batch_size`.

        Args:
            waveforms: `(N, samples)`, at the model's rate and window length.

        Returns:
            Their probabilities `(N, K)` (calibrated unless `calibrated=False`).
        """
        waveforms = torch.as_tensor(np.asarray(waveforms, dtype=np.float32))
        out = [
            self._probabilities("waveform", waveforms[i : i + self.batch_size])
            for i in range(0, len(waveforms), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)

    def whole_clip_probabilities(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Score whole clips of their own lengths, for a model trained on whole clips.

        Clips are sorted by length and scored as padded batches of at most `batch_size` clips and
        PADDED_BATCH_SECONDS seconds (clips x the longest; a longer clip goes alone). Each clip's
        features are extracted from its own samples (`FeatureExtractor.extract_padded`), and the
        network takes their frame counts, so every clip gets the probabilities it gets alone.

        Args:
            clips: 1-D conditioned waveforms at the model's rate, of any lengths.

        Returns:
            Their probabilities `(N, K)`, in the order of `clips`.
        """
        out = np.zeros((len(clips), len(self.labels)), dtype=np.float32)
        order = sorted(range(len(clips)), key=lambda i: len(clips[i]))  # neighbours in length pad least
        budget = PADDED_BATCH_SECONDS * self.audio.sample_rate
        batches: list[list[int]] = [[]]
        for i in order:  # sorted: clip i is the longest yet, so the padded batch is (count + 1) x len(clip i)
            count = len(batches[-1])
            if count and (count >= self.batch_size or (count + 1) * len(clips[i]) > budget):
                batches.append([])
            batches[-1].append(i)
        for chosen in batches if order else []:
            out[chosen] = self._padded_probabilities([clips[c] for c in chosen])
        return out

    @torch.inference_mode()
    def _padded_probabilities(self, clips: list[np.ndarray]) -> np.ndarray:
        if len(clips) == 1 or not hasattr(self.module, "features"):  # one clip, or a baseline's pipeline
            alone = [torch.from_numpy(np.asarray(c, np.float32)[None]) for c in clips]
            return np.concatenate([self._probabilities("waveform", wave) for wave in alone])
        lengths = torch.tensor([len(c) for c in clips], dtype=torch.int64)
        waves = torch.zeros(len(clips), int(lengths.max()))
        for i, clip in enumerate(clips):
            waves[i, : len(clip)] = torch.from_numpy(np.asarray(clip, np.float32))
        features, frames = self.module.features.extract_padded(waves.to(self.device), lengths)
        batch = {"features": features, "lengths": frames.to(self.device)}
        return self.module.probabilities(batch, self.calibrated).cpu().numpy()

    def clip_probabilities(self, clips: Sequence[ClipWindows]) -> np.ndarray:
        """Score every window of some clips, clip after clip.

        Args:
            clips: the clips' windows (one whole-clip window each for a whole-clip model).

        Returns:
            The probabilities of all windows, in order, `(W, K)`.
        """
        if self.audio.whole_clips:
            return self.whole_clip_probabilities([c.window_view(i) for c in clips for i in range(len(c))])
        stacked = [c.take(np.arange(len(c))) for c in clips]
        return self.waveform_probabilities(
            np.concatenate(stacked) if stacked else np.zeros((0, self.audio.num_samples), np.float32)
        )

    # ------------------------------------------------------------------ files
    def timeline(self, wave: np.ndarray, settings: TimelineSettings, hop: float | None = None) -> Timeline:
        """Build the emotion timeline of a decoded recording (see ser_lightning.inference.timeline).

        A model trained on whole clips scores each speech segment whole, as one clip of its own
        length (conditioned as a file holding only that segment), instead of cutting it into windows.

        Args:
            wave: the decoded mono waveform, at the model's rate.
            settings: how speech segments are found and smoothed.
            hop: seconds between windows within a segment; half the model's window when None.

        Returns:
            The recording's speech segments, each with its emotion and probabilities.
        """
        hop = (self.audio.duration or 1.0) / 2 if hop is None else hop  # no hop within a whole clip
        segments = speech_segments(wave, self.audio.sample_rate, settings)
        windows = segment_windows(wave, segments, self.audio, hop)
        scores = self.clip_probabilities(windows)
        return build_timeline(
            self.labels,
            self.audio.sample_rate,
            len(wave) / self.audio.sample_rate,
            segments,
            windows,
            scores,
            settings,
        )

    def predict_timelines(
        self,
        paths: Iterable[str | Path],
        settings: TimelineSettings,
        hop: float | None = None,
        long_clips: str = "windows",
        max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    ) -> Iterator[tuple[FilePrediction | InputError, np.ndarray | None]]:
        """Score files one by one, each with its emotion timeline.

        Args:
            paths: the audio or video files.
            settings: how speech segments are found and smoothed.
            hop: seconds between windows; half the model's window when None.
            long_clips: how clips longer than a window are handled.
            max_duration_s: the longest file decoded, or None for no limit.

        Yields:
            Each file's prediction with its timeline and its decoded samples (for a plot), or an
            InputError and None for a file that could not be decoded or holds no samples.
        """
        for path in paths:
            try:
                wave = self.read(path, max_duration_s)
            except (AudioDecodeError, MediaTooLongError) as err:
                yield InputError(str(path), str(err)), None
                continue
            clip = self.windows(wave, path, hop, long_clips)
            if isinstance(clip, InputError):
                yield clip, None
                continue
            result = self.prediction(path, clip, self.clip_probabilities([clip]))
            result.timeline = self.timeline(wave, settings, hop)
            yield result, wave
