"""Multi-reader multi-case (MRMC) ROC analysis: Obuchowski-Rockette with Hillis's degrees of
freedom (OR/Hillis, "ORH"), the analysis of the Iowa OR-DBM MRMC software and of RJafroc's and
MRMCaov's default.

On a fully crossed long table (every reader reads every case under every modality) with one
rating per reader x modality x case and a binary truth per case:

* the figure of merit is each reader's empirical (trapezoidal, Wilcoxon) AUC under each
  modality, ties counted 1/2;
* the error covariances between the reader x modality AUCs come from the case jackknife
  (Hillis 2007: Cov = (K-1)/K * sum_k (theta_(k) - mean)(theta_(k) - mean)'), averaged into
  Var(error) and Cov1 (same reader, other modality), Cov2 (other reader, same modality) and
  Cov3 (other reader, other modality); with the modality x reader ANOVA of the AUCs they give
  the Obuchowski-Rockette variance components Var(R) = (MS(R) - MS(T*R))/t - Cov1 + Cov3 and
  Var(T*R) = MS(T*R) - Var(error) + Cov1 + (Cov2 - Cov3) (the ANOVA estimates printed by OR-DBM
  MRMC, which can be negative);
* random readers and random cases (Hillis 2008): F = MS(T) / [MS(T*R) + r max(Cov2 - Cov3, 0)]
  on (t - 1, ddf_H) degrees of freedom, ddf_H = [MS(T*R) + r max(Cov2 - Cov3, 0)]^2 /
  {MS(T*R)^2 / [(t-1)(r-1)]}; modality differences with their standard error
  sqrt(2/r [MS(T*R) + r max(Cov2 - Cov3, 0)]) and t(ddf_H) intervals; single-modality
  intervals from that modality's reader ANOVA and Cov2;
* fixed readers, random cases: X2 = (t-1) MS(T) / [Var(error) - Cov1 + (r-1) max(Cov2 - Cov3, 0)]
  on t - 1 df, z intervals, and each reader's own modality difference;
* random readers, fixed cases: the modality x reader ANOVA of the AUCs alone (for two
  modalities a paired t-test of the reader AUCs).

References: Obuchowski & Rockette, Commun Stat Simul Comput 1995;24:285-308. Hillis, Stat Med
2007;26:596-619 and Acad Radiol 2008;15:647-661. Hillis, Obuchowski & Berbaum, Acad Radiol
2011;18:129-142 (sample size, see :mod:`cfviewer.analysis.sizing`). Output checked against
OR-DBM MRMC 2.51 on the Van Dyke and Franken data sets (tests/test_mrmc.py).

In a cfviewer study (:func:`study_frame`) the arms are the modalities, the confidence rating is
the score and "diseased" is "the model's prediction is right": a reader discriminates true
positives from false positives, and the question is whether an explanation helps them do so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cfviewer.analysis.inputs import AnalysisInputError


class MRMCInputError(AnalysisInputError):
    """The table cannot be analysed as a fully crossed MRMC ROC study (the message says why)."""


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class VarianceComponents:
    """Obuchowski-Rockette variance components and error covariances (one study)."""

    var_r: float
    var_tr: float
    cov1: float
    cov2: float
    cov3: float
    var_error: float
    n_readers: int
    n_cases: int
    n_modalities: int = 2
    source: str = ""

    @property
    def correlations(self) -> dict[str, float]:
        v = self.var_error
        return {k: (getattr(self, k) / v if v > 0 else float("nan")) for k in ("cov1", "cov2", "cov3")}

    def table(self) -> pd.DataFrame:
        c = self.correlations
        return pd.DataFrame({
            "component": ["Var(R)", "Var(T*R)", "Cov1", "Cov2", "Cov3", "Var(Error)"],
            "estimate": [self.var_r, self.var_tr, self.cov1, self.cov2, self.cov3, self.var_error],
            "correlation": [np.nan, np.nan, c["cov1"], c["cov2"], c["cov3"], np.nan],
        })


@dataclass(frozen=True)
class Difference:
    """One modality difference (a - b) under one analysis."""

    a: str
    b: str
    estimate: float
    se: float
    df: float  # inf for z (normal) intervals
    statistic: float  # t or z
    p: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class ModalityAUC:
    """One modality's reader-averaged AUC with its interval under one analysis."""

    modality: str
    auc: float
    se: float
    df: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class Test:
    """The global test of equal modality AUCs under one analysis."""

    analysis: str  # "RRRC", "FRRC", "RRFC"
    statistic: float  # F (RRRC, RRFC) or chi-square (FRRC)
    df1: float
    df2: float  # inf for the chi-square test
    p: float
    differences: list[Difference]
    modalities: list[ModalityAUC]

    @property
    def kind(self) -> str:
        return "X2" if self.analysis == "FRRC" else "F"


