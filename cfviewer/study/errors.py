"""Errors of the study engine that a researcher or reader can cause (all CfviewerError)."""

from __future__ import annotations

import datetime as dt

from cfviewer.errors import CfviewerError


class StudyError(CfviewerError):
    """A study operation was refused; the message says why and what to do."""


class StudyNotFoundError(StudyError):
    def __init__(self, name: str, known: list[str]):
        self.name = name
        known_txt = ", ".join(known) if known else "none yet"
        super().__init__(
            f"no study named {name!r} in this database (studies: {known_txt}); "
            f"create it with `cfviewer study create {name}`"
        )


class ResponseError(StudyError):
    """An answer was refused (missing question, value outside 1..5, not this reader's read)."""


class SessionNotOpenError(StudyError):
    """The washout gap before the reader's next session has not passed yet."""

    def __init__(self, session: int, opens_at: dt.datetime):
        self.session = session
        self.opens_at = opens_at
        super().__init__(
            f"session {session} opens at {opens_at:%Y-%m-%d %H:%M} UTC "
            "(washout between sessions); please come back then"
        )


class ArmError(StudyError):
    """An arm was refused: no display name, a name used twice, no explainer, one listed twice."""


class UnknownArmExplainerError(ArmError):
    """An arm names an explainer the registry does not know."""

    def __init__(self, arm: str, name: str, known: list[str]):
        self.arm, self.name, self.known = arm, name, list(known)
        super().__init__(f"arm {arm!r}: unknown explainer {name!r}; choose from {', '.join(self.known)} "
                         "(`cfviewer explain --list` describes them)")


class StudyPathologyError(StudyError):
    """The study's pathologies are empty, repeated, or not ones the model predicts."""


class QuestionError(StudyError):
    """A question was refused: no key or text, a key used twice, not five anchor labels."""


class ReaderNameError(StudyError):
    """A reader name was refused: none given, empty, listed twice, or already in the study."""
