"""The embedded demo study (`cfviewer demo`), built from phantoms under study_data/demo/.

    study_data/demo/bundle/       the trained demo model (committed)
    study_data/demo/cases/        phantoms + labels (generated, gitignored)
    study_data/demo/study.db      SQLite study database (generated, gitignored)
    study_data/demo/artifacts/    precomputed explanations (generated, gitignored)
    study_data/demo/readers.json  the demo readers' tokens (gitignored; ONLY for the demo: a real
                                  study never stores tokens, only their hashes)

Deterministic: the same phantoms (seed DEMO_SEED), the same cohort and the same reading orders on
every machine. Idempotent: a second run reuses what exists (and finishes an interrupted
precompute); `force=True` rebuilds. The demo always uses its own SQLite file, whatever
CFVIEWER_DB_URL says.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import func, select

from cfviewer import PATHOLOGIES
from cfviewer.errors import CfviewerError
from cfviewer.study.db import Database, open_database

DEMO_NAME = "demo"
DEMO_SEED = 20261121
DEMO_READERS = ("reader-1", "reader-2")
ARMS = (
    ("Method A", ["gradient", "guided_backprop", "integrated_gradients"]),
    ("Method B", ["latentshift-max"]),
)
GENERATED = ("study.db", "study.db-wal", "study.db-shm", "study.db.writelock", "cases", "artifacts",
             "readers.json", "export", "analysis")


@dataclass
class DemoResult:
    root: Path
    links: dict[str, str]
    reused: bool
    sampling: Any = None
    precompute: Any = None
    simulation: Any = None
    seconds: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "study.db.demo-lock", "w") as fh:  # matches the study.db* ignore rule
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def demo_url(root: Path) -> str:
    return f"sqlite:///{(root / 'study.db').resolve()}"


def _wipe(root: Path) -> None:
    for name in GENERATED:
        p = root / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def _complete(root: Path) -> bool:
    """A previous build got as far as the readers (precompute/simulation can resume)."""
    if not (root / "study.db").is_file() or not (root / "readers.json").is_file():
        return False
    try:
        doc = json.loads((root / "readers.json").read_text())
    except json.JSONDecodeError:
        return False
    return set(doc.get("readers", {})) == set(DEMO_READERS)


def _write_import_csv(cases: Path, labels_csv: Path) -> Path:
    """The phantom dataset's labels.csv + one mask_<Pathology> column per pathology."""
    out = cases / "import.csv"
    with open(labels_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path", *PATHOLOGIES, *(f"mask_{p}" for p in PATHOLOGIES), "seed"])
        for r in rows:
            masks = {Path(m).stem[len(r["id"]) + 1:].replace("_", " "): m
                     for m in r.get("masks", "").split(";") if m}
            w.writerow([r["id"], r["image"], *(r[p] for p in PATHOLOGIES),
                        *(masks.get(p, "") for p in PATHOLOGIES), r["seed"]])
    return out


def build_demo(
    root: str | Path | None = None,
    *,
    bundle_dir: str | Path | None = None,
    force: bool = False,
    simulate: bool = False,
    quiet: bool = False,
    n_pool: int = 300,
    per_pathology: int = 10,
    image_size: int = 224,
    log: Callable[[str], None] = print,
    precompute_progress: Callable[[int, int, str], None] | None = None,
) -> DemoResult:
    """Build (or reuse) the demo study; returns the reader links and what was done."""
    from cfviewer import paths

    root = Path(root) if root is not None else paths.demo_dir()
    bundle_dir = Path(bundle_dir) if bundle_dir is not None else root / "bundle"
    if not (bundle_dir / "bundle.json").is_file():
        raise CfviewerError(
            f"the demo model bundle is missing ({bundle_dir}/bundle.json); train it with "
            "`cfviewer train --config study_data/demo/train_config.json --out study_data/demo/bundle`")
    say = (lambda msg: None) if quiet else log
    with _lock(root):
        if force:
            _wipe(root)
        reused = _complete(root)
        if not reused:
            _wipe(root)
        t0 = time.perf_counter()
        db = open_database(demo_url(root), study_dir=root)
        try:
            res = DemoResult(root=root, links={}, reused=reused)
            if not reused:
                res.sampling = _build(db, root, bundle_dir, n_pool, per_pathology, image_size, quiet, say, res)
            else:
                say(f"reusing the demo study in {root} (pass --force to rebuild)")
                _fix_root(db, root)
            doc = json.loads((root / "readers.json").read_text())
            res.links = {n: v["link"] for n, v in doc["readers"].items()}
            from cfviewer.study.artifacts import precompute

            t = time.perf_counter()
            res.precompute = precompute(db, DEMO_NAME, progress=precompute_progress)
            res.seconds["precompute"] = time.perf_counter() - t
            if res.precompute.computed:
                say(f"precomputed: {res.precompute}")
            if simulate:
                from cfviewer.study.simulate import simulate_readers

                t = time.perf_counter()
                res.simulation = simulate_readers(db, DEMO_NAME, n_readers=2, seed=DEMO_SEED)
                res.seconds["simulate"] = time.perf_counter() - t
            res.seconds["total"] = time.perf_counter() - t0
            return res
        finally:
            db.dispose()


def _fix_root(db: Database, root: Path) -> None:
    from cfviewer.study.studies import ROOT_HERE, get_study

    with db.write() as s:
        st = get_study(s, DEMO_NAME)
        if st.root != ROOT_HERE:
            st.root = ROOT_HERE  # an older demo stored an absolute folder: make it the one it is in


def _build(db: Database, root: Path, bundle_dir: Path, n_pool: int, per_pathology: int, image_size: int,
           quiet: bool, say: Callable[[str], None], res: DemoResult):
    from cfviewer.models import Bundle
    from cfviewer.phantoms import write_dataset
    from cfviewer.study import cohort, design, studies
    from cfviewer.study.schema import CohortItem
    from cfviewer.study.tokens import reader_link

    t = time.perf_counter()
    say(f"generating {n_pool} phantom radiographs ({image_size} px) in {root / 'cases'}")
    labels = write_dataset(root / "cases", n_pool, size=image_size, seed=DEMO_SEED, dicom=False,
                           overwrite=True, progress=not quiet)
    import_csv = _write_import_csv(root / "cases", labels)
    res.seconds["phantoms"] = time.perf_counter() - t
    bundle = Bundle.load(bundle_dir)
    bundle_cfg = "bundle" if bundle_dir.resolve() == (root / "bundle").resolve() else str(bundle_dir.resolve())
    t = time.perf_counter()
    with db.write() as s:
        st = studies.create_study(s, DEMO_NAME, root, seed=DEMO_SEED, config={"bundle": bundle_cfg})
        for name, methods in ARMS:
            studies.add_arm(s, st, name, methods)
        rep = cohort.import_cases(s, st, root / "cases", import_csv)
        say(str(rep))
        sampling = cohort.sample_cohort(s, st, bundle, bundle_id=cohort.bundle_identity(bundle_dir),
                                        per_pathology=per_pathology, fp_fraction=0.5, fill=True)
        say(str(sampling))
        new = studies.add_readers(s, st, DEMO_READERS)
        design.build_schedule(s, st)
        base = st.config.get("app_url", "http://localhost:8501/")
        readers = {n.reader.name: {"token": n.token, "link": reader_link(n.token, base)} for n in new}
        n_cohort = s.scalar(select(func.count(CohortItem.id)).where(CohortItem.study_id == st.id))
    res.seconds["import_sample"] = time.perf_counter() - t
    doc = {"note": "DEMO ONLY: real studies never store reader tokens, only their SHA-256 hashes.",
           "study": DEMO_NAME, "cohort": n_cohort, "readers": readers}
    tmp = root / "readers.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(root / "readers.json")
    return sampling
