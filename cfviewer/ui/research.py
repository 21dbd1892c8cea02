"""What the researcher pages do, as plain functions over the study engine (tested without
Streamlit): create a study, import, sample, add readers (with links), precompute with an ETA,
progress per reader, analysis inputs and export files."""

from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
from sqlalchemy import func, select

from cfviewer.errors import CfviewerError
from cfviewer.study.errors import StudyError
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


# --------------------------------------------------------------------------- studies
def study_names(db) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(Study.name).order_by(Study.id)))


def pick_study(names: Sequence[str], preferred: str | None) -> str | None:
    """The study the pages work on: `preferred` (CFVIEWER_STUDY or the sidebar) when it
    exists, else the first."""
    if preferred and preferred in names:
        return preferred
    return names[0] if names else None


@dataclass(frozen=True)
class StudyOverview:
    name: str
    root: str
    seed: int
    config: dict[str, Any]
    arms: list[dict[str, Any]]
    questions: list[dict[str, Any]]
    n_cases: int
    n_cohort: int
    n_readers: int
    n_assignments: int
    n_answers: int
    artifacts_done: int


def overview(db, name: str) -> StudyOverview:
    from cfviewer.study.studies import get_study, study_folder

    with db.read() as s:
        st = get_study(s, name)

        def count(q) -> int:
            return int(s.scalar(q) or 0)

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
        )


