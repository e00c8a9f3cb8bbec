"""The combined English set: CREMA-D, RAVDESS, SAVEE and TESS side by side in one folder.

Layout (the Kaggle "Speech Emotion Recognition (en)" bundle; folder names are matched
case-insensitively, and each folder is read by its corpus's own parser, recursively):

    Crema/1001_DFA_ANG_XX.wav
    Ravdess/audio_speech_actors_01-24/Actor_01/03-01-01-01-01-01-01.wav
    Savee/DC_a01.wav
    Tess/OAF_angry/OAF_back_angry.wav

Every row keeps its corpus in the `corpus` column, so splits can keep corpora apart
(split=cross_corpus) or mixed (actor, kfold, loso: folds are drawn per corpus and gender).
Speaker ids get the corpus as a prefix ("ravdess:01", "crema_d:1001", "tess:OAF", "savee:DC")
so that they stay unique whatever the corpora call their speakers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ser_lightning.data.corpora.common import missing_root_error
from ser_lightning.data.corpora.crema_d import CremaDCorpus
from ser_lightning.data.corpora.ravdess import RavdessCorpus
from ser_lightning.data.corpora.savee import SaveeCorpus
from ser_lightning.data.corpora.sources import SOURCES
from ser_lightning.data.corpora.tess import TessCorpus
from ser_lightning.data.utterances import CorpusScan
from ser_lightning.utils.errors import InvalidSetting

SER_EN_PARTS: dict[str, type] = {
    "crema_d": CremaDCorpus,
    "ravdess": RavdessCorpus,
    "savee": SaveeCorpus,
    "tess": TessCorpus,
}
# Folder names (lower case) under which each part is found.
SER_EN_FOLDERS: dict[str, tuple[str, ...]] = {
    "crema_d": ("crema", "crema-d", "crema_d", "cremad"),
    "ravdess": ("ravdess",),
    "savee": ("savee",),
    "tess": ("tess",),
}
SPEAKER_SEPARATOR = ":"


def combine_scans(scans: dict[str, CorpusScan]) -> CorpusScan:
    """Combine the scans of several corpora into one; speaker ids are prefixed with the corpus name.

    Args:
        scans: each corpus's scan, by corpus name.

    Returns:
        One table sorted by path, with every corpus's rejected files and exclusions.
    """
    tables = []
    for corpus, scan in scans.items():
        table = scan.table.copy()
        table["actor"] = corpus + SPEAKER_SEPARATOR + table["actor"]
        tables.append(table)
    table = pd.concat(tables, ignore_index=True).sort_values("path", kind="stable").reset_index(drop=True)
    rejected = [item for scan in scans.values() for item in scan.rejected]
    excluded = sum(scan.excluded_by_filter for scan in scans.values())
    return CorpusScan(table, rejected, excluded)


@dataclass
class SerEnCorpus:
    """Scans the combined folder; `include` names the parts to read (all four by default)."""

    root: str
    vocal_channels: tuple[str, ...] = ("speech",)
    include: list[str] = field(default_factory=lambda: sorted(SER_EN_PARTS))
    name: str = "ser_en"

    def __post_init__(self) -> None:
        self.include = sorted(self.include)
        unknown = sorted(set(self.include) - set(SER_EN_PARTS))
        if unknown or not self.include:
            raise InvalidSetting(
                f"data.corpus_options.include={self.include} is not valid; choose from {sorted(SER_EN_PARTS)}"
            )
        self.vocal_channels = tuple(self.vocal_channels)
        # Build the parts now so that option mistakes fail at construction, like every corpus.
        self._parts = {
            part: SER_EN_PARTS[part](root="", vocal_channels=self.vocal_channels) for part in self.include
        }

    def part_folders(self, root: Path) -> dict[str, Path]:
        """Find the folder of each included part among the sub-folders of `root`.

        Args:
            root: the combined folder.

        Returns:
            Each included part's folder, by part.

        Raises:
            FileNotFoundError: when a part has no folder; the message names what is missing and
                which folder names were looked for.
        """
        children = {child.name.lower(): child for child in sorted(root.iterdir()) if child.is_dir()}
        found, missing = {}, []
        for part in self.include:
            match = next((children[name] for name in SER_EN_FOLDERS[part] if name in children), None)
            if match is None:
                missing.append(part)
            else:
                found[part] = match
        if missing:
            expected = ", ".join(f"{part}: {'/'.join(SER_EN_FOLDERS[part])}" for part in missing)
            raise FileNotFoundError(
                f"the combined folder {str(root)!r} lacks {missing} (looked for sub-folders named {expected}; "
                f"found {sorted(children)}). Set data.corpus_options.include to the parts you have, "
                f"e.g. include={sorted(found) or ['ravdess']}. {SOURCES['ser_en'].hint}"
            )
        return found

    def scan(self) -> CorpusScan:
        """Scan each included part with its own parser and combine the scans.

        Returns:
            The combined scan (`combine_scans`).

        Raises:
            FileNotFoundError: when the combined folder does not exist (raised through
                `missing_root_error`), a part's folder is missing, or a part's scan fails (named
                in the message).
        """  # noqa: DOC501 - raised as `missing_root_error(...)`, which builds a FileNotFoundError
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise missing_root_error("The combined English set", root, SOURCES["ser_en"].hint)
        scans = {}
        for part, folder in self.part_folders(root).items():
            try:
                scans[part] = replace(self._parts[part], root=str(folder)).scan()
            except FileNotFoundError as err:
                raise FileNotFoundError(f"part {part!r} of the combined folder {str(root)!r}: {err}") from err
        return combine_scans(scans)
