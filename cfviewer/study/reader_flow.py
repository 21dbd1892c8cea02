"""The reader's way through a study, as the reader pages step it: which read to open (the
resume point, or an answered read reached with Back), its precomputed files, saving its
answers and the read after it, Back, the worklist, and the likely next read (to prefetch).

Built on `cfviewer.study.responses` (progress, resume point, read view, answers with history).
Functions taking the `Database` run their own transactions; those taking a `Session` run
inside the caller's. The database is the truth: nothing here remembers a reader's place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from cfviewer.study import responses as R
from cfviewer.study.errors import ResponseError
from cfviewer.study.schema import Artifact, Assignment, Reader, ResponseHistory, Study, utcnow


def answered_ids(session: Session, reader: Reader) -> set[int]:
    """The reader's reads that have (or had) an answer."""
    return set(session.scalars(select(ResponseHistory.assignment_id).where(
        ResponseHistory.reader_id == reader.id, ResponseHistory.action == "create").distinct()))


def arm_files(session: Session, assignment: Assignment) -> dict[int, dict[str, Path]]:
    """The precomputed files (done artifacts) of the read's arm: {position of the explainer in
    the arm (0-based): {artifact kind: absolute path}}, every explainer of the arm present."""
    from cfviewer.study.studies import study_folder

    root = study_folder(session.get(Study, assignment.study_id))
    order = {m["name"]: i for i, m in enumerate(assignment.arm.methods)}
    found: dict[int, dict[str, Path]] = {i: {} for i in order.values()}
    for art in session.scalars(select(Artifact).where(
            Artifact.case_id == assignment.case_id, Artifact.arm_id == assignment.arm_id,
            Artifact.status == "done")):
        if art.method in order and art.path:
            found[order[art.method]][art.kind] = root / art.path
    return found


def editable(prog: R.Progress, assignment: Assignment) -> bool:
    """Answers of the current session, or of the last session worked in (finished, before the
    next one is started), may change: the engine's washout rule."""
    last_worked = max((sp.session for sp in prog.sessions if sp.done > 0), default=0)
    return assignment.session in (prog.current_session, last_worked)


@dataclass
class OpenedRead:
    """What the case page shows: a read ("case"), the washout wait, the end, or nothing assigned."""

    kind: Literal["case", "waiting", "done", "empty"]
    progress: R.Progress
    view: R.ReadView | None = None
    files: dict[int, dict[str, Path]] = field(default_factory=dict)  # arm_files of the read
    answered: bool = False  # the read already has answers (the reader went Back)
    opens_at: dt.datetime | None = None
    session: int = 0
    sessions_total: int = 0
    shown_at: dt.datetime | None = None


def open_read(db, reader: Reader, requested: int | None = None, now: dt.datetime | None = None) -> OpenedRead:
    """The read to show: `requested` when it is one the reader may open (an answered read of
    the current or just-finished session, reached with Back), else the resume point. Records
    when an unanswered read is first shown (server time)."""
    now = now or utcnow()
    with db.read() as s:
        prog = R.progress(s, reader)
        n_sessions = len(prog.sessions)
        if prog.total == 0:
            return OpenedRead("empty", prog, sessions_total=n_sessions)
        nxt = R.next_assignment(s, reader, now=now)
        aid = None
        if requested is not None:
            try:
                a = R.get_assignment(s, reader, requested)
            except ResponseError:
                a = None
            if a is not None and a.id in answered_ids(s, reader) and editable(prog, a):
                aid = a.id
        if aid is None:
            if nxt.status == "done":
                return OpenedRead("done", prog, session=nxt.session, sessions_total=n_sessions)
            if nxt.status == "waiting":
                return OpenedRead("waiting", prog, opens_at=nxt.opens_at, session=nxt.session,
                                  sessions_total=n_sessions)
            aid = nxt.assignment.id
        a = R.get_assignment(s, reader, aid)
        view = R.read_view(s, reader, aid)
        files = arm_files(s, a)
        answered = bool(view.answers)
        shown = a.shown_at
    if shown is None and not answered:
        shown = R.mark_shown(db, reader.id, aid, now=now)
    if not answered:  # every page run is a sign of the reader: the active reading time
        R.mark_active(db, reader.id, aid, now=now)
    return OpenedRead("case", prog, view=view, files=files, answered=answered, session=view.session,
                      sessions_total=n_sessions, shown_at=shown)


def upcoming_read(session: Session, reader: Reader, assignment_id: int) -> Assignment | None:
    """The reader's first unanswered read after `assignment_id` (the likely next case)."""
    a = R.get_assignment(session, reader, assignment_id)
    answered = answered_ids(session, reader)
    for nxt in session.scalars(select(Assignment).where(
            Assignment.reader_id == reader.id, Assignment.position > a.position)
            .order_by(Assignment.position).limit(8)):
        if nxt.id not in answered:
            return nxt
    return None


def upcoming_view(db, reader: Reader, assignment_id: int) -> tuple[R.ReadView, dict[int, dict[str, Path]]] | None:
    """(read view, arm files) of `upcoming_read`, or None when no unanswered read follows."""
    with db.read() as s:
        nxt = upcoming_read(s, reader, assignment_id)
        if nxt is None:
            return None
        return R.read_view(s, reader, nxt.id), arm_files(s, nxt)


def following_answered(session: Session, reader: Reader, assignment_id: int) -> int | None:
    """The next read of the same session when it is answered already (stepping forward after
    Back), else None (the resume point comes next)."""
    a = R.get_assignment(session, reader, assignment_id)
    nxt = session.scalars(select(Assignment).where(
        Assignment.reader_id == reader.id, Assignment.position == a.position + 1)).first()
    if nxt is None or nxt.session != a.session:
        return None
    return nxt.id if nxt.id in answered_ids(session, reader) else None


@dataclass(frozen=True)
class SavedAnswers:
    result: R.RecordResult
    next_id: int | None  # the read to show next (None: the resume point)


def save_answers(db, reader: Reader, assignment_id: int, answers: Mapping[str, Any],
                 comment: str | None = None, now: dt.datetime | None = None) -> SavedAnswers:
    """`responses.record_response` (raises StudyError when refused), then the read to show next."""
    res = R.record_response(db, reader.id, assignment_id, answers, comment=comment, now=now)
    with db.read() as s:
        return SavedAnswers(res, following_answered(s, reader, assignment_id))


def previous_read(db, reader: Reader, assignment_id: int | None) -> int | None:
    """The read before `assignment_id` in its session (with None: the last answered read), or
    None when there is none (earlier sessions are closed)."""
    with db.read() as s:
        prev = R.previous_assignment(s, reader, assignment_id)
        return prev.id if prev is not None else None


def worklist(db, reader: Reader, now: dt.datetime | None = None) -> tuple[R.Progress, R.NextRead]:
    """The reader's progress and resume point (one read transaction)."""
    with db.read() as s:
        return R.progress(s, reader), R.next_assignment(s, reader, now=now)
