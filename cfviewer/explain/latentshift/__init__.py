"""Latent Shift (Cohen et al., "Gifsplanation via Latent Shift", MIDL 2021; the text is in
``shared/papers/gifsplanation-latent-shift.txt``).

With an autoencoder (E, D) and a classifier f giving the probability of the target
(section 3, eq. 1, 2):

    z = E(x);   dz = d f(D(z)) / d z;   x_lambda = D(z + lambda * dz)

Negative lambdas lower the prediction: the frames run from the reconstruction (lambda = 0)
to the counterfactual at the lower bound the search finds (section 4.2, "Determining the
lambda range": the prediction decreases by 30 %). Modules:

* :mod:`.search` -- the lambda search: the gradient step, the stopping rules, the default
  grid search and the reference's walk, batched decoder + classifier passes;
* :mod:`.explainer` -- :class:`LatentShiftExplainer` (registered as ``latentshift`` and
  ``latentshift-<map>``), its typed parameters :class:`LatentShiftParams`, the 2D maps
  (section 3 and appendix B);
* :mod:`.checks` -- what the frames do not show (appendix K: the reconstruction alone may flip
  the decision; frames outside the search limits);
* :mod:`.reference` -- the public reference's own walk and cost (ieee8023/latentshift), the
  oracle of the tests and benchmarks.

Measured costs: docs/benchmarks.md, "Latent Shift cost" (``benchmarks/latentshift_cost.py``).
"""

from cfviewer.explain.latentshift.checks import (
    CLIP_LEVEL,
    CLIP_SHARE,
    RISE_TOLERANCE,
    decision_record,
    decision_warning,
    explanation_flips_decision,
    flips_decision,
    frame_warnings,
)
from cfviewer.explain.latentshift.explainer import (
    MAP_METHODS,
    SEARCH_DEFAULTS,
    LatentShiftExplainer,
    LatentShiftParams,
    LatentShiftSearchParams,
    frames_to_map,
)
from cfviewer.explain.latentshift.reference import (
    REFERENCE_DEFAULTS,
    ReferenceRun,
    reference_run,
    reference_walk,
)
from cfviewer.explain.latentshift.search import (
    GRADIENT_OF,
    ShiftCache,
    StopRules,
    evaluate_shifts,
    has_logits,
    lambda_sequence,
    resolve_gradient_of,
    target_gradient,
)

__all__ = [
    "CLIP_LEVEL",
    "CLIP_SHARE",
    "GRADIENT_OF",
    "MAP_METHODS",
    "REFERENCE_DEFAULTS",
    "RISE_TOLERANCE",
    "SEARCH_DEFAULTS",
    "LatentShiftExplainer",
    "LatentShiftParams",
    "LatentShiftSearchParams",
    "ReferenceRun",
    "ShiftCache",
    "StopRules",
    "decision_record",
    "decision_warning",
    "evaluate_shifts",
    "explanation_flips_decision",
    "flips_decision",
    "frame_warnings",
    "frames_to_map",
    "has_logits",
    "lambda_sequence",
    "reference_run",
    "reference_walk",
    "resolve_gradient_of",
    "target_gradient",
]
