"""What the reader pages call: next read, progress, answers (with history), Back.

Reads take a `Session` (`with db.read() as s: ...`). Writes take the `Database`: they run in their
own write transaction (SQLite BEGIN IMMEDIATE; PostgreSQL row lock on the assignment) and retry
on lock contention, so a double click, two tabs or eight processes never lose or duplicate an
answer. All times are server times (UTC).

Session rules (the washout of `design.py`):
* a reader works through sessions in order; the *current session* is the first with an
  unanswered read; reads of later sessions are refused;
* session s > 1 opens `min_gap_hours` after the last first-answer of session s-1
  (`NextRead.status == "waiting"` with `opens_at` until then);
* answers of the current session, or of the session just finished (before the next one is
  started), can be edited; every create and edit is appended to `response_history`.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from cfviewer import __version__
from cfviewer.study.db import Database
from cfviewer.study.errors import ResponseError, SessionNotOpenError
from cfviewer.study.schema import (
    Artifact,
    Assignment,
    Question,
    Reader,
    Response,
    ResponseHistory,
    Study,
    utcnow,
)


# ----------------------------------------------------------------------------------- reads ---

@dataclass(frozen=True)
class SessionProgress:
    session: int
    done: int
    total: int
    opens_at: dt.datetime | None  # None = open (no gap, or the first session)
    finished_at: dt.datetime | None  # last first-answer of a complete session


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    current_session: int
    sessions: list[SessionProgress]

    @property
    def finished(self) -> bool:
        return self.done == self.total


@dataclass(frozen=True)
class NextRead:
    status: Literal["ready", "waiting", "done"]
    assignment: Assignment | None
    session: int
    opens_at: dt.datetime | None = None


@dataclass(frozen=True)
class _Slot:
    id: int
    session: int
    position: int


def _reader_state(session: Session, reader: Reader) -> tuple[list[_Slot], dict[int, dt.datetime]]:
    """The reader's reads (id, session, position) in order and, for answered ones, the time of
    the first answer. Plain tuples: this runs on every page view and every submission."""
    assignments = [_Slot(*row) for row in session.execute(
        select(Assignment.id, Assignment.session, Assignment.position)
        .where(Assignment.reader_id == reader.id).order_by(Assignment.position))]
    first = dict(session.execute(
        select(ResponseHistory.assignment_id, func.min(ResponseHistory.at))
        .where(ResponseHistory.reader_id == reader.id, ResponseHistory.action == "create")
        .group_by(ResponseHistory.assignment_id)).all())
    return assignments, first


def _gap(session: Session, reader: Reader) -> dt.timedelta:
    study = session.get(Study, reader.study_id)
    return dt.timedelta(hours=float(study.config.get("min_gap_hours", 0) or 0))


def _progress(assignments: list[_Slot], first: dict[int, dt.datetime], gap: dt.timedelta) -> Progress:
    by_session: dict[int, list[_Slot]] = {}
    for a in assignments:
        by_session.setdefault(a.session, []).append(a)
    sessions: list[SessionProgress] = []
    prev_finished: dt.datetime | None = None
    current = None
    for s_no in sorted(by_session):
        rows = by_session[s_no]
        done = sum(1 for a in rows if a.id in first)
        finished = max(first[a.id] for a in rows) if done == len(rows) else None
        opens = prev_finished + gap if (prev_finished is not None and gap > dt.timedelta(0)) else None
        sessions.append(SessionProgress(s_no, done, len(rows), opens, finished))
        if current is None and done < len(rows):
            current = s_no
        prev_finished = finished
    if current is None:
        current = sessions[-1].session if sessions else 0
    done_all = sum(s.done for s in sessions)
    return Progress(done_all, len(assignments), current, sessions)


def progress(session: Session, reader: Reader) -> Progress:
    """Done / total overall and per session, with when each later session opens."""
    assignments, first = _reader_state(session, reader)
    return _progress(assignments, first, _gap(session, reader))


def next_assignment(session: Session, reader: Reader, now: dt.datetime | None = None) -> NextRead:
    """The reader's resume point: the first unanswered read of the current session."""
    now = now or utcnow()
    assignments, first = _reader_state(session, reader)
    prog = _progress(assignments, first, _gap(session, reader))
    if prog.total == 0 or prog.finished:
        return NextRead("done", None, prog.current_session)
    sp = next(s for s in prog.sessions if s.session == prog.current_session)
    if sp.opens_at is not None and now < sp.opens_at and sp.done == 0:
        return NextRead("waiting", None, sp.session, sp.opens_at)
    slot = next(a for a in assignments if a.session == sp.session and a.id not in first)
    return NextRead("ready", session.get(Assignment, slot.id), sp.session, sp.opens_at)


