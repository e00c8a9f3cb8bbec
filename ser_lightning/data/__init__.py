"""Corpora, the utterance table, splits, caches and the LightningDataModule."""
