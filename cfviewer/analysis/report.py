"""One call for everything the analysis page and `cfviewer study analyze` show.

Answers from simulated readers (column `simulated`) are left out unless
`include_simulated=True`; a report that includes them says so in its title, in every table
(column `simulated_included`), in `info()` and in every figure's title.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

from cfviewer.analysis.agreement import krippendorff_alpha, reader_kappa
from cfviewer.analysis.figures import likert_figure, paired_means_figure, pathology_figure, roc_figure
from cfviewer.analysis.inputs import (
    AnalysisInputError,
    check_responses,
    no_answers_message,
    simulated_mask,
    simulated_note,
)
from cfviewer.analysis.paired import STRATUM_KINDS, compare_arms
from cfviewer.analysis.summary import describe


@dataclass
class AnalysisReport:
    """Tables and figures of one arm comparison (see `analyze`)."""

    arm_a: object
    arm_b: object
    comparison: pd.DataFrame
    summary: pd.DataFrame
    kappa: pd.DataFrame
    alpha: pd.DataFrame
    figures: dict[str, go.Figure] = field(default_factory=dict)
    n_answers: int = 0
    n_readers: int = 0
    simulated_answers: int = 0
    """Answers from simulated readers in the analysis (0 unless include_simulated=True)."""
    simulated_readers: tuple[str, ...] = ()
    simulated_excluded: int = 0
    """Answers from simulated readers left out (include_simulated=False)."""
    simulated_excluded_readers: int = 0
    mrmc: list = field(default_factory=list)
    """`cfviewer.analysis.mrmc.StudyMRMC` per subset (all cases, then each pathology): can the
    readers tell true from false positives by their confidence, and better under arm B?"""
    primary: dict = field(default_factory=dict)
    """The declared confirmatory analysis (strata, questions) that `family` marks."""

    @property
    def includes_simulated(self) -> bool:
        return self.simulated_answers > 0

    @property
    def simulated_note(self) -> str:
        """The simulated-answers mark ("" when the report has none)."""
        if not self.includes_simulated:
            return ""
        return simulated_note(self.simulated_answers, self.simulated_readers)

    @property
    def title(self) -> str:
        """E.g. "Method B - Method A: 96 answers from 2 readers (includes 96 simulated ...)"."""
        t = (f"{self.arm_b} - {self.arm_a}: {self.n_answers} answer{'s' if self.n_answers != 1 else ''} "
             f"from {self.n_readers} reader{'s' if self.n_readers != 1 else ''}")
        if self.includes_simulated:
            return f"{t} [SIMULATED: {self.simulated_note}]"
        if self.simulated_excluded:
            return f"{t} ({self.simulated_excluded} simulated answer(s) excluded)"
        return t

    def info(self) -> dict[str, object]:
        """What the report covers (written as analysis.json by `cfviewer study analyze`)."""
        return {"title": self.title, "arm_a": str(self.arm_a), "arm_b": str(self.arm_b),
                "answers": self.n_answers, "readers": self.n_readers,
                "simulated_included": self.includes_simulated,
                "simulated_answers": self.simulated_answers,
                "simulated_readers": list(self.simulated_readers),
                "simulated_excluded": self.simulated_excluded,
                "note": self.simulated_note}

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by file stem, e.g. for writing CSVs next to the export. Each has a first
        column `simulated_included` (True when the report includes simulated answers)."""
        out = {}
        tables = {"comparison": self.comparison, "summary": self.summary,
                  "kappa": self.kappa, "alpha": self.alpha}
        tables.update(self.mrmc_tables())
        for stem, table in tables.items():
            t = table.copy()
            t.insert(0, "simulated_included", self.includes_simulated)
            out[stem] = t
        return out


    def mrmc_tables(self) -> dict[str, pd.DataFrame]:
        """mrmc (one row per subset: AUC per arm, difference, CI, p under random readers and
        cases), mrmc_auc (reader x arm AUCs), mrmc_components, mrmc_tests (all three analyses)."""
        if not self.mrmc:
            return {}
        from cfviewer.analysis.mrmc import summary_table

        out = {"mrmc": summary_table(self.mrmc)}
        for stem in ("auc", "components", "tests", "differences"):
            parts = []
            for a in self.mrmc:
                if a.result is not None:
                    t = a.result.tables()[stem].copy()
                    t.insert(0, "subset", a.subset)
                    t.insert(0, "question", a.question)
                    parts.append(t)
            if parts:
                out[f"mrmc_{stem}"] = pd.concat(parts, ignore_index=True)
        return out


def default_arms(df: pd.DataFrame) -> tuple[object, object]:
    """The two arms of a two-arm study, sorted ("Method A", "Method B"); others raise."""
    arms = sorted(pd.unique(df["arm"]), key=str)
    if len(arms) != 2:
        raise AnalysisInputError(
            f"the table has {len(arms)} arm(s) ({', '.join(map(str, arms))}); name the two "
            "arms to compare (arm_a, arm_b / --arm-a, --arm-b)")
    return arms[0], arms[1]


