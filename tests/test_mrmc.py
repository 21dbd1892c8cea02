"""MRMC (Obuchowski-Rockette / Hillis) analysis and study sizing, checked against the published
output of OR-DBM MRMC 2.51 (Iowa) on the Van Dyke and Franken data sets and RJafroc's sample-size
tests; the real data sets live in ../shared/data/mrmc (these tests skip without it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cfviewer.analysis import sizing
from cfviewer.analysis.mrmc import MRMCInputError, analyze_study, orh, roc_points, study_frame, summary_table


def _data(shared_data, name: str) -> pd.DataFrame:
    path = shared_data / "mrmc" / f"{name}.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def vandyke(shared_data):
    return orh(_data(shared_data, "vandyke"))


@pytest.fixture(scope="module")
def franken(shared_data):
    return orh(_data(shared_data, "franken"))


def _close(value: float, printed: float, decimals: int) -> None:
    assert round(value, decimals) == pytest.approx(printed, abs=10 ** -decimals / 2), (value, printed)


# OR-DBM MRMC 2.51, "VanDyke trap area jackknife anova" (printed values)
VD_AUC = [[0.91964573, 0.94782609], [0.85877617, 0.90531401], [0.90386473, 0.92173913],
          [0.97310789, 0.99935588], [0.82979066, 0.92995169]]
VD_COMPONENTS = dict(var_r=0.00153500, var_tr=0.00020040, cov1=0.00034661, cov2=0.00034407, cov3=0.00023903,
                     var_error=0.00080229)
FR_AUC = [[0.85345997, 0.84961556], [0.86499322, 0.84350972], [0.85730439, 0.84011759], [0.81524197, 0.81433740]]
FR_COMPONENTS = dict(var_r=0.00003776, var_tr=-0.00071276, cov1=0.00079168, cov2=0.00048364, cov3=0.00051251,
                     var_error=0.00152578)


def test_vandyke_matches_or_dbm_mrmc(vandyke):
    r = vandyke
    assert (r.n_negative, r.n_positive) == (69, 45)
    for got, want in zip(r.auc.to_numpy().ravel(), np.ravel(VD_AUC)):
        _close(got, want, 8)
    _close(r.modality_means.iloc[0], 0.89703704, 8)
    _close(r.modality_means.iloc[1], 0.94083736, 8)
    for k, v in VD_COMPONENTS.items():
        _close(getattr(r.components, k), v, 8)
    _close(r.components.correlations["cov1"], 0.43203138, 8)
    _close(r.ms_t, 0.00479617, 8)
    _close(r.ms_r, 0.00383620, 8)
    _close(r.ms_tr, 0.00055103, 8)
    # Analysis 1: random readers and random cases
    t = r.rrrc
    _close(t.statistic, 4.46, 2)
    _close(t.df2, 15.26, 2)
    _close(t.p, 0.0517, 4)
    d = t.differences[0]
    _close(d.estimate, -0.04380, 5)
    _close(d.se, 0.02075, 5)
    _close(d.statistic, -2.11, 2)
    _close(d.ci[0], -0.08796, 5)
    _close(d.ci[1], 0.00036, 5)
    m1, m2 = t.modalities
    _close(m1.se, 0.03317360, 8)
    _close(m1.df, 12.74, 2)
    _close(m1.ci[0], 0.82522360, 8)
    _close(m2.ci[1], 0.98753689, 8)
    # Analysis 2: fixed readers
    f = r.frrc
    _close(f.statistic, 5.47595, 5)
    _close(f.p, 0.0193, 4)
    _close(f.differences[0].se, 0.01872, 5)
    _close(f.differences[0].ci[1], -0.00711, 5)
    _close(f.modalities[0].se, 0.02428971, 8)
    _close(r.var_error_by_modality["0"], 0.00101410, 8)
    _close(r.cov2_by_modality["1"], 0.00020419, 8)
    per = {rd: d for rd, d in r.per_reader}
    _close(per["4"].estimate, -0.10016, 5)
    _close(per["4"].se, 0.04406, 5)
    _close(per["4"].p, 0.0230, 4)
    _close(per["0"].ci[0], -0.07818, 5)
    # Analysis 3: fixed cases
    c = r.rrfc
    _close(c.statistic, 8.70, 2)
    _close(c.p, 0.0420, 4)
    _close(c.differences[0].se, 0.01485, 5)
    _close(c.differences[0].ci[0], -0.08502, 5)
    _close(c.modalities[0].se, 0.02482994, 8)
    _close(c.modalities[1].ci[0], 0.89598936, 8)


def test_franken_matches_or_dbm_mrmc(franken):
    r = franken
    assert (r.n_negative, r.n_positive) == (33, 67)
    for got, want in zip(r.auc.to_numpy().ravel(), np.ravel(FR_AUC)):
        _close(got, want, 8)
    for k, v in FR_COMPONENTS.items():  # Var(T*R) is negative: an ANOVA estimate, printed as such
        _close(getattr(r.components, k), v, 8)
    _close(r.rrrc.statistic, 4.69, 2)
    _close(r.rrrc.df2, 3.00, 2)  # MS(T*R) dominates: max(Cov2 - Cov3, 0) = 0
    _close(r.rrrc.p, 0.1188, 4)
    _close(r.rrrc.differences[0].ci[0], -0.00509, 5)
    _close(r.rrrc.modalities[0].df, 70.12, 2)
    _close(r.rrrc.modalities[1].df, 253.64, 2)
    _close(r.rrrc.modalities[1].ci[0], 0.79048429, 8)
    _close(r.frrc.statistic, 0.32101, 5)
    _close(r.frrc.p, 0.5710, 4)
    _close(r.frrc.differences[0].ci[1], 0.04840, 5)
    per = {rd: d for rd, d in r.per_reader}
    _close(per["READER_2"].se, 0.04007, 5)
    _close(per["READER_4"].p, 0.9793, 4)


def test_result_prints_and_tabulates(vandyke):
    text = str(vandyke)
    assert "random readers, random cases" in text and "Var(T*R)" in text and "0.91964573" in text
    t = vandyke.tables()
    assert list(t["tests"]["analysis"]) == ["RRRC", "FRRC", "RRFC"]
    assert len(t["per_reader"]) == 5 and t["auc"].iloc[-1]["reader"] == "mean"


# RJafroc tests/testthat/test-SsSampleSizeRoc.R (OR method, jackknife components of the data set)
def test_power_and_sample_size_match_rjafroc(vandyke, franken):
    d = -0.043800322
    vd = vandyke.components
    assert sizing.power(vd, 10, 165, d).power == pytest.approx(0.80541995, abs=1e-8)
    assert sizing.power(vd, 10, 131, d, option="FRRC").power == pytest.approx(0.80091813, abs=1e-8)
    assert sizing.power(vd, 10, 53, d, option="RRFC").power == pytest.approx(0.80496663, abs=1e-8)
    assert sizing.power(vd, 6, 111, d).power == pytest.approx(0.5526116, abs=5e-8)
    assert sizing.cases_needed(vd, 6, d).cases == 251
    got = sizing.cases_needed(franken.components, 6, 0.05)
    assert got.cases == 121 and got.power == pytest.approx(0.8004469, abs=1e-7)


def test_van_dyke_default_components_are_the_published_ones(vandyke):
    for k, v in VD_COMPONENTS.items():
        assert getattr(sizing.VAN_DYKE, k) == pytest.approx(getattr(vandyke.components, k), abs=5e-9)


# ----------------------------------------------------------------------------- always run
def _synthetic(n_readers=4, n_cases=40, effect=0.6, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = (np.arange(n_cases) % 2).astype(int)
    case_effect = rng.normal(0, 1, n_cases)
    rows = []
    for j in range(n_readers):
        bias = rng.normal(0, 0.3)
        for m, shift in (("A", 0.0), ("B", effect)):
            latent = truth * (1.0 + shift) + 0.5 * case_effect + bias + rng.normal(0, 1, n_cases)
            rating = np.clip(np.round(latent + 3), 1, 5)  # 5-point scale: many ties
            rows += [{"reader": f"r{j}", "modality": m, "case": k, "truth": int(truth[k]),
                      "rating": float(rating[k])} for k in range(n_cases)]
    return pd.DataFrame(rows)


def _brute_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    d = pos[:, None] - neg[None, :]
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def test_auc_and_jackknife_equal_brute_force():
    df = _synthetic(n_readers=2, n_cases=16, seed=3)
    res = orh(df)
    for (rd, m), g in df.groupby(["reader", "modality"]):
        pos = g[g.truth == 1].rating.to_numpy()
        neg = g[g.truth == 0].rating.to_numpy()
        assert res.auc.loc[rd, m] == pytest.approx(_brute_auc(pos, neg), abs=1e-12)
    # the jackknife covariance by brute force (leave each case out, recompute every AUC)
    cases = sorted(df.case.unique())
    keys = [(m, rd) for m in ("A", "B") for rd in ("r0", "r1")]
    jack = np.array([[_brute_auc(*(g[(g.case != k) & (g.truth == t)].rating.to_numpy() for t in (1, 0)))
                      for k in cases]
                     for g in (df[(df.modality == m) & (df.reader == rd)] for m, rd in keys)])
    dev = jack - jack.mean(1, keepdims=True)
    cov = (len(cases) - 1) / len(cases) * dev @ dev.T
    assert res.components.var_error == pytest.approx(np.diag(cov).mean(), rel=1e-10)
    assert res.components.cov1 == pytest.approx((cov[0, 2] + cov[1, 3]) / 2, rel=1e-10)
    assert res.components.cov2 == pytest.approx((cov[0, 1] + cov[2, 3]) / 2, rel=1e-10)
    assert res.components.cov3 == pytest.approx((cov[0, 3] + cov[1, 2]) / 2, rel=1e-10)


def test_an_effect_is_found_and_none_is_not():
    big = orh(_synthetic(n_readers=6, n_cases=120, effect=1.5, seed=1), modalities=["A", "B"])
    assert big.rrrc.p < 0.05 and big.rrrc.differences[0].estimate < 0  # A - B: B is better
    null = orh(_synthetic(n_readers=6, n_cases=120, effect=0.0, seed=2))
    assert null.rrrc.p > 0.05


def test_bad_tables_are_refused_with_the_reason():
    df = _synthetic(n_readers=2, n_cases=10)
    with pytest.raises(MRMCInputError, match="not fully crossed"):
        orh(df.iloc[1:])
    with pytest.raises(MRMCInputError, match="duplicate"):
        orh(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(MRMCInputError, match="at least 2 modalities"):
        orh(df[df.modality == "A"])
    with pytest.raises(MRMCInputError, match="no column"):
        orh(df.drop(columns="truth"))
    bad = df.copy()
    bad.loc[bad.index[0], "truth"] = 1 - bad.loc[bad.index[0], "truth"]
    with pytest.raises(MRMCInputError, match="more than one truth"):
        orh(bad)
    with pytest.raises(MRMCInputError, match="0/1"):
        orh(df.assign(truth=df.truth * 2))


def test_one_reader_gives_the_fixed_reader_analysis_only():
    res = orh(_synthetic(n_readers=1, n_cases=30))
    assert res.rrfc is None and np.isfinite(res.frrc.p) and len(res.per_reader) == 1
    with pytest.raises(MRMCInputError, match="RRFC"):
        res.test("RRFC")


def test_roc_points_trace_the_trapezoidal_auc():
    rng = np.random.default_rng(0)
    s = rng.integers(1, 6, 50).astype(float)
    y = rng.integers(0, 2, 50)
    fpf, tpf = roc_points(s, y)
    assert (fpf[0], tpf[0], fpf[-1], tpf[-1]) == (0, 0, 1, 1)
    assert np.trapezoid(tpf, fpf) == pytest.approx(_brute_auc(s[y == 1], s[y == 0]), abs=1e-12)


def _responses(n_readers=3, n_cases=24, seed=0, drop_last=False) -> pd.DataFrame:
    """A study's long responses table: arms, TP/FP strata, two questions."""
    syn = _synthetic(n_readers=n_readers, n_cases=n_cases, effect=1.0, seed=seed)
    rows = []
    for r in syn.itertuples():
        path = "Mass" if r.case % 4 < 2 else "Effusion"
        for q, v in (("confidence", r.rating), ("correct_feature", 6 - r.rating)):
            rows.append({"reader": r.reader, "arm": {"A": "Method A", "B": "Method B"}[r.modality],
                         "case": f"c{r.case:03d}", "pathology": path, "stratum": "TP" if r.truth else "FP",
                         "question": q, "rating": int(v)})
    df = pd.DataFrame(rows)
    if drop_last:
        df = df[~((df.reader == "r0") & (df.case == "c000") & (df.arm == "Method B"))]
    return df


