"""Alembic migrations of the study database (package data: env.py, alembic.ini, versions)."""
