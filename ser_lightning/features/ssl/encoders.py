"""The pretrained speech encoders `features=ssl` can run, and where their weights are read from.

`ENCODERS` names each encoder once: its family (the transformers architecture), its Hugging Face
repository, its size (layers, hidden size, parameters) and how its input is prepared.
`load_encoder` finds the weights, in this order:

1. `encoder` is a folder written by `save_pretrained` (config.json and the weights);
2. `weights` is such a folder;
3. `weights` is one file: a state dict (`.safetensors`, or a torch file read with
   `torch.load(weights_only=True)`) loaded into the named encoder's architecture, which is built
   here from the sizes below, without any config file. Both layouts of such files are read: the
   `transformers` one, and torchaudio's (its model factories and pipeline bundles: wav2vec 2.0,
   HuBERT and WavLM), which is loaded into torchaudio's own model first and then moved over;
4. the Hugging Face cache of this machine (`from_pretrained(repo, local_files_only=True)`);
5. a download from the Hugging Face Hub, unless offline mode (HF_HUB_OFFLINE=1) is set.

When none gives the weights, `MissingEncoderWeights` says which encoder, what was looked for,
where to get it and how to pass it, before any data is read. Remote code is never trusted, and
`from_pretrained` reads safetensors only.

What is returned is the model in eval mode, frozen, with the record of what was loaded
(`EncoderIdentity`) and the SHA-256 of its weights (`weights_digest`), which names the weights in
feature cache keys and checkpoints. Whisper models give their encoder only; its log-mel front end
is `WhisperLogMel`, in torch so that it runs batched on the device.
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

from ser_lightning.utils.errors import InvalidSetting, UserError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # every encoder here was trained on 16 kHz audio
WEIGHTS_HELP = "features.weights=/path/to/weights.safetensors or features.encoder=/path/to/saved_folder"


@dataclass(frozen=True)
class EncoderSpec:
    """One named encoder of the registry.

    `normalize_waveform`: whether the model was trained on waveforms scaled to zero mean and unit
    variance per utterance (the large wav2vec2-style models and data2vec) or on raw ones (the base
    wav2vec2, HuBERT and WavLM models). `config` holds the sizes that differ from the
    transformers config class's defaults, which are those of the base models.
    """

    name: str
    family: str  # wav2vec2 | hubert | wavlm | data2vec_audio | whisper
    repo: str
    num_layers: int
    hidden_size: int
    parameters_m: int  # approximate, millions, of the part that runs (Whisper: its encoder)
    normalize_waveform: bool
    config: tuple[tuple[str, object], ...] = ()
    sample_rate: int = SAMPLE_RATE

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}"


# Sizes of the 24-layer wav2vec2-style models whose conv stack uses layer norm.
_LARGE_STABLE = (
    ("hidden_size", 1024),
    ("num_hidden_layers", 24),
    ("num_attention_heads", 16),
    ("intermediate_size", 4096),
    ("feat_extract_norm", "layer"),
    ("do_stable_layer_norm", True),
)


def _whisper(d_model: int, layers: int, heads: int, mel_bins: int = 80) -> tuple[tuple[str, object], ...]:
    return (
        ("d_model", d_model),
        ("encoder_layers", layers),
        ("encoder_attention_heads", heads),
        ("encoder_ffn_dim", 4 * d_model),
        ("decoder_layers", layers),
        ("decoder_attention_heads", heads),
        ("decoder_ffn_dim", 4 * d_model),
        ("num_mel_bins", mel_bins),
    )


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec("wav2vec2_base", "wav2vec2", "facebook/wav2vec2-base", 12, 768, 94, False),
        EncoderSpec(
            "wav2vec2_large_lv60k",
            "wav2vec2",
            "facebook/wav2vec2-large-lv60",
            24,
            1024,
            315,
            True,
            _LARGE_STABLE + (("conv_bias", True),),
        ),
        EncoderSpec(
            "xlsr_300m",
            "wav2vec2",
            "facebook/wav2vec2-xls-r-300m",
            24,
            1024,
            315,
            True,
            _LARGE_STABLE + (("conv_bias", True),),
        ),
        EncoderSpec("hubert_base", "hubert", "facebook/hubert-base-ls960", 12, 768, 94, False),
        EncoderSpec(
            "hubert_large",
            "hubert",
            "facebook/hubert-large-ll60k",
            24,
            1024,
            315,
            True,
            _LARGE_STABLE + (("conv_bias", True),),
        ),
        EncoderSpec("wavlm_base", "wavlm", "microsoft/wavlm-base", 12, 768, 94, False),
        EncoderSpec("wavlm_base_plus", "wavlm", "microsoft/wavlm-base-plus", 12, 768, 94, False),
        EncoderSpec("wavlm_large", "wavlm", "microsoft/wavlm-large", 24, 1024, 315, True, _LARGE_STABLE),
        EncoderSpec(
            "data2vec_audio_base", "data2vec_audio", "facebook/data2vec-audio-base", 12, 768, 93, True
        ),
        EncoderSpec(
            "data2vec_audio_large",
            "data2vec_audio",
            "facebook/data2vec-audio-large",
            24,
            1024,
            313,
            True,
            (
                ("hidden_size", 1024),
                ("num_hidden_layers", 24),
                ("num_attention_heads", 16),
                ("intermediate_size", 4096),
            ),
        ),
        EncoderSpec("whisper_base", "whisper", "openai/whisper-base", 6, 512, 21, False, _whisper(512, 6, 8)),
        EncoderSpec(
            "whisper_small", "whisper", "openai/whisper-small", 12, 768, 88, False, _whisper(768, 12, 12)
        ),
        EncoderSpec(
            "whisper_medium", "whisper", "openai/whisper-medium", 24, 1024, 307, False, _whisper(1024, 24, 16)
        ),
        EncoderSpec(
            "whisper_large_v3",
            "whisper",
            "openai/whisper-large-v3",
            32,
            1280,
            637,
            False,
            _whisper(1280, 32, 20, mel_bins=128),
        ),
    )
}

# transformers' model_type of each family (as config.json names it).
MODEL_TYPES = {
    "wav2vec2": "wav2vec2",
    "hubert": "hubert",
    "wavlm": "wavlm",
    "data2vec_audio": "data2vec-audio",
    "whisper": "whisper",
}


class MissingEncoderWeights(UserError, FileNotFoundError):
    """No weights of the named encoder were found; the message says where to get them and put them."""


@dataclass(frozen=True)
class EncoderIdentity:
    """What was loaded: the encoder's name (a registry name, or the folder's name), its family and
    where the weights came from (a folder, a file, or `hf-cache:<repo>`)."""

    name: str
    family: str
    source: str


@dataclass
class LoadedEncoder:
    model: nn.Module  # frozen, eval mode; Whisper: its WhisperEncoder
    identity: EncoderIdentity
    weights_digest: str  # SHA-256 hex of the weights (see `state_dict_digest`)
    normalize_waveform: bool
    num_layers: int
    hidden_size: int
    front_end: nn.Module | None = None  # Whisper's WhisperLogMel; None for waveform encoders

    def num_frames(self, samples: int) -> int:
        """Hidden-state frames of a 16 kHz clip of `samples`, as the encoder makes them."""
        if self.front_end is not None:
            if samples > WHISPER_WINDOW_SAMPLES:
                raise InvalidSetting(
                    f"Whisper encoders see at most 30 s; clips of {samples / SAMPLE_RATE:.1f} s need "
                    "data.duration of 30 or less"
                )
            return -(-samples // WHISPER_SAMPLES_PER_FRAME)
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(samples)))

    def hidden_states(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every hidden state, `(batch, frames, hidden)` each (L + 1 of them: the input of the first
        layer, then each layer's output), for 16 kHz `waveforms` `(batch, samples)`; the input is
        prepared as the encoder was trained (Whisper: its log-mel front end, cut back to the frames
        the clips cover; the wav2vec2-style large models: normalised waveforms)."""
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