def test_study_mrmc_uses_arms_confidence_and_tp_as_truth():
    resp = _responses()
    frame = study_frame(resp)
    assert set(frame.modality) == {"Method A", "Method B"} and set(frame.truth) == {0, 1}
    assert len(frame) == 3 * 2 * 24
    out = analyze_study(resp, min_per_class=5)
    assert [a.subset for a in out] == ["all cases", "Effusion", "Mass"]
    assert all(a.result is not None for a in out)
    table = summary_table(out)
    row = table.iloc[0]
    assert row["comparison"] == "Method B - Method A" and row["difference"] == pytest.approx(
        out[0].result.modality_means["Method B"] - out[0].result.modality_means["Method A"])
    assert row["ci_low"] < row["difference"] < row["ci_high"]


def test_study_mrmc_leaves_out_incomplete_cases_and_says_so():
    out = analyze_study(_responses(drop_last=True), by_pathology=False)
    res = out[0].result
    assert res.n_cases == 23 and any("left out" in n for n in res.notes)
    few = analyze_study(_responses(n_cases=12), min_per_class=5)
    assert few[1].result is None and "fewer than 5" in few[1].reason


def test_sizing_table_and_guards():
    t = sizing.sizing_table(sizing.VAN_DYKE, 0.05, readers=[3, 5, 6, 10])
    assert list(t.readers) == [3, 5, 6, 10]
    assert np.isnan(t.cases[0])  # 3 readers: the reader variance alone keeps power below 80 %
    assert t.cases[1:].is_monotonic_decreasing  # more readers, fewer cases
    k = int(t.cases[2])
    assert sizing.power(sizing.VAN_DYKE, 6, k, 0.05).power > 0.8 >= sizing.power(sizing.VAN_DYKE, 6, k - 1, 0.05).power
    with pytest.raises(sizing.SizingError, match="unknown analysis"):
        sizing.power(sizing.VAN_DYKE, 5, 100, 0.05, option="XYZ")
    with pytest.raises(sizing.SizingError, match="effect size"):
        sizing.cases_needed(sizing.VAN_DYKE, 5, 0.0)
    assert sizing.cases_needed(sizing.VAN_DYKE, 2, 0.01, max_cases=300) is None


