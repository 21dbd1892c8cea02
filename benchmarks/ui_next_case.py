"""Next-case server time of the reader page.

    python benchmarks/ui_next_case.py                # on a fresh sample study in a temp folder
    python benchmarks/ui_next_case.py --study-dir study_data/demo --reads 40
    python benchmarks/ui_next_case.py --apptest      # also the whole page run (streamlit AppTest)

What a "Save and next" click costs on the server, per read, with precomputed artifacts:
`reading.submit` (validate + write the answers in one IMMEDIATE transaction + the following
read), `reading.open_screen` (progress, resume point, read view, artifact list, `shown_at`),
and the image work the page does for a case it has not shown before: the radiograph windowed
and encoded, each explanation overlay re-blended from its map at the reader's opacity, the GIF
bytes and the counterfactual frames. With `--apptest` the whole script run of the case page
(Streamlit's own work included) is timed as well.

The study's database is never written: the benchmark works on a copy (SQLite backup) with a
new reader added to the copy. Caches start cold for every case (every read is a new image).
Prints one table (milliseconds per Next click).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ANSWERS = {"confidence": 4, "correct_feature": 2}
ROOT = Path(__file__).resolve().parents[1]


def copy_database(src_url: str, dest: Path) -> str:
    """A SQLite copy of the study database (the online backup API: safe while others write)."""
    from cfviewer.study.db import DatabaseError, copy_sqlite

    try:
        return copy_sqlite(src_url, dest)
    except DatabaseError as exc:
        raise SystemExit(str(exc)) from None


# --------------------------------------------------------------------------- the measurement
def render_case(screen) -> int:
    """The image work of the case page for one read (default settings); returns bytes made."""
    from cfviewer.ui import viewer

    return viewer.render_defaults(screen.view.image, screen.media, fov=screen.view.field_of_view)


@dataclass
class Timings:
    total: list[float] = field(default_factory=list)
    submit: list[float] = field(default_factory=list)
    open: list[float] = field(default_factory=list)
    render: list[float] = field(default_factory=list)


def bench_functions(db, study_name: str, reads: int, prefetch: bool = False) -> Timings:
    """Walk a new reader through `reads` reads, timing each Next click's server functions.

    prefetch=False: every case starts with cold caches (the page never warmed them).
    prefetch=True: as the page does, the next case's images are rendered while the reader
    reads the current one (not timed: the reader's reading time), then caches stay warm."""
    import uuid

    from cfviewer.study import design, studies
    from cfviewer.study.schema import Reader
    from cfviewer.ui import reading, viewer

    with db.write() as s:
        st = studies.get_study(s, study_name)
        new = studies.add_readers(s, st, [f"bench-{uuid.uuid4().hex[:8]}"])
        design.build_schedule(s, st)
        rid = new[0].reader.id
    with db.read() as s:
        reader = s.get(Reader, rid)
    viewer.clear_caches()
    screen = reading.open_screen(db, reader)
    render_case(screen)
    t = Timings()
    for _ in range(reads):
        if screen.kind != "case":
            break
        viewer.clear_caches()  # nothing of earlier cases helps the next one
        if prefetch:
            reading.prefetch_next(db, reader, screen.view.assignment_id, wait=True)
        t0 = time.perf_counter()
        out = reading.submit(db, reader, screen.view, ANSWERS)
        t1 = time.perf_counter()
        if not out.saved:
            raise RuntimeError(out.message)
        screen = reading.open_screen(db, reader, out.next_id)
        t2 = time.perf_counter()
        if screen.kind == "case":
            render_case(screen)
        t3 = time.perf_counter()
        t.submit.append(t1 - t0)
        t.open.append(t2 - t1)
        t.render.append(t3 - t2)
        t.total.append(t3 - t0)
    return t


def bench_apptest(env: dict[str, str], token: str, reads: int, reading_s: float = 1.0) -> list[float]:
    """Seconds of the whole case-page run after a "Save and next" click (streamlit AppTest)."""
    from streamlit.testing.v1 import AppTest

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        app = ROOT / "app.py"
        at = AppTest.from_file(str(app), default_timeout=120)
        at.query_params["token"] = token
        at.run()
        at.button(key="continue").click().run()
        out = []
        for _ in range(reads):
            radios = [r for r in at.radio if r.key and r.key.startswith("cfv_q_")]
            if not radios:
                break
            for r, v in zip(radios, ANSWERS.values()):
                r.set_value(v)
            time.sleep(reading_s)  # the reader reads the case (the page prefetches meanwhile)
            button = next(b for b in at.button if b.label == "Save and next")
            t0 = time.perf_counter()
            button.click().run()
            out.append(time.perf_counter() - t0)
            if at.exception:
                raise RuntimeError(str(at.exception))
        return out
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def summary_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return {"n": len(ms), "median": statistics.median(ms), "p90": p90, "max": ms[-1], "min": ms[0]}


def table(rows: list[tuple[str, list[float]]]) -> str:
    """A markdown table: one row per timed step (seconds in, milliseconds out)."""
    out = ["| what is timed | median | p90 | max | n |", "|---|---:|---:|---:|---:|"]
    for what, values in rows:
        d = summary_ms(values)
        if not d.get("n"):
            out.append(f"| {what} | — | — | — | 0 |")
        else:
            out.append(f"| {what} | {d['median']:.1f} ms | {d['p90']:.1f} ms | {d['max']:.1f} ms | {d['n']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/ui_next_case.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study-dir", help="a study folder (default: build a sample study in a temp folder)")
    ap.add_argument("--db", help="its database URL (default: the study engine's rules)")
    ap.add_argument("--study", help="study name (default: the only study in the database)")
    ap.add_argument("--reads", type=int, default=24, help="Next clicks to time (default 24)")
    ap.add_argument("--image-size", type=int, default=512, help="sample study: phantom size in px (default 512)")
    ap.add_argument("--apptest", action="store_true", help="also time the whole page run with AppTest")
    args = ap.parse_args(argv)

    from cfviewer.study.db import open_database, resolve_url
    from cfviewer.study.demo import build_sample_study
    from cfviewer.study.studies import get_study

    tmp = Path(tempfile.mkdtemp(prefix="cfviewer-uibench-"))
    try:
        if args.study_dir:
            root = Path(args.study_dir).resolve()
            src_url = resolve_url(args.db, root)
            where = f"study folder {root}"
        else:
            t = time.perf_counter()
            sample = build_sample_study(tmp, image_size=args.image_size)
            root, src_url = sample.root, sample.db_url
            where = (f"sample study ({args.image_size} px phantoms, 64 px random model), built in "
                     f"{time.perf_counter() - t:.0f} s")
        url = copy_database(src_url, tmp / "copy" / "study.db")
        db = open_database(url, study_dir=root)  # the copy's files stay in the study folder
        with db.read() as s:
            name = get_study(s, args.study).name
        print(f"cfviewer UI benchmark on {where}; database copied to {url}\n")
        rows: list[tuple[str, list[float]]] = []
        for prefetch in (False, True):
            t = bench_functions(db, name, args.reads, prefetch=prefetch)
            how = "next case prefetched while reading" if prefetch else "cold caches"
            rows += [(f"server functions of a Next click (submit + open + images), {how}", t.total),
                     ("  submit answers", t.submit), ("  open next read", t.open), ("  images", t.render)]
        if args.apptest:
            from cfviewer.study import design, studies

            with db.write() as s:
                st = studies.get_study(s, name)
                new = studies.add_readers(s, st, ["bench-apptest"])
                design.build_schedule(s, st)
                token = new[0].token
            env = {"CFVIEWER_STUDY_DIR": str(root), "CFVIEWER_DB_URL": url}
            rows.append(("the whole page run (AppTest, Streamlit included, 1 s reading time between clicks)",
                         bench_apptest(env, token, args.reads)))
        print(table(rows))
        db.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
