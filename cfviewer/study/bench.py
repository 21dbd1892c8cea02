"""Benchmarks of the study engine (numbers for docs/benchmarks.md).

    python -m cfviewer.study.bench export [--responses 100000]
    python -m cfviewer.study.bench precompute [--cases 10] [--resolution 128] [--bundle DIR]
    python -m cfviewer.study.bench submit [--n 300]

`export`: a synthetic study with N stored answers (bulk-inserted), then `responses_frame` and
`export_study` (CSV + Parquet + study JSON + manifest), best of 3.
`precompute`: phantom cases, the reference study's two arms, every artifact, on the CPU with one
torch thread; the demo bundle when given (--bundle), else a random bundle of --resolution
(explainer cost depends on the architecture, not the weights, except Latent Shift's search
length, which depends on the trained autoencoder).
`submit`: record_response round trips into SQLite (one process), per submission.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from cfviewer.study import studies
from cfviewer.study.db import open_database
from cfviewer.study.schema import Assignment, Case, CohortItem, Response


def _synthetic_study(url: str, root: Path, n_responses: int):
    db = open_database(url)
    n_readers = 10
    n_cases = max(1, n_responses // (n_readers * 2 * 2))
    rng = np.random.default_rng(0)
    with db.write() as s:
        st = studies.create_study(s, "bench", root)
        a = studies.add_arm(s, st, "Method A", ["gradient", "guided_backprop", "integrated_gradients"])
        b = studies.add_arm(s, st, "Method B", ["latentshift-max"])
        arms = [a.id, b.id]
        qs = [q.id for q in st.questions]
        readers = studies.add_readers(s, st, [f"r{i}" for i in range(n_readers)])
        rids = [r.reader.id for r in readers]
        s.execute(insert(Case), [dict(study_id=st.id, case_key=f"c{i}", source_path=f"cases/c{i}.png",
                                      sha256=f"{i:064x}", height=1, width=1, labels={"Mass": i % 2},
                                      boxes=[], masks={}, meta={},
                                      imported_at=dt.datetime.now(dt.timezone.utc)) for i in range(n_cases)])
        case_ids = [c for c, in s.execute(Case.__table__.select().with_only_columns(Case.id).order_by(Case.id))]
        s.execute(insert(CohortItem), [dict(study_id=st.id, case_id=c, pathology="Mass",
                                            stratum="TP" if k % 2 else "FP", probability=0.9, threshold=0.5,
                                            bundle="b", position=k + 1) for k, c in enumerate(case_ids)])
        cohort = {c: k + 1 for k, c in enumerate(case_ids)}
        now = dt.datetime.now(dt.timezone.utc)
        asg = []
        for r in rids:
            pos = 0
            for sess, arm in enumerate(arms, start=1):
                for c in case_ids:
                    pos += 1
                    asg.append(dict(study_id=st.id, reader_id=r, case_id=c, arm_id=arm, cohort_id=cohort[c],
                                    session=sess, position=pos, seed=1))
        s.execute(insert(Assignment), asg)
        rows = s.execute(Assignment.__table__.select().with_only_columns(
            Assignment.id, Assignment.reader_id, Assignment.case_id, Assignment.arm_id)).all()
        resp = []
        for aid, r, c, arm in rows:
            for q in qs:
                resp.append(dict(assignment_id=aid, reader_id=r, case_id=c, arm_id=arm, question_id=q,
                                 value=int(rng.integers(1, 6)), comment=None, shown_at=now, submitted_at=now,
                                 duration_s=12.0, app_version="bench", simulated=True, revision=1))
        s.execute(insert(Response), resp)
    return db


def bench_export(n_responses: int) -> dict[str, float]:
    from cfviewer.study.export import export_study, responses_frame

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        db = _synthetic_study(f"sqlite:///{root / 'b.db'}", root, n_responses)
        setup = time.perf_counter() - t
        frame, full = [], []
        for _ in range(3):
            with db.read() as s:
                st = studies.get_study(s, "bench")
                t = time.perf_counter()
                df = responses_frame(s, st)
                frame.append(time.perf_counter() - t)
                t = time.perf_counter()
                res = export_study(s, st, root / "out")
                full.append(time.perf_counter() - t)
        db.dispose()
        return {"responses": len(df), "setup_s": setup, "frame_s": min(frame), "export_s": min(full),
                "csv_mb": (root / "out/responses.csv").stat().st_size / 1e6 if res else 0.0}


def bench_precompute(n_cases: int, resolution: int, bundle_dir: str | None) -> dict[str, float]:
    import torch

    from cfviewer import PATHOLOGIES, imaging
    from cfviewer.models import Bundle, random_bundle
    from cfviewer.phantoms import generate
    from cfviewer.study import artifacts, cohort, design

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "cases").mkdir()
        bundle = Bundle.load(bundle_dir, device="cpu") if bundle_dir else random_bundle(resolution, 0)
        bundle.thresholds = {p: 0.0 for p in bundle.pathologies}  # every case positive: cohort = all
        lines = ["id,path," + ",".join(PATHOLOGIES)]
        for i in range(n_cases):
            ph = generate(1000 + i, 224)
            imaging.write_png16(root / "cases" / f"p{i}.png", ph.image)
            lines.append(f"p{i},p{i}.png," + ",".join(str(ph.labels[p]) for p in PATHOLOGIES))
        (root / "cases/labels.csv").write_text("\n".join(lines) + "\n")
        db = open_database(f"sqlite:///{root / 'b.db'}")
        with db.write() as s:
            st = studies.create_study(s, "bench", root)
            studies.add_arm(s, st, "Method A", ["gradient", "guided_backprop", "integrated_gradients"])
            studies.add_arm(s, st, "Method B", ["latentshift-max"])
            cohort.import_cases(s, st, root / "cases", "labels.csv")
            cohort.sample_cohort(s, st, bundle, bundle_id="bench", per_pathology=n_cases, fill=True)
            studies.add_readers(s, st, ["r"])
            design.build_schedule(s, st)
        rep = artifacts.precompute(db, "bench", bundle=bundle, bundle_id="bench")
        t = time.perf_counter()
        again = artifacts.precompute(db, "bench", bundle=bundle, bundle_id="bench")
        resume = time.perf_counter() - t
        db.dispose()
        assert not rep.failed, rep.failed
        return {"units": rep.units, "seconds": rep.seconds, "per_minute": rep.units / rep.seconds * 60,
                "resume_s": resume, "resume_skipped": again.skipped}


def bench_submit(n: int) -> dict[str, float]:
    from sqlalchemy import select

    from cfviewer.study import design, responses

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'b.db'}"
        db = open_database(url)
        with db.write() as s:
            st = studies.create_study(s, "bench", root)
            studies.add_arm(s, st, "Method A", ["gradient"])
            studies.add_arm(s, st, "Method B", ["latentshift-max"])
            for i in range(n):
                c = Case(study_id=st.id, case_key=f"k{i}", source_path="x", sha256=f"{i:064x}", height=1, width=1,
                         labels={})
                s.add(c)
                s.flush()
                s.add(CohortItem(study_id=st.id, case_id=c.id, pathology="Mass", stratum="TP", probability=1,
                                 threshold=0.5, bundle="b", position=i + 1))
            rid = studies.add_readers(s, st, ["r"])[0].reader.id
            design.build_schedule(s, st)
        with db.read() as s:
            ids = list(s.scalars(select(Assignment.id).where(Assignment.reader_id == rid)
                                 .order_by(Assignment.position)))[:n]
        t = time.perf_counter()
        for aid in ids:
            responses.record_response(db, rid, aid, {"confidence": 3, "correct_feature": 4})
        per = (time.perf_counter() - t) / len(ids)
        db.dispose()
        return {"submissions": len(ids), "ms_per_submission": per * 1000}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cfviewer.study.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    e = sub.add_parser("export")
    e.add_argument("--responses", type=int, default=100_000)
    pc = sub.add_parser("precompute")
    pc.add_argument("--cases", type=int, default=10)
    pc.add_argument("--resolution", type=int, default=128)
    pc.add_argument("--bundle", default=None)
    sb = sub.add_parser("submit")
    sb.add_argument("--n", type=int, default=300)
    a = p.parse_args(argv)
    if a.what == "export":
        print(bench_export(a.responses))
    elif a.what == "precompute":
        print(bench_precompute(a.cases, a.resolution, a.bundle))
    else:
        print(bench_submit(a.n))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
