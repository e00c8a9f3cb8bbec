"""features=ssl: frozen pretrained speech encoders, loaded from local files as real weights are.

Every family gets a tiny randomly initialised model, written with `save_pretrained` (and as a
state-dict file), and read back through SSLFeatures; no weights are downloaded.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchaudio
import transformers
from safetensors.torch import save_file

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.augment.waveform import build_waveform_augmentation
from ser_lightning.checkpoint import CHECKPOINT_FORMAT_VERSION, RECORD_KEY, CheckpointError
from ser_lightning.checkpoint_encoder import EncoderFiles
from ser_lightning.data.cache import cache_key
from ser_lightning.data.feature_store import FeatureStore
from ser_lightning.data.loading import CachedUtterances
from ser_lightning.data.offline_copies import OfflineCopies
from ser_lightning.features import SSLFeatures
from ser_lightning.features.ssl import ENCODERS, EncoderWeightsMismatch, MissingEncoderWeights
from ser_lightning.features.ssl.features import in_cache_precision
from ser_lightning.features.ssl.registry import EncoderSpec
from ser_lightning.model import SERModel
from ser_lightning.module import SERModule

from .helpers.audio import write_tone
from .helpers.models import module_from_config

# A 2-layer, 32-wide encoder with a 3-layer conv stack (80 samples per frame).
TINY_WAVEFORM_ENCODER = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16, 16, 16),
    "conv_stride": (5, 4, 4),
    "conv_kernel": (10, 8, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}
TINY_CONFIGS = {
    "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model, TINY_WAVEFORM_ENCODER),
    "hubert": (transformers.HubertConfig, transformers.HubertModel, TINY_WAVEFORM_ENCODER),
    "wavlm": (
        transformers.WavLMConfig,
        transformers.WavLMModel,
        {**TINY_WAVEFORM_ENCODER, "num_buckets": 16},
    ),
    # data2vec's num_conv_pos_embeddings counts its positional conv layers
    "data2vec_audio": (
        transformers.Data2VecAudioConfig,
        transformers.Data2VecAudioModel,
        {**TINY_WAVEFORM_ENCODER, "num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5},
    ),
    "whisper": (
        transformers.WhisperConfig,
        transformers.WhisperModel,
        {
            "d_model": 32,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "decoder_layers": 1,
            "decoder_attention_heads": 2,
            "decoder_ffn_dim": 64,
            "vocab_size": 64,
            "max_target_positions": 16,
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "decoder_start_token_id": 1,
        },
    ),
}
FAMILIES = sorted(TINY_CONFIGS)


def tiny_model(family: str, seed: int = 0):
    config_class, model_class, sizes = TINY_CONFIGS[family]
    torch.manual_seed(seed)
    return model_class(config_class(**sizes)).eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """family -> a save_pretrained folder of its tiny model."""
    root = tmp_path_factory.mktemp("encoders")
    for family in FAMILIES:
        tiny_model(family).save_pretrained(root / family)
    return {family: root / family for family in FAMILIES}


def reference_states(family: str, folder: Path, waves: torch.Tensor, normalize: bool) -> list[torch.Tensor]:
    """The model's own hidden states `(batch, frames, hidden)` for 16 kHz `waves`, its inputs made
    by transformers' own feature extractors."""
    model = TINY_CONFIGS[family][1].from_pretrained(folder).eval()
    with torch.no_grad():
        if family == "whisper":
            extractor = transformers.WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
            mel = extractor(waves.numpy(), sampling_rate=16000, return_tensors="pt").input_features
            states = model.get_encoder()(mel, output_hidden_states=True).hidden_states
            frames = math.ceil(waves.shape[-1] / 320)
            return [h[:, :frames] for h in states]
        extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=normalize)
        inputs = extractor(list(waves.numpy()), sampling_rate=16000, return_tensors="pt").input_values
        return list(model(inputs, output_hidden_states=True).hidden_states)


