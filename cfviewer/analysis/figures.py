"""Plotly figures of a reader study. Each function returns a `go.Figure`; nothing is shown.

- `likert_figure(df)`: response counts per arm, stacked 1..5 bars, one panel per question;
- `paired_means_figure(comparison)`: mean rating of arm A and arm B per stratum with 95 % CIs;
- `pathology_figure(comparison)`: mean paired difference (B - A) per pathology with 95 % CIs;
- `roc_figure(result, frame)`: readers' empirical ROC curves per arm (MRMC analysis).

The last two take the table returned by `compare_arms`, so figures and statistics agree.
CIs of means are t intervals (mean +- t_{0.975, n-1} * SD / sqrt(n)) over the pairs of the
stratum; they treat pairs as independent and are descriptive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy import stats

from cfviewer.analysis.inputs import LIKERT, AnalysisInputError, check_responses
from cfviewer.analysis.paired import RESULT_COLUMNS

# Diverging palette, 1 (red) .. 5 (blue), colour-blind safe (ColorBrewer RdBu).
LIKERT_COLORS = ("#ca0020", "#f4a582", "#d9d9d9", "#92c5de", "#0571b0")
ARM_COLORS = ("#1b9e77", "#7570b3")


def _t_halfwidth(sd: pd.Series, n: pd.Series, confidence: float = 0.95) -> np.ndarray:
    n = n.to_numpy(dtype=float)
    sd = sd.to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stats.t.ppf(0.5 + confidence / 2, np.where(n > 1, n - 1, np.nan))
        return np.where(n > 1, t * sd / np.sqrt(n), np.nan)


def _check_comparison(comparison: pd.DataFrame) -> None:
    if not isinstance(comparison, pd.DataFrame):
        raise AnalysisInputError("pass the DataFrame returned by compare_arms")
    missing = [c for c in RESULT_COLUMNS if c not in comparison.columns]
    if missing:
        raise AnalysisInputError(
            f"comparison table is missing column(s) {', '.join(missing)}; pass the "
            "DataFrame returned by cfviewer.analysis.compare_arms")


def likert_figure(
    df: pd.DataFrame,
    questions: Sequence[object] | None = None,
    arms: Sequence[object] | None = None,
    percent: bool = False,
) -> go.Figure:
    """Horizontal stacked bars of rating counts (or percentages) per arm, one row per question."""
    df = check_responses(df, required=("arm", "question", "rating"))
    qs = list(pd.unique(df["question"])) if questions is None else list(questions)
    arm_list = sorted(pd.unique(df["arm"]), key=str) if arms is None else list(arms)
    counts = (df.groupby(["question", "arm"])["rating"].value_counts()
              .unstack(fill_value=0).reindex(columns=list(LIKERT), fill_value=0))
    fig = make_subplots(rows=len(qs), cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=[str(q) for q in qs])
    for row, q in enumerate(qs, start=1):
        table = counts.loc[q].reindex(arm_list, fill_value=0) if q in counts.index else \
            pd.DataFrame(0, index=arm_list, columns=list(LIKERT))
        totals = table.sum(axis=1).replace(0, np.nan)
        for v, color in zip(LIKERT, LIKERT_COLORS):
            x = table[v] / totals * 100 if percent else table[v]
            fig.add_trace(go.Bar(
                y=[str(a) for a in arm_list], x=x, orientation="h", name=str(v),
                marker_color=color, legendgroup=str(v), showlegend=row == 1,
                customdata=np.c_[table[v].to_numpy(), totals.fillna(0).to_numpy()],
                hovertemplate=f"rating {v}: %{{customdata[0]}} of %{{customdata[1]}}"
                              "<extra>%{y}</extra>",
            ), row=row, col=1)
    fig.update_layout(barmode="stack", legend_title_text="rating",
                      title="Responses per arm", height=220 * len(qs) + 120)
    fig.update_xaxes(title_text="% of responses" if percent else "responses",
                     row=len(qs), col=1)
    return fig


def paired_means_figure(
    comparison: pd.DataFrame,
    stratum_kinds: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> go.Figure:
    """Mean rating of each arm per stratum (paired responses only) with t CIs, one panel
    per question. `stratum_kinds` None = every kind in the table."""
    _check_comparison(comparison)
    table = comparison if stratum_kinds is None else \
        comparison[comparison["stratum_kind"].isin(stratum_kinds)]
    qs = list(pd.unique(table["question"]))
    fig = make_subplots(rows=max(len(qs), 1), cols=1, vertical_spacing=0.15,
                        subplot_titles=[str(q) for q in qs])
    for row, q in enumerate(qs, start=1):
        part = table[table["question"] == q]
        labels = [s if k in ("all", "stratum", "pathology") else f"{k}: {s}"
                  for k, s in zip(part["stratum_kind"], part["stratum"])]
        for side, color in zip(("a", "b"), ARM_COLORS):
            arm = part[f"arm_{side}"].iloc[0]
            fig.add_trace(go.Scatter(
                x=labels, y=part[f"mean_{side}"], mode="markers", name=str(arm),
                marker=dict(color=color, size=9), legendgroup=str(arm), showlegend=row == 1,
                error_y=dict(type="data", array=_t_halfwidth(part[f"sd_{side}"],
                                                             part["n_pairs"], confidence)),
                customdata=part[["n_pairs", "p_holm"]].to_numpy(),
                hovertemplate="%{x}: %{y:.2f} (n=%{customdata[0]}, Holm p=%{customdata[1]:.3g})"
                              f"<extra>{arm}</extra>",
            ), row=row, col=1)
        fig.update_yaxes(title_text="mean rating", range=[0.8, 5.2], row=row, col=1)
    fig.update_layout(title=f"Paired mean ratings per stratum ({int(confidence * 100)} % CI)",
                      scattermode="group", height=300 * max(len(qs), 1) + 100)
    return fig


def pathology_figure(comparison: pd.DataFrame, confidence: float = 0.95) -> go.Figure:
    """Forest plot: mean paired difference (arm B - arm A) per pathology and question, with
    t CIs; hover shows n, Holm-adjusted p and the rank-biserial r."""
    _check_comparison(comparison)
    table = comparison[comparison["stratum_kind"].isin(["pathology", "all"])]
    if table.empty:
        raise AnalysisInputError(
            "the comparison has no pathology rows; run compare_arms with 'pathology' in strata")
    fig = go.Figure()
    qs = list(pd.unique(table["question"]))
    palette = ("#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")
    for i, q in enumerate(qs):
        part = table[table["question"] == q]
        labels = ["all pathologies" if k == "all" else s
                  for k, s in zip(part["stratum_kind"], part["stratum"])]
        fig.add_trace(go.Scatter(
            y=labels, x=part["mean_diff"], mode="markers", name=str(q), orientation="h",
            marker=dict(color=palette[i % len(palette)], size=9,
                        symbol=["diamond" if k == "all" else "circle"
                                for k in part["stratum_kind"]]),
            error_x=dict(type="data", array=_t_halfwidth(part["sd_diff"], part["n_pairs"],
                                                         confidence)),
            customdata=part[["n_pairs", "p_holm", "r_rb"]].to_numpy(),
            hovertemplate="%{y}: %{x:+.2f} (n=%{customdata[0]}, Holm p=%{customdata[1]:.3g}, "
                          "r=%{customdata[2]:.2f})<extra>" + str(q) + "</extra>",
        ))
    arm_a, arm_b = table["arm_a"].iloc[0], table["arm_b"].iloc[0]
    fig.add_vline(x=0, line_dash="dot", line_color="gray")
    fig.update_layout(
        title=f"Mean paired difference {arm_b} - {arm_a} per pathology "
              f"({int(math.floor(confidence * 100))} % CI)",
        xaxis_title=f"rating difference ({arm_b} - {arm_a})", scattermode="group",
        height=120 + 40 * table["stratum"].nunique() * max(1, len(qs)) // 2)
    fig.update_yaxes(autorange="reversed")
    return fig


def roc_figure(result, frame: pd.DataFrame, title: str = "") -> go.Figure:
    """Empirical ROC curves of the readers' ratings per arm (`cfviewer.analysis.mrmc`): one thin
    line per reader, the arm's colour, its reader-averaged AUC in the legend. ``result`` is the
    `ORHResult` of ``frame`` (columns reader, modality, case, truth, rating)."""
    from cfviewer.analysis.mrmc import roc_points

    fig = go.Figure()
    for k, m in enumerate(result.modalities):
        colour = ARM_COLORS[k % len(ARM_COLORS)]
        part = frame[frame["modality"].astype(str) == m]
        for j, (reader, g) in enumerate(part.groupby("reader", sort=True)):
            fpf, tpf = roc_points(g["rating"].to_numpy(), g["truth"].to_numpy())
            auc = float(result.auc.loc[str(reader), m])
            fig.add_trace(go.Scatter(
                x=fpf, y=tpf, mode="lines", line=dict(color=colour, width=1.5), opacity=0.75,
                legendgroup=m, showlegend=j == 0,
                name=f"{m}: mean AUC {result.modality_means[m]:.3f}",
                hovertemplate=f"{m}, reader {reader} (AUC {auc:.3f})<br>FPF %{{x:.2f}}, TPF %{{y:.2f}}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#999", dash="dot", width=1),
                             showlegend=False, hoverinfo="skip"))
    fig.update_layout(title=title or None, height=360, margin=dict(l=50, r=10, t=40 if title else 10, b=45),
                      xaxis=dict(title="false positives called correct (FPF)", range=[0, 1], constrain="domain"),
                      yaxis=dict(title="true positives called correct (TPF)", range=[0, 1], scaleanchor="x"),
                      legend=dict(orientation="h", y=-0.25))
    return fig