def previous_assignment(session: Session, reader: Reader, assignment_id: int | None) -> Assignment | None:
    """The read before `assignment_id` in the same session (for Back); with None, the last
    answered read (still editable until the next session starts). None when there is nothing
    to go back to."""
    assignments, first = _reader_state(session, reader)
    if assignment_id is None:  # e.g. from the "session finished" screen: the last answer given
        answered = [a for a in assignments if a.id in first]
        return session.get(Assignment, answered[-1].id) if answered else None
    idx = next((i for i, a in enumerate(assignments) if a.id == assignment_id), None)
    if idx is None:
        raise ResponseError(f"read #{assignment_id} is not one of reader {reader.name!r}'s reads")
    if idx == 0 or assignments[idx - 1].session != assignments[idx].session:
        return None
    return session.get(Assignment, assignments[idx - 1].id)


def get_assignment(session: Session, reader: Reader, assignment_id: int) -> Assignment:
    a = session.get(Assignment, assignment_id)
    if a is None or a.reader_id != reader.id:
        raise ResponseError(f"read #{assignment_id} is not one of reader {reader.name!r}'s reads")
    return a


def current_answers(session: Session, reader: Reader, assignment_id: int) -> tuple[dict[str, int], str | None]:
    """The stored answers {question key: value} and comment of one read (empty if none)."""
    rows = session.execute(
        select(Question.key, Response.value, Response.comment)
        .join(Question, Question.id == Response.question_id)
        .where(Response.assignment_id == assignment_id, Response.reader_id == reader.id)).all()
    comment = next((c for _, _, c in rows if c), None)
    return {k: v for k, v, _ in rows}, comment


@dataclass(frozen=True)
class Panel:
    """One precomputed file to show. `index` orders the arm's explainers (labels stay neutral:
    readers must not learn method names)."""

    index: int
    kind: str
    path: Path


@dataclass(frozen=True)
class ReadView:
    """Everything a reader page draws for one read (no model runs)."""

    assignment_id: int
    position: int
    total: int
    session: int
    arm: str  # display name only, e.g. "Method A"
    pathology: str
    probability: float
    threshold: float
    image: Path | None  # the case as a display PNG (precomputed)
    panels: list[Panel]
    questions: list[dict[str, Any]]
    answers: dict[str, int] = field(default_factory=dict)
    comment: str | None = None
    missing_artifacts: bool = False
    # The part of the film the model saw (Bundle.model_input), as fractions (y0, y1, x0, x1)
    # of the display image; None when the model saw the whole film (or it is not recorded).
    field_of_view: tuple[float, float, float, float] | None = None


