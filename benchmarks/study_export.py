"""Export time of the study engine over a synthetic study.

    python benchmarks/study_export.py [--responses 100000]

A synthetic study with N stored answers (10 readers x the reference study's two arms x its two
questions, bulk-inserted, no image files), then `responses_frame` (the long table) and
`export_study` (CSV + Parquet + study JSON + manifest), best of 3. Prints one table.
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
from cfviewer.study.reference import reference_arms
from cfviewer.study.schema import Assignment, Case, CohortItem, Response


def _synthetic_study(url: str, root: Path, n_responses: int):
    db = open_database(url)
    n_readers = 10
    n_cases = max(1, n_responses // (n_readers * 2 * 2))
    rng = np.random.default_rng(0)
    with db.write() as s:
        st = studies.create_study(s, "bench", root)
        arms = [studies.add_arm(s, st, name, methods).id for name, methods in reference_arms()]
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
                # the synthetic answers are flagged simulated: include them, or nothing is timed
                df = responses_frame(s, st, include_simulated=True)
                frame.append(time.perf_counter() - t)
                t = time.perf_counter()
                res = export_study(s, st, root / "out", include_simulated=True)
                full.append(time.perf_counter() - t)
        db.dispose()
        return {"responses": len(df), "setup_s": setup, "frame_s": min(frame), "export_s": min(full),
                "csv_mb": (root / "out/responses.csv").stat().st_size / 1e6 if res else 0.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/study_export.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--responses", type=int, default=100_000, help="stored answers (default 100,000)")
    a = p.parse_args(argv)
    r = bench_export(a.responses)
    print(f"export of {r['responses']:,} answers (synthetic study set up in {r['setup_s']:.1f} s), best of 3\n")
    print("| step | seconds |")
    print("|---|---:|")
    print(f"| building the long table (`responses_frame`) | {r['frame_s']:.2f} |")
    print(f"| full export (CSV {r['csv_mb']:.1f} MB + Parquet + study JSON + manifest) | {r['export_s']:.2f} |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
