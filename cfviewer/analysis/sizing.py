"""Sizing a reader study from pilot Obuchowski-Rockette variance components (Hillis, Obuchowski
& Berbaum, "Power estimation for multireader ROC methods", Acad Radiol 2011;18:129-142, eq. 10;
the method of RJafroc's SsPowerGivenJK / SsSampleSizeKGivenJ with method "OR").

For a two-modality study with J readers and K cases, pilot components from K* cases
(`cfviewer.analysis.mrmc.VarianceComponents`; the case-level error terms scale by K*/K) and an
effect size d (the difference of reader-averaged AUCs to detect):

* random readers, random cases: den = Var(T*R) + K*/K [Var(error) - Cov1 + (J-1) max(Cov2 - Cov3, 0)],
  non-centrality J d^2 / (2 den), ddf = den^2 / {[Var(T*R) + K*/K (Var(error) - Cov1 - max(Cov2 - Cov3, 0))]^2 / (J-1)},
  power = P(F'(1, ddf, ncp) > F_(1-alpha)(1, ddf));
* fixed readers: den = K*/K [Var(error) - Cov1 + (J-1) max(Cov2 - Cov3, 0)], a non-central chi-square on 1 df;
* fixed cases: den = Var(T*R) + K*/K [Var(error) - Cov1 - max(Cov2 - Cov3, 0)], F on (1, J-1).

Var(T*R) is set to 0 when its estimate is negative (as RJafroc does). Without a pilot, the Van
Dyke components (`VAN_DYKE`, OR-DBM MRMC 2.51 on its 5 readers x 114 cases) are the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from cfviewer.analysis.inputs import AnalysisInputError
from cfviewer.analysis.mrmc import VarianceComponents

VAN_DYKE = VarianceComponents(var_r=0.00153500, var_tr=0.00020040, cov1=0.00034661, cov2=0.00034407,
                              cov3=0.00023903, var_error=0.00080229, n_readers=5, n_cases=114,
                              source="Van Dyke (OR-DBM MRMC 2.51, jackknife)")
"""Published OR components of the Van Dyke cine vs spin-echo MRI study: the default pilot."""

OPTIONS = ("RRRC", "FRRC", "RRFC")


class SizingError(AnalysisInputError):
    """A sizing request that cannot be computed (the message says which input and why)."""


@dataclass(frozen=True)
class Power:
    readers: int
    cases: int
    effect: float
    power: float
    ncp: float
    ddf: float  # inf for the fixed-reader chi-square
    option: str


def power(components: VarianceComponents, readers: int, cases: int, effect: float,
          alpha: float = 0.05, option: str = "RRRC") -> Power:
    """The power of a planned two-modality study (see the module docstring)."""
    if option not in OPTIONS:
        raise SizingError(f"unknown analysis {option!r}; choose one of {', '.join(OPTIONS)}")
    if readers < 2 and option != "FRRC":
        raise SizingError(f"{option} needs at least 2 readers (got {readers})")
    if cases < 2:
        raise SizingError(f"a study needs at least 2 cases (got {cases})")
    if not 0 < alpha < 1:
        raise SizingError(f"alpha must lie in (0, 1); got {alpha}")
    c = components
    scale = c.n_cases / cases
    var_tr = max(c.var_tr, 0.0)
    d23 = max(c.cov2 - c.cov3, 0.0)
    J = readers
    if option == "RRRC":
        den = var_tr + scale * (c.var_error - c.cov1 + (J - 1) * d23)
        den_df = var_tr + scale * (c.var_error - c.cov1 - d23)
        ddf = den ** 2 / (den_df ** 2 / (J - 1))
        ncp = effect ** 2 * J / 2 / den
        crit = stats.f.ppf(1 - alpha, 1, ddf)
        pw = float(stats.ncf.sf(crit, 1, ddf, ncp))
    elif option == "FRRC":
        den = scale * (c.var_error - c.cov1 + (J - 1) * d23)
        ddf = float("inf")
        ncp = effect ** 2 * J / 2 / den
        pw = float(stats.ncx2.sf(stats.chi2.ppf(1 - alpha, 1), 1, ncp))
    else:
        den = var_tr + scale * (c.var_error - c.cov1 - d23)
        ddf = float(J - 1)
        ncp = effect ** 2 * J / 2 / den
        pw = float(stats.ncf.sf(stats.f.ppf(1 - alpha, 1, ddf), 1, ddf, ncp))
    return Power(readers, cases, float(effect), pw, float(ncp), float(ddf), option)


def cases_needed(components: VarianceComponents, readers: int, effect: float, target: float = 0.8,
                 alpha: float = 0.05, option: str = "RRRC", max_cases: int = 2000) -> Power | None:
    """The fewest cases (searched from 2 up, as RJafroc does) whose power exceeds `target`
    with `readers` readers; None when even `max_cases` do not (e.g. the reader variance alone
    limits a random-reader study)."""
    if not 0 < target < 1:
        raise SizingError(f"the target power must lie in (0, 1); got {target}")
    if effect == 0:
        raise SizingError("the effect size must not be 0 (the AUC difference the study should detect)")
    lo, hi = 2, max_cases
    if power(components, readers, hi, effect, alpha, option).power <= target:
        return None
    # power rises with the number of cases: bisect for the first K with power > target
    while lo < hi:
        mid = (lo + hi) // 2
        if power(components, readers, mid, effect, alpha, option).power > target:
            hi = mid
        else:
            lo = mid + 1
    return power(components, readers, lo, effect, alpha, option)


def sizing_table(components: VarianceComponents, effect: float, readers: Sequence[int] = range(3, 21),
                 target: float = 0.8, alpha: float = 0.05, option: str = "RRRC",
                 max_cases: int = 2000) -> pd.DataFrame:
    """Cases needed for `target` power for each number of readers (NaN where unreachable)."""
    rows = []
    for J in readers:
        p = cases_needed(components, int(J), effect, target, alpha, option, max_cases)
        rows.append({"readers": int(J), "cases": np.nan if p is None else p.cases,
                     "power": np.nan if p is None else p.power, "ddf": np.nan if p is None else p.ddf})
    return pd.DataFrame(rows)


def power_curve(components: VarianceComponents, effect: float, readers: Sequence[int], cases: Sequence[int],
                alpha: float = 0.05, option: str = "RRRC") -> pd.DataFrame:
    """Power over a readers x cases grid (long table: readers, cases, power)."""
    return pd.DataFrame([{"readers": int(J), "cases": int(K),
                          "power": power(components, int(J), int(K), effect, alpha, option).power}
                         for J in readers for K in cases])


def power_figure(curve: pd.DataFrame, target: float = 0.8):
    """Plotly lines of power against cases, one line per number of readers."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for J, g in curve.groupby("readers"):
        fig.add_trace(go.Scatter(x=g["cases"], y=g["power"], mode="lines", name=f"{J} readers"))
    fig.add_hline(y=target, line_dash="dot", annotation_text=f"{target:.0%}")
    fig.update_layout(xaxis_title="cases", yaxis_title="power", yaxis_range=[0, 1],
                      margin=dict(l=40, r=10, t=30, b=40), height=320)
    return fig
