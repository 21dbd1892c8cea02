"""Helpers shared by the tests/test_study_*.py files (no tests here)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cfviewer import PATHOLOGIES, imaging


def write_cases(folder: Path, n: int, seed: int = 0, size: int = 32, labels: bool = True) -> Path:
    """n small 16-bit PNG cases + labels.csv (id, path, one 0/1 column per pathology)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = folder / "labels.csv"
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path", *PATHOLOGIES, "split"])
        for i in range(n):
            img = rng.uniform(-1024, 1024, (size, size)).astype(np.float32)
            imaging.write_png16(folder / f"case{i:03d}.png", img)
            lab = rng.integers(0, 2, len(PATHOLOGIES)) if labels else [0] * len(PATHOLOGIES)
            w.writerow([f"case{i:03d}", f"case{i:03d}.png", *lab, "test"])
    return out


def rewrite_csv(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def positive_bundle(resolution: int = 32, seed: int = 0):
    """A random bundle whose thresholds make every prediction positive: TP/FP = the labels."""
    from cfviewer.study.demo import positive_bundle

    return positive_bundle(resolution, seed)


def empty_study(tmp_path: Path, name: str = "s"):
    """(db, root): a new study `name` with nothing imported, in tmp_path / name."""
    from cfviewer.study import studies
    from cfviewer.study.db import open_database

    root = tmp_path / name
    db = open_database(study_dir=root)
    with db.write() as s:
        studies.create_study(s, name, root)
    return db, root


def import_into(db, folder, labels="labels.csv", *, name: str = "s", **kw):
    """`cohort.import_cases` into study `name` in one write transaction."""
    from cfviewer.study import cohort, studies

    with db.write() as s:
        return cohort.import_cases(s, studies.get_study(s, name), folder, labels, **kw)


def count_cases(db) -> int:
    from sqlalchemy import func, select

    from cfviewer.study.schema import Case

    with db.read() as s:
        return s.scalar(select(func.count(Case.id)))


@dataclass
class Built:
    db: object
    name: str
    root: Path
    tokens: dict[str, str]
    reader_ids: dict[str, int]


def build_study(tmp_path: Path, *, n_cases: int = 24, per_pathology: int = 2, readers=("r1", "r2"),
                config: dict | None = None, name: str = "t", url: str | None = None) -> Built:
    """A study with imported cases, a sampled cohort, the two reference arms, readers and a
    schedule (`cfviewer.study.demo.set_up_study`, nothing precomputed)."""
    from cfviewer.study.db import open_database
    from cfviewer.study.demo import set_up_study

    root = tmp_path / name
    write_cases(root / "cases", n_cases)
    db = open_database(url, study_dir=root)
    made = set_up_study(db, name, root, cases=root / "cases", bundle=positive_bundle(), bundle_id="rand",
                        readers=readers, per_pathology=per_pathology, config=config)
    return Built(db, name, root, made.tokens, made.reader_ids)


def fast_study(url: str, root: Path, *, n_cases: int, readers: int, name: str = "c") -> dict[str, int]:
    """A schedulable study without image files (cases/cohort rows written directly): for tests
    of the response layer only. Returns {reader name: reader id}."""
    from cfviewer.study import design, studies
    from cfviewer.study.db import open_database
    from cfviewer.study.schema import Case, CohortItem

    db = open_database(url)
    with db.write() as s:
        st = studies.create_study(s, name, root)
        studies.add_arm(s, st, "Method A", ["gradient"])
        studies.add_arm(s, st, "Method B", ["latentshift-max"])
        for i in range(n_cases):
            c = Case(study_id=st.id, case_key=f"k{i}", source_path=f"cases/k{i}.png", sha256=f"{i:064x}",
                     height=8, width=8, labels={"Mass": i % 2})
            s.add(c)
            s.flush()
            s.add(CohortItem(study_id=st.id, case_id=c.id, pathology="Mass", stratum="TP" if i % 2 else "FP",
                             probability=0.9, threshold=0.5, bundle="b", position=i + 1))
        new = studies.add_readers(s, st, [f"r{i}" for i in range(readers)])
        design.build_schedule(s, st)
        ids = {n.reader.name: n.reader.id for n in new}
    db.dispose()
    return ids


def submit_worker(url: str, reader_id: int, ack_path: str, repeat: int = 1, limit: int | None = None) -> None:
    """Answer every read of one reader in schedule order; after each acknowledged submission
    append 'assignment_id value' to ack_path (flushed). Runs in a child process."""
    from sqlalchemy import select

    from cfviewer.study import responses
    from cfviewer.study.db import open_database
    from cfviewer.study.schema import Assignment

    db = open_database(url, migrate=False)
    with db.read() as s:
        ids = list(s.scalars(select(Assignment.id).where(Assignment.reader_id == reader_id)
                             .order_by(Assignment.position)))
    with open(ack_path, "a", buffering=1) as ack:
        for k, aid in enumerate(ids[:limit]):
            value = 1 + (aid % 5)
            for _ in range(repeat):
                responses.record_response(db, reader_id, aid, {"confidence": value, "correct_feature": 6 - value})
            ack.write(f"{aid} {value}\n")
            ack.flush()
    db.dispose()


def precompute_worker(url: str, study: str, bundle_dir: str, limit: int, out: str) -> None:
    """Run precompute in a child process and write its counts as JSON to `out`."""
    import json

    import torch

    from cfviewer.models import Bundle
    from cfviewer.study import artifacts
    from cfviewer.study.db import open_database

    torch.set_num_threads(1)
    db = open_database(url, migrate=False)
    rep = artifacts.precompute(db, study, bundle=Bundle.load(bundle_dir, device="cpu"), bundle_id="rand",
                               limit=limit)
    Path(out).write_text(json.dumps({"computed": rep.computed, "skipped": rep.skipped, "busy": rep.busy,
                                     "failed": rep.failed}))
    db.dispose()