def analyze(
    df: pd.DataFrame,
    arm_a: object | None = None,
    arm_b: object | None = None,
    questions: Iterable[object] | None = None,
    strata: Sequence[str] = STRATUM_KINDS,
    zero_method: str = "pratt",
    alternative: str = "two-sided",
    n_boot: int = 2000,
    seed: int = 0,
    figures: bool = True,
    boot_unit: str = "pair",
    *,
    include_simulated: bool = False,
    study: str | None = None,
    include_hint: str = "pass include_simulated=True",
    primary_strata: Sequence[str] = ("all",),
    primary_questions: Iterable[object] | None = None,
    mrmc_question: str | None = "confidence",
) -> AnalysisReport:
    """compare_arms + describe + reader_kappa + krippendorff_alpha (+ the three figures).

    With arm_a / arm_b None the table must hold exactly two arms, taken in sorted order
    (differences are arm_b - arm_a).

    Rows with `simulated` True (simulated readers) are left out unless include_simulated is
    True; then the report is marked (title, tables' `simulated_included`, figure titles). When
    no row is left the AnalysisInputError says why (naming `study` when given) and how to go
    on (`include_hint`).

    The comparison's `family` column marks the declared primary (confirmatory) analysis
    (`primary_strata`, `primary_questions`; default all cases, every question); Holm adjusts
    within it. With `mrmc_question` (default "confidence") the report also holds the MRMC
    analysis of that rating as a score for "the prediction is right" (TP vs FP), per arm
    (`report.mrmc`, tables `mrmc*`, figure "roc"); None skips it.
    """
    if isinstance(df, pd.DataFrame):
        sim = simulated_mask(df)
        sim_readers = (tuple(sorted(map(str, pd.unique(df.loc[sim, "reader"]))))
                       if "reader" in df.columns else ())
        n_sim = int(sim.sum())
        if not include_simulated and n_sim:
            df = df[~sim]
        if df.empty:
            raise AnalysisInputError(no_answers_message(
                study, n_sim if not include_simulated else 0, len(sim_readers), include_hint))
    else:
        n_sim, sim_readers = 0, ()
    df = check_responses(df)
    if arm_a is None or arm_b is None:
        arm_a, arm_b = default_arms(df)
    comparison = compare_arms(df, arm_a, arm_b, questions=questions, strata=strata,
                              zero_method=zero_method, alternative=alternative,
                              n_boot=n_boot, seed=seed, boot_unit=boot_unit,
                              primary_strata=primary_strata, primary_questions=primary_questions)
    chosen = df[df["arm"].isin([arm_a, arm_b])]
    if questions is not None:
        qs = [questions] if isinstance(questions, str) else list(questions)
        chosen = chosen[chosen["question"].isin(qs)]
    report = AnalysisReport(
        arm_a=arm_a, arm_b=arm_b, comparison=comparison,
        summary=describe(chosen), kappa=reader_kappa(chosen), alpha=krippendorff_alpha(chosen))
    in_sim = simulated_mask(chosen)
    report.n_answers, report.n_readers = len(chosen), int(chosen["reader"].nunique())
    if include_simulated:
        report.simulated_answers = int(in_sim.sum())
        report.simulated_readers = tuple(sorted(map(str, pd.unique(chosen.loc[in_sim, "reader"]))))
    else:
        report.simulated_excluded, report.simulated_excluded_readers = n_sim, len(sim_readers)
    report.primary = {"strata": list(primary_strata) if not isinstance(primary_strata, str) else [primary_strata],
                      "questions": None if primary_questions is None else (
                          [primary_questions] if isinstance(primary_questions, str) else list(primary_questions))}
    if mrmc_question is not None and mrmc_question in set(chosen["question"]) and "stratum" in chosen.columns:
        from cfviewer.analysis.mrmc import analyze_study

        report.mrmc = analyze_study(chosen, mrmc_question, arms=[str(arm_a), str(arm_b)])
    if figures:
        report.figures["responses"] = likert_figure(chosen, arms=[arm_a, arm_b])
        first = report.mrmc[0] if report.mrmc else None
        if first is not None and first.result is not None:
            report.figures["roc"] = roc_figure(first.result, first.frame)
        report.figures["paired_means"] = paired_means_figure(comparison)
        if "pathology" in strata:
            report.figures["pathology"] = pathology_figure(comparison)
        if report.includes_simulated:
            for fig in report.figures.values():
                _mark_simulated(fig, report.simulated_note)
    return report


def _mark_simulated(fig: go.Figure, note: str) -> None:
    """Say in the figure's title (and across the plot) that it shows simulated answers."""
    title = fig.layout.title.text or ""
    fig.update_layout(title_text=f"{title}<br><sup>SIMULATED: {note}</sup>")
    fig.add_annotation(text="SIMULATED", xref="paper", yref="paper", x=0.5, y=0.5,
                       showarrow=False, opacity=0.12, textangle=-20,
                       font={"size": 64, "color": "#ca0020"})
