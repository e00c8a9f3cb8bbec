"""Parsers that turn a corpus folder into the utterance table."""

from ser_lightning.data.corpora.ravdess import RavdessCorpus, parse_ravdess_name

__all__ = ["RavdessCorpus", "parse_ravdess_name"]