# Features are rounded to float16 (in_cache_precision); float32 sums that differ in the last bit
# can round to neighbouring float16 values, one step (about 1e-3 relative) apart.
FLOAT16_STEP = {"atol": 2e-4, "rtol": 1e-3}


def stored(reference: torch.Tensor) -> torch.Tensor:
    return in_cache_precision(reference.float())


@pytest.mark.parametrize("family", FAMILIES)
def test_features_are_the_encoders_own_hidden_states(family, folders):
    torch.manual_seed(1)
    waves = torch.randn(2, 4000) * 0.1
    features = SSLFeatures(str(folders[family]))
    assert features.encoder.identity.family == family
    expected = reference_states(family, folders[family], waves, features.encoder.normalize_waveform)
    assert len(expected) == 3  # the conv front end's output and 2 layers
    out = features.extract(waves)
    assert out.shape == (2, 3, 32, expected[0].shape[1])
    for layer, state in enumerate(expected):
        torch.testing.assert_close(out[:, layer], stored(state.transpose(1, 2)), **FLOAT16_STEP)

    chosen = SSLFeatures(str(folders[family]), layers=[2, 0], pooling="mean")
    pooled = chosen.extract(waves)
    assert pooled.shape == (2, 2, 32, 1)
    for channel, layer in enumerate([2, 0]):
        torch.testing.assert_close(
            pooled[:, channel, :, 0], stored(expected[layer].mean(dim=1)), **FLOAT16_STEP
        )
    both = SSLFeatures(str(folders[family]), layers=[1], pooling="mean_std").extract(waves)
    torch.testing.assert_close(
        both[:, 0, 32:, 0], stored(expected[1].std(dim=1, correction=0)), **FLOAT16_STEP
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_output_shape_is_what_the_encoder_makes(family, folders):
    features = SSLFeatures(str(folders[family]), layers=[0, 2])
    for samples in (400, 3999, 8000, 12345):
        waves = torch.randn(1, samples) * 0.1
        assert tuple(features.extract(waves).shape[1:]) == features.output_shape(samples)
    # whisper: the frames the clip covers of its 30 s window, 320 samples each
    if family == "whisper":
        assert features.output_shape(12345)[2] == math.ceil(12345 / 320)
        with pytest.raises(ValueError, match="at most 30 s"):
            features.output_shape(31 * 16000)
    assert SSLFeatures(str(folders[family]), pooling="mean_std").output_shape(12345) == (3, 64, 1)


def test_other_sample_rates_are_resampled_to_16_khz(folders, caplog):
    features = SSLFeatures(str(folders["wavlm"]), sample_rate=8000)
    waves = torch.randn(2, 4000) * 0.1
    with caplog.at_level(logging.INFO, logger="ser_lightning.features.ssl.features"):
        out = features.extract(waves)
        features.extract(waves)
    assert sum("resampling 8000 Hz" in r.message for r in caplog.records) == 1  # said once
    assert tuple(out.shape[1:]) == features.output_shape(4000)
    at_16k = SSLFeatures(str(folders["wavlm"])).extract(torchaudio.functional.resample(waves, 8000, 16000))
    torch.testing.assert_close(out, at_16k)
    for samples in (3999, 4001, 11025):
        assert tuple(features.extract(torch.randn(1, samples)).shape[1:]) == features.output_shape(samples)


def test_layers_out_of_range_are_refused_with_the_range(folders):
    with pytest.raises(ValueError, match=r"from 0 .* to 2 \(the last layer\)"):
        SSLFeatures(str(folders["hubert"]), layers=[3])
    with pytest.raises(ValueError, match="features.pooling='max'"):
        SSLFeatures(str(folders["hubert"]), pooling="max")


def tiny_spec(family: str, name: str) -> EncoderSpec:
    """A registry entry of the tiny architecture, for loading it from a state-dict file; its input
    is prepared as for a folder of the family (data2vec: normalised waveforms)."""
    sizes = TINY_CONFIGS[family][2]
    normalize = family == "data2vec_audio"
    return EncoderSpec(name, family, f"test/{name}", 2, 32, 0, normalize, tuple(sizes.items()))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_state_dict_file_loads_into_the_named_architecture(family, folders, tmp_path, monkeypatch):
    monkeypatch.setitem(ENCODERS, f"tiny_{family}", tiny_spec(family, f"tiny_{family}"))
    model = tiny_model(family)
    # a head model's names (wav2vec2.*, model.encoder.*) with weights around the encoder
    prefix = "model." if family == "whisper" else f"{model.base_model_prefix}."
    state = {prefix + k: v.contiguous() for k, v in model.state_dict().items()}
    state["head.weight"] = torch.zeros(4, 32)
    save_file(state, tmp_path / "weights.safetensors")
    from_file = SSLFeatures(f"tiny_{family}", weights=str(tmp_path / "weights.safetensors"))
    from_folder = SSLFeatures(str(folders[family]))
    assert from_file.encoder.weights_digest == from_folder.encoder.weights_digest
    assert from_file.encoder.identity.source == str((tmp_path / "weights.safetensors").resolve())
    waves = torch.randn(2, 4000) * 0.1
    torch.testing.assert_close(from_file.extract(waves), from_folder.extract(waves))
    # a folder given as weights, and a torch state-dict file, load the same weights
    assert SSLFeatures(f"tiny_{family}", weights=str(folders[family])).encoder.weights_digest == (
        from_file.encoder.weights_digest
    )
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    assert SSLFeatures(f"tiny_{family}", weights=str(tmp_path / "weights.pt")).encoder.weights_digest == (
        from_file.encoder.weights_digest
    )


def tiny_torchaudio_model(family: str, seed: int = 0):
    """The tiny architecture built by torchaudio's own factories, randomly initialised."""
    sizes = {
        "extractor_mode": "group_norm",
        "extractor_conv_layer_config": [(16, 10, 5), (16, 8, 4), (16, 4, 4)],
        "extractor_conv_bias": False,
        "encoder_embed_dim": 32,
        "encoder_projection_dropout": 0.0,
        "encoder_pos_conv_kernel": 16,
        "encoder_pos_conv_groups": 2,
        "encoder_num_layers": 2,
        "encoder_num_heads": 2,
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": 64,
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.0,
        "encoder_layer_norm_first": False,
        "encoder_layer_drop": 0.0,
        "aux_num_out": None,
    }
    torch.manual_seed(seed)
    if family == "wavlm":
        return torchaudio.models.wavlm_model(**sizes, encoder_num_buckets=16, encoder_max_distance=800).eval()
    return torchaudio.models.wav2vec2_model(**sizes).eval()


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "wavlm"])
def test_a_torchaudio_state_dict_gives_torchaudios_own_layer_outputs(family, tmp_path, monkeypatch):
    monkeypatch.setitem(ENCODERS, f"tiny_{family}", tiny_spec(family, f"tiny_{family}"))
    reference = tiny_torchaudio_model(family, seed=3)
    # as a user keeps a torchaudio bundle's weights, with the CTC head of an ASR bundle beside them
    state = dict(reference.state_dict(), **{"aux.weight": torch.zeros(5, 32), "aux.bias": torch.zeros(5)})
    torch.save(state, tmp_path / "torchaudio_weights.pth")
    features = SSLFeatures(f"tiny_{family}", weights=str(tmp_path / "torchaudio_weights.pth"), layers=[1, 2])
    waves = torch.randn(2, 4000) * 0.1
    with torch.no_grad():
        expected, _ = reference.extract_features(waves)  # one output per transformer layer
    out = features.extract(waves)
    assert out.shape == (2, 2, 32, expected[0].shape[1])
    for channel, state_of_layer in enumerate(expected):
        torch.testing.assert_close(out[:, channel], stored(state_of_layer.transpose(1, 2)), **FLOAT16_STEP)
    # the same weights read twice name the same digest; other weights another
    again = SSLFeatures(f"tiny_{family}", weights=str(tmp_path / "torchaudio_weights.pth"))
    assert again.encoder.weights_digest == features.encoder.weights_digest
    torch.save(tiny_torchaudio_model(family, seed=4).state_dict(), tmp_path / "other.pth")
    assert SSLFeatures(f"tiny_{family}", weights=str(tmp_path / "other.pth")).encoder.weights_digest != (
        features.encoder.weights_digest
    )


