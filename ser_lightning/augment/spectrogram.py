"""SpecAugment: frequency and time masks on normalised features, on the device, train only."""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.transforms import FrequencyMasking, TimeMasking

from ser_lightning.utils.errors import InvalidSetting


class SpecAugment(nn.Module):
    """Zero `num_freq_masks` bands of feature rows and `num_time_masks` runs of frames per example.

    Widths follow torchaudio: each mask's width is drawn uniformly from 0 … `*_mask_param` − 1
    and its start uniformly where it fits. Masks are drawn independently for every example and
    shared by its channels (the channels of a multi-channel feature share one frame grid).
    Features are normalised before masking, so zero is the mean (utterance or dataset
    normalisation) and a mask removes information rather than adding a loud edge.
    `p` is the probability that an example is masked at all. Does nothing in eval mode.
    """

    def __init__(
        self,
        freq_mask_param: int = 8,
        time_mask_param: int = 15,
        num_freq_masks: int = 1,
        num_time_masks: int = 1,
        p: float = 1.0,
    ):
        super().__init__()
        for name, value in (
            ("freq_mask_param", freq_mask_param),
            ("time_mask_param", time_mask_param),
            ("num_freq_masks", num_freq_masks),
            ("num_time_masks", num_time_masks),
        ):
            if int(value) != value or value < 0:
                raise InvalidSetting(f"augmentation.spectrogram.{name}={value} must be a whole number >= 0")
        if not 0.0 <= p <= 1.0:
            raise InvalidSetting(f"augmentation.spectrogram.p={p} must be a probability in [0, 1]")
        self.freq_mask_param = int(freq_mask_param)
        self.time_mask_param = int(time_mask_param)
        self.num_freq_masks = int(num_freq_masks)
        self.num_time_masks = int(num_time_masks)
        self.p = float(p)
        self.freq_mask = FrequencyMasking(self.freq_mask_param, iid_masks=True)
        self.time_mask = TimeMasking(self.time_mask_param, iid_masks=True)

    def check_input_shape(self, input_shape: tuple[int, int, int]) -> None:
        """Fail at start-up when a mask could be wider than the features it masks.

        Args:
            input_shape: One example's `(channels, n_features, n_frames)`.

        Raises:
            InvalidSetting: When `freq_mask_param` exceeds the feature rows or `time_mask_param`
                the frames.
        """
        _, n_features, n_frames = input_shape
        if self.freq_mask_param > n_features:
            raise InvalidSetting(
                f"augmentation.spectrogram.freq_mask_param={self.freq_mask_param} exceeds the {n_features} "
                f"feature rows of input shape {tuple(input_shape)}; lower it"
            )
        if self.time_mask_param > n_frames:
            raise InvalidSetting(
                f"augmentation.spectrogram.time_mask_param={self.time_mask_param} exceeds the {n_frames} "
                f"frames of input shape {tuple(input_shape)}; lower it"
            )

    def keep_mask(self, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Draw the masks for one batch.

        Args:
            shape: The batch's `(batch, channels, n_features, n_frames)` shape.
            device: Where to build the mask.
            dtype: The mask's dtype (the features').

        Returns:
            A `(batch, 1, n_features, n_frames)` tensor of ones with the masked cells at zero;
            examples not drawn for masking (probability 1 − `p`) are all ones.
        """
        batch, _, n_features, n_frames = shape
        # Masks are drawn on one row and one column per example and combined by broadcasting:
        # the same masks as on the full grid, at a fraction of the memory traffic.
        rows = torch.ones((batch, 1, n_features, 1), device=device, dtype=dtype)
        frames = torch.ones((batch, 1, 1, n_frames), device=device, dtype=dtype)
        for _ in range(self.num_freq_masks):
            rows = self.freq_mask(rows)
        for _ in range(self.num_time_masks):
            frames = self.time_mask(frames)
        keep = rows * frames
        if self.p < 1.0:
            masked = torch.rand((batch, 1, 1, 1), device=device) < self.p
            keep = torch.where(masked, keep, torch.ones_like(keep))
        return keep

    def frames_kept(self, frame_lengths: torch.Tensor, n_frames: int, dtype: torch.dtype) -> torch.Tensor:
        """Draw the time masks of a padded batch within each clip's own frames.

        Each mask's width is drawn uniformly from 0 … min(`time_mask_param`, length) − 1 and its
        start uniformly where it fits inside the clip, so no mask falls on the padding.

        Args:
            frame_lengths: `(batch,)` frames per clip.
            n_frames: The padded number of frames.
            dtype: The mask's dtype.

        Returns:
            `(batch, 1, 1, n_frames)`: ones, with the masked frames at zero.
        """
        lengths = frame_lengths.to(torch.float32)
        positions = torch.arange(n_frames, device=frame_lengths.device)
        keep = torch.ones((len(lengths), n_frames), dtype=torch.bool, device=frame_lengths.device)
        for _ in range(self.num_time_masks):
            widths = (
                torch.rand(len(lengths), device=lengths.device) * lengths.clamp(max=self.time_mask_param)
            ).floor()
            starts = (torch.rand(len(lengths), device=lengths.device) * (lengths - widths)).floor()
            keep &= ~((positions >= starts[:, None]) & (positions < (starts + widths)[:, None]))
        return keep.to(dtype)[:, None, None, :]

    def forward(self, features: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mask a training batch of normalised features; return them unchanged in eval mode.

        Args:
            features: `(batch, channels, n_features, n_frames)`.
            frame_lengths: `(batch,)` frames per clip of a padded batch: time masks then fall
                within each clip's own frames. None: every clip fills the batch.

        Returns:
            The features with the masked cells zeroed.
        """
        if not self.training:
            return features
        if frame_lengths is None:
            return features * self.keep_mask(features.shape, features.device, features.dtype)
        batch, _, n_features, n_frames = features.shape
        rows = torch.ones((batch, 1, n_features, 1), device=features.device, dtype=features.dtype)
        for _ in range(self.num_freq_masks):
            rows = self.freq_mask(rows)
        keep = rows * self.frames_kept(frame_lengths.to(features.device), n_frames, features.dtype)
        if self.p < 1.0:
            masked = torch.rand((batch, 1, 1, 1), device=features.device) < self.p
            keep = torch.where(masked, keep, torch.ones_like(keep))
        return features * keep

    def extra_repr(self) -> str:
        """Describe the settings in the module's repr.

        Returns:
            The mask widths and counts and `p`.
        """
        return (
            f"freq_mask_param={self.freq_mask_param}, num_freq_masks={self.num_freq_masks}, "
            f"time_mask_param={self.time_mask_param}, num_time_masks={self.num_time_masks}, p={self.p}"
        )
