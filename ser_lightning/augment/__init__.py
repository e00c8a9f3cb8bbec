"""Augmentation: waveform (audiomentations), spectrogram (SpecAugment) and batch (mixup) level."""
