"""Answer-saving time of the study engine: `responses.record_response` round trips into SQLite
(one process, WAL, BEGIN IMMEDIATE), per submission.

    python benchmarks/study_submit.py [--n 300]

A schedulable study without image files (cases and cohort rows written directly), one reader;
every read answered in schedule order. Prints one table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cfviewer.study import studies
from cfviewer.study.db import open_database
from cfviewer.study.reference import reference_arms
from cfviewer.study.schema import Assignment, Case, CohortItem


def bench_submit(n: int) -> dict[str, float]:
    from sqlalchemy import select

    from cfviewer.study import design, responses

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'b.db'}"
        db = open_database(url)
        with db.write() as s:
            st = studies.create_study(s, "bench", root)
            for name, methods in reference_arms():
                studies.add_arm(s, st, name, methods)
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
    p = argparse.ArgumentParser(prog="python benchmarks/study_submit.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="answers to save (default 300)")
    a = p.parse_args(argv)
    r = bench_submit(a.n)
    print("| submissions | ms per submission |")
    print("|---:|---:|")
    print(f"| {r['submissions']} | {r['ms_per_submission']:.1f} |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