def test_a_torchaudio_state_dict_of_another_architecture_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(ENCODERS, "tiny_wavlm", tiny_spec("wavlm", "tiny_wavlm"))
    monkeypatch.setitem(ENCODERS, "tiny_data2vec_audio", tiny_spec("data2vec_audio", "tiny_data2vec_audio"))
    torch.save(tiny_torchaudio_model("hubert").state_dict(), tmp_path / "hubert.pth")
    with pytest.raises(
        ValueError, match=r"hubert\.pth does not hold the weights of tiny_wavlm .* in torchaudio's layout"
    ):
        SSLFeatures("tiny_wavlm", weights=str(tmp_path / "hubert.pth"))
    with pytest.raises(
        ValueError, match="torchaudio's layout, which torchaudio has for wav2vec2, hubert, wavlm"
    ):
        SSLFeatures("tiny_data2vec_audio", weights=str(tmp_path / "hubert.pth"))


def test_a_folder_without_safetensors_loads_its_pytorch_model_bin(folders, tmp_path):
    tiny_model("hubert").save_pretrained(tmp_path / "hubert", safe_serialization=False)
    assert sorted(p.name for p in (tmp_path / "hubert").iterdir()) == ["config.json", "pytorch_model.bin"]
    loaded = SSLFeatures(str(tmp_path / "hubert"))
    assert loaded.encoder.weights_digest == SSLFeatures(str(folders["hubert"])).encoder.weights_digest


