"""Corpus parsers: each turns a corpus folder into the utterance table.

This package holds the parsers, the registry of their `data.corpus` names, and how a data config
builds one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ser_lightning.data.corpora.crema_d import CremaDCorpus, parse_crema_d_name
from ser_lightning.data.corpora.emobox import EmoBoxCorpus
from ser_lightning.data.corpora.emodb import EmoDBCorpus, parse_emodb_name
from ser_lightning.data.corpora.folder import FolderCorpus
from ser_lightning.data.corpora.iemocap import IemocapCorpus, parse_utterance_id
from ser_lightning.data.corpora.msp_podcast import MspPodcastCorpus
from ser_lightning.data.corpora.ravdess import RavdessCorpus, parse_ravdess_name
from ser_lightning.data.corpora.savee import SaveeCorpus, parse_savee_name
from ser_lightning.data.corpora.ser_en import SerEnCorpus
from ser_lightning.data.corpora.tess import TessCorpus, parse_tess_name
from ser_lightning.utils.config import to_plain
from ser_lightning.utils.errors import InvalidSetting

__all__ = [
    "CremaDCorpus",
    "EmoBoxCorpus",
    "EmoDBCorpus",
    "FolderCorpus",
    "IemocapCorpus",
    "MspPodcastCorpus",
    "RavdessCorpus",
    "SaveeCorpus",
    "SerEnCorpus",
    "CORPORA",
    "TessCorpus",
    "build_corpus",
    "check_data_root",
    "parse_crema_d_name",
    "parse_emodb_name",
    "parse_utterance_id",
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
    "emodb": EmoDBCorpus,
    "emobox": EmoBoxCorpus,
    "ser_en": SerEnCorpus,
    "msp_podcast": MspPodcastCorpus,
    "iemocap": IemocapCorpus,
    "folder": FolderCorpus,
}


def build_corpus(
    corpus: str | type, root: str, vocal_channels: Iterable[str], options: dict | None = None
) -> Any:
    """Construct the parser `data.corpus` names (or a parser class).

    Args:
        corpus: a key of CORPORA, or a parser class.
        root: the corpus folder (`data.root`).
        vocal_channels: the vocal channels to keep (`data.vocal_channels`).
        options: the parser's further fields (`data.corpus_options`).

    Returns:
        The parser, ready to `scan()`.

    Raises:
        InvalidSetting: when `corpus` is not a known name, or `options` has keys the parser does
            not take (the message names the valid ones).
    """
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


def check_data_root(data: Mapping) -> None:
    """A corpus folder that is not there stops the run before anything is built or printed.

    The corpus parser says so in its own words (what the folder should hold, where to get it);
    data=demo generates its folder, and configs the data module refuses are left to it.

    Args:
        data: the run's data config (`cfg.data`).

    Raises:
        FileNotFoundError: the corpus folder `data.root` does not exist.
    """
    root, corpus_name = data.get("root"), data.get("corpus")
    if data.get("demo") or not root or Path(str(root)).expanduser().is_dir() or corpus_name not in CORPORA:
        return
    options = to_plain(data.get("corpus_options"))
    corpus = build_corpus(corpus_name, str(root), data.get("vocal_channels", ["speech"]), options)
    corpus.scan()  # raises FileNotFoundError naming the folder
