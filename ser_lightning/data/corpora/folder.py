"""Any folder of audio plus a CSV that labels it: `path,emotion[,speaker][,gender]`.

- `path`: relative to the CSV's folder, or absolute. Any format soundfile reads (wav, flac,
  ogg, mp3 ...); each file's header is read at scan time so that a broken file is reported
  here, by name and CSV line, instead of stopping the run halfway through decoding.
- `emotion`: a name from ser_lightning.labels.KNOWN_EMOTIONS or one of EMOTION_ALIASES, any case.
- `speaker` (optional): the speaker id that speaker-independent splits keep together. Without
  it every row is speaker "unknown", and only split=random or split=test_only apply. Spellings
  that differ only in case, leading zeros or a word prefix (`01`, `1`, `Spk1`, `spk_1`,
  `Actor 01`) are one speaker, named by its first spelling; the merge is logged.
- `gender` (optional): male / female / unknown (m / f accepted); splits balance it.

Rows that cannot be used (missing file, unknown emotion, empty speaker, unreadable audio,
a file listed twice with different emotions) are rejected with the CSV line and the reason,
like every corpus's rejected files. So is a second copy of a recording under another path,
found by the SHA-256 of the file's bytes (only files of equal size are hashed): one
recording in two splits would let the test set see a training file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import soundfile as sf

from ser_lightning.data.cache.verification import file_digest
from ser_lightning.data.corpora.common import find_audio_files, unusable_reason
from ser_lightning.data.utterances import CorpusScan, RejectedFile, make_table
from ser_lightning.labels import KNOWN_EMOTIONS
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "emotion")
OPTIONAL_COLUMNS = ("speaker", "gender")
# Other spellings of the KNOWN_EMOTIONS names that CSVs commonly use, lower case.
EMOTION_ALIASES: dict[str, str] = {
    "anger": "angry",
    "happiness": "happy",
    "sadness": "sad",
    "fear": "fearful",
    "disgusted": "disgust",
    "surprise": "surprised",
    "bored": "boredom",
    "excitement": "excited",
    "frustration": "frustrated",
}
GENDERS: dict[str, str] = {
    "male": "male",
    "m": "male",
    "female": "female",
    "f": "female",
    "unknown": "unknown",
    "": "unknown",
}
UNKNOWN_SPEAKER = "unknown"
# Words that label a speaker id rather than being part of it ("Spk1", "speaker_01", "Actor 1").
# Single letters are kept: in "m01" / "f01" they often tell two speakers apart.
SPEAKER_PREFIX = re.compile(r"^(?:speaker|spkr|spk|actor|talker|subject|participant)[\s_.\-]*(?=\S)")
# Extensions counted when reporting audio under the folder that the CSV does not list.
LISTED_AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

FOLDER_HELP = (
    "data=folder reads a CSV with a header `path,emotion[,speaker][,gender]` (paths relative to the CSV "
    "or absolute); set data.root=FOLDER and, when the CSV is not FOLDER/labels.csv, "
    "data.corpus_options.csv=PATH (relative to data.root or absolute)."
)


def emotion_name(value: str) -> str | None:
    """Read an emotion from a CSV value, case-insensitively, aliases included.

    Args:
        value: the CSV's emotion cell.

    Returns:
        The KNOWN_EMOTIONS name the value means, or None when it names none.
    """
    key = value.strip().lower()
    if key in KNOWN_EMOTIONS:
        return key
    return EMOTION_ALIASES.get(key)


def read_label_csv(csv_path: Path) -> pd.DataFrame:
    """Read the label CSV as strings with lower-case column names.

    Columns other than the known ones are logged as unused.

    Args:
        csv_path: the label CSV.

    Returns:
        The CSV's rows, every cell a string.

    Raises:
        InvalidSetting: when the CSV cannot be parsed or lacks the `path` or `emotion` column.
    """
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InvalidSetting(f"cannot read the label CSV {str(csv_path)!r}: {err}. {FOLDER_HELP}") from err
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidSetting(
            f"the label CSV {str(csv_path)!r} has columns {list(frame.columns)} but lacks {missing}. {FOLDER_HELP}"
        )
    ignored = [c for c in frame.columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if ignored:
        log.warning(
            "label CSV %s: columns %s are not used (known: %s)",
            csv_path,
            ignored,
            list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS),
        )
    return frame


def _audio_problem(path: Path) -> str | None:
    problem = unusable_reason(path)
    if problem:
        return problem
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises several types for unreadable input
        return f"cannot be read as audio ({err}); convert it to wav or flac"
    if info.frames == 0:
        return "holds no audio samples"
    return None


@dataclass
class FolderCorpus:
    """Scans the files a label CSV lists into the utterance table."""

    root: str
    vocal_channels: tuple[str, ...] = ("speech",)
    csv: str = "labels.csv"
    name: str = "folder"

    def __post_init__(self) -> None:
        self.vocal_channels = tuple(self.vocal_channels)
        if "speech" not in self.vocal_channels:
            raise InvalidSetting(
                f"data.vocal_channels={list(self.vocal_channels)} keeps nothing: data=folder labels every file "
                "as speech; use data.vocal_channels=[speech]"
            )

    @property
    def csv_path(self) -> Path:
        """The label CSV: `csv` itself when absolute, else relative to the root folder."""
        csv = Path(self.csv).expanduser()
        return csv if csv.is_absolute() else Path(self.root).expanduser() / csv

    def scan(self) -> CorpusScan:
        """Read the files the label CSV lists into the utterance table.

        Rows with an empty or missing path, an unknown emotion or gender, an empty speaker or
        unreadable audio, repeated rows and byte-identical copies are rejected with the reason;
        speaker spellings that differ only in case, leading zeros or a prefix word are merged.

        Returns:
            The table and the rejected rows.

        Raises:
            FileNotFoundError: when the folder or the CSV does not exist, or no row is usable.
        """
        root, csv_path = Path(self.root).expanduser(), self.csv_path
        if not root.is_dir():
            raise FileNotFoundError(f"folder {str(root)!r} does not exist. {FOLDER_HELP}")
        if not csv_path.is_file():
            found = sorted(p.name for p in root.glob("*.csv"))
            raise FileNotFoundError(
                f"label CSV {str(csv_path)!r} does not exist (CSV files in {str(root)!r}: {found or 'none'}). {FOLDER_HELP}"
            )
        frame = read_label_csv(csv_path)
        has_speaker, has_gender = "speaker" in frame.columns, "gender" in frame.columns
        base = csv_path.parent.resolve()
        rows, rejected = [], []
        for index, record in frame.iterrows():
            line = int(index) + 2  # 1-based, after the header
            where = f"{csv_path.name} line {line}"
            listed = record["path"].strip()
            if not listed:
                rejected.append(RejectedFile(f"{csv_path}:{line}", f"{where}: the path is empty"))
                continue
            path = Path(listed).expanduser()
            path = (path if path.is_absolute() else base / path).resolve()
            emotion = emotion_name(record["emotion"])
            speaker = record["speaker"].strip() if has_speaker else UNKNOWN_SPEAKER
            gender = GENDERS.get(record["gender"].strip().lower()) if has_gender else "unknown"
            problem = None
            if not path.is_file():
                problem = f"{where}: the file does not exist"
            elif emotion is None:
                problem = (
                    f"{where}: unknown emotion {record['emotion']!r}; use one of {', '.join(KNOWN_EMOTIONS)} "
                    f"(or {', '.join(EMOTION_ALIASES)})"
                )
            elif not speaker:
                problem = f"{where}: the speaker is empty; fill it in, or drop the speaker column"
            elif gender is None:
                problem = f"{where}: unknown gender {record['gender']!r}; use male, female or unknown"
            else:
                reason = _audio_problem(path)
                problem = f"{where}: {reason}" if reason else None
            if problem:
                rejected.append(RejectedFile(str(path), problem))
                continue
            rows.append(
                {
                    "path": str(path),
                    "emotion": emotion,
                    "actor": speaker,
                    "gender": gender,
                    "intensity": "unspecified",
                    "statement": "",
                    "vocal_channel": "speech",
                    "corpus": self.name,
                    "_line": line,
                }
            )
        rows, duplicates = _resolve_repeats(rows, csv_path.name)
        rejected.extend(duplicates)
        rows, copies = _resolve_copies(rows, csv_path.name)
        rejected.extend(copies)
        if has_speaker:
            _merge_speaker_spellings(rows, csv_path)
        if not rows:
            raise FileNotFoundError(
                f"no usable rows in the label CSV {str(csv_path)!r} ({len(rejected)} rejected"
                + (f", e.g. {rejected[0].reason}" if rejected else "")
                + f"). {FOLDER_HELP}"
            )
        for row in rows:
            del row["_line"]
        table = make_table(rows)
        _check_speaker_genders(table, csv_path)
        if not has_speaker:
            log.warning(
                "label CSV %s has no speaker column: every file counts as one speaker, so speaker-independent "
                "splits cannot be made; use data.split=random (speakers leak) or data.split=test_only",
                csv_path,
            )
        _report_unlisted(root, set(table["path"]), rejected)
        return CorpusScan(table, rejected)


def _resolve_repeats(rows: list[dict], csv_name: str) -> tuple[list[dict], list[RejectedFile]]:
    """Keep a file listed twice once when the emotions agree; drop all its rows when they disagree.

    Returns:
        The kept rows and the rejected ones.
    """
    by_path: dict[str, list[dict]] = {}
    for row in rows:
        by_path.setdefault(row["path"], []).append(row)
    kept, rejected = [], []
    for path, group in by_path.items():
        if len(group) == 1:
            kept.append(group[0])
            continue
        lines = ", ".join(f"line {r['_line']} ({r['emotion']})" for r in group)
        if len({r["emotion"] for r in group}) > 1:
            rejected.extend(
                RejectedFile(path, f"{csv_name}: listed with different emotions at {lines}; keep one row")
                for _ in group
            )
        else:
            kept.append(group[0])
            rejected.extend(
                RejectedFile(
                    path, f"{csv_name} line {r['_line']}: listed again (first at line {group[0]['_line']})"
                )
                for r in group[1:]
            )
    return kept, rejected


def _resolve_copies(rows: list[dict], csv_name: str) -> tuple[list[dict], list[RejectedFile]]:
    """One recording under several paths (byte-identical files) keeps its first row.

    Copies whose emotions disagree all go, as for a path listed twice. Only files that share
    a size can be identical, so only those are read and hashed.

    Returns:
        The kept rows and the rejected copies.
    """
    by_size: dict[int, list[dict]] = {}
    for row in rows:
        by_size.setdefault(Path(row["path"]).stat().st_size, []).append(row)
    by_digest: dict[str, list[dict]] = {}
    for same_size in by_size.values():
        if len(same_size) > 1:
            for row in same_size:
                by_digest.setdefault(file_digest(row["path"]), []).append(row)
    dropped: set[int] = set()
    rejected = []
    for group in by_digest.values():
        if len(group) == 1:
            continue
        group.sort(key=lambda r: r["_line"])
        first = group[0]
        dropped.update(id(r) for r in group[1:])
        if len({r["emotion"] for r in group}) > 1:
            dropped.add(id(first))
            lines = ", ".join(f"line {r['_line']} ({r['emotion']})" for r in group)
            rejected.extend(
                RejectedFile(
                    r["path"],
                    f"{csv_name}: the same recording (identical bytes, by SHA-256) under {len(group)} paths, "
                    f"labelled with different emotions at {lines}; keep one file and one row",
                )
                for r in group
            )
            continue
        rejected.extend(
            RejectedFile(
                r["path"],
                f"{csv_name} line {r['_line']}: the same recording as {first['path']} (line {first['_line']}): "
                "identical bytes (SHA-256 of the file); remove one copy or its row",
            )
            for r in group[1:]
        )
    return [r for r in rows if id(r) not in dropped], rejected


def speaker_key(speaker: str) -> str:
    """Reduce a speaker id to what it means, whatever its spelling.

    Args:
        speaker: the id as the CSV spells it.

    Returns:
        The id in lower case, without a prefix word (speaker, spk, actor, ...) and, when it is
        a number, without leading zeros.
    """
    key = SPEAKER_PREFIX.sub("", speaker.strip().lower())
    return (key.lstrip("0") or "0") if key.isdigit() else key


def _merge_speaker_spellings(rows: list[dict], csv_path: Path) -> None:
    """Name each speaker by its first spelling in the CSV; log the spellings merged into it."""
    names: dict[str, str] = {}
    merged: dict[str, list[str]] = {}
    for row in rows:
        spelling = row["actor"]
        name = names.setdefault(speaker_key(spelling), spelling)
        if spelling != name:
            merged.setdefault(name, [])
            if spelling not in merged[name]:
                merged[name].append(spelling)
        row["actor"] = name
    if merged:
        log.warning(
            "label CSV %s: speaker ids that differ only in case, leading zeros or a prefix word count as one "
            "speaker (named by its first spelling): %s",
            csv_path,
            "; ".join(
                f"{name!r} <- {', '.join(repr(s) for s in spellings)}" for name, spellings in merged.items()
            ),
        )


def _check_speaker_genders(table: pd.DataFrame, csv_path: Path) -> None:
    genders = table.groupby("actor")["gender"].unique()
    conflicting = {actor: sorted(values) for actor, values in genders.items() if len(values) > 1}
    if conflicting:
        raise InvalidSetting(
            f"the label CSV {str(csv_path)!r} gives speakers more than one gender: {conflicting}; "
            "give each speaker one gender"
        )


def _report_unlisted(root: Path, listed: set[str], rejected: list[RejectedFile]) -> None:
    seen = listed | {r.path for r in rejected}
    unlisted = [str(p.resolve()) for p in find_audio_files(root, LISTED_AUDIO_EXTENSIONS)]
    unlisted = [p for p in unlisted if p not in seen]
    if unlisted:
        log.warning(
            "%d audio files under %s are not in the label CSV and are not used, e.g. %s",
            len(unlisted),
            root,
            unlisted[:3],
        )