ANALYSES = {"RRRC": "random readers, random cases", "FRRC": "fixed readers, random cases",
            "RRFC": "random readers, fixed cases"}


@dataclass
class ORHResult:
    """Everything `orh` computes; `str()` prints the tables, `tables()` returns them."""

    modalities: list[str]
    readers: list[str]
    auc: pd.DataFrame  # readers x modalities
    n_positive: int
    n_negative: int
    ms_t: float
    ms_r: float
    ms_tr: float
    ms_r_by_modality: dict[str, float]
    components: VarianceComponents
    var_error_by_modality: dict[str, float]
    cov2_by_modality: dict[str, float]
    rrrc: Test
    frrc: Test
    rrfc: Test | None
    per_reader: list[tuple[str, Difference]] = field(default_factory=list)
    alpha: float = 0.05
    notes: list[str] = field(default_factory=list)

    @property
    def modality_means(self) -> pd.Series:
        return self.auc.mean(axis=0)

    @property
    def n_cases(self) -> int:
        return self.n_positive + self.n_negative

    def test(self, analysis: str = "RRRC") -> Test:
        t = {"RRRC": self.rrrc, "FRRC": self.frrc, "RRFC": self.rrfc}.get(analysis)
        if t is None:
            raise MRMCInputError(f"no {analysis} analysis in this result (it needs at least 2 readers)")
        return t

    def tables(self) -> dict[str, pd.DataFrame]:
        """auc (reader x modality), components, tests (one row per analysis), differences,
        modalities (single-modality intervals) and per_reader differences."""
        auc = self.auc.copy()
        auc.loc["mean"] = self.modality_means
        tests, diffs, mods = [], [], []
        for t in (self.rrrc, self.frrc, self.rrfc):
            if t is None:
                continue
            tests.append({"analysis": t.analysis, "meaning": ANALYSES[t.analysis], "statistic": t.kind,
                          "value": t.statistic, "df1": t.df1, "df2": t.df2, "p": t.p})
            for d in t.differences:
                diffs.append({"analysis": t.analysis, "comparison": f"{d.a} - {d.b}", "difference": d.estimate,
                              "se": d.se, "df": d.df, "statistic": d.statistic, "p": d.p,
                              "ci_low": d.ci[0], "ci_high": d.ci[1]})
            for m in t.modalities:
                mods.append({"analysis": t.analysis, "modality": m.modality, "auc": m.auc, "se": m.se,
                             "df": m.df, "ci_low": m.ci[0], "ci_high": m.ci[1]})
        per_reader = [{"reader": r, "comparison": f"{d.a} - {d.b}", "difference": d.estimate, "se": d.se,
                       "z": d.statistic, "p": d.p, "ci_low": d.ci[0], "ci_high": d.ci[1]}
                      for r, d in self.per_reader]
        return {"auc": auc.reset_index(names="reader"), "components": self.components.table(),
                "tests": pd.DataFrame(tests), "differences": pd.DataFrame(diffs),
                "modalities": pd.DataFrame(mods), "per_reader": pd.DataFrame(per_reader)}

    def __str__(self) -> str:
        t = self.tables()
        lines = [f"MRMC ROC analysis (Obuchowski-Rockette, Hillis df; jackknife covariances): "
                 f"{len(self.modalities)} modalities, {len(self.readers)} readers, {self.n_cases} cases "
                 f"({self.n_negative} negative, {self.n_positive} positive)", "",
                 "Reader x modality AUC (trapezoidal):",
                 t["auc"].to_string(index=False, float_format=lambda v: f"{v:.8f}"), "",
                 "Obuchowski-Rockette variance components:",
                 t["components"].to_string(index=False, float_format=lambda v: f"{v:.8f}", na_rep=""), "",
                 "Tests of equal modality AUCs:",
                 t["tests"].to_string(index=False, float_format=lambda v: f"{v:.4g}"), "",
                 "Modality differences:",
                 t["differences"].to_string(index=False, float_format=lambda v: f"{v:.5f}"), ""]
        lines += self.notes
        return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- the analysis