def parse_anchor_lines(text: str) -> list[str]:
    """Five anchor labels, one per line (blank lines ignored)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def create_study(db, name: str, root: str | Path, *, seed: int, bundle: str | None,
                 pathologies: Sequence[str], arms: Sequence[tuple[str, Sequence[str]]],
                 questions: Sequence[dict[str, Any]], sessions_per_arm: int = 1,
                 min_gap_hours: float = 0.0, app_url: str | None = None) -> None:
    """A new study with its arms and questions in one transaction (all or nothing)."""
    from cfviewer.study import studies

    if not arms:
        raise StudyError("add at least one arm (a display name and one or more explainers)")
    config = {"pathologies": list(pathologies), "bundle": bundle or None,
              "sessions_per_arm": int(sessions_per_arm), "min_gap_hours": float(min_gap_hours)}
    if app_url:
        config["app_url"] = app_url
    with db.write() as s:
        st = studies.create_study(s, name, root, seed=int(seed), config=config, questions=questions)
        for arm_name, methods in arms:
            if not str(arm_name).strip():
                raise StudyError("every arm needs a display name (e.g. 'Method A')")
            studies.add_arm(s, st, str(arm_name).strip(), list(methods))


def import_folder(db, name: str, folder: str | Path, labels_csv: str, boxes_csv: str | None = None,
                  copy: bool = False, progress: Callable[[int, int], None] | None = None,
                  absent_pathologies: Sequence[str] = ()):
    from cfviewer.study import cohort
    from cfviewer.study.studies import get_study

    with db.write() as s:
        st = get_study(s, name)
        return cohort.import_cases(s, st, folder, labels_csv, boxes_csv=boxes_csv or None, copy=copy,
                                   progress=progress, absent_pathologies=list(absent_pathologies))


def resolve_bundle_dir(root: str | Path, bundle: str | None) -> Path:
    if not bundle:
        raise StudyError("the study names no model bundle; set the bundle folder in Study setup")
    p = Path(bundle).expanduser()
    return p if p.is_absolute() else Path(root) / p


def sample(db, name: str, bundle_obj, bundle_id: str, *, per_pathology: int, fp_fraction: float,
           fill: bool, seed: int | None, replace: bool = False,
           progress: Callable[[int, int], None] | None = None):
    from cfviewer.study import cohort
    from cfviewer.study.studies import get_study

    with db.write() as s:
        st = get_study(s, name)
        return cohort.sample_cohort(s, st, bundle_obj, bundle_id=bundle_id, per_pathology=int(per_pathology),
                                    fp_fraction=float(fp_fraction), fill=bool(fill), seed=seed,
                                    replace=replace, progress=progress)


@dataclass(frozen=True)
class NewLink:
    reader: str
    link: str


def add_readers(db, name: str, names: Sequence[str], base_url: str | None = None) -> tuple[list[NewLink], str]:
    """Add readers (and schedule everyone once a cohort exists); returns their links (shown
    once: only token hashes are stored) and a note about scheduling."""
    from cfviewer.study import design, studies
    from cfviewer.study.tokens import reader_link

    clean = [n.strip() for n in names if n and n.strip()]
    if not clean:
        raise StudyError("give at least one reader name (one per line)")
    if len(set(clean)) != len(clean):
        raise StudyError("a reader name is listed twice; names must be unique")
    with db.write() as s:
        st = studies.get_study(s, name)
        new = studies.add_readers(s, st, clean)
        base = base_url or st.config.get("app_url") or "http://localhost:8501/"
        has_cohort = s.scalars(select(CohortItem.id).where(CohortItem.study_id == st.id).limit(1)).first()
        note = ""
        if has_cohort:
            summary = design.build_schedule(s, st)
            note = (f"Scheduled {summary.readers_scheduled} reader(s): {summary.reads_per_reader} reads each "
                    f"in {summary.sessions_per_reader} sessions.")
        else:
            note = "No cohort yet: the readers are scheduled when you sample the cohort."
        links = [NewLink(n.reader.name, reader_link(n.token, base)) for n in new]
    return links, note


def schedule_all(db, name: str) -> str:
    """Schedule readers who have no assignments yet (after sampling)."""
    from cfviewer.study import design, studies

    with db.write() as s:
        st = studies.get_study(s, name)
        if not st.readers:
            return "No readers yet."
        summary = design.build_schedule(s, st)
    return (f"Scheduled {summary.readers_scheduled} reader(s)." if summary.readers_scheduled
            else "Every reader already has a schedule.")


def demo_links(root: str | Path) -> dict[str, str]:
    """The demo study's reader links from readers.json (only the demo keeps tokens)."""
    p = Path(root) / "readers.json"
    if not p.is_file():
        return {}
    try:
        doc = json.loads(p.read_text())
        return {n: v["link"] for n, v in doc.get("readers", {}).items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return {}


# --------------------------------------------------------------------------- precompute
@dataclass
class Eta:
    """Progress + remaining-time estimate from the mean time per finished unit."""

    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    total: int = 0

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def remaining_seconds(self, now: float | None = None) -> float | None:
        if self.done == 0 or not self.total:
            return None
        elapsed = (now or time.perf_counter()) - self.started
        return elapsed / self.done * (self.total - self.done)

    def text(self, label: str = "", now: float | None = None) -> str:
        rem = self.remaining_seconds(now)
        eta = "estimating time left ..." if rem is None else f"about {format_duration(rem)} left"
        head = f"{self.done} of {self.total} case x arm"
        return f"{head} · {eta}" + (f" · {label}" if label else "")


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def precompute_status(db, name: str, verify: bool = False):
    from cfviewer.study.artifacts import artifact_status

    return artifact_status(db, name, verify=verify)


def run_precompute(db, name: str, *, progress: Callable[[int, int, str], None] | None = None,
                   force: bool = False, device: str = "auto", bundle=None, bundle_id: str | None = None):
    from cfviewer.study.artifacts import precompute

    return precompute(db, name, bundle=bundle, bundle_id=bundle_id, device=device, progress=progress,
                      force=force)


# --------------------------------------------------------------------------- progress
def reader_progress(db, name: str, now: dt.datetime | None = None) -> pd.DataFrame:
    """One row per reader: done / total, per session, last answer, median seconds per case."""
    from cfviewer.study import responses
    from cfviewer.study.studies import get_study

    rows = []
    with db.read() as s:
        st = get_study(s, name)
        for r in st.readers:
            prog = responses.progress(s, r)
            last = s.scalar(select(func.max(ResponseHistory.at)).where(ResponseHistory.reader_id == r.id))
            durations = [d for d in s.scalars(select(Response.duration_s).where(
                Response.reader_id == r.id, Response.duration_s.is_not(None))
                .group_by(Response.assignment_id))]
            med = float(pd.Series(durations, dtype="float64").median()) if durations else None
            rows.append({
                "reader": r.name,
                "simulated": bool(r.simulated),
                "done": prog.done,
                "total": prog.total,
                "percent": round(100.0 * prog.done / prog.total, 1) if prog.total else 0.0,
                "sessions": " · ".join(f"S{x.session}: {x.done}/{x.total}" for x in prog.sessions),
                "current session": prog.current_session if prog.total else None,
                "last answer (UTC)": last.strftime("%Y-%m-%d %H:%M") if last else "",
                "median s per case": round(med, 1) if med is not None else None,
            })
    return pd.DataFrame(rows, columns=["reader", "simulated", "done", "total", "percent", "sessions",
                                       "current session", "last answer (UTC)", "median s per case"])


# --------------------------------------------------------------------------- analysis / export
def answer_counts(db, name: str):
    """cfviewer.study.export.AnswerCounts of the study: real answers, simulated answers and readers."""
    from cfviewer.study.export import answer_counts as _counts
    from cfviewer.study.studies import get_study

    with db.read() as s:
        return _counts(s, get_study(s, name))


def responses_table(db, name: str, include_simulated: bool) -> pd.DataFrame:
    from cfviewer.study.export import responses_frame
    from cfviewer.study.studies import get_study

    with db.read() as s:
        return responses_frame(s, get_study(s, name), include_simulated=include_simulated)


def data_version(db, name: str) -> tuple[int, int, str]:
    """Changes whenever an answer is created or edited (a cache key for the analysis)."""
    from cfviewer.study.studies import get_study

    with db.read() as s:
        st = get_study(s, name)
        n, last = s.execute(select(func.count(ResponseHistory.id), func.max(ResponseHistory.at))
                            .join(Reader, Reader.id == ResponseHistory.reader_id)
                            .where(Reader.study_id == st.id)).one()
    return st.id, int(n or 0), str(last)


@dataclass(frozen=True)
class ExportBundle:
    files: dict[str, bytes]  # file name -> content
    n_rows: int
    simulated_answers: int = 0  # simulated readers' answers in the files
    simulated_readers: tuple[str, ...] = ()
    simulated_excluded: int = 0  # simulated readers' answers left out

    def zip_bytes(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for fname, data in self.files.items():
                z.writestr(fname, data)
        return buf.getvalue()


def export_files(db, name: str, include_simulated: bool) -> ExportBundle:
    """The study export (responses CSV + Parquet, study.json, SHA-256 manifests) in memory,
    written by `cfviewer.study.export.export_study` (the same files as the CLI)."""
    from cfviewer.study.export import export_study
    from cfviewer.study.studies import get_study

    with tempfile.TemporaryDirectory(prefix="cfviewer-export-") as tmp:
        with db.read() as s:
            res = export_study(s, get_study(s, name), tmp, include_simulated=include_simulated)
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
    return ExportBundle(files, res.n_rows, res.simulated_answers, res.simulated_readers, res.simulated_excluded)


def artifact_manifest(root: str | Path) -> bytes | None:
    p = Path(root) / "artifacts" / "manifest.json"
    return p.read_bytes() if p.is_file() else None


def error_text(exc: BaseException) -> str:
    """A person-readable message (CfviewerError messages as they are, others with their type)."""
    if isinstance(exc, CfviewerError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
