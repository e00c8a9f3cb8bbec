"""`model=ssl_finetune`: a pretrained speech encoder trained together with its head.

The network takes the waveform (`features=waveform`, `(batch, 1, 1, samples)` at 16 kHz), runs
the encoder (wav2vec 2.0, HuBERT, WavLM, data2vec-audio or Whisper's encoder, loaded as
`features=ssl` loads it: `ser_lightning.features.ssl.encoders`) and classifies its hidden states
with `SSLHead` (learned layer mix, attentive statistics pooling, MLP). Because the input is the
waveform, the waveform augmentations of the data module apply to it.

What fine-tuning such an encoder needs, and each is a setting of this network:

- its convolutional front end stays frozen (`freeze_feature_encoder`), as in the encoders'
  own fine-tuning recipes: it is the part that transfers best and costs most memory to train;
- its own learning rate (`encoder_lr`, usually 10-50x smaller than the head's), reached by a
  linear warm-up over `warmup_steps` optimizer steps; the shared schedule (plateau, cosine)
  acts on both rates;
- frozen altogether for the first `freeze_epochs` epochs, while the fresh head settles (the
  encoder then runs without gradients, in eval mode);
- gradient checkpointing (`gradient_checkpointing`): memory for compute, on long clips or
  large encoders; bf16 comes from the trainer (`trainer=gpu` sets `precision=bf16-mixed`).

The SERModule drives the schedule: at every training step it calls `training_step_schedule`
and sets the rate of the optimizer's `encoder` parameter group (`parameter_groups`).

The checkpoint holds the fine-tuned encoder's weights; to rebuild its architecture, eval and
predict read the encoder's files again (as for `features=ssl`, see README). The SHA-256 of the
pretrained weights it started from is kept as `pretrained_sha256`, a record of what was
fine-tuned: the checkpoint's own encoder weights are the ones that predict.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ser_lightning.features.ssl.encoders import load_encoder
from ser_lightning.features.ssl.features import layer_indices
from ser_lightning.models.requirements import InputRequirement
from ser_lightning.models.ssl_head import SSLHead
from ser_lightning.utils.errors import InvalidSetting


class SSLFinetune(nn.Module):
    """Pretrained speech encoder → `SSLHead`, trained end to end.

    Args:
        input_shape: `(1, 1, samples)`: 16 kHz waveforms (`features=waveform`).
        num_classes: How many labels the head scores.
        encoder: As `features.encoder` of `features=ssl`.
        weights: As `features.weights` of `features=ssl`.
        layers: The hidden states the head mixes ("all", or indices 0..L).
        encoder_lr: The encoder's learning rate (the head's is the optimizer's `lr`).
        warmup_steps: Optimizer steps of linear warm-up of `encoder_lr` (0: none), counted
            from the first step the encoder trains.
        freeze_epochs: Epochs at the start in which the encoder does not train.
        freeze_feature_encoder: Keep the convolutional front end (Whisper: its two
            convolutions and positions) frozen throughout.
        gradient_checkpointing: Recompute the encoder layers' activations in the backward pass.
        encoder_masking: The time masking the wav2vec2-style encoders apply to their own
            frames in training (their config's `mask_time_prob`), a regulariser of their
            fine-tuning recipes.
        hidden_dim: The head's (see `SSLHead`).
        attention_dim: The head's (see `SSLHead`).
        layer_norm: The head's (see `SSLHead`).
        dropout: The head's (see `SSLHead`).

    Raises:
        InvalidSetting: If `encoder_lr` is not positive, or `warmup_steps` or `freeze_epochs`
            is negative.
    """

    reads_encoder_files = True  # checkpoint.EncoderFiles vets which files it reads
    accepts_lengths = True  # forward(x, lengths): padded batches of whole clips (see `forward`)
    input_requirement = InputRequirement(
        channels=1, fits="features=waveform (16 kHz clips)", feature_classes=("Waveform",)
    )

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        encoder: str = "wavlm_base_plus",
        weights: str | None = None,
        layers: str | Sequence[int] = "all",
        encoder_lr: float = 5e-5,
        warmup_steps: int = 100,
        freeze_epochs: int = 0,
        freeze_feature_encoder: bool = True,
        gradient_checkpointing: bool = False,
        encoder_masking: bool = True,
        hidden_dim: int = 256,
        attention_dim: int = 128,
        layer_norm: bool = False,
        dropout: float = 0.2,
    ):
        super().__init__()
        if warmup_steps < 0 or freeze_epochs < 0 or encoder_lr <= 0:
            raise InvalidSetting(
                f"model.net: encoder_lr={encoder_lr} must be > 0, warmup_steps={warmup_steps} and "
                f"freeze_epochs={freeze_epochs} >= 0"
            )
        _, _, samples = input_shape
        loaded = load_encoder(str(encoder), None if weights is None else str(weights))
        self.loaded = loaded  # the record of what was loaded; its modules are registered below
        self.encoder = loaded.model
        self.front_end = loaded.front_end
        self.layers = layer_indices(layers, loaded.num_layers)
        self.encoder_lr = float(encoder_lr)
        self.warmup_steps = int(warmup_steps)
        self.freeze_epochs = int(freeze_epochs)
        self.encoder_frozen = self.freeze_epochs > 0

        # load_encoder gives a frozen model in eval mode; this one trains (dropout, masking) when
        # the network does, and Lightning keeps the modes it finds
        self.encoder.train()
        self.encoder.requires_grad_(True)
        if freeze_feature_encoder:
            for module in self._front_end_modules():
                module.requires_grad_(False)
        if hasattr(self.encoder.config, "apply_spec_augment"):
            self.encoder.config.apply_spec_augment = bool(encoder_masking)
            # the vector written into masked frames is trained only when frames are masked
            masked_frame_vector = getattr(self.encoder, "masked_spec_embed", None)  # none without masking
            if masked_frame_vector is not None:
                masked_frame_vector.requires_grad_(bool(encoder_masking))
        if gradient_checkpointing:
            self.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.register_buffer(
            "pretrained_sha256", torch.tensor(list(bytes.fromhex(loaded.weights_digest)), dtype=torch.uint8)
        )
        head_shape = (len(self.layers), loaded.hidden_size, loaded.num_frames(samples))
        self.head = SSLHead(head_shape, num_classes, hidden_dim, attention_dim, layer_norm, dropout)

    def _front_end_modules(self) -> list[nn.Module]:
        if self.front_end is not None:  # Whisper's encoder
            return [self.encoder.conv1, self.encoder.conv2, self.encoder.embed_positions]
        return [self.encoder.feature_extractor]

    # -- what the SERModule calls ----------------------------------------------------------------
    def parameter_groups(self, lr: float) -> list[dict]:
        """The optimizer's parameter groups, one for the head and one for the encoder.

        Args:
            lr: The head's learning rate (the optimizer's `lr`).

        Returns:
            Two groups: "head", all head parameters at `lr`; "encoder", the encoder parameters
            that require gradients at `encoder_lr`.
        """
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        return [
            {"params": list(self.head.parameters()), "lr": lr, "name": "head"},
            {"params": encoder, "lr": self.encoder_lr, "name": "encoder"},
        ]

    def training_step_schedule(self, epoch: int, step: int, steps_per_epoch: int) -> float | None:
        """Freeze or free the encoder before training step `step` of `epoch`.

        Args:
            epoch: The current epoch, from 0.
            step: The optimizer step about to run, counted from 0 over the whole run.
            steps_per_epoch: Optimizer steps per epoch, to count warm-up steps from the first
                step the encoder trains.

        Returns:
            The encoder's learning-rate scale in (0, 1] (linear warm-up, then 1), or None while
            it is frozen.
        """
        self.encoder_frozen = epoch < self.freeze_epochs
        if self.encoder_frozen:
            return None
        trained = step - self.freeze_epochs * steps_per_epoch
        return min(1.0, (trained + 1) / self.warmup_steps) if self.warmup_steps else 1.0

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return the logits `(batch, num_classes)` of `(batch, 1, 1, samples)` waveforms.

        With `lengths` (`(batch,)` samples of each clip of a padded batch of whole clips), the
        encoder gets an attention mask where it takes one and otherwise runs each clip alone
        (`LoadedEncoder.hidden_states_padded`), and the head pools each clip's own frames.
        """
        waveforms = x[:, 0, 0, :]
        frames = None

        def encode() -> tuple[torch.Tensor, ...]:
            nonlocal frames
            if lengths is None:
                return self.loaded.hidden_states(waveforms)
            states, frames = self.loaded.hidden_states_padded(waveforms, lengths)
            return states

        if self.encoder_frozen and self.training:
            was_training = self.encoder.training
            self.encoder.eval()
            try:
                with torch.no_grad():
                    states = encode()
            finally:
                self.encoder.train(was_training)
        else:
            states = encode()
        stacked = torch.stack([states[i] for i in self.layers], dim=1)  # (B, C, T, H)
        return self.head(stacked.transpose(2, 3), None if frames is None else frames.to(x.device))
