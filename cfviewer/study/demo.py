"""The embedded demo study (`cfviewer demo`), built from phantoms under study_data/demo/, and
the build-a-study recipe it shares with the sample studies.

`set_up_study` is the one recipe: the study with its arms, the cases imported, the cohort
sampled with a bundle, the readers added and scheduled, in one transaction. The demo
(`build_demo`), the sample study (`build_sample_study`: phantoms, a random model that calls
every case positive, every explanation precomputed; used by the web-app tests, the UI and
precompute benchmarks and the screenshots) and the tests' small studies all call it.

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
from cfviewer.study.reference import REFERENCE_ARMS, reference_arms

DEMO_NAME = "demo"
DEMO_SEED = 20261121
DEMO_READERS = ("reader-1", "reader-2")
DEMO_IMAGE_SIZE = 224
"""Side of the demo study's case films: readers see them at this size, the model through
Bundle.model_input at its own resolution."""
DEMO_POOL = 500
"""Phantoms the demo cohort is sampled from: enough that the demo bundle makes at least half of
``per_pathology`` false positives in every pathology (its rarest, Effusion, 8 of 500; 4 in the
first 300), so the cohort is half false positives throughout (tests/test_study_demo.py)."""
ARMS = REFERENCE_ARMS  # the reference study's arms
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
    n_pool: int = DEMO_POOL,
    per_pathology: int = 10,
    image_size: int | None = None,
    log: Callable[[str], None] = print,
    precompute_progress: Callable[[int, int, str], None] | None = None,
) -> DemoResult:
    """Build (or reuse) the demo study; returns the reader links and what was done.
    ``image_size``: the side of the case films (default DEMO_IMAGE_SIZE)."""
    from cfviewer import paths

    image_size = int(image_size or DEMO_IMAGE_SIZE)
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
    from cfviewer.models.bundle import bundle_identity
    from cfviewer.phantoms import write_dataset
    from cfviewer.study.studies import get_study
    from cfviewer.study.tokens import reader_link

    from cfviewer.models.data import phantom_config

    bundle = Bundle.load(bundle_dir)
    # the cases come from the phantom distribution the model was trained on (its options), at
    # the reader's size: the model sees them through Bundle.model_input
    options = ((bundle.meta.get("training") or {}).get("config") or {}).get("phantoms") or {}
    t = time.perf_counter()
    say(f"generating {n_pool} phantom radiographs ({image_size} px) in {root / 'cases'}")
    labels = write_dataset(root / "cases", n_pool, size=image_size, seed=DEMO_SEED,
                           config=phantom_config(image_size, options), dicom=False,
                           overwrite=True, progress=not quiet)
    import_csv = _write_import_csv(root / "cases", labels)
    res.seconds["phantoms"] = time.perf_counter() - t
    bundle_cfg = "bundle" if bundle_dir.resolve() == (root / "bundle").resolve() else str(bundle_dir.resolve())
    t = time.perf_counter()
    made = set_up_study(db, DEMO_NAME, root, cases=root / "cases", labels=import_csv, bundle=bundle,
                        bundle_id=bundle_identity(bundle_dir), readers=DEMO_READERS,
                        per_pathology=per_pathology, fp_fraction=0.5, fill=True, seed=DEMO_SEED,
                        config={"bundle": bundle_cfg}, say=say)
    sampling = made.sampling
    with db.read() as s:
        base = get_study(s, DEMO_NAME).config.get("app_url", "http://localhost:8501/")
    readers = {n: {"token": tok, "link": reader_link(tok, base)} for n, tok in made.tokens.items()}
    n_cohort = made.cohort
    res.seconds["import_sample"] = time.perf_counter() - t
    doc = {"note": "DEMO ONLY: real studies never store reader tokens, only their SHA-256 hashes.",
           "study": DEMO_NAME, "cohort": n_cohort, "readers": readers}
    tmp = root / "readers.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(root / "readers.json")
    return sampling


# --------------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class StudySetUp:
    """What `set_up_study` made: the readers' one-time tokens (only their hashes are stored)."""

    name: str
    root: Path
    tokens: dict[str, str]
    reader_ids: dict[str, int]
    sampling: Any
    cohort: int


