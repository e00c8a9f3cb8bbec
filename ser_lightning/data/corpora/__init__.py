"""Parsers that turn a corpus folder into the utterance table, the registry of their `data.corpus`
names, and how a data config builds one."""

from __future__ import annotations

import dataclasses

from ser_lightning.data.corpora.crema_d import CremaDCorpus, parse_crema_d_name
from ser_lightning.data.corpora.folder import FolderCorpus
from ser_lightning.data.corpora.ravdess import RavdessCorpus, parse_ravdess_name
from ser_lightning.data.corpora.savee import SaveeCorpus, parse_savee_name
from ser_lightning.data.corpora.ser_en import SerEnCorpus
from ser_lightning.data.corpora.tess import TessCorpus, parse_tess_name
from ser_lightning.utils.errors import InvalidSetting

__all__ = [
    "CremaDCorpus",
    "FolderCorpus",
    "RavdessCorpus",
    "SaveeCorpus",
    "SerEnCorpus",
    "CORPORA",
    "TessCorpus",
    "build_corpus",
    "parse_crema_d_name",
    "parse_ravdess_name",
    "parse_savee_name",
    "parse_tess_name",
]


# data.corpus -> parser
CORPORA: dict[str, type] = {
    "ravdess": RavdessCorpus,
    "crema_d": CremaDCorpus,
    "tess": TessCorpus,
    "savee": SaveeCorpus,
    "ser_en": SerEnCorpus,
    "folder": FolderCorpus,
}


def build_corpus(corpus: str | type, root: str, vocal_channels, options: dict | None = None):
    """Construct the parser `data.corpus` names (or a parser class); unknown data.corpus_options
    keys fail naming the valid ones."""
    if isinstance(corpus, str):
        if corpus not in CORPORA:
            raise InvalidSetting(f"data.corpus={corpus!r} is not known; choose from {sorted(CORPORA)}")
        corpus = CORPORA[corpus]
    options = dict(options or {})
    valid = sorted(
        f.name for f in dataclasses.fields(corpus) if f.name not in ("root", "vocal_channels", "name")
    )
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InvalidSetting(
            f"data.corpus_options has {unknown}, which {corpus.__name__} does not take; "
            f"valid options: {valid or 'none'}"
        )
    return corpus(root=root, vocal_channels=tuple(vocal_channels), **options)
