"""Feature extractors: one small object per kind, one contract (see base.FeatureExtractor)."""

from ser_lightning.features.base import FeatureExtractor
from ser_lightning.features.logmel import LogMel

__all__ = ["FeatureExtractor", "LogMel"]