def family_classes():
    """The transformers classes of each family: (config class, model class)."""
    import transformers

    return {
        "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
        "hubert": (transformers.HubertConfig, transformers.HubertModel),
        "wavlm": (transformers.WavLMConfig, transformers.WavLMModel),
        "data2vec_audio": (transformers.Data2VecAudioConfig, transformers.Data2VecAudioModel),
        "whisper": (transformers.WhisperConfig, transformers.WhisperModel),
    }


def state_dict_digest(model: nn.Module) -> str:
    """SHA-256 over every tensor of the state dict, by name in sorted order (name, dtype, shape, bytes).

    The same weights give the same digest whichever file or folder they were read from.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}\0{flat.dtype}\0{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _offline() -> bool:
    """Whether the Hugging Face offline mode is asked for (read now, not when the hub was imported)."""
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
    """`from_pretrained` of safetensors weights; of `pytorch_model.bin` (read with
    `torch.load(weights_only=True)`) only where a folder or repository has no safetensors."""
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


def _registry_model(spec: EncoderSpec) -> nn.Module:
    """The named encoder's architecture with random weights, built from the registry's sizes."""
    config_class, model_class = family_classes()[spec.family]
    config = config_class(**dict(spec.config))
    if spec.family == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(config)
    return model_class(config)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidSetting(f"{path} does not hold a state dict (names -> tensors)")
    return state


def _load_state_dict_file(spec: EncoderSpec, path: Path) -> nn.Module:
    """The named encoder's architecture with the weights of a state-dict file.

    Names may carry the prefix of a model with a head around the encoder (`wav2vec2.`, `hubert.`,
    ..., `model.encoder.` for Whisper): only the encoder's names are kept. Every weight of the
    encoder must be there and nothing else may be. A file in torchaudio's layout goes through
    `_from_torchaudio_state`.
    """
    model = _registry_model(spec)
    state = _read_state_dict(path)
    if any(name.startswith(TORCHAUDIO_ENCODER_PREFIX) for name in state):
        return _from_torchaudio_state(spec, model, state, path)
    prefixes = (
        ("model.encoder.", "encoder.") if spec.family == "whisper" else (f"{model.base_model_prefix}.",)
    )
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            break
    _load_exactly(model, state, spec, path, "")
    return model


def _load_exactly(model: nn.Module, state: dict, spec: EncoderSpec, path: Path, layout: str) -> None:
    """`state` into `model`, refused with the names that differ unless every weight is there, of
    its shape, and nothing else is."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or misshapen:
        raise InvalidSetting(
            f"{path} does not hold the weights of {spec.name} ({spec.repo}){layout}: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(misshapen)} of "
            f"another shape (e.g. {misshapen[:3]}). Pass the weights of {spec.repo}, or a folder of another "
            "model with features.encoder=/path/to/folder"
        )
    model.load_state_dict(state, strict=True)


