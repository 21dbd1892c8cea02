"""Explainer evaluation on held-out phantoms with pixel-exact ground truth (`cfviewer bench`).

- :mod:`~cfviewer.evaluation.cases`: case sampling (held-out phantom streams, tube-only false
  positives, 2 x 2 grids);
- :mod:`~cfviewer.evaluation.questions`: one function per evaluation question, each with a
  typed result (localisation, faithfulness, randomisation, confounder, class specificity,
  speed);
- :mod:`~cfviewer.evaluation.runner`: :func:`run_evaluation` explains the cases with every
  registered explainer and asks each question;
- :mod:`~cfviewer.evaluation.report`: the markdown report and the shared sections of
  docs/benchmarks.md.
"""

from cfviewer.evaluation.cases import BENCH_TAG, Case, EvaluationError, bench_seeds, make_cases
from cfviewer.evaluation.questions import (
    ClassSpecificity,
    Confounder,
    Faithfulness,
    Localisation,
    Randomisation,
    Speed,
)
from cfviewer.evaluation.report import ReportError, read_section, render_markdown, write_section
from cfviewer.evaluation.runner import (
    EVALUATION_SECTION,
    RANDOM_METHOD,
    EvaluationOptions,
    EvaluationResult,
    MethodResult,
    machine_info,
    reference_counts,
    run_evaluation,
)

__all__ = [
    "BENCH_TAG", "Case", "EvaluationError", "bench_seeds", "make_cases",
    "ClassSpecificity", "Confounder", "Faithfulness", "Localisation", "Randomisation", "Speed",
    "ReportError", "read_section", "render_markdown", "write_section",
    "EVALUATION_SECTION", "RANDOM_METHOD", "EvaluationOptions", "EvaluationResult", "MethodResult",
    "machine_info", "reference_counts", "run_evaluation",
]
