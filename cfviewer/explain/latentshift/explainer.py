"""The Latent Shift explainer (Cohen et al., "Gifsplanation via Latent Shift", MIDL 2021):
frames x_lambda = D(E(x) + lambda d f(D(z))/dz) (section 3, eq. 1, 2) between lambda = 0 and
the counterfactual bound found by the search (section 4.2, :mod:`.search`), and a 2D map from
the frames (section 3 "latentshift-max", appendix B for the other maps).

Gradient of the logit (``gradient_of``)
---------------------------------------
The reference differentiates the sigmoid *probability*: dz = d p / d z = p (1 - p) d logit / d z.
A confident classifier (the demo bundle gives p = 1.000 on many positives) has p (1 - p) ~ 0
(exactly 0 in float32 once the logit exceeds ~17): dz vanishes and no lambda changes anything.
d logit / d z points the same way (a positive factor apart) and does not vanish, so
``gradient_of="auto"`` (default) uses it when the classifier has a callable ``.logits``
(``forward`` must be ``sigmoid(logits)``) and the probability otherwise (torchxrayvision-wrapped
models); ``"probability"`` is the reference. Only dz changes: every stopping rule uses the
probability. The resolved choice is recorded in ``params["search"]["gradient_of"]``.

Search (``search_mode``)
------------------------
``"grid"`` (default): one batched pass over a geometric lambda grid scaled by the gradient
norm (:func:`.search.grid_steps`), so an explanation costs the floor plus a few grid points:
1 encode, 1 decode + 1 backward for the gradient, the grid points, and the frames between 0
and the chosen bound (lambda 0 is the gradient's decode, the bound a grid point: both reused).
``"walk"``: the reference's step-by-step walk 0, -10, -21, ... (``search_step_size``) with the
same rules; with ``gradient_of="probability"`` and ``search_pred_diff=0.8`` it is the public
reference's search exactly (tests/test_explain_latentshift.py checks it against
:func:`.reference.reference_walk`). Measured costs are in docs/benchmarks.md ("Latent Shift
cost"; ``python benchmarks/latentshift_cost.py``).

``explain_batch`` runs the gradient step for all images in one pass, the searches in lock step
(each round's candidates of every image share batched passes) and the frames of all images in
shared passes.

Frames and 2D maps
------------------
``n_frames`` (10) frames on ``linspace(bound, 0, n_frames)`` (the reconstruction, lambda = 0,
included), sorted by increasing lambda, with the prediction of each. The counterfactual is the
frame at the bound. Maps, with x_0 the lambda = 0 frame: ``max`` (section 3, the reader study's
"latentshift-max", default) per-pixel max_k |x_0 - x_k|; ``mean`` per-pixel mean_k |x_0 - x_k|;
``minmax`` |x_first - x_last|; ``int`` mean_k |x_k - x_{k+1}| (appendix B's sliding interval).

``params["decision"]`` and ``params["warnings"]`` (:mod:`.checks`) say when the reconstruction
alone flips the decision (appendix K) or the frames leave the limits the search keeps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from cfviewer.explain.base import (
    Explainer,
    ExplainerParams,
    Explanation,
    Timer,
    param,
    register,
    to_map,
)
from cfviewer.explain.latentshift.checks import (
    decision_record,
    decision_warning,
    frame_warnings,
)
from cfviewer.explain.latentshift.search import (
    GRADIENT_OF,
    ShiftCache,
    StopRules,
    dz_norm2,
    evaluate_shifts,
    first_order_lambda,
    grid_steps,
    has_logits,
    lambda_sequence,
    resolve_gradient_of,
    run_searches,
    target_gradient,
    walk_steps,
)

MAP_METHODS = ("max", "mean", "minmax", "int")

_RETIRED = {
    "search_batch": "walk candidates are batched internally (the bound does not depend on it)",
    "search_stride": "bracketing was removed; the default grid search evaluates a few points",
    "refine": "the overshoot refinement was replaced by the grid search (search_mode='grid', default)",
    "refine_points": "the overshoot refinement was replaced by the grid search",
    "refine_rounds": "the overshoot refinement was replaced by the grid search",
    "search_up": "the upward range was removed (the frames lower the prediction, section 4.2)",
    "up_frames": "the upward range was removed",
    "search_pred_rise": "the upward range was removed",
    "search_max_pred": "the upward range was removed",
}


@dataclass(frozen=True)
class LatentShiftSearchParams(ExplainerParams):
    """How Latent Shift finds its frames (shared by every explainer built on them)."""

    retired = _RETIRED

    search_mode: Literal["grid", "walk"] = param(
        "grid", "'grid': one batched pass on a lambda grid scaled by the gradient norm (fast, "
        "default); 'walk': the reference's step-by-step walk 0, -10, -21, ...")
    gradient_of: Literal["auto", "probability", "logit"] = param(
        "auto", "differentiate the target's logit ('auto' when the classifier has .logits) or its "
        "probability (the reference)")
    search_pred_diff: float = param(
        0.3, "stop when the prediction falls this much below lambda 0's (paper section 4.2: 30 %; "
        "the reference code's default is 0.8)", above=0.0)
    search_min_pred: float = param(0.05, "stop when the prediction falls below this", minimum=0.0, maximum=1.0)
    search_max_lambda: float = param(3000.0, "never search beyond |lambda| = this", above=0.0)
    search_max_pixel_diff_pct: float = param(
        0.05, "never go beyond sum |x_0 - x_lambda| = this share of sum |x_0|", minimum=0.0)
    search_stop_on_rise: bool = param(True, "stop where the prediction rises again")
    search_step_size: float = param(10.0, "search_mode='walk' only: the walk's first step", above=0.0)
    fix_range: tuple[float, float] | None = param(
        None, "[low, high] with low <= 0 <= high: skip the search and use these lambdas (checked by "
        "no rule; the warnings say what is wrong with them)")
    n_frames: int = param(10, "frames from the bound to lambda = 0, lambda = 0 included", minimum=2)
    max_batch: int = param(16, "images per decoder + classifier pass (memory vs speed)", minimum=1)

    def check(self, explainer: str) -> None:
        fr = self.fix_range
        if fr is not None and not fr[0] <= 0 <= fr[1]:
            raise self.bad(explainer, "fix_range", "must be [low, high] with low <= 0 <= high, e.g. [-100, 0]")


@dataclass(frozen=True)
class LatentShiftParams(LatentShiftSearchParams):
    """Parameters of ``latentshift`` (and its map aliases ``latentshift-<map>``)."""

    map: Literal["max", "mean", "minmax", "int"] = param(
        "max", "2D map from the frames: max, mean, minmax or int (paper section 3, appendix B)")


SEARCH_DEFAULTS: dict[str, Any] = LatentShiftSearchParams.defaults()
"""The search parameters' defaults (``LatentShiftSearchParams``), as a dict."""


