"""MSP-Podcast: podcast segments labelled by crowd consensus, with official partitions.

Layout of a release (as the MSP lab ships it, unpacked under `data.root`):

    Audios/MSP-PODCAST_0002_0033.wav
    Labels/labels_consensus.csv

labels_consensus.csv has one row per segment with the columns FileName, EmoClass, EmoAct,
EmoVal, EmoDom, SpkrID, Gender and Split_Set. EmoClass is the consensus category (A angry,
S sad, H happy, U surprised, F fearful, D disgust, C contempt, N neutral; O other and X no
agreement have no emotion and are left out by default: `data.corpus_options.exclude`, counted
and logged per code). EmoAct/EmoVal/EmoDom (arousal, valence, dominance) are kept in the
parser's `consensus` frame for dimensional work. Split_Set is the official partition (Train,
Development, Test1, Test2, and Test3 where the release has it): the table's `partition`
column, which `data.split=official` follows. SpkrID "Unknown" (or empty) makes each such
segment its own speaker, `unknown:<FileName stem>`, never merged with another segment.

Rejected with a reason: rows whose audio is missing, audio no row lists, a FileName listed
twice, an unknown EmoClass or Split_Set, a FileName that is not a plain name inside Audios/,
and empty or Git LFS pointer files.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ser_lightning.data.corpora.common import (
    FileScreen,
    check_speech_only,
    find_audio_files,
    missing_root_error,
)
from ser_lightning.data.corpora.sources import SOURCES
from ser_lightning.data.utterances import CorpusScan, RejectedFile, make_table
from ser_lightning.data.votes import add_vote_columns, read_msp_podcast_votes
from ser_lightning.utils.errors import InvalidSetting, UserError

log = logging.getLogger(__name__)

AUDIO_FOLDER = "Audios"
LABELS_CSV = Path("Labels") / "labels_consensus.csv"
VOTES_CSV = Path("Labels") / "labels_detailed.csv"  # optional: each annotator's label
MSP_COLUMNS: tuple[str, ...] = (
    "FileName",
    "EmoClass",
    "EmoAct",
    "EmoVal",
    "EmoDom",
    "SpkrID",
    "Gender",
    "Split_Set",
)
DIMENSIONS: tuple[str, ...] = ("EmoAct", "EmoVal", "EmoDom")
# EmoClass codes onto ser_lightning.labels.KNOWN_EMOTIONS.
MSP_EMOTIONS: dict[str, str] = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprised",
    "F": "fearful",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
}
# Codes without an emotion: left out by default (data.corpus_options.exclude).
MSP_OTHER_CODES: dict[str, str] = {"O": "other", "X": "no agreement"}
MSP_PARTITIONS: tuple[str, ...] = ("Train", "Development", "Test1", "Test2", "Test3")
UNKNOWN_SPEAKERS = frozenset({"", "unknown", "nan", "none"})
GENDERS: dict[str, str] = {"male": "male", "female": "female"}
LAYOUT = (
    "MSP-Podcast's release layout: data.root holds Audios/*.wav and Labels/labels_consensus.csv "
    f"(columns {', '.join(MSP_COLUMNS)})"
)


class MspPodcastLabelsError(UserError, ValueError):
    """labels_consensus.csv cannot be read or lacks columns; the message names those expected."""


def read_consensus(csv_path: str | Path) -> pd.DataFrame:
    """Read labels_consensus.csv: every cell a string, the dimensional ratings as floats.

    Args:
        csv_path: the CSV (Labels/labels_consensus.csv of a release).

    Returns:
        Its rows in file order, with `line` (1-based CSV line) added; EmoAct/EmoVal/EmoDom are
        floats (NaN where a cell is not a number).

    Raises:
        MspPodcastLabelsError: when the CSV cannot be parsed or lacks one of MSP_COLUMNS.
    """
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise MspPodcastLabelsError(f"cannot read {str(csv_path)!r}: {err}. {LAYOUT}") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in MSP_COLUMNS if c not in frame.columns]
    if missing:
        raise MspPodcastLabelsError(
            f"{str(csv_path)!r} has columns {list(frame.columns)} but lacks {missing}; expected the columns "
            f"{', '.join(MSP_COLUMNS)} of MSP-Podcast's labels_consensus.csv"
        )
    frame = frame[list(MSP_COLUMNS)].copy()
    for column in MSP_COLUMNS:
        frame[column] = frame[column].str.strip()
    for column in DIMENSIONS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame.insert(0, "line", range(2, len(frame) + 2))
    return frame


def speaker_id(spkr_id: str, file_name: str) -> str:
    """The actor of a segment: its SpkrID, or a group of its own when the speaker is unknown.

    Args:
        spkr_id: the SpkrID cell.
        file_name: the FileName cell.

    Returns:
        The SpkrID, or `unknown:<FileName stem>` for "Unknown", empty or NaN ids.
    """
    if spkr_id.strip().lower() in UNKNOWN_SPEAKERS:
        return f"unknown:{Path(file_name).stem}"
    return spkr_id.strip()


def _plain_name(file_name: str) -> str | None:
    # The .wav name a FileName cell means, or None when it is not a plain name inside Audios/.
    if not file_name or "/" in file_name or "\\" in file_name or file_name in (".", ".."):
        return None
    return file_name if file_name.lower().endswith(".wav") else f"{file_name}.wav"


@dataclass
class MspPodcastCorpus:
    """Scans an MSP-Podcast release (Audios/, Labels/labels_consensus.csv) into the utterance table.

    `exclude` names the EmoClass codes whose segments are left out on purpose (counted in the
    scan's `excluded_by_filter`, logged per code, and kept in `excluded` with the reason);
    another code without an emotion is rejected. After `scan()`, `consensus` holds the CSV rows
    of the table's files (path, FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender,
    Split_Set) for dimensional emotion.
    """

    root: str
    vocal_channels: tuple[str, ...] = ("speech",)
    exclude: list[str] = field(default_factory=lambda: sorted(MSP_OTHER_CODES))
    name: str = "msp_podcast"

    def __post_init__(self) -> None:
        self.vocal_channels = check_speech_only("MSP-Podcast", self.vocal_channels)
        self.exclude = sorted({str(code).strip().upper() for code in self.exclude})
        unknown = sorted(set(self.exclude) - set(MSP_EMOTIONS) - set(MSP_OTHER_CODES))
        if unknown:
            raise InvalidSetting(
                f"data.corpus_options.exclude={self.exclude} names codes MSP-Podcast does not use: {unknown}; "
                f"EmoClass codes: {', '.join([*MSP_EMOTIONS, *MSP_OTHER_CODES])}"
            )
        self.consensus = pd.DataFrame(columns=["path", *MSP_COLUMNS])
        self.excluded: list[RejectedFile] = []

    def _emotion_or_exclusion(self, code: str) -> tuple[str | None, str | None]:
        # (emotion, None), (None, reason to exclude) or (None, None) for an unknown code.
        if code in self.exclude:
            meaning = MSP_OTHER_CODES.get(code) or MSP_EMOTIONS[code]
            return None, f"EmoClass {code} ({meaning}) is left out by data.corpus_options.exclude"
        return MSP_EMOTIONS.get(code), None

    def scan(self) -> CorpusScan:
        """Read labels_consensus.csv and the Audios folder into the utterance table.

        Returns:
            The table (one row per usable segment, `partition` = Split_Set) and the rejected
            rows and files with their reasons; excluded codes count in `excluded_by_filter`.

        Raises:
            FileNotFoundError: when the folder, Audios/ or the CSV is missing (the message names
                the layout), or no segment is usable.
        """  # noqa: DOC501 - the missing root is raised as `missing_root_error(...)`
        hint = SOURCES["msp_podcast"].hint
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise missing_root_error("MSP-Podcast", root, f"{LAYOUT}. {hint}")
        audio_dir, csv_path = root / AUDIO_FOLDER, root / LABELS_CSV
        missing = [str(p.relative_to(root)) for p in (audio_dir, csv_path) if not p.exists()]
        if missing:
            found = sorted(p.name for p in root.iterdir())
            raise FileNotFoundError(
                f"MSP-Podcast folder {str(root)!r} lacks {missing} (it holds {found[:10]}). {LAYOUT}. {hint}"
            )
        frame = read_consensus(csv_path)
        rejected: list[RejectedFile] = []
        audio = self._audio_files(audio_dir, rejected)
        unusable = {Path(item.path).name for item in rejected}  # rejected already, with the reason
        counts = Counter(frame["FileName"].map(lambda n: _plain_name(n) or n))
        rows, kept, listed, self.excluded, excluded_codes = [], [], set(), [], Counter()
        for record in frame.to_dict("records"):
            where = f"{LABELS_CSV.as_posix()} line {record['line']}"
            name = _plain_name(record["FileName"])
            if name is None:
                reason = f"{where}: FileName {record['FileName']!r} is not a plain file name inside {AUDIO_FOLDER}/"
                rejected.append(RejectedFile(f"{csv_path}:{record['line']}", reason))
                continue
            listed.add(name)
            path = audio.get(name, audio_dir / name)
            emotion, excluded = self._emotion_or_exclusion(record["EmoClass"].upper())
            partition = next((p for p in MSP_PARTITIONS if p.lower() == record["Split_Set"].lower()), None)
            problem = None
            if counts[name] > 1:
                problem = (
                    f"{where}: {name} is listed {counts[name]} times in labels_consensus.csv; fix the CSV"
                )
            elif name in unusable and name not in audio:
                continue
            elif name not in audio:
                problem = f"{where}: the audio {AUDIO_FOLDER}/{name} is missing; unpack Audios again"
            elif excluded:
                self.excluded.append(RejectedFile(str(path), f"{where}: {excluded}"))
                excluded_codes[record["EmoClass"].upper()] += 1
                continue
            elif emotion is None:
                valid = ", ".join(MSP_EMOTIONS)
                problem = f"{where}: EmoClass {record['EmoClass']!r} is not an emotion code ({valid}; exclude: {', '.join(self.exclude)})"
            elif partition is None:
                problem = (
                    f"{where}: Split_Set {record['Split_Set']!r} is not one of {', '.join(MSP_PARTITIONS)}"
                )
            if problem:
                rejected.append(RejectedFile(str(path), problem))
                continue
            rows.append(
                {
                    "path": str(path.resolve()),
                    "emotion": emotion,
                    "actor": speaker_id(record["SpkrID"], name),
                    "gender": GENDERS.get(record["Gender"].lower(), "unknown"),
                    "intensity": "unspecified",
                    "statement": Path(name).stem,
                    "vocal_channel": "speech",
                    "corpus": self.name,
                    "partition": partition,
                    # the consensus ratings, 1-7 (ser_lightning.dimensions)
                    "arousal": record["EmoAct"],
                    "valence": record["EmoVal"],
                    "dominance": record["EmoDom"],
                }
            )
            kept.append({"path": str(path.resolve()), **{c: record[c] for c in MSP_COLUMNS}})
        for name in sorted(set(audio) - listed):
            rejected.append(
                RejectedFile(str(audio[name]), "not in labels_consensus.csv: no label for this file")
            )
        if excluded_codes:
            log.info(
                "MSP-Podcast: %d segments left out by data.corpus_options.exclude (%s)",
                len(self.excluded),
                ", ".join(f"{code}: {n}" for code, n in sorted(excluded_codes.items())),
            )
        if not rows:
            raise FileNotFoundError(
                f"no usable MSP-Podcast segment under {str(root)!r} ({len(rejected)} rejected, "
                f"{len(self.excluded)} excluded). {LAYOUT}. {hint}"
            )
        self.consensus = pd.DataFrame(kept, columns=["path", *MSP_COLUMNS])
        self.consensus = self.consensus.sort_values("path", kind="stable").reset_index(drop=True)
        table = make_table(rows)
        if (root / VOTES_CSV).is_file():  # each annotator's label (data/votes.py; data.targets=soft)
            add_vote_columns(
                table, read_msp_podcast_votes(root / VOTES_CSV), table["path"].map(lambda p: Path(p).name)
            )
        return CorpusScan(table, rejected, len(self.excluded))

    @staticmethod
    def _audio_files(audio_dir: Path, rejected: list[RejectedFile]) -> dict[str, Path]:
        # The usable .wav files of Audios/ by name; unusable files and second copies are rejected.
        audio, screen = {}, FileScreen()
        for path in find_audio_files(audio_dir, (".wav",)):
            problem = screen.check(path, (path.name,))
            if problem:
                rejected.append(problem)
            else:
                audio[path.name] = path
        return audio