def test_study_analyze_cli_reports_the_mrmc_analysis_and_the_primary_family(tmp_path, capsys):
    import json

    from cfviewer.cli import main
    from cfviewer.study.simulate import simulate_readers
    from test_study_support import build_study

    b = build_study(tmp_path, n_cases=60, per_pathology=4, readers=())
    simulate_readers(b.db, b.name, n_readers=4, seed=1)
    b.db.dispose()
    out = tmp_path / "analysis"
    assert main(["study", "analyze", str(b.root), "--include-simulated", "--n-boot", "50",
                 "--no-figures", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "MRMC (Obuchowski-Rockette/Hillis" in text and "primary (confirmatory) analysis: all" in text
    summary = pd.read_csv(out / "mrmc.csv")
    row = summary.iloc[0]
    assert row["subset"] == "all cases" and row["readers"] == 4 and row["TP"] + row["FP"] == row["cases"]
    assert row["simulated_included"]  # the simulated answers are marked here too
    auc = pd.read_csv(out / "mrmc_auc.csv")
    assert set(auc.columns) >= {"reader", "Method A", "Method B"}
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(comparison["family"]) == {"primary", "exploratory"}
    assert json.loads((out / "analysis.json").read_text())["simulated_included"] is True
    # a declared primary family: only the confidence question's all-cases row
    assert main(["study", "analyze", str(b.root), "--include-simulated", "--n-boot", "50", "--no-figures",
                 "--out", str(out), "--primary-question", "confidence", "--no-mrmc"]) == 0
    comparison = pd.read_csv(out / "comparison.csv")
    prim = comparison[comparison["family"] == "primary"]
    assert list(prim["question"]) == ["confidence"] and list(prim["stratum_kind"]) == ["all"]
    assert prim["p_holm"].iloc[0] == pytest.approx(prim["p"].iloc[0])  # a family of one