def test_a_state_dict_of_another_architecture_is_refused(folders, tmp_path, monkeypatch):
    monkeypatch.setitem(ENCODERS, "tiny_wavlm", tiny_spec("wavlm", "tiny_wavlm"))
    save_file(
        {k: v.contiguous() for k, v in tiny_model("hubert").state_dict().items()}, tmp_path / "h.safetensors"
    )
    with pytest.raises(ValueError, match=r"h\.safetensors does not hold the weights of tiny_wavlm"):
        SSLFeatures("tiny_wavlm", weights=str(tmp_path / "h.safetensors"))


def test_the_cache_key_follows_the_weights(folders, tmp_path):
    same = SSLFeatures(str(folders["wav2vec2"]))
    again = SSLFeatures(str(folders["wav2vec2"]))
    assert same.cache_params() == again.cache_params()
    changed = tiny_model("wav2vec2")
    with torch.no_grad():
        changed.encoder.layers[1].feed_forward.output_dense.bias[0] += 1e-3  # one weight
    changed.save_pretrained(tmp_path / "wav2vec2")  # same folder name, other weights
    other = SSLFeatures(str(tmp_path / "wav2vec2"))
    assert other.encoder.identity.name == same.encoder.identity.name
    assert other.cache_params()["weights_sha256"] != same.cache_params()["weights_sha256"]
    assert cache_key(features=other.cache_params()) != cache_key(features=same.cache_params())
    params = SSLFeatures(str(folders["wav2vec2"]), layers=[1], pooling="mean").cache_params()
    assert params["layers"] == [1] and params["pooling"] == "mean" and params["cache_dtype"] == "float16"