def set_up_study(
    db: Database,
    name: str,
    root: str | Path,
    *,
    cases: str | Path,
    bundle: Any,
    bundle_id: str,
    labels: str | Path = "labels.csv",
    arms: Any = None,
    readers: Any = DEMO_READERS,
    per_pathology: int = 10,
    fp_fraction: float = 0.5,
    fill: bool = False,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    say: Callable[[str], None] | None = None,
) -> StudySetUp:
    """The build-a-study recipe, in one write transaction: create study `name` in `root` with
    `arms` (default: the reference study's), import the cases of folder `cases` (`labels`:
    the CSV, relative to it or absolute), sample the cohort with `bundle` (`per_pathology`,
    `fp_fraction`, `fill` as `cohort.sample_cohort`), add `readers` and build the crossover
    schedule. Nothing is precomputed."""
    from cfviewer.study import cohort, design, studies
    from cfviewer.study.schema import CohortItem

    with db.write() as s:
        st = studies.create_study(s, name, root, seed=seed, config=config)
        for arm_name, methods in (reference_arms() if arms is None else arms):
            studies.add_arm(s, st, arm_name, methods)
        rep = cohort.import_cases(s, st, cases, labels)
        if say:
            say(str(rep))
        sampling = cohort.sample_cohort(s, st, bundle, bundle_id=bundle_id, per_pathology=per_pathology,
                                        fp_fraction=fp_fraction, fill=fill)
        if say:
            say(str(sampling))
        new = studies.add_readers(s, st, readers)
        design.build_schedule(s, st)
        n_cohort = s.scalar(select(func.count(CohortItem.id)).where(CohortItem.study_id == st.id))
        return StudySetUp(name, Path(root), {n.reader.name: n.token for n in new},
                          {n.reader.name: n.reader.id for n in new}, sampling, int(n_cohort))


def positive_bundle(resolution: int = 64, seed: int = 0):
    """A random bundle whose thresholds make every prediction positive (TP / FP = the labels)."""
    from cfviewer.models.bundle import random_bundle

    bundle = random_bundle(resolution, seed=seed)
    bundle.thresholds = {p: 0.0 for p in bundle.pathologies}
    return bundle


@dataclass
class SampleStudy:
    root: Path
    db_url: str
    name: str
    tokens: dict[str, str]
    reader_ids: dict[str, int]
    bundle_id: str = ""
    """The identity of the bundle saved in the study folder (its cohort's and artifacts')."""


def build_sample_study(base: str | Path, *, name: str = "sample", readers=("alice", "bob"),
                       n_phantoms: int = 24, image_size: int = 64, resolution: int = 64,
                       per_pathology: int = 1, config: dict | None = None, seed: int = 3,
                       bundle: Any = None, precompute: bool = True) -> SampleStudy:
    """A small real study in `base`/`name`: `n_phantoms` phantoms, `bundle` (default: a random
    `positive_bundle` of `resolution`, saved in the study folder), the reference arms,
    `readers`, the schedule (`set_up_study`) and, with `precompute`, every explanation
    precomputed with `cfviewer.study.artifacts.precompute`."""
    from cfviewer.models.bundle import bundle_identity
    from cfviewer.phantoms import write_dataset
    from cfviewer.study.artifacts import precompute as run_precompute

    root = Path(base) / name
    write_dataset(root / "cases", n_phantoms, size=image_size, seed=seed, dicom=False, progress=False)
    bundle = positive_bundle(resolution) if bundle is None else bundle
    bundle.save(root / "bundle")
    bundle_id = bundle_identity(root / "bundle")
    db = open_database(None, study_dir=root)
    try:
        made = set_up_study(db, name, root, cases=root / "cases", bundle=bundle, bundle_id=bundle_id,
                            readers=readers, per_pathology=per_pathology, fill=True,
                            config={"bundle": "bundle", **(config or {})})
        if precompute:
            report = run_precompute(db, name, bundle=bundle, bundle_id=bundle_id)
            if report.failed:
                raise RuntimeError(f"precompute failed for the sample study: {report}")
        url = db.url
    finally:
        db.dispose()
    return SampleStudy(root, url, name, made.tokens, made.reader_ids, bundle_id)
