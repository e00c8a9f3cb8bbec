"""The registry of pretrained speech encoders `features=ssl` and `model=ssl_finetune` can run.

`ENCODERS` names each encoder once: its family (the transformers architecture), its Hugging Face
repository, its size (layers, hidden size, parameters) and how its input is prepared.
`family_classes` gives the transformers classes of each family; `MODEL_TYPES` the `model_type`
that a folder's config.json gives each family.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        """The encoder's page on the Hugging Face Hub."""
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


def family_classes() -> dict[str, tuple[type, type]]:
    """The transformers classes of each family (transformers is imported on the first call).

    Returns:
        For each family of MODEL_TYPES, its (config class, model class).
    """
    import transformers

    return {
        "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
        "hubert": (transformers.HubertConfig, transformers.HubertModel),
        "wavlm": (transformers.WavLMConfig, transformers.WavLMModel),
        "data2vec_audio": (transformers.Data2VecAudioConfig, transformers.Data2VecAudioModel),
        "whisper": (transformers.WhisperConfig, transformers.WhisperModel),
    }
