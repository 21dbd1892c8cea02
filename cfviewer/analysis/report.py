"""One call for everything the analysis page and `cfviewer study analyze` show."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

from cfviewer.analysis.agreement import krippendorff_alpha, reader_kappa
from cfviewer.analysis.figures import likert_figure, paired_means_figure, pathology_figure
from cfviewer.analysis.inputs import AnalysisInputError, check_responses
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

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by file stem, e.g. for writing CSVs next to the export."""
        return {"comparison": self.comparison, "summary": self.summary,
                "kappa": self.kappa, "alpha": self.alpha}


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
) -> AnalysisReport:
    """compare_arms + describe + reader_kappa + krippendorff_alpha (+ the three figures).

    With arm_a / arm_b None the table must hold exactly two arms, taken in sorted order
    (differences are arm_b - arm_a).
    """
    df = check_responses(df)
    if arm_a is None or arm_b is None:
        arm_a, arm_b = default_arms(df)
    comparison = compare_arms(df, arm_a, arm_b, questions=questions, strata=strata,
                              zero_method=zero_method, alternative=alternative,
                              n_boot=n_boot, seed=seed, boot_unit=boot_unit)
    chosen = df[df["arm"].isin([arm_a, arm_b])]
    if questions is not None:
        qs = [questions] if isinstance(questions, str) else list(questions)
        chosen = chosen[chosen["question"].isin(qs)]
    report = AnalysisReport(
        arm_a=arm_a, arm_b=arm_b, comparison=comparison,
        summary=describe(chosen), kappa=reader_kappa(chosen), alpha=krippendorff_alpha(chosen))
    if figures:
        report.figures["responses"] = likert_figure(chosen, arms=[arm_a, arm_b])
        report.figures["paired_means"] = paired_means_figure(comparison)
        if "pathology" in strata:
            report.figures["pathology"] = pathology_figure(comparison)
    return report