def _ratings_cube(frame: pd.DataFrame, reader: str, modality: str, case: str, truth: str, rating: str,
                  modalities: Sequence[str] | None):
    missing = [c for c in (reader, modality, case, truth, rating) if c not in frame.columns]
    if missing:
        raise MRMCInputError(f"the MRMC table has no column(s) {', '.join(map(repr, missing))}; "
                             f"it needs one row per reader x modality x case with columns "
                             f"{reader!r}, {modality!r}, {case!r}, {truth!r}, {rating!r}")
    df = frame[[reader, modality, case, truth, rating]].copy()
    if df[rating].isna().any() or df[truth].isna().any():
        raise MRMCInputError(f"{int(df[rating].isna().sum())} rating(s) and {int(df[truth].isna().sum())} "
                             "truth value(s) are missing; drop those rows or fill them in")
    try:
        df[rating] = df[rating].astype(float)
    except (TypeError, ValueError):
        raise MRMCInputError(f"the {rating!r} column must be numeric (a score or an ordinal rating)") from None
    truth_vals = set(pd.unique(df[truth]))
    if not truth_vals <= {0, 1, True, False}:
        raise MRMCInputError(f"the {truth!r} column must be 0/1 (1 = diseased / correct); found "
                             f"{sorted(map(str, truth_vals))[:5]}")
    dup = df.duplicated([reader, modality, case])
    if dup.any():
        r = df[dup].iloc[0]
        raise MRMCInputError(f"{int(dup.sum())} duplicate rating(s), e.g. reader {r[reader]!r}, modality "
                             f"{r[modality]!r}, case {r[case]!r}: give one rating per reader x modality x case")
    per_case_truth = df.groupby(case)[truth].nunique()
    if (per_case_truth > 1).any():
        bad = per_case_truth[per_case_truth > 1].index[0]
        raise MRMCInputError(f"case {bad!r} has more than one truth value; truth belongs to the case")
    mods = list(modalities) if modalities is not None else sorted(pd.unique(df[modality]), key=str)
    unknown = sorted(set(map(str, mods)) - set(map(str, pd.unique(df[modality]))))
    if unknown:
        raise MRMCInputError(f"modalities {unknown} are not in the table")
    df = df[df[modality].isin(mods)]
    if len(mods) < 2:
        raise MRMCInputError(f"an MRMC comparison needs at least 2 modalities; the table has {len(mods)}")
    readers = sorted(pd.unique(df[reader]), key=str)
    cases = sorted(pd.unique(df[case]), key=str)
    expected = len(mods) * len(readers) * len(cases)
    if len(df) != expected:
        raise MRMCInputError(
            f"the design is not fully crossed: {len(df)} ratings where {len(mods)} modalities x "
            f"{len(readers)} readers x {len(cases)} cases = {expected} are needed (every reader must rate "
            "every case under every modality); analyse the complete subset (e.g. drop unfinished readers)")
    cube = (df.set_index([modality, reader, case])[rating]
            .unstack(case).reindex(pd.MultiIndex.from_product([mods, readers])))
    truth_by_case = df.groupby(case)[truth].first().astype(int).reindex(cases).to_numpy()
    x = cube[cases].to_numpy(dtype=float).reshape(len(mods), len(readers), len(cases))
    pos, neg = truth_by_case == 1, truth_by_case == 0
    if pos.sum() < 2 or neg.sum() < 2:
        raise MRMCInputError(f"the jackknife needs at least 2 positive and 2 negative cases; the table has "
                             f"{int(pos.sum())} positive and {int(neg.sum())} negative")
    return [str(m) for m in mods], [str(r) for r in readers], x, pos


