"""Inter-reader agreement: quadratic weighted Cohen's kappa per reader pair and ordinal
Krippendorff's alpha over all readers, per arm and question.

Quadratic weighted kappa (Cohen 1968) for two readers rating the same items on K ordered
categories c_1 < ... < c_K::

    O_ij = share of items rated c_i by reader 1 and c_j by reader 2   (sums to 1)
    E_ij = (sum_j O_ij) * (sum_i O_ij)                               (chance: product of margins)
    w_ij = (i - j)^2 / (K - 1)^2                                      (disagreement weight)
    kappa = 1 - sum(w * O) / sum(w * E)

kappa = 1 for perfect agreement, 0 for chance-level agreement; it is undefined (NaN) when
sum(w * E) = 0, i.e. both readers gave one and the same category to every item.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import krippendorff
import numpy as np
import pandas as pd

from cfviewer.analysis.inputs import LIKERT, AnalysisInputError, check_responses

AGREEMENT_COLUMNS = ("reader", "case", "arm", "question", "rating")


def confusion_table(r1: Sequence[int], r2: Sequence[int],
                    categories: Sequence[int] = LIKERT) -> np.ndarray:
    """K x K count table: rows = reader 1's category, columns = reader 2's."""
    r1, r2 = np.asarray(r1), np.asarray(r2)
    if r1.shape != r2.shape:
        raise AnalysisInputError(
            f"the two readers' ratings must be paired item by item, got {r1.size} and {r2.size}")
    cats = np.asarray(categories)
    i = np.searchsorted(cats, r1)
    j = np.searchsorted(cats, r2)
    bad = (i >= cats.size) | (j >= cats.size)
    bad |= (cats[np.minimum(i, cats.size - 1)] != r1) | (cats[np.minimum(j, cats.size - 1)] != r2)
    if bad.any():
        raise AnalysisInputError(
            f"ratings must be among the categories {list(cats)}; found "
            f"{sorted(set(np.r_[r1[bad], r2[bad]].tolist()))}")
    table = np.zeros((cats.size, cats.size), dtype=np.int64)
    np.add.at(table, (i, j), 1)
    return table


def weighted_kappa_from_table(table: np.ndarray, weights: str = "quadratic") -> float:
    """Weighted kappa of a K x K count (or proportion) table; NaN when undefined."""
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 2:
        raise AnalysisInputError(f"kappa needs a square K x K table with K >= 2, got {t.shape}")
    total = t.sum()
    if total <= 0:
        return math.nan
    k = t.shape[0]
    idx = np.arange(k)
    if weights == "quadratic":
        w = (idx[:, None] - idx[None, :]) ** 2 / (k - 1) ** 2
    elif weights == "linear":
        w = np.abs(idx[:, None] - idx[None, :]) / (k - 1)
    else:
        raise AnalysisInputError(f"weights {weights!r} must be 'quadratic' or 'linear'")
    o = t / total
    e = np.outer(o.sum(axis=1), o.sum(axis=0))
    expected = float((w * e).sum())
    if expected == 0:
        return math.nan
    return 1.0 - float((w * o).sum()) / expected


def quadratic_weighted_kappa(r1: Sequence[int], r2: Sequence[int],
                             categories: Sequence[int] = LIKERT) -> float:
    """Quadratic weighted Cohen's kappa of two readers' paired ratings (module docstring)."""
    return weighted_kappa_from_table(confusion_table(r1, r2, categories), "quadratic")


def _select(df: pd.DataFrame, arms, questions) -> pd.DataFrame:
    df = check_responses(df, required=AGREEMENT_COLUMNS)
    for name, chosen in (("arm", arms), ("question", questions)):
        if chosen is None:
            continue
        chosen = [chosen] if isinstance(chosen, str) else list(chosen)
        unknown = [c for c in chosen if c not in set(df[name])]
        if unknown:
            raise AnalysisInputError(f"{name}(s) {unknown} have no responses")
        df = df[df[name].isin(chosen)]
    return df


def reader_kappa(
    df: pd.DataFrame,
    arms: Iterable[object] | None = None,
    questions: Iterable[object] | None = None,
    categories: Sequence[int] = LIKERT,
    min_cases: int = 2,
) -> pd.DataFrame:
    """Quadratic weighted kappa for every pair of readers, per arm and question.

    Each pair is compared on the cases both readers rated. Columns: arm, question, reader_1,
    reader_2, n_cases, exact_agreement (share of identical ratings), kappa, note. Pairs with
    fewer than `min_cases` common cases, or with an undefined kappa, get NaN and a note.
    """
    df = _select(df, arms, questions)
    rows = []
    for (arm, q), part in df.groupby(["arm", "question"], sort=False):
        wide = part.pivot(index="case", columns="reader", values="rating")
        readers = sorted(wide.columns, key=str)
        for r1, r2 in itertools.combinations(readers, 2):
            both = wide[[r1, r2]].dropna()
            n = len(both)
            row = {"arm": arm, "question": q, "reader_1": r1, "reader_2": r2, "n_cases": n,
                   "exact_agreement": math.nan, "kappa": math.nan, "note": ""}
            if n < min_cases:
                row["note"] = f"only {n} case(s) read by both (< {min_cases})"
            else:
                a = both[r1].to_numpy(dtype=np.int64)
                b = both[r2].to_numpy(dtype=np.int64)
                row["exact_agreement"] = float(np.mean(a == b))
                row["kappa"] = quadratic_weighted_kappa(a, b, categories)
                if math.isnan(row["kappa"]):
                    row["note"] = "both readers gave one and the same rating to every case"
            rows.append(row)
    cols = ["arm", "question", "reader_1", "reader_2", "n_cases", "exact_agreement", "kappa",
            "note"]
    return pd.DataFrame(rows, columns=cols)


def reliability_matrix(part: pd.DataFrame) -> tuple[np.ndarray, list, list]:
    """Readers x cases matrix of ratings (NaN = not rated) for krippendorff.alpha."""
    wide = part.pivot(index="reader", columns="case", values="rating")
    return wide.to_numpy(dtype=float), list(wide.index), list(wide.columns)


def krippendorff_alpha(
    df: pd.DataFrame,
    arms: Iterable[object] | None = None,
    questions: Iterable[object] | None = None,
    categories: Sequence[int] = LIKERT,
    level: str = "ordinal",
) -> pd.DataFrame:
    """Krippendorff's alpha (ordinal by default) over all readers, per arm and question.

    Uses `krippendorff.alpha` on the readers x cases matrix, missing ratings as NaN, with the
    value domain fixed to `categories`. Columns: arm, question, n_readers, n_cases,
    n_pairable (cases rated by >= 2 readers), alpha, note. Undefined alpha (fewer than two
    readers, no case rated twice, a single value used throughout) gives NaN and a note.
    """
    df = _select(df, arms, questions)
    rows = []
    for (arm, q), part in df.groupby(["arm", "question"], sort=False):
        data, readers, cases = reliability_matrix(part)
        n_pairable = int((np.sum(~np.isnan(data), axis=0) >= 2).sum())
        row = {"arm": arm, "question": q, "n_readers": len(readers), "n_cases": len(cases),
               "n_pairable": n_pairable, "alpha": math.nan, "level": level, "note": ""}
        observed = np.unique(data[~np.isnan(data)])
        if len(readers) < 2:
            row["note"] = "fewer than two readers"
        elif n_pairable == 0:
            row["note"] = "no case was rated by two readers"
        elif observed.size < 2:
            row["note"] = f"every rating is {observed[0]:g}: alpha undefined"
        else:
            row["alpha"] = float(krippendorff.alpha(
                reliability_data=data, level_of_measurement=level,
                value_domain=list(categories)))
        rows.append(row)
    cols = ["arm", "question", "n_readers", "n_cases", "n_pairable", "alpha", "level", "note"]
    return pd.DataFrame(rows, columns=cols)