def field_of_view_of(input_json: Path | None) -> tuple[float, float, float, float] | None:
    """The field of view recorded by precompute with the display image (`input.json`), as
    fractions of the film; None for the whole film or when absent/unreadable."""
    import json

    if input_json is None:
        return None
    try:
        doc = json.loads(Path(input_json).read_text())
        info = doc.get("explanation") or {}
        h, w = (float(v) for v in info["shape"])
        y0, y1, x0, x1 = (float(v) for v in info["field_of_view"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (y0, y1, x0, x1) == (0.0, h, 0.0, w):
        return None
    return (y0 / h, y1 / h, x0 / w, x1 / w)


def read_view(session: Session, reader: Reader, assignment_id: int) -> ReadView:
    a = get_assignment(session, reader, assignment_id)
    study = session.get(Study, reader.study_id)
    from cfviewer.study.studies import study_folder

    root = study_folder(study)
    total = session.scalar(select(func.count(Assignment.id)).where(Assignment.reader_id == reader.id))
    arts = list(session.scalars(select(Artifact).where(
        Artifact.case_id == a.case_id, Artifact.arm_id == a.arm_id, Artifact.status == "done")))
    order = {m["name"]: i for i, m in enumerate(a.arm.methods)}
    image = next((root / x.path for x in arts if x.kind == "image_png"), None)
    fov = field_of_view_of(next((root / x.path for x in arts
                                 if x.kind == "explanation_json" and x.method == "input"), None))
    panels = sorted(
        (Panel(order.get(x.method, 99) + 1, x.kind, root / x.path) for x in arts
         if x.method in order and x.kind in ("overlay_png", "gif", "counterfactual_png")),
        key=lambda p: (p.index, p.kind))
    expected = {m["name"] for m in a.arm.methods}
    have = {x.method for x in arts if x.kind == "explanation_json"}
    answers, comment = current_answers(session, reader, a.id)
    questions = [{"key": q.key, "text": q.text, "anchors": q.anchors, "required": q.required}
                 for q in study.questions]
    return ReadView(a.id, a.position, total or 0, a.session, a.arm.name, a.cohort.pathology,
                    a.cohort.probability, a.cohort.threshold, image, panels, questions,
                    answers, comment, missing_artifacts=image is None or not expected <= have,
                    field_of_view=fov)


# ---------------------------------------------------------------------------------- writes ---

@dataclass(frozen=True)
class RecordResult:
    assignment_id: int
    created: int
    edited: int
    unchanged: int
    submitted_at: dt.datetime


def _with_retries(fn, attempts: int = 8):
    for i in range(attempts):
        try:
            return fn()
        except (IntegrityError, OperationalError) as exc:
            transient = isinstance(exc, IntegrityError) or any(
                w in str(exc.orig).lower() for w in ("locked", "busy", "deadlock", "serializ"))
            if not transient or i == attempts - 1:
                raise
            time.sleep(0.02 * (i + 1))
    raise AssertionError("unreachable")


def _validate_answers(questions: list[Question], answers: Mapping[str, Any]) -> dict[str, int]:
    by_key = {q.key: q for q in questions}
    problems = []
    unknown = [k for k in answers if k not in by_key]
    if unknown:
        problems.append(f"unknown question(s) {unknown} (questions: {list(by_key)})")
    clean: dict[str, int] = {}
    for q in questions:
        v = answers.get(q.key)
        if v is None:
            if q.required:
                problems.append(f"question {q.key!r} ({q.text}) needs an answer")
            continue
        if isinstance(v, bool):
            ok = False
        else:
            try:
                iv = int(v)
                ok = float(v) == iv and 1 <= iv <= 5
            except (TypeError, ValueError):
                ok = False
        if not ok:
            problems.append(f"question {q.key!r}: answer must be a whole number from 1 to 5, got {v!r}")
        else:
            clean[q.key] = iv
    if problems:
        raise ResponseError("answer not saved: " + "; ".join(problems))
    return clean


def record_response(
    db: Database,
    reader: Reader | int,
    assignment_id: int,
    answers: Mapping[str, Any],
    comment: str | None = None,
    shown_at: dt.datetime | None = None,
    *,
    app_version: str | None = None,
    simulated: bool | None = None,
    now: dt.datetime | None = None,
) -> RecordResult:
    """Save the answers {question key: 1..5} (every required question) of one read.

    Idempotent: the same answers again change nothing; different ones are an edit (history
    keeps old and new). `shown_at` is when the page showed the read (server time; default: the
    first `mark_shown`). Returns how many answers were created / edited / unchanged."""
    reader_id = reader if isinstance(reader, int) else reader.id
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > 10_000:
        raise ResponseError("comment is longer than 10,000 characters; please shorten it")

    def attempt() -> RecordResult:
        with db.write() as s:
            a = s.get(Assignment, assignment_id, with_for_update=True)
            rdr = s.get(Reader, reader_id)
            if a is None or rdr is None or a.reader_id != reader_id:
                raise ResponseError(f"read #{assignment_id} is not one of this reader's reads")
            questions = list(s.scalars(
                select(Question).where(Question.study_id == a.study_id).order_by(Question.position)))
            clean = _validate_answers(questions, answers)
            at = now or utcnow()
            sim = rdr.simulated if simulated is None else simulated
            version = app_version or __version__
            existing = {r.question_id: r for r in s.scalars(select(Response).where(
                Response.reader_id == reader_id, Response.case_id == a.case_id,
                Response.arm_id == a.arm_id))}
            shown = shown_at or a.shown_at
            # active reading time (idle gaps capped); the raw time from first shown is kept too
            if a.seen_at is not None:
                active = active_seconds(a, at)
            else:
                active = min(max(0.0, (_aware(at) - _aware(shown)).total_seconds()), IDLE_CAP_S) if shown else None
            by_q = {q.key: q for q in questions}
            if all(q.id in existing and existing[q.id].value == v and existing[q.id].comment == comment
                   for k, v in clean.items() for q in [by_q[k]]):
                # the same answers again (double click, second tab, retry): nothing to do, even
                # if the session has closed since
                return RecordResult(a.id, 0, 0, len(clean), existing[by_q[next(iter(clean))].id].submitted_at)
            _check_session_open(s, rdr, a, at)
            created = edited = unchanged = 0
            for q in questions:
                if q.key not in clean:
                    continue
                value = clean[q.key]
                r = existing.get(q.id)
                if r is None:
                    r = Response(
                        assignment_id=a.id, reader_id=reader_id, case_id=a.case_id, arm_id=a.arm_id,
                        question_id=q.id, value=value, comment=comment, shown_at=shown,
                        submitted_at=at, app_version=version, simulated=sim, revision=1,
                        duration_s=active,
                        raw_duration_s=(at - shown).total_seconds() if shown else None)
                    s.add(r)
                    s.flush()
                    s.add(ResponseHistory(
                        response_id=r.id, assignment_id=a.id, reader_id=reader_id, question_id=q.id,
                        action="create", old_value=None, new_value=value, old_comment=None,
                        new_comment=comment, at=at, app_version=version, simulated=sim))
                    created += 1
                elif r.value != value or r.comment != comment:
                    s.add(ResponseHistory(
                        response_id=r.id, assignment_id=a.id, reader_id=reader_id, question_id=q.id,
                        action="edit", old_value=r.value, new_value=value, old_comment=r.comment,
                        new_comment=comment, at=at, app_version=version, simulated=sim))
                    r.value, r.comment, r.submitted_at = value, comment, at
                    r.revision += 1
                    r.app_version = version
                    edited += 1
                else:
                    unchanged += 1
            return RecordResult(a.id, created, edited, unchanged, at)

    return _with_retries(attempt)


def _check_session_open(s: Session, reader: Reader, a: Assignment, now: dt.datetime) -> None:
    assignments, first = _reader_state(s, reader)
    prog = _progress(assignments, first, _gap(s, reader))
    if a.session == prog.current_session:
        sp = next(x for x in prog.sessions if x.session == a.session)
        if sp.opens_at is not None and now < sp.opens_at:
            raise SessionNotOpenError(a.session, sp.opens_at)
        return
    last_worked = max((x.session for x in assignments if x.id in first), default=0)
    if a.session == last_worked and a.id in first:
        return  # editing the session just finished, before the next one started
    if a.session > prog.current_session:
        raise ResponseError(
            f"read #{a.id} belongs to session {a.session}; finish session {prog.current_session} first")
    raise ResponseError(
        f"read #{a.id} belongs to session {a.session}, which is closed (washout); "
        "answers of earlier sessions can no longer change")


IDLE_CAP_S = 300.0
"""The most one gap between two signs of the reader on a read (page runs: opening it, any
control, Save) adds to its active reading time: a case left open for hours counts at most
this long for each idle stretch, and counting goes on normally when the reader returns."""


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def active_seconds(a: Assignment, now: dt.datetime, cap: float = IDLE_CAP_S) -> float | None:
    """The read's active reading time at `now`: `active_s` so far plus the gap since the last
    sign of the reader (`seen_at`), capped at `cap`; from `shown_at` (capped) when the read
    was never touched (None when it was never shown either)."""
    last = a.seen_at or a.shown_at
    if last is None:
        return None
    gap = max(0.0, (_aware(now) - _aware(last)).total_seconds())
    return float(a.active_s or 0.0) + min(gap, cap)


def mark_active(db: Database, reader: Reader | int, assignment_id: int, now: dt.datetime | None = None,
                cap: float = IDLE_CAP_S) -> float:
    """A sign of the reader on an unanswered read (the case page ran for it): add the gap
    since the last one (capped, `IDLE_CAP_S`) to its active time; the first sign only starts
    the count. Returns the active seconds so far."""
    reader_id = reader if isinstance(reader, int) else reader.id

    def attempt() -> float:
        with db.write() as s:
            a = s.get(Assignment, assignment_id, with_for_update=True)
            if a is None or a.reader_id != reader_id:
                raise ResponseError(f"read #{assignment_id} is not one of this reader's reads")
            at = now or utcnow()
            if a.seen_at is None and a.active_s is None:
                a.active_s = 0.0 if a.shown_at is None else active_seconds(a, at, cap)
            else:
                a.active_s = active_seconds(a, at, cap)
            a.seen_at = at
            return float(a.active_s)

    return _with_retries(attempt)


def mark_shown(db: Database, reader: Reader | int, assignment_id: int, now: dt.datetime | None = None) -> dt.datetime:
    """Record (once) when a read was first shown; returns that server time."""
    reader_id = reader if isinstance(reader, int) else reader.id

    def attempt() -> dt.datetime:
        with db.write() as s:
            a = s.get(Assignment, assignment_id, with_for_update=True)
            if a is None or a.reader_id != reader_id:
                raise ResponseError(f"read #{assignment_id} is not one of this reader's reads")
            if a.shown_at is None:
                a.shown_at = now or utcnow()
            return a.shown_at

    return _with_retries(attempt)
