"""Weights from one state-dict file, loaded into a registry encoder's architecture.

Step 3 of `load_encoder`'s search (`features.weights=FILE`): the architecture is built here from
the registry's sizes, without any config file, and the file (`.safetensors`, or a torch file read
with `torch.load(weights_only=True)`) must hold exactly its weights. Both layouts of such files
are read: the `transformers` one, and torchaudio's (its model factories and pipeline bundles:
wav2vec 2.0, HuBERT and WavLM), which is loaded into torchaudio's own model first and then moved
over.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ser_lightning.features.ssl.registry import EncoderSpec, family_classes
from ser_lightning.utils.errors import InvalidSetting

# torchaudio's Wav2Vec2Model keeps the transformer under this name (transformers: `encoder.`).
TORCHAUDIO_ENCODER_PREFIX = "encoder.transformer."
TORCHAUDIO_FAMILIES = ("wav2vec2", "hubert", "wavlm")


def load_state_dict_file(spec: EncoderSpec, path: Path) -> nn.Module:
    """The named encoder's architecture with the weights of a state-dict file.

    Names may carry the prefix of a model with a head around the encoder (`wav2vec2.`, `hubert.`,
    ..., `model.encoder.` for Whisper): only the encoder's names are kept. Every weight of the
    encoder must be there and nothing else may be. A file in torchaudio's layout is loaded into
    torchaudio's model and moved over.

    Args:
        spec: the registry entry of the encoder.
        path: the `.safetensors` or torch file.

    Returns:
        The encoder (Whisper: its WhisperEncoder) with the file's weights.

    Raises:
        InvalidSetting: the file holds no state dict, or not exactly the encoder's weights.
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


def _registry_model(spec: EncoderSpec) -> nn.Module:
    """The named encoder's architecture with random weights, built from the registry's sizes.

    Returns:
        The untrained model (Whisper's encoder only).
    """
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


def _load_exactly(model: nn.Module, state: dict, spec: EncoderSpec, path: Path, layout: str) -> None:
    """`state` into `model`, strictly.

    Refused, with the names that differ, unless every weight is there, of its shape, and
    nothing else is.

    Raises:
        InvalidSetting: a weight is missing, unexpected or of another shape.
    """
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

    Returns:
        `model`, its weights replaced.

    Raises:
        InvalidSetting: torchaudio has no layout of the encoder's family, or the file does not hold
            the weights of `spec` in torchaudio's layout.
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
