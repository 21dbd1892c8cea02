"""Long-format export: one row per reader x case x arm x question (the current answer).

`responses_frame(session, study)` is the DataFrame `cfviewer.analysis` consumes; its columns are
`EXPORT_COLUMNS` (keep them stable). `export_study` writes it as CSV and Parquet next to the
study configuration (JSON) and a SHA-256 manifest.

Answers from simulated readers are left out unless `include_simulated=True`. An export that
includes them keeps the `simulated` column True on their rows and says so in study.json
(`export.simulated_included`, `simulated_answers`, `simulated_readers`) and manifest.json;
one that leaves them out records how many it left out (`simulated_excluded`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import String, func, select, type_coerce
from sqlalchemy.orm import Session

from cfviewer import __version__
from cfviewer.analysis.inputs import EXPORT_COLUMNS as _EXPORT_COLUMNS
from cfviewer.csvsafe import write_csv
from cfviewer.files import sha256_file
from cfviewer.study.schema import (
    Arm,
    Assignment,
    Case,
    CohortItem,
    Question,
    Reader,
    Response,
    Study,
)
from cfviewer.study.studies import study_summary

EXPORT_COLUMNS = _EXPORT_COLUMNS  # the one definition lives with its consumer, cfviewer.analysis.inputs
"""reader: reader name; case: case id from the labels CSV; arm: display name ("Method A");
methods: the arm's explainers joined with "+"; pathology: the judged prediction; stratum: TP/FP;
question: question key; rating: 1..5; shown_at / submitted_at: UTC; duration_s: active reading
seconds from first shown to first submission (idle gaps between page runs capped at
responses.IDLE_CAP_S); raw_duration_s: wall-clock seconds of the same span; order: position in the reader's schedule; session: reading session;
seed: the reader's schedule seed; simulated: True for simulated readers' answers."""


@dataclass(frozen=True)
class AnswerCounts:
    """Current answers of a study, real and simulated (see `answer_counts`)."""

    real: int
    simulated: int
    simulated_readers: tuple[str, ...]


def answer_counts(session: Session, study: Study) -> AnswerCounts:
    """How many current answers come from real and from simulated readers."""
    rows = session.execute(
        select(Response.simulated, Reader.name, func.count(Response.id))
        .join(Reader, Reader.id == Response.reader_id)
        .where(Reader.study_id == study.id)
        .group_by(Response.simulated, Reader.name)).all()
    real = sum(n for sim, _, n in rows if not sim)
    sim_rows = [(name, n) for sim, name, n in rows if sim]
    return AnswerCounts(real, sum(n for _, n in sim_rows), tuple(sorted(name for name, _ in sim_rows)))


def responses_frame(session: Session, study: Study, *, include_simulated: bool = False) -> pd.DataFrame:
    """Every current answer of the study as a long-format DataFrame (columns EXPORT_COLUMNS).
    Simulated readers' answers only with include_simulated=True (column `simulated` True)."""
    conn = session.connection()
    shown, submitted = Response.shown_at, Response.submitted_at
    if conn.dialect.name == "sqlite":  # parse the stored ISO text in one vectorised step below
        shown, submitted = type_coerce(shown, String), type_coerce(submitted, String)
    q = (
        select(
            Reader.name, Case.case_key, Arm.name, Arm.id, CohortItem.pathology,
            CohortItem.stratum, Question.key, Response.value, Response.comment, shown,
            submitted, Response.duration_s, Response.raw_duration_s, Assignment.position, Assignment.session,
            Assignment.seed, Response.app_version, Response.simulated, Question.position,
        )
        .select_from(Response)
        .join(Assignment, Assignment.id == Response.assignment_id)
        .join(Reader, Reader.id == Response.reader_id)
        .join(Case, Case.id == Response.case_id)
        .join(Arm, Arm.id == Response.arm_id)
        .join(CohortItem, CohortItem.id == Assignment.cohort_id)
        .join(Question, Question.id == Response.question_id)
        .where(Reader.study_id == study.id)
        .order_by(Reader.id, Assignment.position, Question.position)
    )
    if not include_simulated:
        q = q.where(Response.simulated.is_(False))
    rows = conn.execute(q).all()  # Core rows: no ORM bookkeeping for 100,000s of answers
    df = pd.DataFrame.from_records(
        [r[:-1] for r in rows], columns=list(EXPORT_COLUMNS))
    methods = {a.id: "+".join(a.method_names) for a in study.arms}  # one JSON decode per arm, not per row
    df["methods"] = df["methods"].map(methods)
    for col in ("shown_at", "submitted_at"):
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    df = df.astype({
        "reader": "string", "case": "string", "arm": "string", "methods": "string",
        "pathology": "string", "stratum": "string", "question": "string", "rating": "int64",
        "comment": "string", "duration_s": "float64", "raw_duration_s": "float64", "order": "int64", "session": "int64",
        "seed": "int64", "app_version": "string", "simulated": "bool",
    })
    return df


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    files: dict[str, str]  # file name -> sha256
    n_rows: int
    simulated_answers: int = 0  # simulated readers' answers in the files
    simulated_readers: tuple[str, ...] = ()
    simulated_excluded: int = 0  # simulated readers' answers left out (include_simulated=False)
    simulated_excluded_readers: tuple[str, ...] = ()

    @property
    def simulated_included(self) -> bool:
        return self.simulated_answers > 0


