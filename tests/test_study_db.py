"""The database layer: URL resolution, SQLite settings, write transactions, migrations."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import threading

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from cfviewer.study import studies
from cfviewer.study.db import DatabaseError, head_revision, open_database, resolve_url
from cfviewer.study.schema import Base


def test_url_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    assert resolve_url(study_dir=tmp_path) == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    (tmp_path / "study.json").write_text(json.dumps({"db_url": "sqlite:////x/from_config.db"}))
    assert resolve_url(study_dir=tmp_path) == "sqlite:////x/from_config.db"
    monkeypatch.setenv("CFVIEWER_DB_URL", "sqlite:////x/from_env.db")
    assert resolve_url(study_dir=tmp_path) == "sqlite:////x/from_env.db"
    assert resolve_url("sqlite:////x/arg.db", study_dir=tmp_path) == "sqlite:////x/arg.db"
    assert resolve_url(str(tmp_path / "plain.db")) == f"sqlite:///{(tmp_path / 'plain.db').resolve()}"
    monkeypatch.delenv("CFVIEWER_DB_URL")
    with pytest.raises(DatabaseError, match="no database given"):
        resolve_url()
    (tmp_path / "study.json").write_text("[not json")
    with pytest.raises(DatabaseError, match="study.json"):
        resolve_url(study_dir=tmp_path)
    with pytest.raises(DatabaseError, match="not valid"):
        resolve_url("postgresql+psycopg://user@host:notaport/db")


def test_sqlite_settings_and_schema_at_head(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 's.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    db.dispose()


def test_migrations_match_the_models(tmp_path):
    """The Alembic revisions create exactly what schema.py declares (no autogenerate diff)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db = open_database(f"sqlite:///{tmp_path / 's.db'}")
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    assert diff == []
    db.dispose()


def test_write_transactions_take_the_write_lock_at_begin(tmp_path):
    path = tmp_path / "s.db"
    db = open_database(f"sqlite:///{path}")
    entered, release = threading.Event(), threading.Event()

    def hold():
        with db.write() as s:
            s.execute(text("SELECT 1"))  # BEGIN IMMEDIATE already holds the RESERVED lock
            entered.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert entered.wait(10)
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    assert other.execute("SELECT count(*) FROM studies").fetchone() == (0,)  # readers still read (WAL)
    release.set()
    t.join()
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    db.dispose()


def test_constraints_hold_in_the_database(tmp_path):
    from test_study_support import fast_study

    url = f"sqlite:///{tmp_path / 's.db'}"
    ids = fast_study(url, tmp_path, n_cases=2, readers=1)
    db = open_database(url)
    with pytest.raises(IntegrityError):
        with db.write() as s:
            s.execute(text("INSERT INTO responses (assignment_id, reader_id, case_id, arm_id, question_id, value, "
                           "submitted_at, app_version, simulated, revision) VALUES (1, :r, 1, 1, 1, 6, "
                           "'2030-01-01', 'x', 0, 1)"), {"r": ids["r0"]})
    with pytest.raises(IntegrityError):  # foreign keys are enforced
        with db.write() as s:
            s.execute(text("INSERT INTO arms (study_id, name, position, methods, description) "
                           "VALUES (999, 'x', 0, '[]', '')"))
    with pytest.raises(IntegrityError):  # one cohort entry per case
        with db.write() as s:
            s.execute(text("INSERT INTO cohort (study_id, case_id, pathology, stratum, probability, threshold, "
                           "bundle, position) VALUES (1, 1, 'Mass', 'TP', 0.9, 0.5, 'b', 9)"))
    db.dispose()


def _open_and_create(url: str, name: str) -> None:
    db = open_database(url)
    with db.write() as s:
        studies.create_study(s, name, "/tmp")
    db.dispose()


def test_several_processes_open_a_new_database_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_open_and_create, args=(url, f"s{i}")) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(900)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    db = open_database(url)
    with db.read() as s:
        assert sorted(st.name for st in s.scalars(studies.select(studies.Study))) == ["s0", "s1", "s2", "s3"]
    db.dispose()


def test_study_configuration_is_validated(tmp_path):
    db = open_database(f"sqlite:///{tmp_path / 's.db'}")
    with db.write() as s:
        st = studies.create_study(s, "ok", tmp_path)
        assert [q.key for q in st.questions] == ["confidence", "correct_feature"]
        assert st.questions[0].text == "How confident are you in the model's prediction?"
        assert st.questions[1].text == "Is the model looking at the correct feature?"
        assert all(len(q.anchors) == 5 for q in st.questions)
        for bad, match in [("a b", "not valid"), ("ok", "already exists")]:
            with pytest.raises(studies.StudyError, match=match):
                studies.create_study(s, bad, tmp_path)
        with pytest.raises(studies.StudyError, match="sessions_per_arm"):
            studies.create_study(s, "x1", tmp_path, config={"sessions_per_arm": 0})
        with pytest.raises(studies.StudyError, match="unknown study settings"):
            studies.create_study(s, "x2", tmp_path, config={"washout": 3})
        with pytest.raises(studies.StudyError, match="exactly 5 anchor"):
            studies.create_study(s, "x3", tmp_path, questions=[{"key": "q", "text": "Q?", "anchors": ["a"]}])
        studies.add_arm(s, st, "Method A", ["gradient"])
        with pytest.raises(studies.StudyError, match="already has an arm"):
            studies.add_arm(s, st, "Method A", ["gradient"])
        with pytest.raises(studies.StudyError, match="twice"):
            studies.add_arm(s, st, "Method C", ["gradient", "gradient"])
        studies.add_readers(s, st, ["ann"])
        with pytest.raises(studies.StudyError, match="already has a reader"):
            studies.add_readers(s, st, ["ann"])
    db.dispose()
