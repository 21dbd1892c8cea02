"""Validation of the long-format response table that every analysis function takes.

The table is the study export (`cfviewer.study.export`, `cfviewer study export`): one row per
reader x case x arm x question. The analysis only needs the columns in `REQUIRED_COLUMNS`;
the others (methods, comment, times, order, session, seed, app_version, simulated) are
carried along untouched. `analyze` leaves out rows with `simulated` True unless
`include_simulated=True`, and marks its report when it includes them (`simulated_mask`,
`simulated_note`, `no_answers_message`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from cfviewer.errors import CfviewerError

REQUIRED_COLUMNS: tuple[str, ...] = (
    "reader", "case", "arm", "pathology", "stratum", "question", "rating",
)
"""Columns every analysis function needs."""

EXPORT_COLUMNS: tuple[str, ...] = (
    "reader", "case", "arm", "methods", "pathology", "stratum", "question", "rating",
    "comment", "shown_at", "submitted_at", "duration_s", "raw_duration_s", "order", "session",
    "seed", "app_version", "simulated",
)
"""The full column set of the study export, in order: ``cfviewer.study.export`` writes exactly
these (its EXPORT_COLUMNS is this tuple); only REQUIRED_COLUMNS are needed here."""

LIKERT: tuple[int, ...] = (1, 2, 3, 4, 5)
"""The rating scale of every question."""

_PRODUCER = (
    "the long-format table written by `cfviewer study export` "
    "(cfviewer.study.export) has them"
)


class AnalysisInputError(CfviewerError):
    """The response table given to an analysis function cannot be analysed as it is."""


def check_responses(
    df: pd.DataFrame,
    required: Iterable[str] = REQUIRED_COLUMNS,
    scale: Sequence[int] = LIKERT,
) -> pd.DataFrame:
    """Check the response table and return it with `rating` as int64.

    Raises AnalysisInputError naming what is wrong: missing columns, empty table, missing
    values in a key column, ratings that are not integers on `scale`, or two responses for
    the same reader x case x arm x question.
    """
    if not isinstance(df, pd.DataFrame):
        raise AnalysisInputError(
            f"responses must be a pandas DataFrame, got {type(df).__name__}; load the export "
            "with pandas.read_csv / read_parquet first"
        )
    required = tuple(required)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise AnalysisInputError(
            f"response table is missing column(s) {', '.join(missing)} "
            f"(needed: {', '.join(required)}); {_PRODUCER}"
        )
    if df.empty:
        raise AnalysisInputError(
            "response table has no rows: there is nothing to analyse until readers have "
            "submitted answers"
        )
    for col in required:
        n_null = int(df[col].isna().sum())
        if n_null:
            raise AnalysisInputError(
                f"response table has {n_null} row(s) with no value in column {col!r}; "
                f"fill or drop them before analysing"
            )
    out = df
    if "rating" in required:
        rating = pd.to_numeric(df["rating"], errors="coerce")
        bad_type = rating.isna()
        if bad_type.any():
            example = df.loc[bad_type, "rating"].iloc[0]
            raise AnalysisInputError(
                f"column 'rating' has {int(bad_type.sum())} non-numeric value(s), e.g. "
                f"{example!r}; ratings must be integers {scale[0]}..{scale[-1]}"
            )
        values = rating.to_numpy(dtype=float)
        off = ~np.isin(values, np.asarray(scale, dtype=float))
        if off.any():
            raise AnalysisInputError(
                f"column 'rating' has {int(off.sum())} value(s) outside the scale "
                f"{list(scale)}, e.g. {values[off][0]:g}; fix or drop those rows"
            )
        out = df.copy()
        out["rating"] = values.astype(np.int64)
    key = [c for c in ("reader", "case", "arm", "question") if c in required]
    if len(key) == 4:
        dup = out.duplicated(subset=key, keep=False)
        if dup.any():
            first = out.loc[dup, key].iloc[0].to_dict()
            raise AnalysisInputError(
                f"{int(dup.sum())} rows share a reader x case x arm x question (e.g. {first}); "
                "keep only the latest answer of each (the export does this) before analysing"
            )
    return out


def simulated_mask(df: pd.DataFrame) -> pd.Series:
    """True for the rows answered by simulated readers (column `simulated`; absent: none).

    Accepts the export's bool column as well as the text a CSV round trip may leave
    ("True"/"False", "1"/"0"); a missing value counts as a real answer.
    """
    if "simulated" not in df.columns:
        return pd.Series(False, index=df.index, dtype=bool)
    col = df["simulated"]
    if pd.api.types.is_bool_dtype(col):
        return col.fillna(False).astype(bool)
    text = col.astype("string").str.strip().str.lower()
    return text.isin(["true", "1", "1.0", "yes"]).fillna(False).astype(bool)


def simulated_note(n_answers: int, readers: Sequence[object] | int) -> str:
    """"includes N simulated answer(s) from K simulated reader(s)" (the mark every output that
    includes simulated answers carries)."""
    k = readers if isinstance(readers, int) else len(readers)
    return (f"includes {n_answers} simulated answer{'s' if n_answers != 1 else ''} from {k} "
            f"simulated reader{'s' if k != 1 else ''}: not real readers, never report them")


def no_answers_message(
    study: str | None = None,
    simulated_excluded: int = 0,
    simulated_readers: int = 0,
    include_hint: str = "pass include_simulated=True",
) -> str:
    """Why there is nothing to analyse, and what to do about it in the user's own study."""
    where = f" in study {study!r}" if study else ""
    if simulated_excluded:
        k = simulated_readers
        return (f"no answers from real readers yet{where} ({simulated_excluded} simulated "
                f"answer{'s' if simulated_excluded != 1 else ''} from {k} simulated "
                f"reader{'s' if k != 1 else ''} excluded: {include_hint} to analyse them; "
                "never report simulated answers)")
    return (f"no answers yet{where}: there is nothing to analyse until readers have submitted "
            "answers")


def check_arms(df: pd.DataFrame, *arms: object) -> None:
    """Raise AnalysisInputError if an arm is not in the table."""
    present = pd.unique(df["arm"])
    for arm in arms:
        if arm not in set(present):
            raise AnalysisInputError(
                f"arm {arm!r} has no responses; arms in the table: "
                f"{', '.join(map(repr, sorted(map(str, present))))}"
            )
    if len(arms) == 2 and arms[0] == arms[1]:
        raise AnalysisInputError(f"compare two different arms, got {arms[0]!r} twice")


def check_questions(df: pd.DataFrame, questions: Iterable[object] | None) -> list:
    """The questions to analyse (all in table order when None); unknown ones raise."""
    present = list(pd.unique(df["question"]))
    if questions is None:
        return present
    if isinstance(questions, (str, bytes)):
        questions = [questions]
    questions = list(questions)
    unknown = [q for q in questions if q not in set(present)]
    if unknown:
        raise AnalysisInputError(
            f"question(s) {', '.join(map(repr, unknown))} have no responses; questions in "
            f"the table: {', '.join(map(repr, present))}"
        )
    return questions