def _auc_and_jackknife(x: np.ndarray, pos: np.ndarray):
    """AUC (t x r) and the leave-one-case-out AUCs (t x r x K), ties counted 1/2."""
    t, r, K = x.shape
    xp, xn = x[..., pos], x[..., ~pos]  # t x r x n1, t x r x n0
    n1, n0 = xp.shape[-1], xn.shape[-1]
    psi_pos = np.empty_like(xp)  # sum over negatives of psi(x_p, y)
    psi_neg = np.empty_like(xn)  # sum over positives of psi(x, y_n)
    for i in range(t):
        for j in range(r):
            sn = np.sort(xn[i, j])
            below = np.searchsorted(sn, xp[i, j], side="left")
            upto = np.searchsorted(sn, xp[i, j], side="right")
            psi_pos[i, j] = below + 0.5 * (upto - below)
            sp = np.sort(xp[i, j])
            above_lo = np.searchsorted(sp, xn[i, j], side="right")
            above_hi = np.searchsorted(sp, xn[i, j], side="left")
            psi_neg[i, j] = (n1 - above_lo) + 0.5 * (above_lo - above_hi)
    total = psi_pos.sum(-1)  # t x r
    auc = total / (n1 * n0)
    jack = np.empty((t, r, K))
    jack[..., pos] = (total[..., None] - psi_pos) / ((n1 - 1) * n0)
    jack[..., ~pos] = (total[..., None] - psi_neg) / (n1 * (n0 - 1))
    return auc, jack


def _mean_off(block: np.ndarray, mask: np.ndarray) -> float:
    return float(block[mask].mean()) if mask.any() else float("nan")