def test_missing_weights_stop_before_any_work_naming_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(transformers.utils.hub, "TRANSFORMERS_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(MissingEncoderWeights) as missing:
        SSLFeatures("wavlm_base_plus")
    message = str(missing.value)
    assert "wavlm_base_plus (microsoft/wavlm-base-plus)" in message
    assert "https://huggingface.co/microsoft/wavlm-base-plus" in message
    assert "features.weights=/path/to/weights.safetensors" in message and "HF_HUB_OFFLINE" in message
    absent = tmp_path / "wavlm.safetensors"
    with pytest.raises(
        MissingEncoderWeights, match=f"features.weights={absent} \\(no such file or folder\\)"
    ):
        SSLFeatures("hubert_large", weights=str(absent))
    with pytest.raises(ValueError, match="neither a known encoder"):
        SSLFeatures(str(tmp_path / "no_such_folder"))


def test_the_encoder_stays_out_of_the_state_dict_and_moves_with_the_module(folders):
    features = SSLFeatures(str(folders["wavlm"]))
    assert set(features.state_dict()) == {
        "dataset_mean",
        "dataset_std",
        "dataset_stats_fitted",
        "encoder_sha256",
    }
    assert bytes(features.encoder_sha256.tolist()).hex() == features.encoder.weights_digest
    assert not any(p.requires_grad for p in features.encoder.model.parameters())
    features.double()
    assert next(features.encoder.model.parameters()).dtype == torch.float64
    features.float().train()
    assert not features.encoder.model.training  # frozen: no dropout, no masking


def ssl_module(folder: Path, tmp_path: Path) -> SERModule:
    overrides = [
        "model=crnn_attn",
        "model.net.conv_channels=[4,8]",
        "model.net.lstm_hidden=8",
        "features=ssl",
        f"features.encoder={folder}",
        "features.layers=[0,2]",
    ]
    return module_from_config(overrides, duration=0.5, run_dir=tmp_path)


def save_checkpoint(module: SERModule, path: Path) -> Path:
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            RECORD_KEY: {"format_version": CHECKPOINT_FORMAT_VERSION, "data": None, "split": None},
        },
        path,
    )
    return path


def test_an_ssl_checkpoint_loads_and_refuses_other_weights(folders, tmp_path):
    module = ssl_module(folders["wavlm"], tmp_path)
    assert module.model.input_shape == (2, 32, 99)
    assert any(k.startswith("model.features.") for k in module.state_dict())
    assert not any(k.startswith("model.features.") and "encoder." in k for k in module.state_dict())
    path = save_checkpoint(module, tmp_path / "ssl.ckpt")
    # the checkpoint names its encoder folder; a stored folder is read only where the loader allows
    with pytest.raises(
        CheckpointError, match=r"features.encoder=.*outside this machine's models folder.*encoder="
    ):
        SERModel.load_from_checkpoint(path)
    allowed = EncoderFiles(models_dir=str(folders["wavlm"].parent))
    waves = torch.randn(2, 8000) * 0.1
    with torch.inference_mode():
        expected = module.model.probabilities({"waveform": waves})
        for loaded in (
            SERModule.load_from_checkpoint(path, encoder_files=allowed).model,
            SERModel.load_from_checkpoint(path, encoder_files=allowed),
        ):
            torch.testing.assert_close(loaded.probabilities({"waveform": waves}), expected)

    other = tiny_model("wavlm", seed=1)
    other.save_pretrained(tmp_path / "other_wavlm")
    elsewhere = SSLFeatures(str(tmp_path / "other_wavlm"), layers=[0, 2])
    with pytest.raises(EncoderWeightsMismatch, match="Load the weights it was trained with"):
        elsewhere.load_state_dict(module.model.features.state_dict())
    with pytest.raises(EncoderWeightsMismatch, match=r"other_wavlm\)"):
        ssl_module(tmp_path / "other_wavlm", tmp_path).load_state_dict(module.state_dict())


