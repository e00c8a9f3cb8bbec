"""IEMOCAP: five sessions of dyadic dialogs, each utterance labelled in its dialog's EmoEvaluation file.

Layout (the `IEMOCAP_full_release` folder; data.root may also be a folder holding it; see
`iemocap_layout` for the naming scheme and `iemocap_evaluation` for the label files):

    Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav
    Session1/dialog/EmoEvaluation/Ses01F_impro01.txt

The speaker is the utterance's own: `Ses01F_impro01_M003` is spoken by the session-1 man, actor
`Ses01M`. Ten speakers, a man and a woman per session. The scenario (`impro01`, `script01_1`) is
the `statement`; IEMOCAP codes no intensity.

Label codes map onto KNOWN_EMOTIONS (IEMOCAP_EMOTIONS); `xxx` (no majority among the annotators)
and `oth` (other) are no emotion and are always excluded. `label_set` chooses the classes:
`4class` (neutral, happy with excited merged into it, angry, sad: the usual benchmark set),
`4class_noexc` (excited left out) or `all`; `sessions_type` keeps improvised or scripted dialogs
or both. Utterances left out on purpose are counted in `excluded_by_filter` and logged with
their counts per reason; faults (unreadable lines, missing audio, audio without a label line,
an utterance listed twice, a file in a folder its name contradicts) are rejected files.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ser_lightning.data.corpora.common import (
    check_speech_only,
    find_audio_files,
    missing_root_error,
    unusable_reason,
)
from ser_lightning.data.corpora.iemocap_evaluation import (
    EmoEvaluation,
    LineProblem,
    Turn,
    read_emo_evaluation,
)
from ser_lightning.data.corpora.iemocap_layout import (
    LAYOUT,
    IemocapIdError,
    UtteranceId,
    find_sessions,
    parse_utterance_id,
)
from ser_lightning.data.corpora.sources import SOURCES
from ser_lightning.data.utterances import CorpusScan, RejectedFile, make_table
from ser_lightning.data.votes import iemocap_votes, vote_row
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

# IEMOCAP label codes onto ser_lightning.labels.KNOWN_EMOTIONS.
IEMOCAP_EMOTIONS: dict[str, str] = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "excited",
    "ang": "angry",
    "sad": "sad",
    "fru": "frustrated",
    "fea": "fearful",
    "sur": "surprised",
    "dis": "disgust",
}
# Codes that name no emotion: always excluded, with this reason.
NO_EMOTION_CODES: dict[str, str] = {
    "xxx": "the annotators did not agree (no majority label)",
    "oth": "the majority label is 'other' (no emotion of IEMOCAP's list)",
}
# data.corpus_options.label_set -> the codes kept and the emotion each becomes.
IEMOCAP_LABEL_SETS: dict[str, dict[str, str]] = {
    "4class": {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"},
    "4class_noexc": {"neu": "neutral", "hap": "happy", "ang": "angry", "sad": "sad"},
    "all": dict(IEMOCAP_EMOTIONS),
}
# data.corpus_options.sessions_type -> the dialog kinds kept.
SESSIONS_TYPES: dict[str, tuple[str, ...]] = {
    "both": ("improvised", "scripted"),
    "improvised": ("improvised",),
    "scripted": ("scripted",),
}


@dataclass
class IemocapCorpus:
    """Scans an IEMOCAP release into the utterance table; keeps every turn's annotations.

    After `scan()`, `turns` maps each labelled utterance id to its Turn (times, [V, A, D], each
    annotator's categorical labels and ratings), `evaluations` holds every EmoEvaluation file
    read, and `excluded` lists the utterances left out on purpose with the reason.
    """

    root: str
    vocal_channels: tuple[str, ...] = ("speech",)
    label_set: str = "4class"
    sessions_type: str = "both"
    name: str = "iemocap"

    def __post_init__(self) -> None:
        self.vocal_channels = check_speech_only("IEMOCAP", self.vocal_channels)
        if self.label_set not in IEMOCAP_LABEL_SETS:
            raise InvalidSetting(
                f"data.corpus_options.label_set={self.label_set!r} is not known; choose from {list(IEMOCAP_LABEL_SETS)}"
            )
        if self.sessions_type not in SESSIONS_TYPES:
            raise InvalidSetting(
                f"data.corpus_options.sessions_type={self.sessions_type!r} is not known; "
                f"choose from {list(SESSIONS_TYPES)}"
            )
        self.turns: dict[str, Turn] = {}
        self.evaluations: list[EmoEvaluation] = []
        self.excluded: list[RejectedFile] = []

    @property
    def help(self) -> str:
        """The layout and where to get the corpus, for error messages."""
        return f"{LAYOUT} {SOURCES['iemocap'].hint}"

    def scan(self) -> CorpusScan:
        """Read the EmoEvaluation files and the sentence audio into the utterance table.

        Returns:
            The table of kept utterances, the rejected files with their reasons, and the number
            excluded by the label set, `sessions_type`, `xxx` and `oth`.

        Raises:
            FileNotFoundError: when data.root does not exist (raised through `missing_root_error`),
                holds no session folder, or no usable utterance; the message gives the layout.
        """  # noqa: DOC501 - raised as `missing_root_error(...)`, which builds a FileNotFoundError
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise missing_root_error("IEMOCAP", root, self.help)
        sessions, rejected = find_sessions(root)
        if not sessions:
            raise FileNotFoundError(
                f"IEMOCAP folder {str(root)!r} holds no Session1..Session5 folders. {self.help}"
            )
        self.turns, self.evaluations, self.excluded = {}, [], []
        listings, unreadable = self._read_evaluations(sessions, rejected)
        audio = {
            path: number
            for number, folder in sessions.items()
            for path in find_audio_files(folder / "sentences" / "wav", (".wav",))
        }
        rows, handled = self._label_turns(sessions, listings, audio, rejected)
        for path, number in sorted(audio.items()):
            if path not in handled:
                self._unlabelled_audio(path, number, sessions[number], unreadable, rejected)
        rejected += [RejectedFile(p.where, f"{p.reason}: {p.text!r}") for p in unreadable.values()]
        self._log_exclusions()
        if not rows:
            raise FileNotFoundError(
                f"no usable IEMOCAP utterance under {str(root)!r} ({len(rejected)} rejected, "
                f"{len(self.excluded)} excluded). {self.help}"
            )
        return CorpusScan(make_table(rows), rejected, len(self.excluded))

    def _read_evaluations(
        self, sessions: dict[int, Path], rejected: list[RejectedFile]
    ) -> tuple[dict[str, list[Turn]], dict[str, LineProblem]]:
        listings: dict[str, list[Turn]] = {}
        unreadable: dict[str, LineProblem] = {}
        for folder in sessions.values():
            for path in sorted((folder / "dialog" / "EmoEvaluation").glob("*.txt")):
                if path.name.startswith("."):  # macOS metadata (._name), not a label file
                    continue
                evaluation = read_emo_evaluation(path)
                self.evaluations.append(evaluation)
                for problem in evaluation.problems:
                    if problem.utterance and problem.utterance not in unreadable:
                        unreadable[problem.utterance] = problem
                    else:
                        rejected.append(RejectedFile(problem.where, f"{problem.reason}: {problem.text!r}"))
                for turn in evaluation.turns:
                    listings.setdefault(turn.utterance, []).append(turn)
                if evaluation.annotator_problems:
                    first = evaluation.annotator_problems[0]
                    log.warning(
                        "IEMOCAP: %d annotator lines of %s could not be read (their turns keep their labels), "
                        "e.g. line %d: %s",
                        len(evaluation.annotator_problems),
                        path,
                        first.line,
                        first.reason,
                    )
        return listings, unreadable

    def _label_turns(
        self,
        sessions: dict[int, Path],
        listings: dict[str, list[Turn]],
        audio: dict[Path, int],
        rejected: list[RejectedFile],
    ) -> tuple[list[dict], set[Path]]:
        rows: list[dict] = []
        handled: set[Path] = set()
        for utterance, turns in sorted(listings.items()):
            first = turns[0]
            try:
                uid = parse_utterance_id(utterance)
            except IemocapIdError as err:
                rejected += [RejectedFile(turn.where, str(err)) for turn in turns]
                continue
            source = Path(first.source)
            if uid.session not in sessions or source.parent.parent.parent != sessions[uid.session]:
                rejected.append(
                    RejectedFile(first.where, f"{utterance} is listed outside Session{uid.session}")
                )
                continue
            if source.stem != uid.dialog:
                rejected.append(
                    RejectedFile(first.where, f"{utterance} is listed in {source.name}, not {uid.dialog}.txt")
                )
                continue
            wav = sessions[uid.session] / "sentences" / "wav" / uid.dialog / f"{utterance}.wav"
            handled.add(wav)
            if len({turn.label for turn in turns}) > 1:
                where = ", ".join(f"{turn.label} at {turn.where}" for turn in turns)
                rejected.append(
                    RejectedFile(str(wav), f"{utterance} is listed with different labels ({where})")
                )
                continue
            rejected += [
                RejectedFile(turn.where, f"a second listing of {utterance} (first at {first.where}); ignored")
                for turn in turns[1:]
            ]
            self.turns[utterance] = first
            emotion = self._emotion(uid, first, wav, rejected)
            if emotion is None:
                continue
            if wav not in audio:
                rejected.append(
                    RejectedFile(str(wav), f"listed at {first.where} but the audio file is missing")
                )
                continue
            problem = unusable_reason(wav)
            if problem:
                rejected.append(RejectedFile(str(wav), problem, stage="audio"))
                continue
            rows.append(
                {
                    "path": str(wav.resolve()),
                    "emotion": emotion,
                    "actor": uid.speaker,
                    "gender": uid.gender,
                    "intensity": "unspecified",
                    "statement": uid.scenario,
                    "vocal_channel": "speech",
                    "corpus": self.name,
                    # the evaluators' mean ratings, 1-5 (ser_lightning.dimensions)
                    "arousal": first.activation,
                    "valence": first.valence,
                    "dominance": first.dominance,
                    # the evaluators' categorical votes, named as the hard label is (data/votes.py)
                    **vote_row(iemocap_votes(first.categories, IEMOCAP_LABEL_SETS[self.label_set])),
                }
            )
        return rows, handled

    def _emotion(self, uid: UtteranceId, turn: Turn, wav: Path, rejected: list[RejectedFile]) -> str | None:
        """The utterance's emotion under this label set, recording why when there is none.

        Returns:
            The emotion, or None when the utterance is excluded (kept in `excluded`) or rejected.
        """
        code = turn.label
        if uid.kind not in SESSIONS_TYPES[self.sessions_type]:
            self.excluded.append(
                RejectedFile(str(wav), f"{uid.kind} dialog (sessions_type={self.sessions_type})")
            )
        elif code in NO_EMOTION_CODES:
            self.excluded.append(RejectedFile(str(wav), f"label {code}: {NO_EMOTION_CODES[code]}"))
        elif code not in IEMOCAP_EMOTIONS:
            valid = ", ".join([*IEMOCAP_EMOTIONS, *NO_EMOTION_CODES])
            rejected.append(
                RejectedFile(str(wav), f"unknown label code {code!r} at {turn.where} (valid: {valid})")
            )
        elif code not in IEMOCAP_LABEL_SETS[self.label_set]:
            self.excluded.append(
                RejectedFile(
                    str(wav), f"label {code} ({IEMOCAP_EMOTIONS[code]}) is not in label_set={self.label_set}"
                )
            )
        else:
            return IEMOCAP_LABEL_SETS[self.label_set][code]
        return None

    def _unlabelled_audio(
        self,
        path: Path,
        number: int,
        folder: Path,
        unreadable: dict[str, LineProblem],
        rejected: list[RejectedFile],
    ) -> None:
        """Report (or exclude) a sentence file that no readable turn line labels."""
        if path.name.startswith("._"):
            rejected.append(
                RejectedFile(str(path), "a macOS metadata file (._ prefix), not audio; delete it")
            )
            return
        try:
            uid = parse_utterance_id(path.stem)
        except IemocapIdError as err:
            rejected.append(RejectedFile(str(path), str(err)))
            return
        expected = folder / "sentences" / "wav" / uid.dialog / path.name
        if uid.session != number or path != expected:
            rejected.append(
                RejectedFile(
                    str(path), f"its place contradicts its name: {uid.utterance} belongs in {expected}"
                )
            )
        elif uid.kind not in SESSIONS_TYPES[self.sessions_type]:
            self.excluded.append(
                RejectedFile(str(path), f"{uid.kind} dialog (sessions_type={self.sessions_type})")
            )
        elif uid.utterance in unreadable:
            problem = unreadable.pop(uid.utterance)
            rejected.append(
                RejectedFile(
                    str(path),
                    f"its label line {problem.where} cannot be read: {problem.reason}: {problem.text!r}",
                )
            )
        else:
            labels = folder / "dialog" / "EmoEvaluation" / f"{uid.dialog}.txt"
            missing = "" if labels.is_file() else " (that file is missing)"
            rejected.append(
                RejectedFile(str(path), f"no label line for {uid.utterance} in {labels}{missing}")
            )

    def _log_exclusions(self) -> None:
        if not self.excluded:
            return
        counts = Counter(item.reason for item in self.excluded)
        log.info(
            "IEMOCAP: %d utterances excluded (label_set=%s, sessions_type=%s): %s",
            len(self.excluded),
            self.label_set,
            self.sessions_type,
            "; ".join(f"{count} {reason}" for reason, count in counts.most_common()),
        )