def orh(
    frame: pd.DataFrame,
    reader: str = "reader",
    modality: str = "modality",
    case: str = "case",
    truth: str = "truth",
    rating: str = "rating",
    *,
    modalities: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> ORHResult:
    """Obuchowski-Rockette / Hillis MRMC analysis of a long table (see the module docstring).

    `modalities` fixes their order (differences are first - second, ...); default sorted."""
    if not 0 < alpha < 1:
        raise MRMCInputError(f"alpha must lie in (0, 1); got {alpha}")
    mods, readers, x, pos = _ratings_cube(frame, reader, modality, case, truth, rating, modalities)
    t, r, K = x.shape
    auc, jack = _auc_and_jackknife(x, pos)
    # jackknife covariance matrix of the t*r AUCs
    flat = jack.reshape(t * r, K)
    dev = flat - flat.mean(axis=1, keepdims=True)
    cov = (K - 1) / K * dev @ dev.T
    ti, ri = np.divmod(np.arange(t * r), r)
    same_t, same_r = ti[:, None] == ti[None, :], ri[:, None] == ri[None, :]
    var_e = float(np.diag(cov).mean())
    cov1 = _mean_off(cov, same_r & ~same_t)
    cov2 = _mean_off(cov, same_t & ~same_r)
    cov3 = _mean_off(cov, ~same_t & ~same_r)
    # modality x reader ANOVA of the AUCs
    grand = auc.mean()
    m_t, m_r = auc.mean(axis=1), auc.mean(axis=0)
    ms_t = r * float(((m_t - grand) ** 2).sum()) / (t - 1)
    ms_r = t * float(((m_r - grand) ** 2).sum()) / (r - 1) if r > 1 else float("nan")
    resid = auc - m_t[:, None] - m_r[None, :] + grand
    ms_tr = float((resid ** 2).sum()) / ((t - 1) * (r - 1)) if r > 1 else float("nan")
    ms_r_i = {mods[i]: (float(((auc[i] - m_t[i]) ** 2).sum()) / (r - 1) if r > 1 else float("nan"))
              for i in range(t)}
    var_e_i = {mods[i]: float(np.diag(cov)[ti == i].mean()) for i in range(t)}
    cov2_i = {mods[i]: _mean_off(cov, (ti[:, None] == i) & (ti[None, :] == i) & ~same_r) for i in range(t)}
    d23 = max(cov2 - cov3, 0.0) if r > 1 else 0.0
    comps = VarianceComponents(
        var_r=(ms_r - ms_tr) / t - (cov1 - cov3) if r > 1 else float("nan"),
        var_tr=ms_tr - var_e + cov1 + (cov2 - cov3) if r > 1 else float("nan"),
        cov1=cov1, cov2=cov2, cov3=cov3, var_error=var_e, n_readers=r, n_cases=K, n_modalities=t,
        source="jackknife")
    pairs = [(a, b) for a in range(t) for b in range(a + 1, t)]
    q = 1 - alpha / 2
    notes: list[str] = []

    def diff_rows(se_of, df: float) -> list[Difference]:
        out = []
        for a, b in pairs:
            est = float(m_t[a] - m_t[b])
            se = se_of(a, b)
            stat = est / se if se > 0 else float("nan")
            if np.isfinite(df):
                p = float(2 * stats.t.sf(abs(stat), df))
                h = float(stats.t.ppf(q, df)) * se
            else:
                p = float(2 * stats.norm.sf(abs(stat)))
                h = float(stats.norm.ppf(q)) * se
            out.append(Difference(mods[a], mods[b], est, se, df, stat, p, (est - h, est + h)))
        return out

    def single(se_df) -> list[ModalityAUC]:
        out = []
        for i, m in enumerate(mods):
            se, df = se_df(i, m)
            h = (float(stats.t.ppf(q, df)) if np.isfinite(df) else float(stats.norm.ppf(q))) * se
            out.append(ModalityAUC(m, float(m_t[i]), se, df, (float(m_t[i]) - h, float(m_t[i]) + h)))
        return out

    # fixed readers, random cases
    den_f = var_e - cov1 + (r - 1) * d23
    if den_f <= 0:
        notes.append("note: Var(error) - Cov1 + (r-1) max(Cov2 - Cov3, 0) <= 0; the fixed-reader test is undefined")
    x2 = (t - 1) * ms_t / den_f if den_f > 0 else float("nan")
    frrc = Test("FRRC", x2, t - 1, float("inf"), float(stats.chi2.sf(x2, t - 1)) if den_f > 0 else float("nan"),
                diff_rows(lambda a, b: float(np.sqrt(max(2 / r * den_f, 0.0))), float("inf")),
                single(lambda i, m: (float(np.sqrt(max((var_e_i[m] + (r - 1) * max(cov2_i[m], 0.0)) / r, 0.0)))
                                     if r > 1 else float(np.sqrt(var_e_i[m])), float("inf"))))
    per_reader = []
    cdiag = np.diag(cov)
    for j, rd in enumerate(readers):
        for a, b in pairs:
            ka, kb = a * r + j, b * r + j
            v = cdiag[ka] + cdiag[kb] - 2 * cov[ka, kb]
            se = float(np.sqrt(max(v, 0.0)))
            est = float(auc[a, j] - auc[b, j])
            z = est / se if se > 0 else float("nan")
            h = float(stats.norm.ppf(q)) * se
            per_reader.append((rd, Difference(mods[a], mods[b], est, se, float("inf"), z,
                                              float(2 * stats.norm.sf(abs(z))), (est - h, est + h))))
    if r < 2:
        notes.append("note: one reader: only the fixed-reader analysis is defined")
        rrrc = Test("RRRC", float("nan"), t - 1, float("nan"), float("nan"), [], [])
        return ORHResult(mods, readers, pd.DataFrame(auc.T, index=readers, columns=mods), int(pos.sum()),
                         int((~pos).sum()), ms_t, ms_r, ms_tr, ms_r_i, comps, var_e_i, cov2_i, rrrc, frrc, None,
                         per_reader, alpha, notes)
    # random readers, random cases (Hillis 2008)
    den = ms_tr + r * d23
    ddf = den ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1))) if ms_tr > 0 else float("inf")
    f = ms_t / den if den > 0 else float("nan")
    p = float(stats.f.sf(f, t - 1, ddf)) if den > 0 else float("nan")

    def single_rrrc(i, m):
        num = ms_r_i[m] + r * max(cov2_i[m], 0.0)
        df = num ** 2 / (ms_r_i[m] ** 2 / (r - 1)) if ms_r_i[m] > 0 else float("inf")
        return float(np.sqrt(num / r)), df

    rrrc = Test("RRRC", f, t - 1, ddf, p, diff_rows(lambda a, b: float(np.sqrt(2 / r * den)), ddf),
                single(single_rrrc))
    # random readers, fixed cases: the T x R ANOVA of the AUCs
    df_tr = (t - 1) * (r - 1)
    f_fc = ms_t / ms_tr if ms_tr > 0 else float("nan")
    rrfc = Test("RRFC", f_fc, t - 1, df_tr, float(stats.f.sf(f_fc, t - 1, df_tr)) if ms_tr > 0 else float("nan"),
                diff_rows(lambda a, b: float(np.sqrt(2 / r * ms_tr)), df_tr),
                single(lambda i, m: (float(np.sqrt(ms_r_i[m] / r)), float(r - 1))))
    return ORHResult(mods, readers, pd.DataFrame(auc.T, index=readers, columns=mods), int(pos.sum()),
                     int((~pos).sum()), ms_t, ms_r, ms_tr, ms_r_i, comps, var_e_i, cov2_i, rrrc, frrc, rrfc,
                     per_reader, alpha, notes)


