"""Leave one IEMOCAP session out (`data.split=sessions`): fold K tests session K+1's two speakers.

IEMOCAP was recorded in five sessions, each with its own man and woman, so a session is the
natural fold: SUPERB, EmoBox and SpeechBrain all report IEMOCAP as the mean over the five
leave-one-session-out folds. Speakers are the IEMOCAP parser's actor ids (`Ses01F`, `Ses01M`,
... or `iemocap:Ses01F` in a combined table); validation speakers are drawn from the other
sessions by the rule every speaker-independent split uses (`draw_val_actors`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ser_lightning.data.splits.speakers import HeldOutActorsSplit, draw_val_actors, val_share
from ser_lightning.utils.errors import InvalidSetting

IEMOCAP_SESSIONS = 5
# an IEMOCAP speaker id, optionally with a corpus prefix: Ses01F, iemocap:Ses05M
SESSION_SPEAKER = re.compile(r"(?:^|:)Ses(\d{2})[MF]$")


def speaker_session(actor: str) -> int | None:
    """The IEMOCAP session of a speaker id.

    Args:
        actor: the table's actor, e.g. `Ses03M`.

    Returns:
        The session (1..5), or None when the id is not an IEMOCAP speaker.
    """
    match = SESSION_SPEAKER.search(str(actor))
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class LeaveOneSessionOutSplit(HeldOutActorsSplit):
    """Leave-one-session-out on IEMOCAP: fold K (0..4) tests exactly session K+1's speakers.

    Validation speakers are drawn from the other sessions with the seed and the fold,
    round(n * val / (train + val)) per (corpus, gender): on the full corpus one man and one woman
    of the other four sessions' eight speakers, leaving six to train on. Speakers that are not
    IEMOCAP's (another corpus of a combined table) only ever train or validate.
    """

    fold: int = 0
    name: ClassVar[str] = "sessions"
    val_rule: ClassVar[str] = "speakers drawn per (corpus, gender) from the other sessions"

    @classmethod
    def from_settings(
        cls, ratios, seed, fold=0, num_folds=6, test_corpus=None, folds=None
    ) -> LeaveOneSessionOutSplit:
        """The splitter from the data config: the ratios, the seed and the fold (see Splitter).

        Returns:
            The splitter.
        """
        return cls(ratios=tuple(ratios), seed=seed, fold=fold)

    @property
    def test_session(self) -> int:
        """The session this fold tests (data.fold + 1)."""
        return self.fold + 1

    def test_and_val(self, table: pd.DataFrame) -> tuple[list[str], list[str]]:
        """The test session's speakers and the validation speakers drawn from the other sessions.

        Args:
            table: the utterance table.

        Returns:
            The test actors and the validation actors.

        Raises:
            InvalidSetting: data.fold is not in 0..4, the table has no IEMOCAP speakers, or none
                of the test session.
        """
        if not 0 <= self.fold < IEMOCAP_SESSIONS:
            raise InvalidSetting(
                f"data.fold={self.fold} must be in 0..{IEMOCAP_SESSIONS - 1}: split=sessions tests IEMOCAP "
                f"session data.fold+1 of its {IEMOCAP_SESSIONS}"
            )
        actors = sorted(table["actor"].astype(str).unique())
        sessions = {actor: speaker_session(actor) for actor in actors}
        present = sorted({s for s in sessions.values() if s is not None})
        if not present:
            raise InvalidSetting(
                "data.split=sessions needs IEMOCAP speakers (Ses01F, Ses01M, ...); this table's are "
                f"{actors[:5]}{' ...' if len(actors) > 5 else ''}: use data=iemocap, or another split"
            )
        test = [actor for actor in actors if sessions[actor] == self.test_session]
        if not test:
            raise InvalidSetting(
                f"data.fold={self.fold} tests IEMOCAP session {self.test_session}, which the table lacks "
                f"(sessions present: {present}); choose data.fold from {[s - 1 for s in present]}"
            )
        rest = [actor for actor in actors if actor not in test]
        rng = np.random.default_rng([self.seed, self.fold])
        what = f"leave-one-session-out fold {self.fold} (session {self.test_session})"
        return test, draw_val_actors(table, rest, val_share(self.ratios), rng, what)

    def fold_record(self, table: pd.DataFrame) -> dict:
        """The fold, the number of folds (IEMOCAP's sessions) and the test session.

        Args:
            table: the utterance table the split is made of.

        Returns:
            `fold`, `num_folds` and `test_session`.
        """
        return {"fold": self.fold, "num_folds": IEMOCAP_SESSIONS, "test_session": self.test_session}
