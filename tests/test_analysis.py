"""Statistics of cfviewer.analysis checked against scipy, the krippendorff package and hand
computations on small hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy import stats

import krippendorff
from cfviewer.analysis import (
    REQUIRED_COLUMNS,
    RESULT_COLUMNS,
    AnalysisInputError,
    analyze,
    bootstrap_rank_biserial,
    compare_arms,
    confusion_table,
    describe,
    holm,
    krippendorff_alpha,
    likert_figure,
    pair_arms,
    paired_means_figure,
    pathology_figure,
    quadratic_weighted_kappa,
    rank_biserial,
    reader_kappa,
    weighted_kappa_from_table,
)
from cfviewer.analysis.paired import _distinct, _rank_biserial_from_counts
from cfviewer.errors import CfviewerError
from cfviewer.study.simulate import simulate_frame

Q = "confidence"

# Differences with ties and zeros: 3 zeros, three |d|=1 (one negative), three |d|=2 (one
# negative), one 3. n = 10 keeps scipy's reference permutation test (2^10 flips) quick.
DIFFS = np.array([1, 1, 0, 0, 2, -1, 3, 0, 2, -2])


def table_from_diffs(diffs, base=None, reader="r1", question=Q, pathology="Mass",
                     stratum="TP", case_offset=0) -> pd.DataFrame:
    """One reader; arm A rated `base`, arm B rated base + d for each case."""
    diffs = np.asarray(diffs)
    if base is None:  # a base rating that keeps both ratings on 1..5
        base = np.minimum(np.maximum(3, 1 - diffs), 5 - diffs)
    base = np.asarray(base)
    rows = []
    for i, (b0, d) in enumerate(zip(base, diffs)):
        case = f"c{i + case_offset}"
        for arm, rating in (("A", b0), ("B", b0 + d)):
            rows.append({"reader": reader, "case": case, "arm": arm, "pathology": pathology,
                         "stratum": stratum, "question": question, "rating": int(rating)})
    return pd.DataFrame(rows)


def naive_rank_biserial(d, zero_method):
    d = np.asarray(d, dtype=float)
    if zero_method == "wilcox":
        d = d[d != 0]
    ranks = stats.rankdata(np.abs(d))
    r_plus, r_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    denom = r_plus + r_minus if zero_method == "wilcox" else d.size * (d.size + 1) / 2
    return (r_plus - r_minus) / denom if denom > 0 else math.nan


# ----------------------------------------------------------------------- Wilcoxon vs scipy

@pytest.mark.parametrize("zero_method", ["pratt", "wilcox", "zsplit"])
def test_wilcoxon_matches_scipy_with_ties_and_zeros(zero_method):
    out = compare_arms(table_from_diffs(DIFFS), "A", "B", strata=("all",),
                       zero_method=zero_method, n_boot=200)
    row = out.iloc[0]
    ref = stats.wilcoxon(DIFFS, zero_method=zero_method)
    assert row["statistic"] == pytest.approx(ref.statistic)
    assert row["p"] == pytest.approx(ref.pvalue)
    assert row["n_pairs"] == 10 and row["n_zero"] == 3
    assert row["n_used"] == (7 if zero_method == "wilcox" else 10)
    assert row["zero_method"] == zero_method
    assert row["mean_diff"] == pytest.approx(DIFFS.mean())
    assert row["sd_diff"] == pytest.approx(DIFFS.std(ddof=1))
    assert row["mean_b"] - row["mean_a"] == pytest.approx(DIFFS.mean())


def test_wilcoxon_statistic_by_hand():
    # wilcox: non-zero |d| ranks: three 1s -> 2, three 2s -> 5, the 3 -> 7.
    # R- = 2 + 5 = 7, R+ = 28 - 7 = 21.
    # pratt: zeros take ranks 1..3, 1s -> 5, 2s -> 8, 3 -> 10; R+ = 36, R- = 13.
    out = {zm: compare_arms(table_from_diffs(DIFFS), "A", "B", strata=("all",),
                            zero_method=zm, n_boot=10).iloc[0]
           for zm in ("wilcox", "pratt")}
    assert out["wilcox"]["statistic"] == 7
    assert out["pratt"]["statistic"] == 13
    assert out["wilcox"]["r_rb"] == pytest.approx((21 - 7) / 28)
    assert out["pratt"]["r_rb"] == pytest.approx((36 - 13) / 55)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_wilcoxon_large_sample_and_alternatives(alternative):
    rng = np.random.default_rng(3)
    d = rng.integers(-1, 3, 80)
    out = compare_arms(table_from_diffs(d), "A", "B", strata=("all",),
                       alternative=alternative, n_boot=100).iloc[0]
    ref = stats.wilcoxon(d, zero_method="pratt", alternative=alternative)
    assert out["p"] == pytest.approx(ref.pvalue)
    assert out["statistic"] == pytest.approx(ref.statistic)
    assert out["method"] == "asymptotic" and out["alternative"] == alternative


def test_exact_method_reported_without_ties():
    d = np.array([1, -2, 3, 4, -5, 6, 7]) / 10.0  # no ties, no zeros, n <= 50
    a = np.full(d.size, 3.0)
    from cfviewer.analysis import paired_test
    row = paired_test(a, a + d, n_boot=50)
    assert row["method"] == "exact"
    assert row["p"] == pytest.approx(stats.wilcoxon(d, method="exact").pvalue)


@pytest.mark.parametrize("zero_method", ["pratt", "wilcox", "zsplit"])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_vectorised_permutation_p_equals_scipy(zero_method, alternative):
    from cfviewer.analysis.paired import signed_rank_permutation_p
    for d in ([1, 1, 0, 2, -1, 2, 0, 3], [-1, -1, 2, 0, -3, -1, -1]):
        ref = stats.wilcoxon(d, zero_method=zero_method, alternative=alternative)
        assert signed_rank_permutation_p(np.array(d), zero_method, alternative) == \
            pytest.approx(ref.pvalue, abs=1e-12)


@pytest.mark.parametrize("d, used", [
    (np.arange(1, 52) * np.where(np.arange(51) % 3, 1, -1), "asymptotic"),  # n > 50
    (np.arange(1, 21) * np.where(np.arange(20) % 3, 1, -1), "exact"),       # no ties
    (np.r_[np.arange(1, 20), 1] * np.where(np.arange(20) % 3, 1, -1), "asymptotic"),  # ties
    (np.array([1, 1, 2, -1, 3, 2, 0, 1, 4, -2]), "exact permutation"),      # n <= 13, ties
])
def test_reported_method_and_p_follow_scipy_auto(d, used):
    from cfviewer.analysis import paired_test
    a = np.zeros(d.size)
    row = paired_test(a, d.astype(float), n_boot=20)
    assert row["method"] == used
    assert row["p"] == pytest.approx(stats.wilcoxon(d, zero_method="pratt").pvalue, abs=1e-12)


# ----------------------------------------------------------------------- rank-biserial

@pytest.mark.parametrize("zero_method", ["pratt", "wilcox", "zsplit"])
def test_rank_biserial_extremes(zero_method):
    assert rank_biserial([1, 2, 2, 3, 1], zero_method) == pytest.approx(1.0)
    assert rank_biserial([-1, -2, -4], zero_method) == pytest.approx(-1.0)
    assert rank_biserial([1, -1, 2, -2], zero_method) == pytest.approx(0.0)


def test_rank_biserial_zero_handling_documented():
    d = [2, 0, 0, 1]
    # wilcox drops zeros -> all remaining positive -> 1
    assert rank_biserial(d, "wilcox") == pytest.approx(1.0)
    # pratt/zsplit: ranks 1.5,1.5 for zeros, 3, 4 -> (3 + 4) / 10
    assert rank_biserial(d, "pratt") == pytest.approx(0.7)
    assert rank_biserial(d, "zsplit") == pytest.approx(0.7)


@pytest.mark.parametrize("zero_method", ["pratt", "wilcox", "zsplit"])
def test_vectorised_ranks_equal_naive(zero_method):
    rng = np.random.default_rng(7)
    values = np.array([0.0, -0.5, 0.5, 1.0, -2.0, 2.0, 3.25])
    values, _ = _distinct(values)
    counts = rng.integers(0, 5, size=(40, values.size))
    fast = _rank_biserial_from_counts(values, counts, zero_method)
    for row, r in zip(counts, fast):
        expect = naive_rank_biserial(np.repeat(values, row), zero_method)
        if math.isnan(expect):
            assert math.isnan(r)
        else:
            assert r == pytest.approx(expect)


def test_bootstrap_equals_resampling_loop():
    d = DIFFS.astype(float)
    values, counts = _distinct(d)
    rng = np.random.default_rng(11)
    draws = rng.multinomial(d.size, counts / d.size, size=300)
    loop = np.array([naive_rank_biserial(np.repeat(values, c), "pratt") for c in draws])
    expect = np.quantile(loop, [0.025, 0.975])
    got = bootstrap_rank_biserial(d, "pratt", n_boot=300, seed=11)
    assert got == pytest.approx(tuple(expect))


def test_bootstrap_seeded_and_sensible():
    d = DIFFS
    assert bootstrap_rank_biserial(d, seed=1) == bootstrap_rank_biserial(d, seed=1)
    assert bootstrap_rank_biserial(d, seed=1) != bootstrap_rank_biserial(d, seed=2)
    low, high = bootstrap_rank_biserial(d, n_boot=2000, seed=0)
    assert low < rank_biserial(d) < high
    assert bootstrap_rank_biserial([1, 2, 1, 3, 1, 1], seed=0) == (1.0, 1.0)


def test_compare_arms_is_reproducible_per_seed():
    df = simulate_frame(3, 30, seed=5)
    a = compare_arms(df, "Method A", "Method B", n_boot=300, seed=4)
    b = compare_arms(df, "Method A", "Method B", n_boot=300, seed=4)
    pd.testing.assert_frame_equal(a, b)
    c = compare_arms(df, "Method A", "Method B", n_boot=300, seed=5)
    assert not np.allclose(a["ci_low"].dropna(), c["ci_low"].dropna())


# ----------------------------------------------------------------------- Holm

def test_holm_hand_computation():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    got = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(got[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(got[4])
    # monotonicity: 0.01*3 = 0.03, 0.02*2 = 0.04, 0.025*1 = 0.025 -> 0.04
    np.testing.assert_allclose(holm([0.025, 0.01, 0.02]), [0.04, 0.03, 0.04])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    assert holm([]).size == 0
    with pytest.raises(AnalysisInputError):
        holm([1.5])


def test_compare_arms_holm_within_the_primary_and_the_exploratory_family():
    df = simulate_frame(3, 36, seed=1)
    out = compare_arms(df, "Method A", "Method B", n_boot=50)
    primary = out[out["family"] == "primary"]
    # default primary analysis: all cases, each question; everything else is exploratory
    assert set(primary["stratum_kind"]) == {"all"} and len(primary) == df["question"].nunique()
    assert set(out.loc[out["stratum_kind"] != "all", "family"]) == {"exploratory"}
    for fam in ("primary", "exploratory"):
        part = out[out["family"] == fam]
        np.testing.assert_allclose(part["p_holm"], holm(part["p"]), equal_nan=True)
    # the confirmatory tests are not diluted by the exploratory rows
    everything = holm(out["p"])
    assert (primary["p_holm"].to_numpy() <= everything[primary.index] + 1e-12).all()
    by_q = compare_arms(df, "Method A", "Method B", n_boot=50, holm_by=("question",))
    for _, part in by_q.groupby(["family", "question"]):
        np.testing.assert_allclose(part["p_holm"], holm(part["p"]), equal_nan=True)
    assert (by_q["p_holm"] <= out["p_holm"] + 1e-12).all()
    one = compare_arms(df, "Method A", "Method B", n_boot=50, primary_questions=["confidence"],
                       primary_strata=("all", "stratum"))
    prim = one[one["family"] == "primary"]
    assert set(prim["question"]) == {"confidence"} and set(prim["stratum_kind"]) == {"all", "stratum"}
    with pytest.raises(AnalysisInputError, match="primary questions"):
        compare_arms(df, "Method A", "Method B", n_boot=10, primary_questions=["nope"])
    with pytest.raises(AnalysisInputError, match="unknown primary strata"):
        compare_arms(df, "Method A", "Method B", n_boot=10, primary_strata=("everything",))


# ----------------------------------------------------------------------- strata, pairing

def test_strata_and_case_means():
    df = simulate_frame(4, 24, seed=2)
    out = compare_arms(df, "Method A", "Method B", n_boot=100)
    assert list(out.columns) == list(RESULT_COLUMNS)
    for q in df["question"].unique():
        part = out[out["question"] == q]
        kinds = part.groupby("stratum_kind")["stratum"].apply(set).to_dict()
        assert kinds["all"] == {"all"} and kinds["case_mean"] == {"all"}
        assert kinds["stratum"] == {"TP", "FP"}
        assert kinds["pathology"] == set(df["pathology"])
        assert kinds["reader"] == set(df["reader"])
        n_all = part.loc[part["stratum_kind"] == "all", "n_pairs"].item()
        assert part.loc[part["stratum_kind"] == "stratum", "n_pairs"].sum() == n_all
        assert part.loc[part["stratum_kind"] == "reader", "n_pairs"].sum() == n_all
    # case_mean by hand: mean over readers per case, then scipy's test over cases
    q = df["question"].iloc[0]
    sub = df[df["question"] == q].pivot_table(index="case", columns="arm", values="rating")
    d = sub["Method B"] - sub["Method A"]
    row = out[(out["question"] == q) & (out["stratum_kind"] == "case_mean")].iloc[0]
    assert row["n_pairs"] == 24
    assert row["p"] == pytest.approx(stats.wilcoxon(d.to_numpy(), zero_method="pratt").pvalue)
    assert row["mean_diff"] == pytest.approx(d.mean())


def test_unpaired_rows_dropped_and_counted():
    df = pd.concat([
        table_from_diffs(DIFFS, stratum="TP"),
        table_from_diffs(DIFFS, stratum="FP", case_offset=100),
    ], ignore_index=True)
    # drop arm B of case c0 (TP) and arm A of c100, c101 (FP)
    drop = ((df["case"] == "c0") & (df["arm"] == "B")) | \
           (df["case"].isin(["c100", "c101"]) & (df["arm"] == "A"))
    df = df[~drop]
    pairing = pair_arms(df, "A", "B")
    assert pairing.n_unpaired == 3 and len(pairing.pairs) == 17
    assert set(pairing.unpaired["arm"]) == {"A", "B"}
    out = compare_arms(df, "A", "B", strata=("all", "stratum"), n_boot=50)
    n = out.set_index("stratum")[["n_pairs", "n_unpaired"]]
    assert n.loc["all"].tolist() == [17, 3]
    assert n.loc["TP"].tolist() == [9, 1]
    assert n.loc["FP"].tolist() == [8, 2]
    ref = stats.wilcoxon(np.r_[DIFFS[1:], DIFFS[2:]], zero_method="pratt")
    assert out.set_index("stratum").loc["all", "p"] == pytest.approx(ref.pvalue)


def test_other_arms_ignored():
    df = table_from_diffs(DIFFS)
    extra = df[df["arm"] == "A"].assign(arm="C", rating=1)
    out = compare_arms(pd.concat([df, extra]), "A", "B", strata=("all",), n_boot=10)
    assert out["n_unpaired"].item() == 0 and out["n_pairs"].item() == 10


def test_degenerate_strata_give_nan_with_note():
    df = pd.concat([
        table_from_diffs(DIFFS, pathology="Mass"),
        table_from_diffs([1, 2, -1], pathology="Effusion", case_offset=50),  # too few
        table_from_diffs([0] * 8, pathology="Cardiomegaly", case_offset=80),  # all zero
    ], ignore_index=True)
    out = compare_arms(df, "A", "B", strata=("pathology",), n_boot=50).set_index("stratum")
    assert not math.isnan(out.loc["Mass", "p"])
    for name, word in (("Effusion", "only 3"), ("Cardiomegaly", "zero")):
        row = out.loc[name]
        assert math.isnan(row["p"]) and math.isnan(row["statistic"])
        assert math.isnan(row["r_rb"]) and math.isnan(row["p_holm"])
        assert word in row["note"]
    assert out.loc["Cardiomegaly", "mean_diff"] == 0
    # Holm family = the two... only one valid p: unadjusted
    assert out.loc["Mass", "p_holm"] == pytest.approx(out.loc["Mass", "p"])
    # wilcox drops the zeros of DIFFS: 7 used pairs, still tested; with min_pairs=10 not
    w = compare_arms(df, "A", "B", strata=("pathology",), zero_method="wilcox",
                     min_pairs=10, n_boot=10).set_index("stratum")
    assert w.loc["Mass", "n_used"] == 7 and math.isnan(w.loc["Mass", "p"])
    assert "non-zero pairs" in w.loc["Mass", "note"]


# ----------------------------------------------------------------------- bad input

def test_missing_columns_named():
    df = table_from_diffs(DIFFS).drop(columns=["stratum", "rating"])
    with pytest.raises(AnalysisInputError) as err:
        compare_arms(df, "A", "B")
    msg = str(err.value)
    assert "stratum" in msg and "rating" in msg and "export" in msg
    assert isinstance(err.value, CfviewerError)
    for fn in (describe, reader_kappa, krippendorff_alpha, likert_figure):
        with pytest.raises(AnalysisInputError):
            fn(df.drop(columns=["arm"]))


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.assign(rating=d["rating"].where(d.index != 0, 7)), "outside the scale"),
    (lambda d: d.assign(rating=d["rating"].astype(object).where(d.index != 0, "x")),
     "non-numeric"),
    (lambda d: pd.concat([d, d.iloc[:1]]), "share a reader"),
    (lambda d: d.assign(case=d["case"].where(d.index != 0, None)), "no value in column 'case'"),
    (lambda d: d.iloc[0:0], "no rows"),
    (lambda d: d.assign(pathology=np.where(d["arm"] == "B", "Effusion", "Mass")),
     "must be the same in every arm"),
])
def test_bad_tables_raise_clear_errors(mutate, words):
    with pytest.raises(AnalysisInputError, match=words):
        compare_arms(mutate(table_from_diffs(DIFFS)), "A", "B", n_boot=10)


def test_bad_arguments():
    df = table_from_diffs(DIFFS)
    with pytest.raises(AnalysisInputError, match="arm 'Z'"):
        compare_arms(df, "A", "Z")
    with pytest.raises(AnalysisInputError, match="zero_method"):
        compare_arms(df, "A", "B", zero_method="nope")
    with pytest.raises(AnalysisInputError, match="alternative"):
        compare_arms(df, "A", "B", alternative="bigger")
    with pytest.raises(AnalysisInputError, match="strata"):
        compare_arms(df, "A", "B", strata=("ward",))
    with pytest.raises(AnalysisInputError, match="question"):
        compare_arms(df, "A", "B", questions=["nope"])
    assert set(REQUIRED_COLUMNS) <= set(df.columns)


# ----------------------------------------------------------------------- agreement

def test_weighted_kappa_hand_table():
    # N = 8; off-diagonal (0,1) and (1,2) once each, weight 1/4 -> sum(wO) = 1/16.
    # margins rows (3,3,2)/8, cols (2,3,3)/8 -> sum(wE) = (30/4 + 13)/64 = 20.5/64.
    table = np.array([[2, 1, 0], [0, 2, 1], [0, 0, 2]])
    assert weighted_kappa_from_table(table) == pytest.approx(1 - (1 / 16) / (20.5 / 64))
    r1 = [1, 1, 1, 2, 2, 2, 3, 3]
    r2 = [1, 1, 2, 2, 2, 3, 3, 3]
    np.testing.assert_array_equal(confusion_table(r1, r2, (1, 2, 3)), table)
    assert quadratic_weighted_kappa(r1, r2, (1, 2, 3)) == pytest.approx(33 / 41)


def test_kappa_extremes_and_degenerate():
    assert quadratic_weighted_kappa([1, 2, 3, 4, 5, 3], [1, 2, 3, 4, 5, 3]) == pytest.approx(1)
    assert quadratic_weighted_kappa([1, 5], [5, 1]) == pytest.approx(-1)
    assert math.isnan(quadratic_weighted_kappa([3, 3, 3], [3, 3, 3]))
    with pytest.raises(AnalysisInputError, match="categories"):
        quadratic_weighted_kappa([1, 6], [1, 2])


def test_kappa_matches_sklearn_if_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    a = rng.integers(1, 6, 50)
    b = np.clip(a + rng.integers(-1, 2, 50), 1, 5)
    assert quadratic_weighted_kappa(a, b) == pytest.approx(
        metrics.cohen_kappa_score(a, b, weights="quadratic"))


def test_reader_kappa_long_table():
    rows = []
    r1 = [1, 2, 3, 4, 5, 3]
    r2 = [1, 2, 3, 4, 5, 3]
    r3 = [2, 2, 3, 5, 5, 1]
    for reader, ratings in (("x", r1), ("y", r2), ("z", r3)):
        for case, v in enumerate(ratings):
            rows.append({"reader": reader, "case": case, "arm": "A", "question": Q,
                         "rating": v})
    df = pd.DataFrame(rows)
    df = df[~((df["reader"] == "z") & (df["case"] == 5))]  # z skipped the last case
    out = reader_kappa(df).set_index(["reader_1", "reader_2"])
    assert len(out) == 3
    assert out.loc[("x", "y"), "kappa"] == pytest.approx(1.0)
    assert out.loc[("x", "z"), "n_cases"] == 5
    assert out.loc[("x", "z"), "kappa"] == pytest.approx(
        quadratic_weighted_kappa(r1[:5], r3[:5]))
    assert out.loc[("x", "y"), "exact_agreement"] == 1.0


KRIPPENDORFF_2011 = [  # Krippendorff (2011) "Computing Krippendorff's alpha", 4 coders x 12 units
    [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
    [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
]


def test_krippendorff_alpha_matches_package():
    rows = [{"reader": f"coder{i}", "case": j, "arm": "B", "question": Q, "rating": int(v)}
            for i, coder in enumerate(KRIPPENDORFF_2011)
            for j, v in enumerate(coder) if not np.isnan(v)]
    out = krippendorff_alpha(pd.DataFrame(rows)).iloc[0]
    expect = krippendorff.alpha(reliability_data=KRIPPENDORFF_2011,
                                level_of_measurement="ordinal")
    assert out["alpha"] == pytest.approx(expect)
    assert out["alpha"] == pytest.approx(0.815, abs=5e-4)  # the paper's ordinal value
    assert out["n_readers"] == 4 and out["n_cases"] == 12 and out["n_pairable"] == 11


def test_krippendorff_degenerate():
    one = pd.DataFrame({"reader": "a", "case": [1, 2], "arm": "A", "question": Q,
                        "rating": [1, 2]})
    row = krippendorff_alpha(one).iloc[0]
    assert math.isnan(row["alpha"]) and "two readers" in row["note"]
    same = pd.DataFrame({"reader": ["a", "b"] * 2, "case": [1, 1, 2, 2], "arm": "A",
                         "question": Q, "rating": 4})
    row = krippendorff_alpha(same).iloc[0]
    assert math.isnan(row["alpha"]) and "every rating" in row["note"]


# ----------------------------------------------------------------------- summary, figures

def test_describe_matches_numpy():
    df = simulate_frame(3, 12, seed=9)
    out = describe(df)
    q = df["question"].iloc[0]
    sel = df[(df["arm"] == "Method B") & (df["question"] == q) & (df["stratum"] == "FP")]
    row = out[(out["arm"] == "Method B") & (out["question"] == q)
              & (out["stratum_kind"] == "stratum") & (out["stratum"] == "FP")].iloc[0]
    x = sel["rating"].to_numpy()
    assert row["n"] == x.size
    assert row["mean"] == pytest.approx(x.mean())
    assert row["sd"] == pytest.approx(x.std(ddof=1))
    assert row["median"] == pytest.approx(np.median(x))
    assert row["iqr"] == pytest.approx(np.subtract(*np.percentile(x, [75, 25])))
    assert sum(row[f"n_{v}"] for v in range(1, 6)) == x.size
    assert set(out["stratum_kind"]) == {"all", "stratum", "pathology"}


def test_figures_build():
    df = simulate_frame(3, 18, seed=3)
    comparison = compare_arms(df, "Method A", "Method B", n_boot=50)
    fig = likert_figure(df)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 5 * df["question"].nunique()
    assert sum(float(np.nansum(t.x)) for t in fig.data) == len(df)
    fig = paired_means_figure(comparison)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2 * df["question"].nunique()
    fig = pathology_figure(comparison)
    assert isinstance(fig, go.Figure) and len(fig.data) == df["question"].nunique()
    assert len(fig.data[0].y) == df["pathology"].nunique() + 1
    fig.to_dict()  # serialisable (what Streamlit does)
    with pytest.raises(AnalysisInputError):
        pathology_figure(comparison[comparison["stratum_kind"] == "reader"])


def test_analyze_report():
    df = simulate_frame(2, 12, seed=0)  # simulated: analysed only when asked, and marked
    report = analyze(df, n_boot=50, include_simulated=True)
    assert (report.arm_a, report.arm_b) == ("Method A", "Method B")
    assert set(report.tables()) >= {"comparison", "summary", "kappa", "alpha", "mrmc", "mrmc_auc", "mrmc_components"}
    assert report.includes_simulated and "simulated" in report.title
    with pytest.raises(AnalysisInputError, match="no answers from real readers"):
        analyze(df, n_boot=50)
    real = analyze(df.assign(simulated=False), n_boot=50, figures=False)
    assert not real.includes_simulated and "simulated" not in real.title
    assert set(report.figures) == {"responses", "paired_means", "pathology", "roc"}
    assert len(report.kappa) == 2 * 2  # one reader pair x 2 arms x 2 questions
    three = pd.concat([df, df[df["arm"] == "Method A"].assign(arm="Method C")])
    with pytest.raises(AnalysisInputError, match="3 arm"):
        analyze(three, include_simulated=True)


def test_bootstrap_chunking_does_not_change_result(monkeypatch):
    import cfviewer.analysis.paired as paired
    d = np.r_[DIFFS, 0.5, -0.25, 1.5]
    whole = bootstrap_rank_biserial(d, n_boot=500, seed=3)
    monkeypatch.setattr(paired, "_BOOT_CELLS", 7 * 10)  # 10 resamples per chunk
    assert bootstrap_rank_biserial(d, n_boot=500, seed=3) == pytest.approx(whole)


def test_cluster_bootstrap_equals_resampling_loop():
    d = np.r_[DIFFS, DIFFS[::-1][:8]].astype(float)
    clusters = np.repeat(np.arange(9), 2)  # 9 cases x 2 readers
    values, _ = _distinct(d)
    rng = np.random.default_rng(5)
    picks = rng.integers(0, 9, size=(400, 9))
    w = np.array([np.bincount(p, minlength=9) for p in picks])
    loop = np.array([naive_rank_biserial(np.repeat(d, wi[clusters]), "pratt") for wi in w])
    got = bootstrap_rank_biserial(d, "pratt", n_boot=400, seed=5, clusters=clusters)
    assert got == pytest.approx(tuple(np.quantile(loop, [0.025, 0.975])))
    with pytest.raises(AnalysisInputError, match="one label per difference"):
        bootstrap_rank_biserial(d, clusters=clusters[:-1])


def test_case_bootstrap_is_wider_for_correlated_readers():
    rng = np.random.default_rng(0)
    per_case = rng.integers(-1, 3, 40)
    d = np.repeat(per_case, 5)  # 5 readers who always agree: 40 cases, not 200 pairs
    cases = np.repeat(np.arange(40), 5)
    lo_p, hi_p = bootstrap_rank_biserial(d, n_boot=2000, seed=1)
    lo_c, hi_c = bootstrap_rank_biserial(d, n_boot=2000, seed=1, clusters=cases)
    assert (hi_c - lo_c) > 1.5 * (hi_p - lo_p)
    df = simulate_frame(4, 30, seed=2)
    by_pair = compare_arms(df, "Method A", "Method B", strata=("all",), n_boot=300)
    by_case = compare_arms(df, "Method A", "Method B", strata=("all",), n_boot=300,
                           boot_unit="case")
    np.testing.assert_allclose(by_pair["p"], by_case["p"])
    assert not np.allclose(by_pair["ci_low"], by_case["ci_low"])
    with pytest.raises(AnalysisInputError, match="boot_unit"):
        compare_arms(df, "Method A", "Method B", boot_unit="reader")
