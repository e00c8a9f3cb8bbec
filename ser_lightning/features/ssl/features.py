"""`features=ssl`: the hidden states of a frozen pretrained speech encoder, as features.

The encoder (see `encoders`) maps 16 kHz waveforms to one sequence of hidden vectors per layer;
the features keep the chosen layers as channels: `(batch, layers, hidden, frames)`, or one frame
per clip with mean (or mean and standard deviation) pooling over time.

The encoder's weights are the user's files, not part of the model: they stay out of the
module's state dict (checkpoints stay small), and move with the module (`to`, `cuda`, `half`).
What the state dict keeps is their SHA-256 (`encoder_sha256`), so that a checkpoint loaded
next to other weights than it was trained with stops with an error instead of predicting from
features it never saw. The same digest is part of the feature cache key.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torchaudio

from ser_lightning.features.base import FeatureExtractor
from ser_lightning.features.ssl.encoders import SAMPLE_RATE, WEIGHTS_HELP, LoadedEncoder, load_encoder
from ser_lightning.utils.errors import InvalidSetting, UserError

log = logging.getLogger(__name__)

POOLINGS = ("none", "mean", "mean_std")
# Bump when the features computed from the same encoder, weights and settings change.
SSL_FEATURES_VERSION = 1


class EncoderWeightsMismatch(UserError, ValueError):
    """A state dict recorded for other encoder weights than the ones loaded now."""


def resampled_length(num_samples: int, orig_freq: int, new_freq: int) -> int:
    """Return how many samples torchaudio's resample makes of `num_samples` (ceil of the rate ratio)."""
    if orig_freq == new_freq:
        return num_samples
    common = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // common, new_freq // common
    return -(-num_samples * new // orig)


class SSLFeatures(FeatureExtractor):
    """Hidden states of a frozen speech encoder: `(batch, C = len(layers), F = hidden [x2], T)`.

    Args:
        encoder: A name of `ENCODERS` (wavlm_base_plus, hubert_large, whisper_small, ...) or a
            folder written by `save_pretrained`.
        weights: A folder, or one state-dict file (.safetensors, or a torch file of tensors),
            holding the named encoder's weights; None reads the Hugging Face cache.
        layers: "all", or the hidden-state indices to keep: 0 is the output of the
            convolutional front end (the input of the first transformer layer), i the output
            of layer i.
        pooling: "none" keeps every frame; "mean" averages over the clip's frames; "mean_std"
            stacks their mean and (population) standard deviation along F.
        sample_rate: The rate of the data's waveforms; other rates than 16 kHz are resampled.
        rate: The encoder's input rate, 16000: every encoder here was trained on 16 kHz audio
            (it is a setting so that the config tree says what the encoder is fed; another
            value is refused).
        normalization: As for every feature extractor (see `FeatureExtractor`).
        chunk: Clips per batch when the feature cache is computed.

    Raises:
        InvalidSetting: If `pooling`, `chunk`, `rate` or `layers` is not an accepted value.
    """

    reads_encoder_files = True  # checkpoint.EncoderFiles vets which files it reads
    cache_dtype = "float16"

    def __init__(
        self,
        encoder: str = "wavlm_base_plus",
        weights: str | None = None,
        layers: str | Sequence[int] = "all",
        pooling: str = "none",
        sample_rate: int = SAMPLE_RATE,
        rate: int = SAMPLE_RATE,
        normalization: str = "none",
        chunk: int = 16,
    ):
        if pooling not in POOLINGS:
            raise InvalidSetting(f"features.pooling={pooling!r} must be one of {POOLINGS}")
        if chunk < 1:
            raise InvalidSetting(f"features.chunk={chunk} must be at least 1")
        if int(rate) != SAMPLE_RATE:
            raise InvalidSetting(
                f"features.rate={rate}: the pretrained encoders take {SAMPLE_RATE} Hz audio (Whisper computes its "
                f"log-mel spectrogram from {SAMPLE_RATE} Hz too); clips of other rates are resampled to it"
            )
        loaded = load_encoder(str(encoder), None if weights is None else str(weights))
        kept = layer_indices(layers, loaded.num_layers)
        hidden = loaded.hidden_size * (2 if pooling == "mean_std" else 1)
        super().__init__(n_features=hidden, normalization=normalization, n_channels=len(kept))
        # A plain attribute, not a submodule: the encoder's weights are not in the state dict.
        self.encoder: LoadedEncoder = loaded
        self.layers = kept
        self.pooling = pooling
        self.sample_rate = int(sample_rate)
        self.chunk = int(chunk)
        self.n_features = hidden
        self._resampling_logged = False
        self.register_buffer(
            "encoder_sha256", torch.tensor(list(bytes.fromhex(loaded.weights_digest)), dtype=torch.uint8)
        )

    # -- the encoder moves with the module ---------------------------------------------------
    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.encoder.model._apply(fn, recurse)
        if self.encoder.front_end is not None:
            self.encoder.front_end._apply(fn, recurse)
        return self

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        stored = state_dict.get(prefix + "encoder_sha256")
        if stored is not None and not torch.equal(stored.cpu(), self.encoder_sha256.cpu()):
            stored_hex = bytes(stored.cpu().tolist()).hex()
            identity = self.encoder.identity
            raise EncoderWeightsMismatch(
                f"this model was trained on features of encoder weights with SHA-256 {stored_hex[:16]}..., "
                f"but the weights loaded now for {identity.name} (from {identity.source}) have "
                f"{self.encoder.weights_digest[:16]}...; its predictions would be meaningless. Load the "
                f"weights it was trained with ({WEIGHTS_HELP})"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # -- the contract --------------------------------------------------------------------------
    def encoder_samples(self, num_samples: int) -> int:
        """Return the samples of a clip of `num_samples` at the data's rate, once resampled to 16 kHz."""
        return resampled_length(num_samples, self.sample_rate, SAMPLE_RATE)

    def num_frames(self, num_samples: int) -> int:
        """Return the encoder frames the encoder makes of a clip of `num_samples` (at the data's rate)."""
        return self.encoder.num_frames(self.encoder_samples(num_samples))

    def output_shape(self, num_samples: int) -> tuple[int, int, int]:
        """Return `(layers, hidden [x2], frames)`, one frame when pooled over time."""
        frames = self.num_frames(num_samples)
        return (len(self.layers), self.n_features, 1 if self.pooling != "none" else frames)

    def cache_params(self) -> dict:
        """Return the encoder's identity and weights digest, layers, pooling, rate and the version."""
        identity = self.encoder.identity
        return {
            "kind": "ssl",
            "encoder": identity.name,
            "family": identity.family,
            "weights_sha256": self.encoder.weights_digest,
            "layers": list(self.layers),
            "pooling": self.pooling,
            "sample_rate": self.sample_rate,
            "normalize_waveform": self.encoder.normalize_waveform,
            "cache_dtype": self.cache_dtype,
            "version": SSL_FEATURES_VERSION,
        }

    def extract(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return the kept hidden states `(batch, C, F, T)`, pooled as set, in the cache's precision."""
        waves = waveforms.float()
        if self.sample_rate != SAMPLE_RATE:
            if not self._resampling_logged:
                log.info(
                    "features=ssl: resampling %d Hz clips to the encoder's %d Hz",
                    self.sample_rate,
                    SAMPLE_RATE,
                )
                self._resampling_logged = True
            waves = torchaudio.functional.resample(waves, self.sample_rate, SAMPLE_RATE)
        with torch.no_grad():
            states = self.encoder.hidden_states(waves)
            kept = torch.stack([states[i] for i in self.layers], dim=1).float()  # (B, C, T, H)
        features = kept.transpose(2, 3)  # (B, C, H, T)
        if self.pooling == "mean":
            features = features.mean(dim=3, keepdim=True)
        elif self.pooling == "mean_std":
            std, mean = torch.std_mean(features, dim=3, keepdim=True, correction=0)
            features = torch.cat([mean, std], dim=2)
        return in_cache_precision(features)

    def extract_padded(
        self, waveforms: torch.Tensor, sample_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Extract a padded batch of whole clips, each clip's features as it gets them alone.

        Each clip is resampled on its own; an encoder that takes an attention mask then runs the
        batch once with it, the others each clip alone (`LoadedEncoder.hidden_states_padded`).
        Pooling averages each clip's own frames.

        Args:
            waveforms: `(batch, samples)` at the data's rate, zero past each clip's end.
            sample_lengths: `(batch,)` samples per clip.

        Returns:
            The features `(batch, C, F, frames)`, zero past each clip's end, and each clip's
            frame count (1 each when pooled).
        """
        clips = [waveforms[i, : int(n)].float() for i, n in enumerate(sample_lengths.tolist())]
        if self.sample_rate != SAMPLE_RATE:
            clips = [torchaudio.functional.resample(c, self.sample_rate, SAMPLE_RATE) for c in clips]
        lengths = torch.tensor([len(c) for c in clips], dtype=torch.int64)
        waves = clips[0].new_zeros((len(clips), int(lengths.max())))
        for i, clip in enumerate(clips):
            waves[i, : len(clip)] = clip
        with torch.no_grad():
            states, frames = self.encoder.hidden_states_padded(waves, lengths)
            kept = torch.stack([states[i] for i in self.layers], dim=1).float()  # (B, C, T, H)
        features = kept.transpose(2, 3)  # (B, C, H, T), zero past each clip's end
        if self.pooling != "none":
            real = (
                torch.arange(features.size(-1), device=features.device) < frames.to(features.device)[:, None]
            )
            weights = real[:, None, None, :].to(features.dtype)
            count = weights.sum(dim=3, keepdim=True).clamp(min=1)
            mean = (features * weights).sum(dim=3, keepdim=True) / count
            pooled = mean
            if self.pooling == "mean_std":  # population standard deviation, as `extract`
                std = (((features - mean) * weights).square().sum(dim=3, keepdim=True) / count).sqrt()
                pooled = torch.cat([mean, std], dim=2)
            return in_cache_precision(pooled), torch.ones(len(clips), dtype=torch.int64)
        return in_cache_precision(features), frames

    def precompute(
        self,
        waveforms: np.ndarray,
        out: np.ndarray,
        advance: Callable[[int], None] | None = None,
        chunk: int | None = None,
    ) -> None:
        """Fill the feature cache `out` from cached waveforms, `chunk` clips at a time.

        Runs on CUDA when there is one; the extractor goes back to its device afterwards.

        Args:
            waveforms: The cached waveforms, `(N, samples)`.
            out: The array to fill, `(N, C, F, T)`.
            advance: Called with k after every k clips, so that the caller can show progress.
            chunk: Clips per batch; None uses the extractor's `chunk`.
        """
        chunk = chunk or self.chunk
        home = self.encoder_sha256.device
        device = torch.device("cuda") if torch.cuda.is_available() else home
        self.to(device)
        try:
            with torch.inference_mode():
                for start in range(0, len(waveforms), chunk):
                    batch = torch.from_numpy(np.array(waveforms[start : start + chunk], dtype=np.float32))
                    out[start : start + chunk] = self.extract(batch.to(device)).cpu().numpy()
                    if advance is not None:
                        advance(len(batch))
        finally:
            self.to(home)


def in_cache_precision(features: torch.Tensor) -> torch.Tensor:
    """Round features to float16, the precision the cache stores them in.

    Values beyond float16's range are clipped to it. Every path gets these values: the
    cache, and features computed per batch or for prediction, so a model never sees one
    precision in training and another in prediction. Dataset normalisation can magnify the
    rounding of a row whose values sit far from zero with little spread; the model is trained
    on the rounded values, so that is part of its input, not a difference between paths.

    Returns:
        The rounded features as float32, same shape.
    """
    limit = torch.finfo(torch.float16).max
    return features.clamp(-limit, limit).to(torch.float16).float()


def layer_indices(layers: str | Sequence[int], num_layers: int) -> tuple[int, ...]:
    """The hidden-state indices `layers` names; an encoder of L layers has L + 1 (0 to L).

    Args:
        layers: "all", or a sequence of indices.
        num_layers: The encoder's number of transformer layers, L.

    Returns:
        The indices as a tuple of ints, 0 to L for "all".

    Raises:
        InvalidSetting: If `layers` is another string, or the indices are empty, repeated or
            outside 0..L.
    """
    if isinstance(layers, str):
        if layers != "all":
            raise InvalidSetting(f"features.layers={layers!r} must be 'all' or a list of layer indices")
        return tuple(range(num_layers + 1))
    kept = tuple(int(i) for i in layers)
    bad = [i for i in kept if not 0 <= i <= num_layers]
    if not kept or bad or len(set(kept)) != len(kept):
        raise InvalidSetting(
            f"features.layers={list(kept)} must be distinct indices from 0 (the convolutional front end's "
            f"output) to {num_layers} (the last layer) of this {num_layers}-layer encoder, or 'all'"
        )
    return kept
