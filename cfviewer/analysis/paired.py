"""Paired comparison of two study arms: pairing, Wilcoxon signed-rank, rank-biserial
correlation with a bootstrap CI, and Holm's step-down correction.

Direction: every difference is ``d = rating(arm_b) - rating(arm_a)`` for the same reader,
case and question. Positive ``mean_diff`` / ``r_rb`` mean arm B was rated higher.

Zero differences follow ``zero_method`` (the same names as scipy.stats.wilcoxon):

- ``"pratt"`` (default): zeros are ranked with the other ``|d|`` and then dropped from the
  statistic (Pratt 1959);
- ``"wilcox"``: zeros are discarded before ranking (the test uses ``n - n_zero`` pairs);
- ``"zsplit"``: zeros are ranked and their ranks split evenly between the positive and the
  negative sums.

Rank-biserial correlation (matched pairs, Kerby 2014 "simple difference" formula)::

    r = (R+ - R-) / S

with R+ (R-) the sums of the average ranks of ``|d|`` of the positive (negative)
differences. ``S`` and the zero handling follow the zero method, so the effect size
describes the same ranks as the test:

- ``"wilcox"``: zeros are dropped, ranks run over the non-zero pairs, ``S = R+ + R-``
  (= m(m+1)/2 for m non-zero pairs);
- ``"pratt"``: ranks run over all n pairs, zero ranks go to neither sum, ``S = n(n+1)/2``:
  zeros count as "no preference" and pull r towards 0;
- ``"zsplit"``: half of every zero rank goes to each sum; they cancel in ``R+ - R-`` and
  ``S = n(n+1)/2``, so r equals the Pratt value.

With no zeros all three agree; r = +1 when every difference is positive, -1 when every one
is negative.

The bootstrap CI resamples pairs with replacement (percentile interval). Resampling n pairs
uniformly is the same as drawing multinomial counts over the distinct difference values with
their observed frequencies, which is how it is vectorised: one (n_boot x n_distinct) count
matrix, ranks from cumulative sums, no Python loop over resamples.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from cfviewer.analysis.inputs import (
    AnalysisInputError,
    check_arms,
    check_questions,
    check_responses,
)

ZERO_METHODS: tuple[str, ...] = ("pratt", "wilcox", "zsplit")
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")
STRATUM_KINDS: tuple[str, ...] = ("all", "stratum", "pathology", "reader", "case_mean")
_BOOT_CELLS = 1 << 21
DEFAULT_MIN_PAIRS = 6
"""Below 6 pairs a two-sided exact signed-rank test cannot reach p < 0.05 (p >= 2/2^5)."""

RESULT_COLUMNS: tuple[str, ...] = (
    "question", "stratum_kind", "stratum", "family", "arm_a", "arm_b", "n_pairs", "n_used", "n_zero",
    "n_unpaired", "mean_a", "sd_a", "mean_b", "sd_b", "mean_diff", "sd_diff", "statistic",
    "p", "p_holm", "r_rb", "ci_low", "ci_high", "zero_method", "alternative", "method", "note",
)


# --------------------------------------------------------------------------- pairing

@dataclass(frozen=True)
class Pairing:
    """The result of `pair_arms`.

    pairs: one row per (reader, case, question) answered under both arms, with columns
        reader, case, question, pathology, stratum, rating_a, rating_b, diff (= b - a).
    unpaired: the response rows of either arm whose partner is missing (columns reader,
        case, question, arm, pathology, stratum, rating).
    """

    pairs: pd.DataFrame
    unpaired: pd.DataFrame
    arm_a: object
    arm_b: object

    @property
    def n_unpaired(self) -> int:
        return len(self.unpaired)


def pair_arms(df: pd.DataFrame, arm_a: object, arm_b: object) -> Pairing:
    """Pair the responses of `arm_a` and `arm_b` per (reader, case, question).

    Rows of other arms are ignored. Rows without a partner are dropped from `pairs` and
    returned in `unpaired` (so they can be counted). A case whose pathology or stratum differs
    between the two arms raises AnalysisInputError.
    """
    return _pair_checked(check_responses(df), arm_a, arm_b)


def _pair_checked(df: pd.DataFrame, arm_a: object, arm_b: object) -> Pairing:
    """pair_arms on a table that already passed check_responses."""
    check_arms(df, arm_a, arm_b)
    key = ["reader", "case", "question"]
    cols = key + ["pathology", "stratum", "rating"]
    a = df.loc[df["arm"] == arm_a, cols]
    b = df.loc[df["arm"] == arm_b, cols]
    merged = a.merge(b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = merged["_merge"] == "both"
    paired = merged.loc[both]
    for col in ("pathology", "stratum"):
        differ = paired[f"{col}_a"] != paired[f"{col}_b"]
        if differ.any():
            row = paired.loc[differ].iloc[0]
            raise AnalysisInputError(
                f"case {row['case']!r} has {col} {row[f'{col}_a']!r} under arm {arm_a!r} but "
                f"{row[f'{col}_b']!r} under arm {arm_b!r}; a case's {col} must be the same in "
                "every arm (fix the export)"
            )
    pairs = pd.DataFrame({
        "reader": paired["reader"].to_numpy(),
        "case": paired["case"].to_numpy(),
        "question": paired["question"].to_numpy(),
        "pathology": paired["pathology_a"].to_numpy(),
        "stratum": paired["stratum_a"].to_numpy(),
        "rating_a": paired["rating_a"].to_numpy(dtype=np.int64),
        "rating_b": paired["rating_b"].to_numpy(dtype=np.int64),
    })
    pairs["diff"] = pairs["rating_b"] - pairs["rating_a"]
    only_a = merged.loc[merged["_merge"] == "left_only"]
    only_b = merged.loc[merged["_merge"] == "right_only"]
    unpaired = pd.concat(
        [
            pd.DataFrame({
                "reader": part["reader"].to_numpy(), "case": part["case"].to_numpy(),
                "question": part["question"].to_numpy(), "arm": arm,
                "pathology": part[f"pathology_{s}"].to_numpy(),
                "stratum": part[f"stratum_{s}"].to_numpy(),
                "rating": part[f"rating_{s}"].to_numpy(),
            })
            for part, arm, s in ((only_a, arm_a, "a"), (only_b, arm_b, "b"))
        ],
        ignore_index=True,
    )
    return Pairing(pairs=pairs.reset_index(drop=True), unpaired=unpaired, arm_a=arm_a,
                   arm_b=arm_b)


# --------------------------------------------------------------------------- Holm

def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as the input).

    With the m non-NaN p-values sorted ascending p(1) <= ... <= p(m):
    ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) * p(j))``; the running maximum keeps the
    adjusted values monotone. NaN inputs stay NaN and do not count towards m.
    """
    p = np.asarray(list(pvalues) if not isinstance(pvalues, np.ndarray) else pvalues,
                   dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise AnalysisInputError("p-values for the Holm correction must lie in [0, 1]")
    idx = np.flatnonzero(ok)
    order = np.argsort(p[idx], kind="stable")
    sorted_p = p[idx][order]
    factors = m - np.arange(m)  # m, m-1, ..., 1
    adj = np.minimum(1.0, np.maximum.accumulate(factors * sorted_p))
    out[idx[order]] = adj
    return out


# --------------------------------------------------------------------------- rank-biserial

def _check_zero_method(zero_method: str) -> None:
    if zero_method not in ZERO_METHODS:
        raise AnalysisInputError(
            f"zero_method {zero_method!r} is not one of {', '.join(ZERO_METHODS)}"
        )


def _distinct(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct difference values sorted by (|d|, d) and their counts."""
    values, counts = np.unique(diffs, return_counts=True)
    order = np.lexsort((values, np.abs(values)))
    return values[order], counts[order]


def _rank_biserial_from_counts(
    values: np.ndarray, counts: np.ndarray, zero_method: str
) -> np.ndarray:
    """r for each row of `counts` (B x U) over the distinct `values` (sorted by |value|).

    Average ranks of |d| come from cumulative counts per distinct |d| group: a group of g
    tied values ending at cumulative position c has average rank c - (g - 1) / 2.
    """
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    values = np.asarray(values, dtype=float)
    absval = np.abs(values)
    if zero_method == "wilcox":
        counts = counts * (values != 0)
    starts = np.flatnonzero(np.r_[True, absval[1:] != absval[:-1]])
    group_of = np.cumsum(np.r_[False, absval[1:] != absval[:-1]])
    group_counts = np.add.reduceat(counts, starts, axis=1)
    avg_rank = np.cumsum(group_counts, axis=1) - (group_counts - 1.0) / 2.0
    rank = avg_rank[:, group_of]
    pos, neg = values > 0, values < 0
    r_plus = (counts[:, pos] * rank[:, pos]).sum(axis=1)
    r_minus = (counts[:, neg] * rank[:, neg]).sum(axis=1)
    if zero_method == "wilcox":
        denom = r_plus + r_minus
    else:
        n = counts.sum(axis=1)
        denom = n * (n + 1.0) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (r_plus - r_minus) / np.where(denom > 0, denom, 1.0), np.nan)


def rank_biserial(diffs: Sequence[float] | np.ndarray, zero_method: str = "pratt") -> float:
    """Matched-pairs rank-biserial correlation of the differences (see module docstring)."""
    _check_zero_method(zero_method)
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return math.nan
    values, counts = _distinct(d)
    return float(_rank_biserial_from_counts(values, counts[None, :], zero_method)[0])


def bootstrap_rank_biserial(
    diffs: Sequence[float] | np.ndarray,
    zero_method: str = "pratt",
    n_boot: int = 2000,
    seed: int | np.random.SeedSequence = 0,
    confidence: float = 0.95,
    clusters: Sequence[object] | np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the rank-biserial r.

    Without `clusters`, pairs are resampled with replacement. With `clusters` (one label per
    difference, e.g. the case), whole clusters are resampled, keeping the correlated pairs
    of a cluster (every reader's reading of one case) together. Resamples whose r is
    undefined (all zeros under "wilcox") are ignored. Returns (nan, nan) if there are no
    pairs or n_boot < 1.
    """
    _check_zero_method(zero_method)
    d = np.asarray(diffs, dtype=float)
    if d.size == 0 or n_boot < 1:
        return math.nan, math.nan
    if not 0 < confidence < 1:
        raise AnalysisInputError(f"confidence must be in (0, 1), got {confidence!r}")
    values, counts = _distinct(d)
    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    if clusters is not None:
        clusters = np.asarray(clusters)
        if clusters.shape != d.shape:
            raise AnalysisInputError(
                f"clusters must give one label per difference ({d.size}), got {clusters.size}")
        _, cluster_idx = np.unique(clusters, return_inverse=True)
        if cluster_idx.max() + 1 == d.size:
            clusters = None  # one pair per cluster: the same as resampling pairs
    if clusters is None:
        # Chunks keep the (resamples x distinct values) matrices near _BOOT_CELLS elements
        # even for continuous differences (up to n distinct values).
        chunk = max(1, _BOOT_CELLS // values.size)
        draws = (rng.multinomial(d.size, counts / d.size, size=min(chunk, n_boot - start))
                 for start in range(0, n_boot, chunk))
    else:
        uniq, inv = np.unique(d, return_inverse=True)
        pos = np.empty(uniq.size, dtype=np.int64)
        pos[np.lexsort((uniq, np.abs(uniq)))] = np.arange(uniq.size)
        k = int(cluster_idx.max()) + 1
        per_cluster = np.zeros((k, values.size))
        np.add.at(per_cluster, (cluster_idx.ravel(), pos[inv.ravel()]), 1.0)
        chunk = max(1, _BOOT_CELLS // max(k, values.size))

        def cluster_draws(size: int) -> np.ndarray:
            # k clusters drawn uniformly with replacement; times drawn per cluster via bincount
            picks = rng.integers(0, k, size=(size, k))
            times = np.bincount((np.arange(size)[:, None] * k + picks).ravel(),
                                minlength=size * k).reshape(size, k)
            return times @ per_cluster

        draws = (cluster_draws(min(chunk, n_boot - start)) for start in range(0, n_boot, chunk))
    r = np.concatenate([_rank_biserial_from_counts(values, c, zero_method) for c in draws])
    r = r[~np.isnan(r)]
    if r.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(r, [tail, 1.0 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------- one test

def _scipy_method_used(d: np.ndarray, zero_method: str, method: str) -> str:
    """Which p-value scipy.stats.wilcoxon computes for method="auto" (scipy >= 1.15 rules)."""
    if method != "auto":
        return method
    n_zero = int(np.count_nonzero(d == 0))
    if d.size > 50:
        return "asymptotic"
    ranked = np.abs(d[d != 0]) if zero_method == "wilcox" else np.abs(d)
    has_ties = np.unique(ranked).size < ranked.size
    if not (has_ties or n_zero > 0):
        return "exact"
    if d.size <= 13:
        return "exact permutation"
    return "asymptotic"


def signed_rank_permutation_p(d: np.ndarray, zero_method: str = "pratt",
                              alternative: str = "two-sided") -> float:
    """The p-value scipy.stats.wilcoxon(method="auto") gives for n <= 13 with ties or zeros.

    scipy runs `stats.permutation_test` over all 2^n sign flips with a non-vectorised
    statistic (seconds per call). Flipping signs leaves |d| and hence the ranks unchanged,
    so R+ is a fixed rank vector summed over the positive entries; that statistic is
    vectorised and passed to the same `stats.permutation_test`, giving scipy's exact
    p-value (checked in the tests) in milliseconds.
    """
    d = np.asarray(d, dtype=float)
    ranks = np.zeros(d.size)
    if zero_method == "wilcox":
        ranks[d != 0] = stats.rankdata(np.abs(d[d != 0]))
    else:
        ranks = stats.rankdata(np.abs(d))

    def r_plus(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.sum(np.where(np.moveaxis(np.asarray(x), axis, -1) > 0, ranks, 0.0), axis=-1)

    res = stats.permutation_test((d,), r_plus, permutation_type="samples", vectorized=True,
                                 alternative=alternative, n_resamples=9999)
    return float(res.pvalue)


def paired_test(
    a: np.ndarray,
    b: np.ndarray,
    zero_method: str = "pratt",
    alternative: str = "two-sided",
    method: str = "auto",
    correction: bool = False,
    n_boot: int = 2000,
    seed: int | np.random.SeedSequence = 0,
    min_pairs: int = DEFAULT_MIN_PAIRS,
    confidence: float = 0.95,
    clusters: np.ndarray | None = None,
) -> dict:
    """All statistics of one paired sample (ratings a and b of the same pairs).

    `clusters` (one label per pair) makes the bootstrap CI of r resample clusters instead
    of pairs (see `bootstrap_rank_biserial`).

    Never raises on degenerate data: too few pairs or all-zero differences give NaN test
    columns with an explanatory `note`.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    d = b - a
    n = int(d.size)
    n_zero = int(np.count_nonzero(d == 0))
    n_used = n - n_zero if zero_method == "wilcox" else n

    def sd(x: np.ndarray) -> float:
        return float(np.std(x, ddof=1)) if x.size > 1 else math.nan

    row = {
        "n_pairs": n, "n_used": n_used, "n_zero": n_zero,
        "mean_a": float(a.mean()) if n else math.nan, "sd_a": sd(a),
        "mean_b": float(b.mean()) if n else math.nan, "sd_b": sd(b),
        "mean_diff": float(d.mean()) if n else math.nan, "sd_diff": sd(d),
        "statistic": math.nan, "p": math.nan, "r_rb": math.nan,
        "ci_low": math.nan, "ci_high": math.nan,
        "zero_method": zero_method, "alternative": alternative, "method": "", "note": "",
    }
    if n == 0:
        row["note"] = "no paired responses"
        return row
    if n_zero == n:
        row["note"] = f"all {n} differences are zero: no test"
        return row
    if n_used < min_pairs:
        what = "non-zero pairs" if zero_method == "wilcox" else "pairs"
        row["note"] = f"only {n_used} {what} (< {min_pairs}): no test"
        return row
    used = _scipy_method_used(d, zero_method, method)
    with warnings.catch_warnings():
        # scipy warns about the normal approximation for small n; the method is reported.
        warnings.simplefilter("ignore", UserWarning)
        res = stats.wilcoxon(d, zero_method=zero_method, alternative=alternative,
                             method="asymptotic" if used == "exact permutation" else method,
                             correction=correction)
    row["statistic"] = float(res.statistic)
    row["p"] = (signed_rank_permutation_p(d, zero_method, alternative)
                if used == "exact permutation" else float(res.pvalue))
    row["method"] = used
    row["r_rb"] = rank_biserial(d, zero_method)
    row["ci_low"], row["ci_high"] = bootstrap_rank_biserial(
        d, zero_method, n_boot=n_boot, seed=seed, confidence=confidence, clusters=clusters)
    if n_zero:
        row["note"] = f"{n_zero} zero difference(s) handled by {zero_method!r}"
    return row


# --------------------------------------------------------------------------- compare_arms

def _row_seed(seed: int, question: object, kind: str, stratum: object) -> np.random.SeedSequence:
    """A seed per result row, independent of which other rows are computed."""
    tag = zlib.crc32(f"{question}\x1f{kind}\x1f{stratum}".encode())
    return np.random.SeedSequence([int(seed), tag])


def _groups(pairs: pd.DataFrame, unpaired: pd.DataFrame, kind: str):
    """Yield (stratum label, pairs subset, n unpaired rows) for one stratum kind."""
    if kind in ("all", "case_mean"):
        yield "all", pairs, len(unpaired)
        return
    col = kind
    labels = sorted(set(pd.unique(pairs[col])).union(pd.unique(unpaired[col])), key=str)
    p_groups = dict(tuple(pairs.groupby(col, sort=False))) if len(pairs) else {}
    u_counts = unpaired[col].value_counts() if len(unpaired) else pd.Series(dtype=int)
    empty = pairs.iloc[0:0]
    for label in labels:
        yield label, p_groups.get(label, empty), int(u_counts.get(label, 0))


def compare_arms(
    df: pd.DataFrame,
    arm_a: object,
    arm_b: object,
    questions: Iterable[object] | None = None,
    strata: Sequence[str] = STRATUM_KINDS,
    zero_method: str = "pratt",
    alternative: str = "two-sided",
    n_boot: int = 2000,
    seed: int = 0,
    method: str = "auto",
    min_pairs: int = DEFAULT_MIN_PAIRS,
    holm_by: Sequence[str] | None = None,
    confidence: float = 0.95,
    boot_unit: str = "pair",
    primary_strata: Sequence[str] = ("all",),
    primary_questions: Iterable[object] | None = None,
) -> pd.DataFrame:
    """Paired Wilcoxon comparison of arm_b against arm_a, one row per question x stratum.

    Differences are ``arm_b - arm_a`` per (reader, case, question); rows without a partner
    are dropped and counted in ``n_unpaired``. Strata (``stratum_kind`` / ``stratum``):

    - ``"all"``: every pair;
    - ``"stratum"``: true / false positives ("TP" / "FP");
    - ``"pathology"``: each pathology;
    - ``"reader"``: each reader;
    - ``"case_mean"``: each case's ratings averaged over the readers who read it under both
      arms, then one Wilcoxon over cases (n_pairs = number of cases).

    ``statistic`` and ``p`` are scipy.stats.wilcoxon's (``method`` is the p-value method
    scipy used). ``family`` is ``"primary"`` for the study's declared confirmatory analysis
    (rows whose stratum kind is in ``primary_strata`` and, when ``primary_questions`` is given,
    whose question is one of them; default: all cases, every question) and ``"exploratory"``
    for every other row. ``p_holm`` is Holm-adjusted within each family (the confirmatory
    tests are never diluted by the exploratory strata), and further within groups of the
    columns in ``holm_by`` (e.g. ``("question",)``). ``r_rb`` is the
    matched-pairs rank-biserial correlation and ``ci_low``/``ci_high`` its percentile
    bootstrap CI (``n_boot`` resamples, seeded per row from ``seed``); ``boot_unit="pair"``
    resamples pairs, ``"case"`` resamples cases with all their pairs (each reader's reading of
    a case), which respects the correlation between readers of one case; "case_mean" rows
    resample cases either way. Degenerate strata
    (fewer than ``min_pairs`` usable pairs, all differences zero) have NaN test columns and a
    ``note``; they never raise.
    """
    _check_zero_method(zero_method)
    if alternative not in ALTERNATIVES:
        raise AnalysisInputError(
            f"alternative {alternative!r} is not one of {', '.join(ALTERNATIVES)}")
    if isinstance(strata, str):
        strata = (strata,)
    unknown = [s for s in strata if s not in STRATUM_KINDS]
    if unknown:
        raise AnalysisInputError(
            f"unknown strata {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(STRATUM_KINDS)}")
    if holm_by is not None:
        bad = [c for c in holm_by if c not in ("question", "stratum_kind", "stratum")]
        if bad:
            raise AnalysisInputError(
                f"holm_by columns {bad} unknown; use question, stratum_kind or stratum")
    if isinstance(primary_strata, str):
        primary_strata = (primary_strata,)
    bad_primary = [s for s in primary_strata if s not in STRATUM_KINDS]
    if bad_primary:
        raise AnalysisInputError(
            f"unknown primary strata {bad_primary}; choose from {', '.join(STRATUM_KINDS)}")
    if boot_unit not in ("pair", "case"):
        raise AnalysisInputError(f"boot_unit {boot_unit!r} must be 'pair' or 'case'")
    df = check_responses(df)
    pairing = _pair_checked(df, arm_a, arm_b)
    qs = check_questions(df, questions)
    pairs_by_q = dict(tuple(pairing.pairs.groupby("question", sort=False)))
    unpaired_by_q = dict(tuple(pairing.unpaired.groupby("question", sort=False)))
    empty_pairs = pairing.pairs.iloc[0:0]
    empty_unpaired = pairing.unpaired.iloc[0:0]

    rows: list[dict] = []
    for q in qs:
        qp = pairs_by_q.get(q, empty_pairs)
        qu = unpaired_by_q.get(q, empty_unpaired)
        for kind in strata:
            for label, sub, n_unp in _groups(qp, qu, kind):
                if kind == "case_mean":
                    means = sub.groupby("case", sort=True)[["rating_a", "rating_b"]].mean()
                    ra, rb = means["rating_a"].to_numpy(), means["rating_b"].to_numpy()
                    clusters = None
                else:
                    ra, rb = sub["rating_a"].to_numpy(), sub["rating_b"].to_numpy()
                    clusters = sub["case"].to_numpy() if boot_unit == "case" else None
                stat = paired_test(
                    ra, rb, zero_method=zero_method, alternative=alternative, method=method,
                    n_boot=n_boot, seed=_row_seed(seed, q, kind, label), min_pairs=min_pairs,
                    confidence=confidence, clusters=clusters)
                rows.append({"question": q, "stratum_kind": kind, "stratum": str(label),
                             "arm_a": arm_a, "arm_b": arm_b, "n_unpaired": n_unp, **stat})
    out = pd.DataFrame(rows)
    out["p_holm"] = np.nan
    if len(out):
        pq = None if primary_questions is None else (
            [primary_questions] if isinstance(primary_questions, str) else list(primary_questions))
        is_primary = out["stratum_kind"].isin(list(primary_strata))
        if pq is not None:
            unknown_q = [q for q in pq if q not in set(out["question"])]
            if unknown_q:
                raise AnalysisInputError(
                    f"primary questions {unknown_q} are not among the analysed questions "
                    f"({', '.join(map(str, pd.unique(out['question'])))})")
            is_primary &= out["question"].isin(pq)
        out["family"] = np.where(is_primary, "primary", "exploratory")
        for _, part in out.groupby(["family", *(holm_by or ())], sort=False):
            out.loc[part.index, "p_holm"] = holm(part["p"].to_numpy())
    return out.reindex(columns=list(RESULT_COLUMNS))