# ----------------------------------------------------------------------------- ROC curves
def roc_points(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical ROC operating points (FPF, TPF) of one reader's ratings, from (0, 0) to (1, 1)
    through every distinct threshold (the trapezoidal AUC is the area under them)."""
    s = np.asarray(scores, float)
    y = np.asarray(truth).astype(bool)
    thr = np.unique(s)[::-1]
    tpf = [0.0] + [float((s[y] >= v).mean()) for v in thr]
    fpf = [0.0] + [float((s[~y] >= v).mean()) for v in thr]
    return np.asarray(fpf), np.asarray(tpf)


# ----------------------------------------------------------------------------- cfviewer studies
@dataclass(frozen=True)
class StudyMRMC:
    """The MRMC analysis of one study question (and stratum of cases)."""

    question: str
    subset: str  # "all cases" or a pathology
    result: ORHResult | None
    frame: pd.DataFrame
    reason: str | None = None  # why there is no result


def study_frame(responses: pd.DataFrame, question: str = "confidence",
                pathology: str | None = None) -> pd.DataFrame:
    """The MRMC long table of a study's responses (`cfviewer.study.export.responses_frame`):
    modality = arm, case = case x pathology judged, truth = 1 for a true positive (the model's
    prediction is right), 0 for a false positive; rating = the answer to `question`."""
    need = {"reader", "arm", "case", "pathology", "stratum", "question", "rating"}
    missing = sorted(need - set(responses.columns))
    if missing:
        raise MRMCInputError(f"the responses table has no column(s) {missing}; pass the frame "
                             "`cfviewer.study.export.responses_frame` returns")
    df = responses[responses["question"] == question]
    if pathology is not None:
        df = df[df["pathology"] == pathology]
    out = pd.DataFrame({
        "reader": df["reader"].astype(str),
        "modality": df["arm"].astype(str),
        "case": df["case"].astype(str) + " / " + df["pathology"].astype(str),
        "truth": (df["stratum"] == "TP").astype(int),
        "rating": pd.to_numeric(df["rating"], errors="coerce"),
    })
    return out.dropna(subset=["rating"]).reset_index(drop=True)


def complete_subset(frame: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """The fully crossed part of an MRMC table: cases rated by every reader under every
    modality (readers who rated none are dropped first); a note when something was dropped."""
    if frame.empty:
        return frame, None
    n_mod = frame["modality"].nunique()
    per_reader = frame.groupby("reader")["case"].nunique()
    readers = per_reader.index
    f = frame[frame["reader"].isin(readers)]
    counts = f.groupby("case").size()
    full = counts[counts == n_mod * len(readers)].index
    out = f[f["case"].isin(full)]
    dropped = frame["case"].nunique() - len(full)
    note = (f"{dropped} case(s) not yet rated by every reader under every arm were left out"
            if dropped else None)
    return out.reset_index(drop=True), note


def analyze_study(responses: pd.DataFrame, question: str = "confidence", *, by_pathology: bool = True,
                  min_per_class: int = 5, arms: Sequence[str] | None = None,
                  alpha: float = 0.05) -> list[StudyMRMC]:
    """ORH analyses of a study: all cases, and each pathology with at least `min_per_class`
    true and false positives in the complete subset. A subset that cannot be analysed gets a
    `reason` instead of a result."""
    out = []
    subsets: list[str | None] = [None]
    if by_pathology and "pathology" in responses.columns:
        subsets += sorted(pd.unique(responses["pathology"].dropna()))
    for p in subsets:
        name = "all cases" if p is None else p
        frame, note = complete_subset(study_frame(responses, question, p))
        if frame.empty:
            out.append(StudyMRMC(question, name, None, frame, f"no complete {question!r} ratings"))
            continue
        per_class = frame.drop_duplicates("case")["truth"].value_counts()
        n_tp, n_fp = int(per_class.get(1, 0)), int(per_class.get(0, 0))
        if p is not None and min(n_tp, n_fp) < min_per_class:
            out.append(StudyMRMC(question, name, None, frame,
                                 f"{n_tp} TP and {n_fp} FP cases: fewer than {min_per_class} of each"))
            continue
        try:
            res = orh(frame, modalities=arms, alpha=alpha)
        except MRMCInputError as exc:
            out.append(StudyMRMC(question, name, None, frame, str(exc)))
            continue
        if note:
            res.notes.append(f"note: {note}")
        out.append(StudyMRMC(question, name, res, frame))
    return out


def summary_table(analyses: Sequence[StudyMRMC], analysis: str = "RRRC") -> pd.DataFrame:
    """One row per analysed subset: reader-averaged AUC per arm, the difference with its CI
    and p under `analysis`, or the reason it could not be analysed."""
    rows: list[dict[str, Any]] = []
    for a in analyses:
        row: dict[str, Any] = {"question": a.question, "subset": a.subset}
        if a.result is None:
            row["note"] = a.reason
            rows.append(row)
            continue
        res = a.result
        row.update({"readers": len(res.readers), "cases": res.n_cases, "TP": res.n_positive, "FP": res.n_negative})
        for m, v in res.modality_means.items():
            row[f"AUC {m}"] = float(v)
        test = res.test(analysis) if analysis != "RRFC" or res.rrfc is not None else None
        if test is not None and test.differences:
            d = test.differences[0]
            row.update({"comparison": f"{d.b} - {d.a}", "difference": -d.estimate,
                        "ci_low": -d.ci[1], "ci_high": -d.ci[0], "df": d.df, "p": d.p,
                        "analysis": analysis})
        row["note"] = "; ".join(res.notes) or None
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in ("readers", "cases", "TP", "FP"):
        if c in out.columns:
            out[c] = out[c].astype("Int64")
    return out
