"""Descriptive statistics of the ratings per arm x question x stratum."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cfviewer.analysis.inputs import LIKERT, AnalysisInputError, check_responses

DESCRIBE_KINDS: tuple[str, ...] = ("all", "stratum", "pathology", "reader")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "arm", "question", "stratum_kind", "stratum", "n", "mean", "sd", "median", "q1", "q3",
    "iqr",
) + tuple(f"n_{v}" for v in LIKERT)


def _describe_groups(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = df.groupby(keys, sort=False)["rating"]
    out = pd.DataFrame({
        "n": g.size(),
        "mean": g.mean(),
        "sd": g.std(ddof=1),
        "median": g.median(),
        "q1": g.quantile(0.25),
        "q3": g.quantile(0.75),
    })
    out["iqr"] = out["q3"] - out["q1"]
    counts = df.groupby(keys, sort=False)["rating"].value_counts().unstack(fill_value=0)
    for v in LIKERT:
        out[f"n_{v}"] = counts[v] if v in counts.columns else 0
    return out.reset_index()


def describe(
    df: pd.DataFrame,
    strata: Sequence[str] = ("all", "stratum", "pathology"),
) -> pd.DataFrame:
    """n, mean, SD (ddof=1), median, quartiles (linear interpolation), IQR and the count of
    each rating, per arm x question x stratum. Uses every response (paired or not)."""
    if isinstance(strata, str):
        strata = (strata,)
    unknown = [s for s in strata if s not in DESCRIBE_KINDS]
    if unknown:
        raise AnalysisInputError(
            f"unknown strata {unknown}; choose from {', '.join(DESCRIBE_KINDS)}")
    df = check_responses(df)
    parts = []
    for kind in strata:
        if kind == "all":
            part = _describe_groups(df, ["arm", "question"])
            part["stratum"] = "all"
        else:
            part = _describe_groups(df, ["arm", "question", kind]).rename(
                columns={kind: "stratum"})
            part["stratum"] = part["stratum"].astype(str)
        part["stratum_kind"] = kind
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    for v in LIKERT:
        out[f"n_{v}"] = out[f"n_{v}"].astype(np.int64)
    out = out.sort_values(["question", "arm", "stratum_kind", "stratum"], kind="stable",
                          key=lambda s: s.map(_kind_rank) if s.name == "stratum_kind" else s
                          .astype(str))
    return out.reindex(columns=list(SUMMARY_COLUMNS)).reset_index(drop=True)


def _kind_rank(kind: str) -> int:
    return DESCRIBE_KINDS.index(kind)
