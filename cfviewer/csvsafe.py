"""CSV cells a spreadsheet cannot run as formulas (CSV / formula injection).

Every CSV the project writes for people to open (the study export `responses.csv`, the
analysis tables, the sample-size table, the page downloads) goes through `write_csv` or
`csv_text`. OWASP's rule: a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return is prefixed with a single quote, so Excel / LibreOffice / Sheets show it
as text instead of evaluating it (``=HYPERLINK(...)`` becomes ``'=HYPERLINK(...)``).

Only text is touched: numeric, boolean and datetime columns are written as they are, so a
negative rating or difference stays a number. A text cell that is just a plain number
(``"-3"``, ``"+1.5"``, ``"-2e-3"``) is left alone as well: a spreadsheet reads it as that
number, which runs nothing; anything longer (``"-3+A1"``, ``"-cmd|..."``) is prefixed.
Parquet and the database keep the exact text (never pass them through here).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralise(value: Any) -> Any:
    """`value` safe for a CSV cell: a str starting with a formula character gets a leading
    single quote (unless it is just a plain number); everything else is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    return (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype))


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` whose text cells (object / string / categorical columns, and the
    column names) are `neutralise`d; other columns are untouched."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            out[col] = s.cat.rename_categories([neutralise(c) for c in s.cat.categories])
        elif _is_text(s):
            out[col] = s.map(neutralise, na_action="ignore")
    out.columns = [neutralise(c) for c in out.columns]
    return out


def csv_text(df: pd.DataFrame, **to_csv: Any) -> str:
    """`df.to_csv(**to_csv)` as a str, formula cells neutralised (for download buttons)."""
    return neutralise_frame(df).to_csv(**to_csv)


def write_csv(df: pd.DataFrame, path: str | Path, **to_csv: Any) -> None:
    """`df.to_csv(path, **to_csv)`, formula cells neutralised."""
    neutralise_frame(df).to_csv(path, **to_csv)


def safe_row(row: list[Any] | tuple[Any, ...]) -> list[Any]:
    """One `csv.writer` row, formula cells neutralised."""
    return [neutralise(v) for v in row]
