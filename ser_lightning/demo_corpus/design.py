"""What the demo corpus holds: its spec, and RAVDESS's design of actors, files and names."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ser_lightning.labels import EMOTION_TO_RAVDESS_CODE, EMOTIONS
from ser_lightning.utils.errors import InvalidSetting

# RAVDESS has 24 actors (the default). File names hold two-digit actor codes, so up to 98
# (odd male, even female); actors past 24 are extra speakers for larger corpora.
MAX_ACTORS = 98

MODALITY_AUDIO_ONLY = "03"
VOCAL_CHANNEL_SPEECH = "01"
INTENSITY_CODES = ("01", "02")  # normal, strong
STATEMENT_CODES = ("01", "02")  # "Kids are talking by the door", "Dogs are sitting by the door"
REPETITION_CODES = ("01", "02")


@dataclass(frozen=True)
class DemoCorpusSpec:
    """Everything that determines the demo corpus; equal specs give byte-identical corpora."""

    num_actors: int = 24  # even, 4..MAX_ACTORS, so both genders appear in every split
    duration: float = 3.0  # mean seconds per clip (each clip varies by up to +-10 %)
    sample_rate: int = 16000
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.num_actors, int) or self.num_actors < 4 or self.num_actors % 2:
            raise InvalidSetting(
                f"num_actors={self.num_actors!r} must be an even integer >= 4 "
                "(odd actors are male, even female; both genders are needed)"
            )
        if self.num_actors > MAX_ACTORS:
            raise InvalidSetting(
                f"num_actors={self.num_actors} exceeds {MAX_ACTORS}, the most that two-digit "
                "actor codes allow (RAVDESS itself has 24)"
            )
        if not 0.5 <= float(self.duration) <= 30.0:
            raise InvalidSetting(f"duration={self.duration!r} must lie in [0.5, 30] seconds")
        if not isinstance(self.sample_rate, int) or self.sample_rate < 8000:
            raise InvalidSetting(f"sample_rate={self.sample_rate!r} must be an integer >= 8000 Hz")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidSetting(f"seed={self.seed!r} must be a non-negative integer")

    def to_dict(self) -> dict:
        """Plain JSON-able form, as stored in the manifest and compared by ensure_demo_corpus.

        Returns:
            num_actors, duration, sample_rate and seed as plain numbers.
        """
        return {
            "num_actors": int(self.num_actors),
            "duration": float(self.duration),
            "sample_rate": int(self.sample_rate),
            "seed": int(self.seed),
        }

    @property
    def num_files(self) -> int:
        """The number of files of the corpus (60 per actor)."""
        return self.num_actors * files_per_actor()


# The full RAVDESS-sized corpus; a shared instance is safe as the spec is frozen.
DEFAULT_SPEC = DemoCorpusSpec()


@dataclass(frozen=True)
class DemoUtterance:
    """One file of the design, identified by its RAVDESS fields."""

    actor: int  # 1-based; odd = male, even = female
    emotion: str
    intensity: str  # "01" normal, "02" strong
    statement: str  # "01" kids, "02" dogs
    repetition: str  # "01", "02"

    @property
    def emotion_code(self) -> str:
        """The RAVDESS code of the emotion ("01" neutral ... "08" surprised)."""
        return EMOTION_TO_RAVDESS_CODE[self.emotion]

    @property
    def filename(self) -> str:
        """The RAVDESS file name, `03-01-EE-II-SS-RR-AA.wav`."""
        return (
            f"{MODALITY_AUDIO_ONLY}-{VOCAL_CHANNEL_SPEECH}-{self.emotion_code}-{self.intensity}-"
            f"{self.statement}-{self.repetition}-{self.actor:02d}.wav"
        )

    @property
    def relative_path(self) -> Path:
        """The file's path in the corpus, `Actor_XX/<filename>`."""
        return Path(actor_folder(self.actor)) / self.filename

    @property
    def is_female(self) -> bool:
        """Whether the actor is female (even-numbered, as in RAVDESS)."""
        return self.actor % 2 == 0


def actor_folder(actor: int) -> str:
    """RAVDESS keeps each actor's files in `Actor_XX`.

    Args:
        actor: the actor's number (1-based).

    Returns:
        The folder's name, `Actor_XX`.
    """
    return f"Actor_{actor:02d}"


def files_per_actor() -> int:
    """60 in RAVDESS: neutral has only normal intensity (4 files), the others 8 each.

    Returns:
        The number of files each actor has.
    """
    return sum(1 for _ in _actor_utterances(1))


def _actor_utterances(actor: int) -> Iterator[DemoUtterance]:
    for emotion in EMOTIONS:
        intensities = INTENSITY_CODES[:1] if emotion == "neutral" else INTENSITY_CODES
        for intensity in intensities:
            for statement in STATEMENT_CODES:
                for repetition in REPETITION_CODES:
                    yield DemoUtterance(actor, emotion, intensity, statement, repetition)


def iter_demo_utterances(spec: DemoCorpusSpec = DemoCorpusSpec()) -> Iterator[DemoUtterance]:
    """Every file of the corpus, in a fixed order (actor, emotion, intensity, statement, repetition)."""
    for actor in range(1, spec.num_actors + 1):
        yield from _actor_utterances(actor)
