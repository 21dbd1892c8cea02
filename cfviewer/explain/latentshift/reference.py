"""The reference oracle: the public Latent Shift implementation's own search and cost
(ieee8023/latentshift ``LatentShift.attribute``, the implementation Cohen et al., "Gifsplanation
via Latent Shift", MIDL 2021, point to; its walk is the paper's appendix C "Lambda Search"
with the step rule ``l = l - step + l // 10``), re-implemented from its description, one image
at a time, for tests and benchmarks:

* :func:`reference_walk` -- its sequential walk with cfviewer's settings: the bound the
  explainer's ``search_mode="walk"`` must reproduce exactly;
* :func:`reference_run` -- its whole ``attribute`` with its own defaults
  (:data:`REFERENCE_DEFAULTS`), frames and cache, counting every decoder and classifier image
  (``benchmarks/latentshift_cost.py`` and the explainer benchmark report it next to cfviewer's
  counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cfviewer.explain.latentshift.explainer import SEARCH_DEFAULTS
from cfviewer.explain.latentshift.search import resolve_gradient_of, target_gradient


@torch.no_grad()
def reference_walk(
    bundle: Any,
    image: np.ndarray | torch.Tensor,
    target: str,
    *,
    search_pred_diff: float = SEARCH_DEFAULTS["search_pred_diff"],
    search_min_pred: float = SEARCH_DEFAULTS["search_min_pred"],
    search_max_lambda: float = SEARCH_DEFAULTS["search_max_lambda"],
    search_max_pixel_diff_pct: float = SEARCH_DEFAULTS["search_max_pixel_diff_pct"],
    search_step_size: float = SEARCH_DEFAULTS["search_step_size"],
    gradient_of: str = SEARCH_DEFAULTS["gradient_of"],
) -> tuple[float, int]:
    """The slow sequential walk: the lower lambda bound found by walking one candidate at a
    time with the reference's step and stopping rules (one decoder + classifier pass per step)
    but cfviewer's settings (``search_pred_diff`` 0.3, ``gradient_of``, ``search_min_pred``).

    ``gradient_of`` chooses dz exactly as the explainer does ("probability" is the reference);
    the stopping rules use the probability either way.

    Returns (bound, decoder images used: the gradient's decode + one per distinct lambda). For
    tests: the explainer's ``search_mode="walk"`` must find the same bound. What the public
    reference itself does, defaults and frames included, is :func:`reference_run`."""
    ae, clf = bundle.autoencoder, bundle.classifier
    t = bundle.target_index(target)
    x = bundle.model_input(image if torch.is_tensor(image) else np.asarray(image, np.float32))
    z, x_lambda0, _, dz = target_gradient(ae, clf, x, [t], resolve_gradient_of(clf, gradient_of))
    decoded = 1

    cache: dict[float, tuple[torch.Tensor, float]] = {}

    def shift(lam: float) -> tuple[torch.Tensor, float]:
        nonlocal decoded
        if lam not in cache:  # the reference caches by lambda too
            decoded += 1
            xl = ae.decode(z + dz * lam)
            cache[lam] = xl, float(clf(xl)[0, t])
        return cache[lam]

    _, initial_pred = shift(0.0)
    lbound = 0.0
    last_pred = initial_pred
    pixel_sum = float(x_lambda0.abs().sum())
    while True:
        x_l, cur_pred = shift(lbound)
        pixel_diff = float((x_lambda0 - x_l).abs().sum())
        if last_pred < cur_pred:
            break
        if cur_pred < search_min_pred:
            break
        if initial_pred - search_pred_diff > cur_pred:
            break
        if lbound <= -search_max_lambda:
            break
        if pixel_diff > pixel_sum * search_max_pixel_diff_pct:
            break
        last_pred = cur_pred
        lbound = lbound - search_step_size + lbound // 10
    return float(lbound), decoded


REFERENCE_DEFAULTS: dict[str, Any] = {
    "search_pred_diff": 0.8,
    "search_step_size": 10.0,
    "search_max_steps": 3000,
    "search_max_pixel_diff_pct": 0.05,
    "lambda_sweep_steps": 10,
}
"""The defaults of ieee8023/latentshift ``LatentShift.attribute`` (read at its commit 7677be7)."""


@dataclass
class ReferenceRun:
    """One explanation as the public reference computes it, with what it evaluated."""

    lower: float  # the lambda bound its walk kept (the candidate at which a rule fired)
    stop_reason: str
    steps: int  # walk candidates decoded after lambda 0
    lambdas: np.ndarray  # its frames: linspace(lower, 0, lambda_sweep_steps)
    frame_preds: np.ndarray
    decoder_images: int  # every decoder image it computes
    classifier_images: int  # every classifier image (it never classifies the original x)


@torch.no_grad()
def reference_run(bundle: Any, image: np.ndarray | torch.Tensor, target: str, **settings: Any) -> ReferenceRun:
    """Count what ieee8023/latentshift's ``LatentShift.attribute`` evaluates for one image,
    with its defaults (:data:`REFERENCE_DEFAULTS`, overridable by name) and its own walk
    (re-implemented from its description here, not cfviewer's search):

    * dz = d sigmoid(logit) / d z at z = E(x) (the probability's gradient, ``apply_sigmoid``),
      which costs one decode of z; then lambda 0 is decoded *again* through its cache;
    * candidates lambda = 0, -10, -21, ... (``l = l - step + l // 10``), one decode +
      classification each, stopping at the first candidate where the prediction rises
      over the previous one, falls below 0.05, falls more than ``search_pred_diff`` below
      lambda 0's, |lambda| reaches ``search_max_steps``, or sum |x_0 - x| exceeds
      ``search_max_pixel_diff_pct`` sum |x_0| (that candidate is kept as the bound);
    * frames on ``linspace(bound, 0, lambda_sweep_steps)``; a lambda already evaluated (same
      float value, e.g. the bound and 0) comes from its cache, the others are decoded.

    So decoder images = 2 + steps + frames not on the walk. Nothing is batched."""
    unknown = sorted(set(settings) - set(REFERENCE_DEFAULTS))
    if unknown:
        raise TypeError(f"reference_run: unknown settings {unknown}; known: {sorted(REFERENCE_DEFAULTS)}")
    cfg = {**REFERENCE_DEFAULTS, **settings}
    ae, clf = bundle.autoencoder, bundle.classifier
    t = bundle.target_index(target)
    x = bundle.model_input(image if torch.is_tensor(image) else np.asarray(image, np.float32))
    z, x_lambda0, _, dz = target_gradient(ae, clf, x, [t], "probability")
    counts = {"decoder": 1, "classifier": 1}  # the gradient step: decode z, classify it
    cache: dict[float, tuple[torch.Tensor, float]] = {}

    def shift(lam: float) -> tuple[torch.Tensor, float]:
        lam = float(lam)
        if lam not in cache:
            counts["decoder"] += 1
            counts["classifier"] += 1
            img = ae.decode(z + dz * lam)
            cache[lam] = img, float(clf(img)[0, t])
        return cache[lam]

    _, first = shift(0.0)
    pixel_limit = float(x_lambda0.abs().sum()) * cfg["search_max_pixel_diff_pct"]
    lam, previous, steps = 0.0, first, 0
    while True:
        img, pred = shift(lam)
        if previous < pred:
            reason = "pred_reversed"
        elif pred < 0.05:
            reason = "pred_below_min"
        elif first - cfg["search_pred_diff"] > pred:
            reason = "pred_diff_reached"
        elif lam <= -cfg["search_max_steps"]:
            reason = "max_lambda"
        elif float((x_lambda0 - img).abs().sum()) > pixel_limit:
            reason = "pixel_diff"
        else:
            previous = pred
            lam = lam - float(cfg["search_step_size"]) + (lam // 10)
            steps += 1
            continue
        break
    lambdas = np.linspace(lam, 0.0, int(cfg["lambda_sweep_steps"]))
    preds = np.array([shift(v)[1] for v in lambdas], dtype=np.float64)
    return ReferenceRun(
        lower=float(lam), stop_reason=reason, steps=steps, lambdas=lambdas, frame_preds=preds,
        decoder_images=counts["decoder"], classifier_images=counts["classifier"],
    )