def test_the_feature_cache_of_ssl_features_is_float16_and_batches_float32(folders, tmp_path):
    paths = [write_tone(tmp_path / "audio" / f"{i}.wav", seconds=0.3, freq=200.0 + 50 * i) for i in range(5)]
    table = pd.DataFrame({"path": [str(p) for p in paths]})
    audio = AudioSettings(sample_rate=16000, duration=0.25)
    features = SSLFeatures(str(folders["hubert"]), layers=[1, 2], chunk=2)
    store = FeatureStore(features, audio, str(tmp_path / "cache"))
    keys = store.ensure(table, str(tmp_path / "audio"))
    arrays = store.load(keys)
    assert arrays.features.dtype == np.float16
    assert arrays.features.shape == (5, *features.output_shape(audio.num_samples))
    with torch.inference_mode():  # in the same chunks of 2 clips, so the same float32 sums
        waves = torch.from_numpy(np.array(arrays.waveforms))
        direct = torch.cat([features.extract(waves[i : i + 2]) for i in range(0, 5, 2)]).numpy()
    np.testing.assert_array_equal(arrays.features, direct.astype(np.float16))
    # features computed per batch (prediction, on-the-fly augmentation) are the cached values
    # exactly: extract rounds to the cache's float16 itself
    np.testing.assert_array_equal(direct, arrays.features.astype(np.float32))
    dataset = CachedUtterances(arrays.features, np.arange(5), np.zeros(5, dtype=np.int64), "features")
    item, batch = dataset[3], dataset.__getitems__([4, 0])
    assert item["features"].dtype == torch.float32 and batch["features"].dtype == torch.float32
    np.testing.assert_array_equal(batch["features"].numpy(), arrays.features[[4, 0]].astype(np.float32))
    assert FeatureStore(features, audio, str(tmp_path / "cache")).ensure(table, "") == keys  # reused

    # offline augmented copies are kept in the same precision as the clean cache
    gain = {
        "transforms": {"gain": {"_target_": "audiomentations.Gain", "min_gain_db": -6.0, "max_gain_db": 6.0}}
    }
    offline = OfflineCopies(build_waveform_augmentation(gain, 16000), 2, 0, "gain", workers=0)
    copies = offline.build(store, arrays, np.arange(5), np.zeros(5, dtype=np.int64))
    assert copies.array.dtype == np.float16 and copies.array.shape == (10, *arrays.features.shape[1:])
    assert copies[0]["features"].dtype == torch.float32
    assert not np.array_equal(copies.array[0], arrays.features[0])  # augmented, not the clean clip


@pytest.mark.parametrize(
    "stored",
    [
        {"weights": "/elsewhere/encoder.safetensors"},
        {"encoder": "wavlm_base_plus", "weights": "/elsewhere/encoder.safetensors"},
        {"encoder": "/elsewhere/wavlm"},
    ],
    ids=["weights-without-encoder", "registry-encoder-with-weights", "encoder-folder"],
)
def test_every_stored_encoder_path_is_vetted_whatever_keys_are_present(stored, tmp_path):
    """A stored features node that names a weights file and no encoder still reads that file:
    it is refused outside paths.models_dir like a stored encoder folder."""
    node = {"_target_": "ser_lightning.features.SSLFeatures", **stored}
    files = EncoderFiles(models_dir=str(tmp_path / "models"))
    key = "weights" if "weights" in stored else "encoder"
    with pytest.raises(
        CheckpointError, match=rf"features\.{key}='/elsewhere/.*outside this machine's models"
    ):
        files.apply(node, "x.ckpt", "features")
    inside = {**node, key: str(tmp_path / "models" / "mine")}
    assert files.apply(inside, "x.ckpt", "features")[key] == inside[key]
    # a user's own choice replaces the stored path
    named = EncoderFiles(weights="/elsewhere/chosen.safetensors", models_dir=str(tmp_path / "models"))
    if key == "weights":
        assert named.apply(node, "x.ckpt", "features")["weights"] == "/elsewhere/chosen.safetensors"
