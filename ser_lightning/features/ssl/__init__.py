"""Pretrained speech encoders (wav2vec 2.0, HuBERT, WavLM, data2vec, Whisper) as frozen features."""

from ser_lightning.features.ssl.encoders import ENCODERS, MissingEncoderWeights, load_encoder
from ser_lightning.features.ssl.features import EncoderWeightsMismatch, SSLFeatures

__all__ = ["ENCODERS", "EncoderWeightsMismatch", "MissingEncoderWeights", "SSLFeatures", "load_encoder"]
