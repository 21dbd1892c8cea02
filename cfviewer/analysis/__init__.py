"""Statistics and figures over the long-format response export of a reader study.

Input everywhere: the DataFrame of `cfviewer study export` (one row per reader x case x arm
x question); only reader, case, arm, pathology, stratum, question and rating are used.

    from cfviewer.analysis import analyze, compare_arms
    table = compare_arms(df, "Method A", "Method B")       # differences are B - A
    report = analyze(df)                                     # tables + figures

Answers from simulated readers (`simulated` True) are left out of `analyze` unless
`include_simulated=True`; a report that includes them is marked (`report.title`,
`report.simulated_note`, column `simulated_included` of `report.tables()`, figure titles).

Public API:
- paired: compare_arms, pair_arms, paired_test, rank_biserial, bootstrap_rank_biserial, holm,
  signed_rank_permutation_p
- agreement: reader_kappa, krippendorff_alpha, quadratic_weighted_kappa,
  weighted_kappa_from_table, confusion_table
- summary: describe
- figures: likert_figure, paired_means_figure, pathology_figure
- report: analyze, AnalysisReport
- inputs: AnalysisInputError, check_responses, REQUIRED_COLUMNS, EXPORT_COLUMNS, LIKERT,
  simulated_mask, simulated_note, no_answers_message
"""

from cfviewer.analysis.agreement import (
    confusion_table,
    krippendorff_alpha,
    quadratic_weighted_kappa,
    reader_kappa,
    weighted_kappa_from_table,
)
from cfviewer.analysis.figures import likert_figure, paired_means_figure, pathology_figure
from cfviewer.analysis.inputs import (
    EXPORT_COLUMNS,
    LIKERT,
    REQUIRED_COLUMNS,
    AnalysisInputError,
    check_responses,
    no_answers_message,
    simulated_mask,
    simulated_note,
)
from cfviewer.analysis.paired import (
    RESULT_COLUMNS,
    STRATUM_KINDS,
    ZERO_METHODS,
    Pairing,
    bootstrap_rank_biserial,
    compare_arms,
    holm,
    pair_arms,
    paired_test,
    rank_biserial,
    signed_rank_permutation_p,
)
from cfviewer.analysis.report import AnalysisReport, analyze, default_arms
from cfviewer.analysis.summary import describe

__all__ = [
    "EXPORT_COLUMNS", "LIKERT", "REQUIRED_COLUMNS", "RESULT_COLUMNS", "STRATUM_KINDS",
    "ZERO_METHODS", "AnalysisInputError", "AnalysisReport", "Pairing", "analyze",
    "bootstrap_rank_biserial", "check_responses", "compare_arms", "confusion_table",
    "default_arms", "describe", "holm", "krippendorff_alpha", "likert_figure",
    "no_answers_message", "pair_arms",
    "paired_means_figure", "paired_test", "pathology_figure", "quadratic_weighted_kappa",
    "rank_biserial", "reader_kappa", "signed_rank_permutation_p", "simulated_mask",
    "simulated_note", "weighted_kappa_from_table",
]