def frames_to_map(frames: np.ndarray, lambdas: np.ndarray, method: str = "max") -> np.ndarray:
    """2D map from frames sorted by lambda (paper appendix B); x_0 = the lambda = 0 frame."""
    frames = np.asarray(frames, dtype=np.float32)
    if method not in MAP_METHODS:
        raise ValueError(f"unknown map method {method!r}; choose one of {MAP_METHODS}")
    i0 = int(np.argmin(np.abs(np.asarray(lambdas, dtype=np.float64))))
    x0 = frames[i0]
    if method == "max":
        return np.abs(x0 - frames).max(0).astype(np.float32)
    if method == "mean":
        return np.abs(x0 - frames).mean(0).astype(np.float32)
    if method == "minmax":
        return np.abs(frames[0] - frames[-1]).astype(np.float32)
    if len(frames) < 2:
        return np.zeros_like(x0)
    return np.abs(np.diff(frames, axis=0)).mean(0).astype(np.float32)


def frame_lambdas(cache: ShiftCache, bound: float, n_frames: int) -> np.ndarray:
    """``linspace(bound, 0, n_frames)``, each lambda within 1e-9 |bound| of one already
    evaluated (a grid point) replaced by it, so that its image is reused."""
    lambdas = np.linspace(bound, 0.0, n_frames)
    known = np.array(sorted(cache.preds), dtype=np.float64)
    tol = 1e-9 * abs(bound)
    for i, v in enumerate(lambdas):
        j = int(np.argmin(np.abs(known - v)))
        if abs(known[j] - v) <= tol:
            lambdas[i] = known[j]
    return lambdas