# torchaudio's Wav2Vec2Model keeps the transformer under this name (transformers: `encoder.`).
TORCHAUDIO_ENCODER_PREFIX = "encoder.transformer."
TORCHAUDIO_FAMILIES = ("wav2vec2", "hubert", "wavlm")


def _from_torchaudio_state(spec: EncoderSpec, model: nn.Module, state: dict, path: Path) -> nn.Module:
    """`model` (the transformers architecture of `spec`) with the weights of a torchaudio state dict.

    The file is loaded, strictly, into torchaudio's own model of the same sizes (built by its
    factory from the transformers config, as torchaudio's importer does), so that a file of another
    architecture is refused by torchaudio's names and shapes. Its parts then move over module by
    module, the correspondence torchaudio's importer uses the other way: the convolutional front
    end, the projection, and the transformer (WavLM's fused q/k/v projection split in three). A
    CTC head (`aux.`, in torchaudio's ASR bundles) is left out. `masked_spec_embed`, the vector
    that training-time masking writes into masked frames, is not in torchaudio's files: it is set
    to zeros (it takes no part in the features).
    """
    if spec.family not in TORCHAUDIO_FAMILIES:
        raise InvalidSetting(
            f"{path} is in torchaudio's layout, which torchaudio has for {', '.join(TORCHAUDIO_FAMILIES)}; "
            f"{spec.name} is {spec.family}: pass its transformers weights ({spec.url})"
        )
    from torchaudio.models import wav2vec2_model, wavlm_model
    from torchaudio.models.wav2vec2.utils.import_huggingface import _get_config, _get_config_wavlm

    if spec.family == "wavlm":
        torchaudio_model = wavlm_model(**_get_config_wavlm(model.config), aux_num_out=None)
    else:
        torchaudio_model = wav2vec2_model(**_get_config(model.config), aux_num_out=None)
    encoder_state = {k: v for k, v in state.items() if not k.startswith("aux.")}
    _load_exactly(torchaudio_model, encoder_state, spec, path, " in torchaudio's layout")
    model.feature_extractor.load_state_dict(torchaudio_model.feature_extractor.state_dict())
    model.feature_projection.load_state_dict(torchaudio_model.encoder.feature_projection.state_dict())
    transformer = torchaudio_model.encoder.transformer.state_dict()
    if spec.family == "wavlm":
        for i in range(model.config.num_hidden_layers):
            fused = f"layers.{i}.attention.attention."
            for kind in ("weight", "bias"):
                q, k, v = transformer.pop(f"{fused}in_proj_{kind}").chunk(3)
                transformer.update(
                    {
                        f"layers.{i}.attention.q_proj.{kind}": q,
                        f"layers.{i}.attention.k_proj.{kind}": k,
                        f"layers.{i}.attention.v_proj.{kind}": v,
                        f"layers.{i}.attention.out_proj.{kind}": transformer.pop(f"{fused}out_proj.{kind}"),
                    }
                )
    model.encoder.load_state_dict(transformer, strict=True)
    masked_frame_vector = getattr(model, "masked_spec_embed", None)  # made only when masking is configured
    if masked_frame_vector is not None:
        with torch.no_grad():
            masked_frame_vector.zero_()
    return model


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
    """The model with its weights (see the module's docstring for the order), its identity and family."""
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
            model = _load_state_dict_file(spec, path)
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
    """The frozen encoder named `encoder` (a registry name or a save_pretrained folder), in eval mode,
    with its identity and the SHA-256 of its weights; Whisper gives its encoder and log-mel front end."""
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


