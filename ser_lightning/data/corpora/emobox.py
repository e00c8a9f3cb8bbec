"""EmoBox's published folds of any corpus it covers, read from its own lists (`data=emobox`).

`data.emobox.meta_dir` is EmoBox's data folder, `data.emobox.dataset` the corpus's name there
(conf/data/emobox.yaml passes both to the parser as corpus_options); `emobox_meta` reads the
lists. `wav` paths are relative to the folder the audio was downloaded into (`data.root`),
possibly behind a `{data_root}`-style placeholder, which is stripped; a path that leaves
data.root is refused. A key may be listed in several folds (train in one, test in another): it
is one row, and must name the same wav and emotion everywhere.

The table's `statement` column holds the row's list membership in every fold
(`emobox:1=train,2=test`): EmoBox lists no sentences, and the split `emobox`
(`splits.emobox_lists`) reads its folds from there, so the jsonl files stay the one record.
Speakers come from the key where the corpus's naming scheme is known (SPEAKER_RULES: emodb,
iemocap, ravdess, cremad); otherwise each key is its own speaker, with gender "unknown".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ser_lightning.data.corpora.common import check_speech_only, missing_root_error, unusable_reason
from ser_lightning.data.corpora.crema_d import CREMA_D_MALE_ACTORS
from ser_lightning.data.corpora.emobox_meta import (
    LIST_PARTS,
    EmoBoxEntry,
    EmoBoxList,
    emobox_folds,
    list_path,
    membership_text,
    read_label_map,
    read_list,
)
from ser_lightning.data.corpora.emodb import EMODB_SPEAKERS
from ser_lightning.data.corpora.sources import SOURCES
from ser_lightning.data.utterances import CorpusScan, RejectedFile, make_table


def _emodb(match: re.Match) -> tuple[str, str]:
    return match[1], EMODB_SPEAKERS.get(match[1], "unknown")


# corpus name -> (pattern of the key after "<name>-", the speaker and gender it gives). Keys of
# corpora not listed, or that do not match, make each key its own speaker.
SPEAKER_RULES = {
    "emodb": (re.compile(r"^(\d{2})[a-z]\d{2}[A-Z][a-z]$"), _emodb),
    "iemocap": (
        re.compile(r"^(Ses\d{2})[FM]_.*_([FM])\d{3}$"),
        lambda m: (m[1] + m[2], "female" if m[2] == "F" else "male"),
    ),
    "ravdess": (
        re.compile(r"^(?:\d{2}-){6}(\d{2})$"),
        lambda m: (m[1], "male" if int(m[1]) % 2 else "female"),
    ),
    "cremad": (
        re.compile(r"^(\d{4})_[A-Z]{3}_[A-Z]{3}_[A-Z]{2}$"),
        lambda m: (m[1], "male" if int(m[1]) in CREMA_D_MALE_ACTORS else "female"),
    ),
}


def emobox_speaker(dataset: str, key: str) -> tuple[str, str]:
    """The speaker and gender of an EmoBox key, where the corpus's naming scheme gives them.

    Args:
        dataset: the EmoBox corpus name (e.g. "iemocap").
        key: the utterance's key (e.g. "iemocap-Ses01F_impro01_F000").

    Returns:
        (speaker, gender) by SPEAKER_RULES; else (key, "unknown"): each key is its own speaker.
    """
    name = key[len(dataset) + 1 :] if key.startswith(f"{dataset}-") else key
    rule = SPEAKER_RULES.get(dataset)
    match = rule[0].match(name) if rule else None
    return rule[1](match) if match else (key, "unknown")


@dataclass
class EmoBoxCorpus:
    """Scans the corpus EmoBox's lists describe (every fold, train and test) into the utterance table.

    Options (`data.corpus_options`, set by conf/data/emobox.yaml from `data.emobox.*`): `meta_dir`,
    EmoBox's data folder, and `dataset`, the corpus's name there.
    """

    root: str
    vocal_channels: tuple[str, ...] = ("speech",)
    name: str = "emobox"
    meta_dir: str = ""
    dataset: str = ""

    def __post_init__(self) -> None:
        self.vocal_channels = check_speech_only("EmoBox", self.vocal_channels)

    def read_folds(self) -> tuple[dict[tuple[int, str], EmoBoxList], list[RejectedFile]]:
        """Read every list of every fold on disk.

        Returns:
            Each (fold, part)'s list, and the problems of the folder (none when it is complete).

        Raises:
            FileNotFoundError: meta_dir holds no EmoBox corpus `dataset` with a test list.
        """
        folds = emobox_folds(self.meta_dir, self.dataset) if self.meta_dir and self.dataset else []
        if not folds:
            raise FileNotFoundError(
                f"no EmoBox lists for dataset {self.dataset!r} under meta_dir {self.meta_dir!r}: expected "
                f"{list_path(self.meta_dir or '<meta_dir>', self.dataset or '<name>', 1, 'test')} and "
                "label_map.json beside fold_1/. Set data.emobox.meta_dir to EmoBox's data folder and "
                f"data.emobox.dataset to a corpus name there. {SOURCES['emobox'].hint}"
            )
        labels = read_label_map(self.meta_dir, self.dataset)
        lists, problems = {}, []
        for fold in folds:
            for part in LIST_PARTS:
                path = list_path(self.meta_dir, self.dataset, fold, part)
                if path.is_file():
                    lists[fold, part] = read_list(path, labels)
                else:
                    problems.append(RejectedFile(str(path), f"fold {fold} has no {part} list"))
        return lists, problems

    def scan(self) -> CorpusScan:
        """Read the lists and check every wav they name.

        Returns:
            One row per key (its fold membership in `statement`), and the rejected lines with why.

        Raises:
            FileNotFoundError: data.root or the lists are missing, or no line is usable.
        """  # noqa: DOC501 - raised as `missing_root_error(...)`, which builds a FileNotFoundError
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise missing_root_error("EmoBox audio", root, SOURCES["emobox"].hint)
        lists, rejected = self.read_folds()
        rows: dict[str, dict] = {}
        seen: dict[str, EmoBoxEntry] = {}  # key -> its first line
        by_wav: dict[str, str] = {}  # wav -> its key
        member: dict[str, dict[int, str]] = {}
        for (fold, part), listed in sorted(lists.items()):
            rejected += listed.rejected
            for entry in listed.entries:
                problem = self._problem(
                    root, entry, seen.get(entry.key), by_wav, member.get(entry.key, {}), fold
                )
                if problem:
                    rejected.append(RejectedFile(entry.where, problem))
                    continue
                seen.setdefault(entry.key, entry)
                by_wav[entry.wav] = entry.key
                member.setdefault(entry.key, {})[fold] = part
                if entry.key not in rows:
                    speaker, gender = emobox_speaker(self.dataset, entry.key)
                    rows[entry.key] = {
                        "path": str((root / entry.wav).resolve()),
                        "emotion": entry.emotion,
                        "actor": speaker,
                        "gender": gender,
                        "intensity": "unspecified",
                        "corpus": self.dataset,
                        "vocal_channel": "speech",
                    }
        if not rows:
            raise FileNotFoundError(
                f"no usable line in EmoBox's lists of {self.dataset!r} ({len(rejected)} rejected, e.g. "
                f"{rejected[0].reason if rejected else '-'}); is data.root={str(root)!r} the folder their wav "
                "paths are relative to?"
            )
        for key, row in rows.items():
            row["statement"] = membership_text(member[key])
        return CorpusScan(make_table(list(rows.values())), rejected)

    @staticmethod
    def _problem(root, entry, first, by_wav, folds, fold) -> str | None:
        if first is not None and (first.wav, first.emotion) != (entry.wav, entry.emotion):
            return f"key {entry.key!r} names another wav or emo than at {first.where}"
        if fold in folds:
            return f"key {entry.key!r} is in both the train and the test list of fold {fold}"
        if first is None:
            path = root / entry.wav
            if not path.is_file():
                return f"wav {entry.wav!r} is missing under data.root {str(root)!r}"
            if by_wav.get(entry.wav, entry.key) != entry.key:
                return f"wav {entry.wav!r} is listed under another key, {by_wav[entry.wav]!r}"
            return unusable_reason(path)
        return None
