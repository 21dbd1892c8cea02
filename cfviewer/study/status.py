"""What a study holds and how far its readers are: the counts `cfviewer study status` /
`cfviewer study readers` print and the researcher pages show (Study setup, Reader progress,
the analysis cache key). One definition each, so both front ends count alike.

Each function takes the open `Database` and the study's name and runs one read transaction.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from cfviewer.study.responses import Progress, progress
from cfviewer.study.schema import (
    Artifact,
    Assignment,
    Case,
    CohortItem,
    Reader,
    Response,
    ResponseHistory,
    Study,
)
from cfviewer.study.studies import get_study, study_folder


def study_names(db) -> list[str]:
    """The database's studies, oldest first."""
    with db.read() as s:
        return list(s.scalars(select(Study.name).order_by(Study.id)))


@dataclass(frozen=True)
class StudyOverview:
    name: str
    root: str  # the study folder now (studies.study_folder)
    seed: int
    config: dict[str, Any]
    arms: list[dict[str, Any]]  # {"name", "methods" (explainer names), "description"}
    questions: list[dict[str, Any]]  # {"key", "text", "anchors", "required"}
    n_cases: int  # imported
    n_cohort: int  # drawn into the cohort
    n_readers: int
    n_assignments: int  # scheduled reads
    n_answers: int  # current answers (one per read and question)
    artifacts_done: int  # precomputed files
    strata: dict[str, dict[str, int]]  # cohort size {pathology: {"TP": n, "FP": n}}


def study_overview(db, name: str) -> StudyOverview:
    """The study's configuration and how many cases, cohort items, readers, reads, answers and
    precomputed files it holds."""
    with db.read() as s:
        st = get_study(s, name)

        def count(q) -> int:
            return int(s.scalar(q) or 0)

        strata: dict[str, dict[str, int]] = {}
        for p, k, n in s.execute(select(CohortItem.pathology, CohortItem.stratum, func.count(CohortItem.id))
                                 .where(CohortItem.study_id == st.id)
                                 .group_by(CohortItem.pathology, CohortItem.stratum)):
            strata.setdefault(p, {})[k] = int(n)
        return StudyOverview(
            st.name, str(study_folder(st)), st.seed, dict(st.config),
            [{"name": a.name, "methods": a.method_names, "description": a.description} for a in st.arms],
            [{"key": q.key, "text": q.text, "anchors": list(q.anchors), "required": q.required}
             for q in st.questions],
            count(select(func.count(Case.id)).where(Case.study_id == st.id)),
            count(select(func.count(CohortItem.id)).where(CohortItem.study_id == st.id)),
            count(select(func.count(Reader.id)).where(Reader.study_id == st.id)),
            count(select(func.count(Assignment.id)).where(Assignment.study_id == st.id)),
            count(select(func.count(Response.id)).join(Reader, Reader.id == Response.reader_id)
                  .where(Reader.study_id == st.id)),
            count(select(func.count(Artifact.id)).where(Artifact.study_id == st.id, Artifact.status == "done")),
            strata,
        )


@dataclass(frozen=True)
class ReaderStatus:
    name: str
    simulated: bool
    progress: Progress  # done / total overall and per session (responses.progress)
    last_answer: dt.datetime | None  # the latest create or edit
    median_seconds: float | None  # median seconds from showing a read to its first answer


def reader_statuses(db, name: str) -> list[ReaderStatus]:
    """One entry per reader of the study, in the order they were added."""
    out = []
    with db.read() as s:
        st = get_study(s, name)
        for r in st.readers:
            last = s.scalar(select(func.max(ResponseHistory.at)).where(ResponseHistory.reader_id == r.id))
            durations = [float(d) for d in s.scalars(
                select(func.min(Response.duration_s))
                .where(Response.reader_id == r.id, Response.duration_s.is_not(None))
                .group_by(Response.assignment_id))]
            out.append(ReaderStatus(r.name, bool(r.simulated), progress(s, r), last,
                                    statistics.median(durations) if durations else None))
    return out


def data_version(db, name: str) -> tuple[int, int, str]:
    """Changes whenever an answer is created or edited (a cache key for the analysis)."""
    with db.read() as s:
        st = get_study(s, name)
        n, last = s.execute(select(func.count(ResponseHistory.id), func.max(ResponseHistory.at))
                            .join(Reader, Reader.id == ResponseHistory.reader_id)
                            .where(Reader.study_id == st.id)).one()
    return st.id, int(n or 0), str(last)
