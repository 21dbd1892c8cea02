"""Explainer evaluation on held-out phantoms with pixel-exact ground truth (`cfviewer bench`).

- :mod:`~cfviewer.evaluation.cases`: case sampling (held-out phantom streams, tube-only false
  positives, and the class-sensitivity grids of the Attri-Net protocol: per pathology, the
  model's own most confident true positive with three of its most confident true negatives,
  each image explained on its own);
- :mod:`~cfviewer.evaluation.questions`: one function per evaluation question, each with a
  typed result (localisation, faithfulness, randomisation, confounder, class specificity =
  share of a grid's |attribution| on its true positive, speed, counterfactual);
- :mod:`~cfviewer.evaluation.runner`: :func:`run_evaluation` explains the cases with every
  registered explainer and asks each question;
- :mod:`~cfviewer.evaluation.report`: the markdown report and the shared sections of
  docs/benchmarks.md.
"""

from cfviewer.evaluation.cases import (
    BENCH_TAG,
    Case,
    EvaluationError,
    Grid,
    GridPool,
    bench_seeds,
    make_cases,
    make_grids,
)
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
    "BENCH_TAG", "Case", "EvaluationError", "Grid", "GridPool", "bench_seeds", "make_cases", "make_grids",
    "ClassSpecificity", "Confounder", "Faithfulness", "Localisation", "Randomisation", "Speed",
    "ReportError", "read_section", "render_markdown", "write_section",
    "EVALUATION_SECTION", "RANDOM_METHOD", "EvaluationOptions", "EvaluationResult", "MethodResult",
    "machine_info", "reference_counts", "run_evaluation",
]
