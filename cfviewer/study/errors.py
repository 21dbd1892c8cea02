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
