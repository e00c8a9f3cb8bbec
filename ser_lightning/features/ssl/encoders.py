"""Loading a pretrained speech encoder for `features=ssl`: where its weights are read from.

The encoders are named in `registry` (ENCODERS). `load_encoder` finds the weights, in this order:

1. `encoder` is a folder written by `save_pretrained` (config.json and the weights);
2. `weights` is such a folder;
3. `weights` is one file: a state dict loaded into the named encoder's architecture
   (`weight_files`: the transformers layout or torchaudio's);
4. the Hugging Face cache of this machine (`from_pretrained(repo, local_files_only=True)`);
5. a download from the Hugging Face Hub, unless offline mode (HF_HUB_OFFLINE=1) is set.

When none gives the weights, `MissingEncoderWeights` says which encoder, what was looked for,
where to get it and how to pass it, before any data is read. Remote code is never trusted, and
`from_pretrained` reads safetensors only.

What is returned is the model in eval mode, frozen, with the record of what was loaded
(`EncoderIdentity`) and the SHA-256 of its weights (`weights_digest`), which names the weights in
feature cache keys and checkpoints. Whisper models give their encoder only; its log-mel front end
is `WhisperLogMel` (`whisper_front_end`), in torch so that it runs batched on the device.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ser_lightning.features.ssl.registry import (
    ENCODERS,
    MODEL_TYPES,
    SAMPLE_RATE,
    WEIGHTS_HELP,
    EncoderSpec,
    family_classes,
)
from ser_lightning.features.ssl.weight_files import load_state_dict_file
from ser_lightning.features.ssl.whisper_front_end import (
    WHISPER_SAMPLES_PER_FRAME,
    WhisperLogMel,
    whisper_frames,
)
from ser_lightning.utils.errors import InvalidSetting, UserError

# SAMPLE_RATE, WEIGHTS_HELP and the registry's names are the registry's; importers of this module
# may take them from here too.
__all__ = [
    "ENCODERS",
    "SAMPLE_RATE",
    "WEIGHTS_HELP",
    "EncoderIdentity",
    "EncoderSpec",
    "LoadedEncoder",
    "MissingEncoderWeights",
    "load_encoder",
    "resolve_model",
    "state_dict_digest",
]

log = logging.getLogger(__name__)


class MissingEncoderWeights(UserError, FileNotFoundError):
    """No weights of the named encoder were found; the message says where to get them and put them."""


@dataclass(frozen=True)
class EncoderIdentity:
    """What was loaded: the encoder's name, its family and where the weights came from.

    The name is a registry name, or the folder's name; the source a folder, a file, or
    `hf-cache:<repo>` / `hf-hub:<repo>`.
    """

    name: str
    family: str
    source: str


@dataclass
class LoadedEncoder:
    """A frozen encoder in eval mode, with what `features=ssl` needs to know of it."""

    model: nn.Module  # frozen, eval mode; Whisper: its WhisperEncoder
    identity: EncoderIdentity
    weights_digest: str  # SHA-256 hex of the weights (see `state_dict_digest`)
    normalize_waveform: bool
    num_layers: int
    hidden_size: int
    front_end: nn.Module | None = None  # Whisper's WhisperLogMel; None for waveform encoders

    def num_frames(self, samples: int) -> int:
        """Hidden-state frames of a 16 kHz clip, as the encoder makes them.

        Args:
            samples: the clip's length in samples.

        Returns:
            The number of frames of each hidden state.

        Raises:
            InvalidSetting: a Whisper encoder and a clip longer than 30 s.
        """
        if self.front_end is not None:
            return whisper_frames(samples)
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(samples)))

    def hidden_states(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every hidden state of 16 kHz waveforms, the input prepared as the encoder was trained.

        Whisper: its log-mel front end, cut back to the frames the clips cover; the
        wav2vec2-style large models: normalised waveforms.

        Args:
            waveforms: `(batch, samples)`.

        Returns:
            L + 1 tensors `(batch, frames, hidden)`: the input of the first layer, then each
            layer's output.
        """
        model = self.model
        dtype = next(model.parameters()).dtype
        if self.front_end is not None:
            frames = -(-waveforms.shape[-1] // WHISPER_SAMPLES_PER_FRAME)
            states = model(self.front_end(waveforms).to(dtype), output_hidden_states=True).hidden_states
            return tuple(h[:, :frames] for h in states)
        if self.normalize_waveform:
            mean = waveforms.mean(dim=-1, keepdim=True)
            var = waveforms.var(dim=-1, keepdim=True, unbiased=False)
            waveforms = (waveforms - mean) / torch.sqrt(var + 1e-7)
        return model(waveforms.to(dtype), output_hidden_states=True).hidden_states

    @property
    def takes_attention_mask(self) -> bool:
        """Whether the encoder takes a padded batch with an attention mask (transformers' own rule).

        The wav2vec2, HuBERT and WavLM encoders whose convolutional front end uses layer norm
        (`feat_extract_norm="layer"`) take an `attention_mask`; transformers' feature extractors
        return one for exactly these. The group-norm base models must not get one: their front
        end normalises each channel over the whole (padded) input, so padding changes every
        frame. Whisper's encoder ignores masks. data2vec-audio takes a mask, but its stack of
        positional convolutions carries the padding (zeroed only before the first of them) into
        a clip's last frames and, through attention, into all of them: measured, a masked batch
        moves a short clip's features by up to 1.8. All of these run clip by clip
        (`hidden_states_padded`).
        """
        if self.front_end is not None or self.identity.family == "data2vec_audio":
            return False
        return getattr(self.model.config, "feat_extract_norm", "group") == "layer"

    def hidden_states_padded(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Every hidden state of a padded batch of 16 kHz clips, each clip's as it gets alone.

        An encoder that takes an attention mask (`takes_attention_mask`) runs the batch once with
        the mask of each clip's samples (normalised over its own samples where the encoder wants
        normalised waveforms, zero past its end, as transformers' feature extractors pad); the
        others run each clip alone. Frames past a clip's end are zero.

        Args:
            waveforms: `(batch, samples)`, each clip followed by padding.
            lengths: `(batch,)` samples per clip.

        Returns:
            L + 1 tensors `(batch, frames, hidden)` (frames: the longest clip's), and each clip's
            frame count `(batch,)` int64 on the CPU.
        """
        counts = [int(n) for n in lengths.tolist()]
        frames = torch.tensor([self.num_frames(n) for n in counts], dtype=torch.int64)
        longest = int(frames.max())
        if not self.takes_attention_mask:
            alone = [self.hidden_states(waveforms[i : i + 1, :n]) for i, n in enumerate(counts)]
            states = []
            for layer in range(len(alone[0])):
                padded = alone[0][layer].new_zeros((len(counts), longest, alone[0][layer].size(-1)))
                for i, clip in enumerate(alone):
                    padded[i, : clip[layer].size(1)] = clip[layer][0]
                states.append(padded)
            return tuple(states), frames
        device = waveforms.device
        mask = torch.arange(waveforms.size(-1), device=device)[None, :] < lengths.to(device)[:, None]
        waveforms = waveforms.masked_fill(~mask, 0.0)
        if self.normalize_waveform:
            count = mask.sum(dim=-1, keepdim=True).clamp(min=1)
            mean = waveforms.sum(dim=-1, keepdim=True) / count
            var = ((waveforms - mean).masked_fill(~mask, 0.0).square()).sum(dim=-1, keepdim=True) / count
            waveforms = ((waveforms - mean) / torch.sqrt(var + 1e-7)).masked_fill(~mask, 0.0)
        dtype = next(self.model.parameters()).dtype
        out = self.model(waveforms.to(dtype), attention_mask=mask.long(), output_hidden_states=True)
        real = (torch.arange(longest, device=device)[None, :] < frames.to(device)[:, None])[..., None]
        return tuple(h[:, :longest].masked_fill(~real, 0.0) for h in out.hidden_states), frames


def state_dict_digest(model: nn.Module) -> str:
    """SHA-256 over every tensor of the state dict, by name in sorted order (name, dtype, shape, bytes).

    The same weights give the same digest whichever file or folder they were read from.

    Args:
        model: the loaded encoder.

    Returns:
        The digest, as hex.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}\0{flat.dtype}\0{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _offline() -> bool:
    """Whether the Hugging Face offline mode is asked for (read now, not when the hub was imported).

    Returns:
        True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set (now or at the hub's import).
    """
    truthy = {"1", "on", "yes", "true"}
    if any(
        os.environ.get(var, "").strip().lower() in truthy
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _family_of_folder(folder: Path) -> str:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise MissingEncoderWeights(
            f"{folder} is not an encoder folder: it has no config.json (a folder written by "
            "save_pretrained, or downloaded from the Hugging Face Hub, holds config.json and model.safetensors)"
        )
    model_type = json.loads(config_file.read_text()).get("model_type")
    for family, name in MODEL_TYPES.items():
        if name == model_type:
            return family
    raise InvalidSetting(
        f"{config_file} is a {model_type!r} model; features=ssl runs {sorted(MODEL_TYPES.values())}"
    )


def _from_pretrained(family: str, location: str, **kwargs) -> nn.Module:
    """`from_pretrained` of safetensors weights, never trusting remote code.

    `pytorch_model.bin` (read with `torch.load(weights_only=True)`) is read only where a folder
    or repository has no safetensors.

    Returns:
        The model with its weights.

    Raises:
        OSError: neither safetensors nor `pytorch_model.bin` weights could be read (the error of
            the safetensors attempt).
    """
    _, model_class = family_classes()[family]
    try:
        return model_class.from_pretrained(location, use_safetensors=True, trust_remote_code=False, **kwargs)
    except OSError as no_safetensors:
        try:
            return model_class.from_pretrained(
                location, use_safetensors=False, weights_only=True, trust_remote_code=False, **kwargs
            )
        except OSError:
            raise no_safetensors from None


def _missing(spec: EncoderSpec, looked: list[str]) -> MissingEncoderWeights:
    return MissingEncoderWeights(
        f"no weights for the encoder {spec.name} ({spec.repo}) were found; looked at: {'; '.join(looked)}. "
        f"Get them from {spec.url} (model.safetensors or pytorch_model.bin, or the whole repository) on a machine with internet, "
        f"then pass them with {WEIGHTS_HELP}; or put them in the Hugging Face cache "
        f"(huggingface-cli download {spec.repo})"
    )


def resolve_model(
    encoder: str, weights: str | None
) -> tuple[nn.Module, EncoderIdentity, str, EncoderSpec | None]:
    """The model with its weights (see the module's docstring for the order), its identity and family.

    Args:
        encoder: features.encoder, a registry name or a folder written by save_pretrained.
        weights: features.weights, a folder or a state-dict file; None: the cache or the Hub.

    Returns:
        The model as loaded, what was loaded, its family, and its registry entry (None for a folder).

    Raises:
        InvalidSetting: an unknown encoder, or weights of another family or architecture.
        MissingEncoderWeights: no weights were found.
    """  # noqa: DOC501 - raised as `_missing(...)`, which builds a MissingEncoderWeights
    encoder_path = Path(encoder).expanduser()
    if encoder not in ENCODERS and encoder_path.is_dir():
        family = _family_of_folder(encoder_path)
        model = _from_pretrained(family, str(encoder_path))
        return model, EncoderIdentity(encoder_path.name, family, str(encoder_path.resolve())), family, None
    if encoder not in ENCODERS:
        raise InvalidSetting(
            f"features.encoder={encoder!r} is neither a known encoder ({', '.join(ENCODERS)}) nor a folder "
            "written by save_pretrained"
        )
    spec = ENCODERS[encoder]
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():
            family = _family_of_folder(path)
            if family != spec.family:
                raise InvalidSetting(
                    f"features.weights={weights} holds a {family} model, {spec.name} is {spec.family}"
                )
            model = _from_pretrained(family, str(path))
        elif path.is_file():
            model = load_state_dict_file(spec, path)
        else:
            raise _missing(spec, [f"features.weights={weights} (no such file or folder)"])
        return model, EncoderIdentity(spec.name, spec.family, str(path.resolve())), spec.family, spec
    looked = [f"the Hugging Face cache ({spec.repo})"]
    try:
        model = _from_pretrained(spec.family, spec.repo, local_files_only=True)
        return model, EncoderIdentity(spec.name, spec.family, f"hf-cache:{spec.repo}"), spec.family, spec
    except OSError:
        pass
    if _offline():
        looked.append("no download: HF_HUB_OFFLINE is set")
        raise _missing(spec, looked)
    try:
        log.info("downloading %s from %s", spec.name, spec.url)
        model = _from_pretrained(spec.family, spec.repo)
    except OSError as err:
        looked.append(f"a download from {spec.url} ({type(err).__name__})")
        raise _missing(spec, looked) from err
    return model, EncoderIdentity(spec.name, spec.family, f"hf-hub:{spec.repo}"), spec.family, spec


def load_encoder(encoder: str, weights: str | None = None) -> LoadedEncoder:
    """The frozen encoder named `encoder`, in eval mode, with its identity and weights' SHA-256.

    Whisper gives its encoder and log-mel front end.

    Args:
        encoder: features.encoder, a registry name or a folder written by save_pretrained.
        weights: features.weights, a folder or a state-dict file; None: the cache or the Hub.

    Returns:
        The loaded encoder.

    Raises:
        InvalidSetting: an unknown encoder, or weights of another family or architecture.
        MissingEncoderWeights: no weights were found.
    """
    model, identity, family, spec = resolve_model(encoder, weights)
    front_end = None
    if family == "whisper":
        if not hasattr(model, "conv1"):  # a whole WhisperModel: keep its encoder
            model = model.get_encoder()
        front_end = WhisperLogMel(model.config.num_mel_bins)
    model.eval()
    model.requires_grad_(False)
    config = model.config
    if spec is not None:
        normalize = spec.normalize_waveform
    else:  # a folder: trained on normalised waveforms iff its conv stack uses layer norm (wav2vec2-style)
        normalize = family == "data2vec_audio" or getattr(config, "feat_extract_norm", "group") == "layer"
    num_layers = config.encoder_layers if family == "whisper" else config.num_hidden_layers
    hidden_size = config.d_model if family == "whisper" else config.hidden_size
    return LoadedEncoder(
        model=model,
        identity=identity,
        weights_digest=state_dict_digest(model),
        normalize_waveform=normalize and family != "whisper",
        num_layers=num_layers,
        hidden_size=hidden_size,
        front_end=front_end,
    )
