"""benchmarks/ui_next_case.py: the next-case benchmark walks a new reader and leaves the study alone."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

import ui_fixtures as F
from cfviewer.study.schema import Reader, Response

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ui_next_case.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("ui_next_case", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_script()


def test_bench_functions_times_each_next_click_on_a_copy(tmp_path_factory, tmp_path):
    tpl = F.template(tmp_path_factory)
    url = bench.copy_database(tpl.db_url, tmp_path / "copy.db")
    from cfviewer.study.db import open_database

    db = open_database(url, study_dir=tpl.root)  # the copied database; the files stay in the template
    try:
        t = bench.bench_functions(db, tpl.name, reads=3)
        assert len(t.total) == len(t.submit) == len(t.open) == len(t.render) == 3
        assert all(tot >= sub + op for tot, sub, op in zip(t.total, t.submit, t.open))
        with db.read() as s:
            bench_reader = s.scalars(select(Reader).where(Reader.name.like("bench-%"))).one()
            assert s.scalar(select(func.count(Response.id)).where(Response.reader_id == bench_reader.id)) == 6
    finally:
        db.dispose()
    original = tpl.open()
    try:
        with original.read() as s:  # the template itself was not touched
            assert s.scalar(select(func.count(Reader.id)).where(Reader.name.like("bench-%"))) == 0
    finally:
        original.dispose()
    summary = bench.summary_ms(t.total)
    assert summary["n"] == 3 and summary["min"] <= summary["median"] <= summary["max"]
    assert bench.summary_ms([]) == {"n": 0}
    table = bench.table([("next click", t.total), ("nothing", [])]).splitlines()
    assert table[0] == "| what is timed | median | p90 | max | n |"
    assert table[2].startswith("| next click | ") and table[2].endswith(" | 3 |")
    assert table[3] == "| nothing | — | — | — | 0 |"
