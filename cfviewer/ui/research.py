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

from cfviewer.errors import CfviewerError
from cfviewer.study import export, setup, status
from cfviewer.study.errors import StudyError


# --------------------------------------------------------------------------- studies
def study_names(db) -> list[str]:
    return status.study_names(db)


def pick_study(names: Sequence[str], preferred: str | None) -> str | None:
    """The study the pages work on: `preferred` (CFVIEWER_STUDY or the sidebar) when it
    exists, else the first."""
    if preferred and preferred in names:
        return preferred
    return names[0] if names else None


StudyOverview = status.StudyOverview


def overview(db, name: str) -> StudyOverview:
    return status.study_overview(db, name)


def parse_anchor_lines(text: str) -> list[str]:
    """Five anchor labels, one per line (blank lines ignored)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def create_study(db, name: str, root: str | Path, *, seed: int, bundle: str | None,
                 pathologies: Sequence[str], arms: Sequence[tuple[str, Sequence[str]]],
                 questions: Sequence[dict[str, Any]], sessions_per_arm: int = 1,
                 min_gap_hours: float = 0.0, app_url: str | None = None) -> None:
    """A new study with its arms and questions in one transaction (all or nothing); every
    input is checked by the study engine (`cfviewer.study.setup.new_study`)."""
    config = {"pathologies": list(pathologies), "bundle": bundle or None,
              "sessions_per_arm": int(sessions_per_arm), "min_gap_hours": float(min_gap_hours)}
    if app_url:
        config["app_url"] = app_url
    setup.new_study(db, name, root, seed=int(seed), config=config, arms=list(arms), questions=questions)


def import_folder(db, name: str, folder: str | Path, labels_csv: str, boxes_csv: str | None = None,
                  copy: bool = False, progress: Callable[[int, int], None] | None = None,
                  absent_pathologies: Sequence[str] = ()):
    return setup.import_cases(db, name, folder, labels_csv, boxes_csv=boxes_csv or None, copy=copy,
                              progress=progress, absent_pathologies=list(absent_pathologies))


def resolve_bundle_dir(root: str | Path, bundle: str | None) -> Path:
    if not bundle:
        raise StudyError("the study names no model bundle; set the bundle folder in Study setup")
    p = Path(bundle).expanduser()
    return p if p.is_absolute() else Path(root) / p


def sample(db, name: str, bundle_obj, bundle_id: str, *, per_pathology: int, fp_fraction: float,
           fill: bool, seed: int | None, replace: bool = False,
           progress: Callable[[int, int], None] | None = None):
    return setup.sample_cohort(db, name, bundle_obj, bundle_id=bundle_id, per_pathology=int(per_pathology),
                               fp_fraction=float(fp_fraction), fill=bool(fill), seed=seed, replace=replace,
                               progress=progress)


@dataclass(frozen=True)
class NewLink:
    reader: str
    link: str


def add_readers(db, name: str, names: Sequence[str], base_url: str | None = None) -> tuple[list[NewLink], str]:
    """Add readers (and schedule everyone once a cohort exists); returns their links (shown
    once: only token hashes are stored) and a note about scheduling. Blank lines are skipped;
    the names are checked by the study engine (`cfviewer.study.setup.add_readers`)."""
    res = setup.add_readers(db, name, [n for n in names if n and n.strip()], base_url=base_url)
    if res.schedule is not None:
        summary = res.schedule
        note = (f"Scheduled {summary.readers_scheduled} reader(s): {summary.reads_per_reader} reads each "
                f"in {summary.sessions_per_reader} sessions.")
    else:
        note = "No cohort yet: the readers are scheduled when you sample the cohort."
    return [NewLink(r, link) for r, link in res.links], note


def schedule_all(db, name: str) -> str:
    """Schedule readers who have no assignments yet (after sampling)."""
    summary = setup.schedule_readers(db, name)
    if summary is None:
        return "No readers yet."
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
    """One row per reader: done / total, per session, last answer, median seconds per case
    (`cfviewer.study.status.reader_statuses`, as `cfviewer study status` counts them)."""
    rows = []
    for r in status.reader_statuses(db, name):
        prog, med, last = r.progress, r.median_seconds, r.last_answer
        rows.append({
            "reader": r.name,
            "simulated": r.simulated,
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
    return export.study_answer_counts(db, name)


def responses_table(db, name: str, include_simulated: bool) -> pd.DataFrame:
    return export.study_responses(db, name, include_simulated=include_simulated)


def data_version(db, name: str) -> tuple[int, int, str]:
    """Changes whenever an answer is created or edited (a cache key for the analysis)."""
    return status.data_version(db, name)


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
    with tempfile.TemporaryDirectory(prefix="cfviewer-export-") as tmp:
        res = export.export_named_study(db, name, tmp, include_simulated=include_simulated)
        found = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    files = {k: found[k] for k in sorted(found, key=export_order)}
    return ExportBundle(files, res.n_rows, res.simulated_answers, res.simulated_readers, res.simulated_excluded)


EXPORT_ORDER = ("responses.csv", "responses.parquet", "study.json", "MANIFEST.sha256", "manifest.json")


def export_order(filename: str) -> tuple[int, str]:
    """Sort key of the export's files: the answers first, the study configuration, the
    manifests last (other files between, by name)."""
    if filename in EXPORT_ORDER:
        i = EXPORT_ORDER.index(filename)
        return (i if i < 3 else 10 + i, filename)
    return (5, filename.lower())


def artifact_manifest(root: str | Path) -> bytes | None:
    p = Path(root) / "artifacts" / "manifest.json"
    return p.read_bytes() if p.is_file() else None


def error_text(exc: BaseException) -> str:
    """A person-readable message (CfviewerError messages as they are, others with their type)."""
    if isinstance(exc, CfviewerError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