# Whisper's front end: 25 ms windows every 10 ms over 30 s of 16 kHz audio, 2 frames per encoder frame.
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_WINDOW_SAMPLES = 30 * SAMPLE_RATE
WHISPER_SAMPLES_PER_FRAME = 2 * WHISPER_HOP


class WhisperLogMel(nn.Module):
    """Whisper's log-mel spectrogram of 16 kHz waveforms `(batch, samples)`, padded with zeros to
    30 s: `(batch, n_mels, 3000)`, as WhisperFeatureExtractor computes it, batched in torch."""

    def __init__(self, n_mels: int):
        super().__init__()
        from transformers import WhisperFeatureExtractor

        filters = WhisperFeatureExtractor(feature_size=n_mels).mel_filters  # (n_fft // 2 + 1, n_mels)
        self.register_buffer("mel_filters", torch.as_tensor(filters, dtype=torch.float32), persistent=False)
        self.register_buffer("window", torch.hann_window(WHISPER_N_FFT), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        if waveforms.shape[-1] > WHISPER_WINDOW_SAMPLES:
            raise InvalidSetting(
                f"Whisper encoders see at most 30 s; these clips have {waveforms.shape[-1] / SAMPLE_RATE:.1f} s "
                "(set data.duration to 30 or less)"
            )
        padded = nn.functional.pad(waveforms.float(), (0, WHISPER_WINDOW_SAMPLES - waveforms.shape[-1]))
        stft = torch.stft(padded, WHISPER_N_FFT, WHISPER_HOP, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        log_spec = torch.clamp(self.mel_filters.T @ power, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
