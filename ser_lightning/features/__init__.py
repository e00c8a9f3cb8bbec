"""Feature extractors: one small object per kind, one contract (see base.FeatureExtractor)."""

from ser_lightning.features.base import FeatureExtractor
from ser_lightning.features.handcrafted import Handcrafted68
from ser_lightning.features.logmel import LogMel
from ser_lightning.features.mfcc import MFCC
from ser_lightning.features.mfcc_mel import MFCCMel
from ser_lightning.features.opensmile_features import OpenSmileFeatures
from ser_lightning.features.ssl import SSLFeatures
from ser_lightning.features.waveform import Waveform

__all__ = [
    "FeatureExtractor",
    "Handcrafted68",
    "LogMel",
    "MFCC",
    "MFCCMel",
    "OpenSmileFeatures",
    "SSLFeatures",
    "Waveform",
]
