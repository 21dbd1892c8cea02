"""Engines and sessions for the study database.

Where the database is (first that applies):
1. the `url` argument (CLI `--db`),
2. the environment variable `CFVIEWER_DB_URL`,
3. `db_url` in `<study folder>/study.json` (written by `cfviewer study create --db URL`; a
   relative SQLite path there is relative to the study folder, so a copy opens its own copy),
4. SQLite at `<study folder>/study.db`.

SQLite is opened with WAL journaling, `busy_timeout`, `foreign_keys=ON` and `synchronous=FULL`
(an acknowledged answer survives a crash); write transactions start with `BEGIN IMMEDIATE`, so
two writers queue on the lock instead of failing half-way. PostgreSQL (`postgresql+psycopg://`)
works unchanged. `open_database` upgrades the schema to the newest Alembic revision on open.

The study folder (every stored path is relative to it: `cfviewer.study.studies.study_folder`) is
found when the database is opened, never read from it (first that applies):
1. the `study_dir` argument (the CLI's study argument),
2. the environment variable `CFVIEWER_STUDY_DIR` (the app's study folder; needed for
   PostgreSQL, which has no folder of its own),
3. SQLite: the folder holding the database file.
A PostgreSQL database opened without 1 or 2 has no study folder. Refused: a SQLite database
that sits in a study folder of its own (with artifacts/ or cases/) other than the one
`CFVIEWER_STUDY_DIR` names (e.g. a copy opened with the original's variable still set).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from cfviewer.errors import CfviewerError

ENV_URL = "CFVIEWER_DB_URL"
ENV_STUDY_DIR = "CFVIEWER_STUDY_DIR"
STUDY_DIR_INFO = "cfviewer_study_folder"
"""Key of the `StudyFolder` in every session's `info` (see `cfviewer.study.studies.study_folder`)."""
STUDY_CONFIG = "study.json"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 30_000


class DatabaseError(CfviewerError):
    """The database URL is wrong or the database cannot be opened."""


def resolve_url(url: str | None = None, study_dir: str | Path | None = None) -> str:
    """The database URL by the rules in the module docstring."""
    if url:
        return _normalise(url)
    env = os.environ.get(ENV_URL)
    if env:
        return _normalise(env)
    if study_dir is None:
        raise DatabaseError(
            f"no database given: pass --db URL, set {ENV_URL}, or name a study folder"
        )
    study_dir = Path(study_dir)
    cfg = study_dir / STUDY_CONFIG
    if cfg.is_file():
        try:
            configured = json.loads(cfg.read_text()).get("db_url")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise DatabaseError(f"{cfg}: not a JSON object ({exc}); fix or delete the file") from exc
        if configured:
            return _normalise(configured, base=study_dir)  # a relative SQLite file: in the study folder
    return f"sqlite:///{(study_dir / 'study.db').resolve()}"


@dataclass(frozen=True)
class StudyFolder:
    """Where the study's files are, as found when the database was opened (module docstring)."""

    path: Path | None  # None: not known (PostgreSQL without a study folder)
    source: str  # "argument", "environment", "sqlite" or "none"
    db_file: Path | None = None  # the SQLite database file, when there is one


def find_study_folder(url: str, study_dir: str | Path | None = None) -> StudyFolder:
    """The study folder for a database opened with `url` (rules in the module docstring)."""
    db_file = None
    try:
        u = make_url(url)
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
            db_file = Path(u.database).expanduser().resolve()
    except (ArgumentError, ValueError):
        pass
    if study_dir is not None:
        return StudyFolder(Path(study_dir).expanduser().resolve(), "argument", db_file)
    env = os.environ.get(ENV_STUDY_DIR)
    if env:
        folder = Path(env).expanduser().resolve()
        if db_file is not None and folder not in db_file.parents and \
                any((db_file.parent / sub).is_dir() for sub in ("artifacts", "cases")):
            raise DatabaseError(
                f"the database {db_file} lies in a study folder of its own ({db_file.parent}), but "
                f"{ENV_STUDY_DIR}={env} names another one; its files would be read and written there. "
                f"Unset {ENV_STUDY_DIR} or set it to {db_file.parent}")
        return StudyFolder(folder, "environment", db_file)
    if db_file is not None:
        return StudyFolder(db_file.parent, "sqlite", db_file)
    return StudyFolder(None, "none", None)