def export_study(session: Session, study: Study, out_dir: str | Path, *, include_simulated: bool = False) -> ExportResult:
    """Write responses.csv, responses.parquet, study.json and MANIFEST.sha256 (+ manifest.json).
    Simulated readers' answers only with include_simulated=True; study.json and manifest.json
    say whether the files include any (`simulated_included`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = responses_frame(session, study, include_simulated=include_simulated)
    # CSV: text cells that a spreadsheet would run as a formula get a leading quote (cfviewer.csvsafe);
    # Parquet keeps the exact text.
    write_csv(df, out / "responses.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")  # times are UTC
    df.to_parquet(out / "responses.parquet", index=False)
    summary = study_summary(study)
    summary["cohort"] = [
        {"case": c.case.case_key, "pathology": c.pathology, "stratum": c.stratum,
         "probability": c.probability, "threshold": c.threshold, "bundle": c.bundle}
        for c in session.scalars(select(CohortItem).where(CohortItem.study_id == study.id)
                                 .order_by(CohortItem.position))]
    counts = answer_counts(session, study)
    sim = df["simulated"].to_numpy(dtype=bool)
    marks = {"simulated_included": bool(sim.any()), "simulated_answers": int(sim.sum()),
             "simulated_readers": sorted(set(df.loc[sim, "reader"].astype(str))),
             "simulated_excluded": 0 if include_simulated else counts.simulated}
    summary["export"] = {"cfviewer_version": __version__, "rows": len(df),
                         "include_simulated": include_simulated, **marks, "columns": list(EXPORT_COLUMNS)}
    (out / "study.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    files = {name: sha256_file(out / name) for name in ("responses.csv", "responses.parquet", "study.json")}
    (out / "MANIFEST.sha256").write_text("".join(f"{h}  {n}\n" for n, h in files.items()))
    (out / "manifest.json").write_text(json.dumps({"sha256": files, **marks}, indent=2) + "\n")
    return ExportResult(out, files, len(df), marks["simulated_answers"], tuple(marks["simulated_readers"]),
                        marks["simulated_excluded"], () if include_simulated else counts.simulated_readers)


# ------------------------------------------------------------- by study name (both front ends) ---

def study_answer_counts(db, name: str) -> AnswerCounts:
    """`answer_counts` of the study called `name` (one read transaction)."""
    from cfviewer.study.studies import get_study

    with db.read() as s:
        return answer_counts(s, get_study(s, name))


def study_responses(db, name: str, *, include_simulated: bool = False) -> pd.DataFrame:
    """`responses_frame` of the study called `name` (one read transaction)."""
    from cfviewer.study.studies import get_study

    with db.read() as s:
        return responses_frame(s, get_study(s, name), include_simulated=include_simulated)


def export_named_study(db, name: str, out_dir: str | Path, *, include_simulated: bool = False) -> ExportResult:
    """`export_study` of the study called `name` (one read transaction)."""
    from cfviewer.study.studies import get_study

    with db.read() as s:
        return export_study(s, get_study(s, name), out_dir, include_simulated=include_simulated)
