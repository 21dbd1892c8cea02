"""Reliability of the answer store: many writers, killed writers, SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from cfviewer.study.db import open_database
from cfviewer.study.schema import Response, ResponseHistory
from test_study_support import fast_study, submit_worker

N_PROCS, N_SUBMISSIONS = 8, 200
PG_URL = os.environ.get("CFVIEWER_TEST_PG_URL")


def _run_writers(url: str, tmp: Path) -> list[dict[int, int]]:
    """8 processes x 200 submissions: 4 readers x 200 reads, every reader served by two
    processes sending the same answers at the same time (double submits from two tabs)."""
    ids = fast_study(url, tmp, n_cases=N_SUBMISSIONS // 2, readers=N_PROCS // 2)
    ctx = mp.get_context("spawn")
    procs = []
    for k in range(N_PROCS):
        rid = ids[f"r{k // 2}"]
        p = ctx.Process(target=submit_worker, args=(url, rid, str(tmp / f"ack{k}.txt")))
        p.start()
        procs.append(p)
    for p in procs:
        p.join(900)
        assert p.exitcode == 0, f"writer exited with {p.exitcode}"
    acks = []
    for k in range(N_PROCS):
        lines = (tmp / f"ack{k}.txt").read_text().split("\n")
        acks.append({int(a): int(v) for a, v in (ln.split() for ln in lines if ln)})
    return acks


def _check_store(url: str, acks: list[dict[int, int]]) -> None:
    db = open_database(url, migrate=False)
    with db.read() as s:
        rows = s.execute(select(Response.assignment_id, Response.question_id, Response.value)).all()
        creates = s.scalar(select(func.count(ResponseHistory.id)).where(ResponseHistory.action == "create"))
        edits = s.scalar(select(func.count(ResponseHistory.id)).where(ResponseHistory.action == "edit"))
    db.dispose()
    assert all(len(a) == N_SUBMISSIONS for a in acks), [len(a) for a in acks]
    expected_reads = {aid: v for a in acks for aid, v in a.items()}
    assert len(expected_reads) == N_PROCS // 2 * N_SUBMISSIONS
    # zero duplicated: one row per read x question, one 'create' in the history each, no edits
    assert len(rows) == len({(a, q) for a, q, _ in rows}) == 2 * len(expected_reads)
    assert creates == len(rows) and edits == 0
    # zero lost: every acknowledged answer is stored with its value
    stored = {}
    for a, _q, v in rows:
        stored.setdefault(a, set()).add(v)
    for aid, v in expected_reads.items():
        assert stored.get(aid) == {v, 6 - v}, aid


@pytest.mark.slow
def test_eight_writers_sqlite_lose_and_duplicate_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    acks = _run_writers(url, tmp_path)
    _check_store(url, acks)
    con = sqlite3.connect(tmp_path / "study.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


@pytest.fixture()
def pg_url():
    if not PG_URL:
        pytest.skip("CFVIEWER_TEST_PG_URL is not set (no PostgreSQL server; .ci/services.sh starts one in CI)")
    from sqlalchemy import create_engine

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:  # server configured but not reachable
        pytest.skip(f"PostgreSQL at CFVIEWER_TEST_PG_URL is not reachable: {exc}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.xdist_group("postgres")
def test_eight_writers_postgres_lose_and_duplicate_nothing(pg_url, tmp_path):
    acks = _run_writers(pg_url, tmp_path)
    _check_store(pg_url, acks)


@pytest.mark.slow
def test_writer_killed_mid_stream_keeps_every_acknowledged_answer(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    ids = fast_study(url, tmp_path, n_cases=300, readers=1)
    ack = tmp_path / "ack.txt"
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=submit_worker, args=(url, ids["r0"], str(ack)))
    p.start()
    deadline = time.monotonic() + 900  # hang guard only
    while time.monotonic() < deadline:
        if ack.exists() and ack.read_text().count("\n") >= 40:
            break
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    assert p.exitcode == -signal.SIGKILL
    acked = {int(a): int(v) for a, v in (ln.split() for ln in ack.read_text().splitlines() if ln)}
    assert 40 <= len(acked) < 600, "the writer must be killed mid-stream"
    con = sqlite3.connect(tmp_path / "study.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    db = open_database(url, migrate=False)
    with db.read() as s:
        rows = s.execute(select(Response.assignment_id, Response.value)).all()
        n_hist = s.scalar(select(func.count(ResponseHistory.id)))
    db.dispose()
    stored: dict[int, set[int]] = {}
    for a, v in rows:
        stored.setdefault(a, set()).add(v)
    for aid, v in acked.items():
        assert stored.get(aid) == {v, 6 - v}
    # nothing half-written: every stored read has both answers and their history
    assert all(len(v) in (1, 2) for v in stored.values()) and n_hist == len(rows)
    assert len(rows) == 2 * len(stored) and len(stored) - len(acked) in (0, 1)
