"""Alembic environment for the cfviewer study database.

Used two ways: `cfviewer.study.db.upgrade` passes an open connection in
`config.attributes["connection"]`; from a shell, `alembic -c cfviewer/study/migrations/alembic.ini
upgrade head` uses `CFVIEWER_DB_URL` (or `sqlalchemy.url` in the ini)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from cfviewer.study.schema import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER via table copies
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("CFVIEWER_DB_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set CFVIEWER_DB_URL or sqlalchemy.url in alembic.ini")
    engine = create_engine(url)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline() -> None:
    url = os.environ.get("CFVIEWER_DB_URL") or config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