def _normalise(url: str, base: Path | None = None) -> str:
    """Accept a plain file path as a SQLite database; a relative SQLite path is relative to
    `base` (the folder holding study.json) when given, else to the working directory."""
    if "://" not in url:
        p = Path(url).expanduser()
        return f"sqlite:///{((base / p) if base is not None and not p.is_absolute() else p).resolve()}"
    try:
        u = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseError(f"database URL {url!r} is not valid ({exc}); expected e.g. "
                            "sqlite:////path/study.db or postgresql+psycopg://user:pw@host:5432/db") from exc
    if base is not None and u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:" \
            and not Path(u.database).is_absolute():
        return u.set(database=str((base / u.database).resolve())).render_as_string(hide_password=False)
    return url


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA synchronous = FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get("cfviewer_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def make_engine(url: str) -> Engine:
    """An engine with cfviewer's connection settings (no schema upgrade)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        _install_sqlite_hooks(engine)
    else:
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise DatabaseError(
                f"the driver for {u.drivername!r} is not installed ({exc.name}); "
                "for PostgreSQL: pip install 'psycopg[binary]' and use postgresql+psycopg://"
            ) from exc
    return engine


@dataclass
class Database:
    """An open study database: `read()` and `write()` give sessions in a transaction."""

    url: str
    engine: Engine
    study_folder: StudyFolder | None = None  # default: find_study_folder(url)

    def __post_init__(self) -> None:
        if self.study_folder is None:
            self.study_folder = find_study_folder(self.url)
        info = {STUDY_DIR_INFO: self.study_folder}
        self._read = sessionmaker(bind=self.engine, expire_on_commit=False, info=info)
        self._write = sessionmaker(
            bind=self.engine.execution_options(cfviewer_write=True), expire_on_commit=False, info=info
        )
        self._thread_lock = threading.Lock()
        self._lock_path: str | None = None
        u = self.engine.url
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
            self._lock_path = f"{u.database}.writelock"

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """SQLite: queue writers on a lock file (blocking flock wakes the next writer at once;
        SQLite's own busy handler polls with sleeps of up to 100 ms, which wastes most of the
        time when eight processes write). BEGIN IMMEDIATE stays as the safety net for writers
        that do not take the lock (e.g. the sqlite3 shell)."""
        if self._lock_path is None:
            yield
            return
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading (closed at the end without committing; loaded objects stay
        readable afterwards; never blocks writers in WAL mode)."""
        with self._read() as s:
            yield s

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction starts with BEGIN IMMEDIATE (SQLite); commits on success,
        rolls back on any exception."""
        with self._writer_turn(), self._write() as s:
            with s.begin():
                yield s

    def session(self, write: bool = False) -> Session:
        """A plain session (the caller commits); `write=True` begins IMMEDIATE on SQLite."""
        return (self._write if write else self._read)()

    def dispose(self) -> None:
        self.engine.dispose()


def _remember_study_folder(target, context) -> None:
    """Keep the session's study folder on every loaded Study, so that it still resolves its
    paths after the session is closed (`cfviewer.study.studies.study_folder`)."""
    folder = context.session.info.get(STUDY_DIR_INFO) if context.session is not None else None
    if folder is not None:
        target._cfv_study_folder = folder


def _install_study_hook() -> None:
    from cfviewer.study.schema import Study

    if not event.contains(Study, "load", _remember_study_folder):
        event.listen(Study, "load", _remember_study_folder)


_install_study_hook()


_HEAD: str | None = None


def _alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    global _HEAD
    if _HEAD is None:
        from alembic.script import ScriptDirectory

        _HEAD = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    return _HEAD


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database) -> None:
    """Bring the schema to the newest revision. Safe when several processes open a new database
    at once: the upgrade runs inside one write transaction (SQLite BEGIN IMMEDIATE, PostgreSQL
    advisory lock), and whoever comes second finds the schema current."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    head = head_revision()
    if current_revision(db.engine) == head:
        return
    with db.engine.execution_options(cfviewer_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7406113)"))
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
        command.upgrade(_alembic_config(conn), "head")


def open_database(
    url: str | None = None, study_dir: str | Path | None = None, *, migrate: bool = True
) -> Database:
    """Open (and by default create / upgrade) the study database. See the module docstring."""
    resolved = resolve_url(url, study_dir)
    folder = find_study_folder(resolved, study_dir)
    engine = make_engine(resolved)
    db = Database(resolved, engine, folder)
    try:
        if migrate:
            upgrade(db)
        else:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        if isinstance(exc, CfviewerError):
            raise
        from sqlalchemy.exc import OperationalError, DBAPIError

        if isinstance(exc, (OperationalError, DBAPIError)):
            raise DatabaseError(
                f"cannot open database {engine.url.render_as_string(hide_password=True)}: "
                f"{exc.orig if hasattr(exc, 'orig') else exc}; check the URL / server / permissions"
            ) from exc
        raise
    return db


def copy_sqlite(src_url: str, dest: str | Path) -> str:
    """A consistent copy of a SQLite study database at `dest` (SQLite's online backup API:
    safe while others write); returns the copy's URL. The study's files are not copied: open
    the copy with `open_database(url, study_dir=<the study folder>)`."""
    import sqlite3

    from sqlalchemy.engine import make_url

    u = make_url(src_url)
    if u.get_backend_name() != "sqlite":
        raise DatabaseError(f"only a SQLite database can be copied this way, not {u.get_backend_name()}; "
                            "give a SQLite study")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(u.database) as a, sqlite3.connect(dest) as b:
        a.backup(b)
    return f"sqlite:///{dest}"