class LatentShiftExplainer(Explainer):
    """Latent Shift counterfactual frames + 2D map. See the module docstring; parameters:
    :class:`LatentShiftParams` (``LatentShiftExplainer.describe_params()``)."""

    name = "latentshift"
    needs_autoencoder = True
    Params = LatentShiftParams

    def validate(self) -> None:
        if self.params["gradient_of"] == "logit" and not has_logits(self.bundle.classifier):
            raise self._bad(
                "gradient_of",
                f"'logit' needs a classifier with a .logits method; "
                f"{type(self.bundle.classifier).__name__} has none (use 'auto' or 'probability')",
            )

    # ------------------------------------------------------------------ core
    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.bundle.autoencoder.decode(z)

    def _explain_tensors(
        self, x: torch.Tensor, targets: list[str], idx: list[int], **kwargs: Any
    ) -> list[Explanation]:
        """All images together: one gradient pass, searches in lock step (each round's
        candidates of every image share batched passes), one set of passes for the frames.
        Timings are the batch's, shared equally."""
        if kwargs:
            raise TypeError(f"{self.method}.explain() got unexpected arguments {sorted(kwargs)}")
        p = self.params
        ae, clf = self.bundle.autoencoder, self.bundle.classifier
        n = len(x)
        timer = Timer()
        with timer("predict"):
            pred_original = self.predict_target(x, idx)
        grad_of = resolve_gradient_of(clf, p["gradient_of"])
        with timer("gradient"):
            z, x0, pred0, dz, q0 = target_gradient(ae, clf, x, idx, grad_of, return_q=True)
        pred0_np = pred0.double().cpu().numpy()
        caches = []
        for i in range(n):
            c = ShiftCache(
                decode=self._decode, classifier=clf, target=idx[i], z=z[i : i + 1],
                dz=dz[i : i + 1], x0=x0[i : i + 1], max_batch=p["max_batch"],
            )
            c.put(0.0, x0[i, 0], float(pred0_np[i]))
            caches.append(c)
        infos: list[dict[str, Any]] = [{"gradient_of": grad_of, "mode": p["search_mode"]} for _ in range(n)]
        with timer("search"):
            bounds = self._search(caches, infos, q0.double().cpu().numpy(), dz, grad_of)
        with timer("frames"):
            all_lambdas = [frame_lambdas(c, lower, p["n_frames"]) for c, lower in zip(caches, bounds)]
            before = [c.n_decoded for c in caches]
            evaluate_shifts(caches, all_lambdas)
        timings = {k: v / n for k, v in timer.done().items()}
        out = []
        thresholds = getattr(self.bundle, "thresholds", None) or {}
        for i, (c, lambdas, info) in enumerate(zip(caches, all_lambdas, infos)):
            frames_np = to_map(torch.stack([c.images[float(v)] for v in lambdas]))
            frame_preds = np.array([c.preds[float(v)] for v in lambdas], dtype=np.float64)
            t0 = time.perf_counter()
            heat = frames_to_map(frames_np, lambdas, p["map"])
            evaluations = {
                "encoder": 1,
                "decoder": 1 + c.n_decoded,
                "classifier": 2 + c.n_decoded,  # original + gradient step + shifts
                "backward": 1,
                "passes": 3 + c.n_passes,  # predict + encode + gradient, then batched shifts
                "search_images": info["search_images"],
                "search_passes": info["search_passes"],
                "frame_images": c.n_decoded - before[i],
            }
            params = dict(p)
            params["search"] = dict(info)
            threshold = float(thresholds.get(targets[i], 0.5))
            params["decision"] = decision_record(float(pred_original[i]), float(c.preds[0.0]), threshold)
            params["warnings"] = frame_warnings(
                frames_np, lambdas, frame_preds,
                max_pixel_diff_pct=p["search_max_pixel_diff_pct"], max_lambda=p["search_max_lambda"],
            )
            if params["decision"]["autoencoder_flips_decision"]:
                params["warnings"].insert(0, decision_warning(params["decision"], float(pred_original[i]),
                                                              float(c.preds[0.0])))
            tim = dict(timings)
            tim["map"] = time.perf_counter() - t0
            out.append(
                Explanation(
                    method=self.method,
                    target=targets[i],
                    map=heat,
                    image=to_map(x[i : i + 1])[0],
                    pred_original=float(pred_original[i]),
                    frames=frames_np,
                    lambdas=lambdas.astype(np.float64),
                    frame_preds=frame_preds,
                    counterfactual=frames_np[0].copy(),
                    pred_reconstruction=float(c.preds[0.0]),
                    params=params,
                    timings=tim,
                    evaluations=evaluations,
                )
            )
        return out

    def _rules(self, cache: ShiftCache) -> StopRules:
        p = self.params
        return StopRules(
            pred_start=cache.preds[0.0],
            pixel_sum=float(cache.x0.abs().sum()),
            pred_diff=p["search_pred_diff"],
            min_pred=p["search_min_pred"],
            max_lambda=p["search_max_lambda"],
            max_pixel_diff_pct=p["search_max_pixel_diff_pct"],
            stop_on_rise=p["search_stop_on_rise"],
        )

    def _search(
        self, caches: list[ShiftCache], infos: list[dict[str, Any]], q0: np.ndarray,
        dz: torch.Tensor, gradient_of: str,
    ) -> list[float]:
        """The lower bound per image; fills each image's search facts into ``infos``."""
        p = self.params
        if p["fix_range"] is not None:
            lo = float(p["fix_range"][0])
            for info in infos:
                info.update(lower=lo, lower_reason="fix_range", lower_index=0, checked=0.0,
                            search_images=0, search_passes=0)
            return [lo] * len(caches)
        rules = [self._rules(c) for c in caches]
        if p["search_mode"] == "walk":
            seq = lambda_sequence(p["search_step_size"], p["search_max_lambda"])
            gens = [walk_steps(c, seq, r) for c, r in zip(caches, rules)]
        else:
            norms = dz_norm2(dz)
            gens = []
            for i, (c, r) in enumerate(zip(caches, rules)):
                lam_star = first_order_lambda(r, float(q0[i]), float(norms[i]), gradient_of)
                infos[i]["lambda_star"] = lam_star if np.isfinite(lam_star) else None
                gens.append(grid_steps(c, r, lam_star))
        for info, res in zip(infos, run_searches(caches, gens)):
            info.update(lower=res.bound, lower_index=res.index, lower_reason=res.reason,
                        checked=res.checked, search_images=res.images_evaluated,
                        search_passes=res.passes)
        return [info["lower"] for info in infos]


__all__ = [
    "GRADIENT_OF",
    "MAP_METHODS",
    "SEARCH_DEFAULTS",
    "LatentShiftExplainer",
    "LatentShiftParams",
    "LatentShiftSearchParams",
    "frames_to_map",
]

register("latentshift", LatentShiftExplainer)
for _m in MAP_METHODS:
    register(f"latentshift-{_m}", LatentShiftExplainer, map=_m)
