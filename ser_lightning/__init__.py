"""ser_lightning: a Lightning + Hydra experiment framework for speech emotion recognition."""

__version__ = "0.1.0"
