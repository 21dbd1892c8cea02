"""Latent Shift (Cohen et al., "Gifsplanation via Latent Shift", MIDL 2021).

Method
------
With an autoencoder (E, D) and a classifier f giving the probability of the target:

    z = E(x);   dz = d f(D(z)) / d z;   x_lambda = D(z + lambda * dz)

Negative lambdas lower the prediction (the counterfactual direction); positive lambdas raise
it. The lambda range is found by a search that follows the reference implementation
(ieee8023/latentshift): the candidate lambdas are 0, -10, -21, -34, ... (``l = l - step +
l // 10`` in Python floor-division semantics, ``step`` = ``search_step_size``) and the bound is
the **first** candidate at which one of these rules fires:

* ``search_stop_on_rise``: the prediction rises again (``pred[k] > pred[k-1]``);
* ``search_min_pred``: the prediction falls below 0.05;
* ``search_pred_diff``: the prediction falls more than this below its value at lambda 0.
  The paper (section 4.2) describes the range as the one where "the prediction decreases by
  30 %", so the default is 0.3; the reference code's default is 0.8 (pass
  ``search_pred_diff=0.8`` to reproduce it);
* ``search_max_lambda``: |lambda| reaches 3000;
* ``search_max_pixel_diff_pct``: sum |x_0 - x_lambda| exceeds 5 % of sum |x_0|.

Gradient of the logit (``gradient_of``)
----------------------------------------
The reference differentiates the sigmoid *probability*: dz = d p / d z = p (1 - p) d logit / d z.
Its torchxrayvision models output calibrated probabilities that rarely saturate, but a
confident classifier (the demo bundle gives p = 1.000 on many positives) has p (1 - p) ~ 0
(exactly 0 in float32 once the logit exceeds ~17): dz vanishes, even lambda = -3000 changes
nothing and the search ends at ``max_lambda`` with every frame at p = 1. The direction of
d logit / d z is the same as that of d p / d z (a positive factor apart) but it does not
vanish, so ``gradient_of="logit"`` shifts along it; the step scale differs (larger by
1 / (p (1 - p)) >= 4). ``gradient_of="auto"`` (default) uses the logit when the classifier
has a callable ``.logits`` (the demo :class:`~cfviewer.models.classifier.Classifier`;
``forward`` must be ``sigmoid(logits)``) and the probability otherwise (torchxrayvision-
wrapped models); ``"probability"`` is the reference. Only dz changes: every stopping rule
still uses the probability, so the rules keep their meaning. The resolved choice is recorded
in ``params["search"]["gradient_of"]``.

Overshoot refinement (``refine``)
---------------------------------
The reference keeps the candidate at which a rule fires as the bound, even when that step
overshot: e.g. the reconstruction has p = 0.375, lambda = -1.1 would give 0.026, but the
first candidate -10 gives 0.987, the walk stops on ``pred_reversed`` and the
"counterfactual" is *higher* than the reconstruction. With ``refine=True`` (default;
``False`` = the reference) the search, after stopping at index k >= 1, evaluates
``refine_points`` (8) lambdas evenly spaced strictly between candidates k-1 and k in one
batched pass (all images together); then, for ``refine_rounds - 1`` (2) more passes, 8
between the neighbours of the best point so far (the logit's steps are larger, so the
useful range can be narrower than one tenth of the first step). It sets the bound at the
evaluated lambda (walk
candidates up to k and the refinement points, never beyond the walk's bound) with the
lowest prediction (highest when searching up) among those within the pixel-change limit;
ties go to the larger |lambda|. So the counterfactual is never higher than the
reconstruction when any evaluated lambda lowered it. ``params["search"]`` records
``refined`` (the bound moved), ``walk_lower`` (the reference's bound) and the refinement's
images and passes (also in ``evaluations["refine_images"]``; ``search_images`` counts the
walk only).

The upward search (``search_up=True``) mirrors these rules (0, 10, 21, ...; prediction falls
again, rises above ``search_max_pred`` = 0.95 or more than ``search_pred_rise`` = 0.05 -- the
paper's "increases by 5 %" -- above its start, same lambda and pixel limits).

Speed
-----
The reference evaluates one candidate at a time (one decoder + one classifier pass each).
Here candidates are evaluated ``search_batch`` (4) at a time in one batched decoder +
classifier pass and then scanned in order with the same rules, so the bound is *identical*
to the sequential walk's, for at most ``search_batch - 1`` images more than the walk's K and
about K / 4 passes instead of K. On a CPU the cost is mostly the number of images (batching
saves ~20 % per image at 224 px), hence the small default batch; on a GPU raise it.

``search_stride=s > 1`` (bracketing) evaluates every s-th candidate first, checks the rules
between consecutive bracket points, and at the first bracket where one fires scans the
candidates from one bracket back step by step with the exact rules (a rise right at a
bracket point is only visible against its own predecessor); if nothing is confirmed it
continues step by step. About K / s + 2 s images instead of K + 1 (s = 4: 10.4 vs 14.3
images on 192 random-bundle searches; 8.7 vs 19.6 on 12 phantoms with the trained 128 px
demo bundle, every bound identical to the walk's). It is exact whenever the prediction does not rise
and fall back between bracket points; on a random network whose predictions wobble by
1e-5 it matched the walk in 96-100 % of searches and was off by up to 3 steps otherwise,
so it is opt-in. Evaluated images are cached by lambda and reused for the frames (lambda 0
and the bound always coincide), and lambda 0 reuses the image and prediction computed for
the gradient.

``explain_batch`` runs the gradient step for all images in one pass, the searches in lock
step (each round's candidates of every image share batched passes) and the frames of all
images in shared passes.

Frames and 2D maps
------------------
Frames: ``n_frames`` (10) on ``linspace(bound, 0, n_frames)`` (the reconstruction, lambda = 0,
included), plus ``up_frames`` on ``linspace(0, upper_bound, up_frames)`` with
``search_up=True``; sorted by increasing lambda, prediction recorded per frame. The
counterfactual is the frame at the lower bound. Maps (paper appendix B, reference
``heatmap_method``), with x_0 the lambda = 0 frame:

* ``max``: per-pixel max_k |x_0 - x_k| (the reader study's "latentshift-max", the default);
* ``mean``: per-pixel mean_k |x_0 - x_k|;
* ``minmax``: |x_first - x_last| (the reference's "mm");
* ``int``: mean_k |x_k - x_{k+1}| over consecutive frames (the reference's default).

Decision flips and warnings
---------------------------
Every frame is decoded from the latent, so the animation starts at the reconstruction
D(E(x)), not at x, and the paper's appendix K warns that the autoencoder alone lowers the
prediction (by 0.12 on average for positives there). ``params["decision"]`` records the
bundle's threshold for the target, which side the original and the reconstruction are on and
``autoencoder_flips_decision`` (:func:`flips_decision`: the reconstruction's prediction is on
the other side of the threshold from the original's); a flip is also the first entry of
``params["warnings"]``. The cohort report and the precompute summary list the flagged cases
(:func:`flips_decision` on the cohort's probabilities, :func:`explanation_flips_decision`).

``params["warnings"]`` (:func:`frame_warnings`, printed by ``cfviewer explain`` and stored in
``explanation.json``) also says when the frames are not what they claim: a frame's
prediction rises by more than :data:`RISE_TOLERANCE` along lambda = 0 -> the lower bound (or
falls along the upward frames), a frame changes the image by more than the search's pixel
limit or lies beyond ``search_max_lambda``, or a frame has :data:`CLIP_SHARE` more of its
pixels at the [-1024, 1024] limits than the reconstruction. The default search keeps its
frames inside these limits, so the warnings mostly fire for a forced ``fix_range`` (checked
by no rule) or ``refine=False`` (the reference keeps an overshooting step).

The public reference's own cost
-------------------------------
:func:`reference_run` counts what ieee8023/latentshift's ``LatentShift.attribute`` evaluates
with *its* defaults (the probability's gradient, ``search_pred_diff`` 0.8, 10 frames, one
image at a time, its cache); the benchmark reports it next to cfviewer's own counts
(``evaluations``). cfviewer's settings differ, so its ``evaluations`` are not a replay of the
reference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Sequence

import numpy as np
import torch

from cfviewer.explain.base import Explainer, Explanation, Timer, register, to_map

MAP_METHODS = ("max", "mean", "minmax", "int")

SEARCH_DEFAULTS: dict[str, Any] = {
    "search_pred_diff": 0.3,
    "search_min_pred": 0.05,
    "search_max_lambda": 3000.0,
    "search_max_pixel_diff_pct": 0.05,
    "search_step_size": 10.0,
    "search_stop_on_rise": True,
    "search_up": False,
    "search_pred_rise": 0.05,
    "search_max_pred": 0.95,
    "search_batch": 4,
    "search_stride": 1,
    "fix_range": None,
    "gradient_of": "auto",
    "refine": True,
    "refine_points": 8,
    "refine_rounds": 3,
}

GRADIENT_OF = ("auto", "probability", "logit")


def has_logits(classifier: Any) -> bool:
    return callable(getattr(classifier, "logits", None))


def resolve_gradient_of(classifier: Any, gradient_of: str = "auto") -> str:
    """"auto" -> "logit" when the classifier has a callable ``.logits``, else "probability"."""
    if gradient_of not in GRADIENT_OF:
        raise ValueError(f"gradient_of must be one of {GRADIENT_OF}, not {gradient_of!r}")
    if gradient_of == "auto":
        return "logit" if has_logits(classifier) else "probability"
    if gradient_of == "logit" and not has_logits(classifier):
        raise ValueError("gradient_of='logit' needs a classifier with a .logits method")
    return gradient_of


def target_gradient(
    ae: Any, classifier: Any, x: torch.Tensor, idx: Sequence[int], gradient_of: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """z = E(x), x0 = D(z), the target probabilities at x0 and dz = d q / d z with q the
    target's probability or logit (``gradient_of`` resolved). All detached."""
    with torch.enable_grad():
        z = ae.encode(x).detach().requires_grad_(True)
        x0 = ae.decode(z)
        rows = torch.arange(len(x), device=x0.device)
        cols = torch.as_tensor(list(idx), device=x0.device)
        if gradient_of == "logit":
            q = classifier.logits(x0)[rows, cols]
            prob = torch.sigmoid(q)
        else:
            q = prob = classifier(x0)[rows, cols]
        (dz,) = torch.autograd.grad(q.sum(), z)
    return z.detach(), x0.detach(), prob.detach(), dz.detach()


def lambda_sequence(step: float = 10.0, limit: float = 3000.0, sign: int = -1) -> list[float]:
    """The reference's candidate lambdas: 0, -10, -21, -34, ... (``l = l - step + l // 10``),
    ending at the first one with |l| >= limit. ``sign=+1`` mirrors it (0, 10, 21, ...)."""
    if step <= 0:
        raise ValueError("step must be > 0")
    seq = [0.0]
    lam = 0.0
    while lam > -limit:
        lam = lam - float(step) + (lam // 10)
        seq.append(lam)
    return [abs(v) for v in seq] if sign > 0 else seq


@dataclass
class StopRules:
    """The reference's stopping rules for one direction (sign -1: down, +1: up)."""

    sign: int
    pred_start: float
    pixel_sum: float
    pred_diff: float = 0.3
    min_pred: float = 0.05
    max_pred: float = 0.95
    pred_rise: float = 0.05
    max_lambda: float = 3000.0
    max_pixel_diff_pct: float = 0.05
    stop_on_rise: bool = True

    def reversal(self, pred: float, prev_pred: float) -> bool:
        """The prediction moves back (rises when going down, falls when going up)."""
        return self.stop_on_rise and (prev_pred < pred if self.sign < 0 else prev_pred > pred)

    def absolute(self, lam: float, pred: float, pixel_diff: float) -> str | None:
        """Rules that depend on one candidate only (in the reference's order)."""
        if self.sign < 0:
            if pred < self.min_pred:
                return "pred_below_min"
            if self.pred_start - self.pred_diff > pred:
                return "pred_diff_reached"
        else:
            if pred > self.max_pred:
                return "pred_above_max"
            if self.pred_start + self.pred_rise < pred:
                return "pred_rise_reached"
        if abs(lam) >= self.max_lambda:
            return "max_lambda"
        if pixel_diff > self.pixel_sum * self.max_pixel_diff_pct:
            return "pixel_diff"
        return None

    def check(self, lam: float, pred: float, prev_pred: float, pixel_diff: float) -> str | None:
        if self.reversal(pred, prev_pred):
            return "pred_reversed"
        return self.absolute(lam, pred, pixel_diff)


@dataclass
class ShiftCache:
    """Decoded images x_lambda = D(z + lambda dz) and their target predictions, by lambda,
    for one image (z: 1 x ...). :func:`evaluate_shifts` fills several caches in shared
    batched decoder + classifier passes and counts the evaluations of each."""

    decode: Callable[[torch.Tensor], torch.Tensor]
    classifier: Callable[[torch.Tensor], torch.Tensor]  # N x C probabilities
    target: int
    z: torch.Tensor
    dz: torch.Tensor
    x0: torch.Tensor  # 1 x 1 x R x R, the lambda = 0 image
    max_batch: int = 64
    images: dict[float, torch.Tensor] = field(default_factory=dict)
    preds: dict[float, float] = field(default_factory=dict)
    pixel_diffs: dict[float, float] = field(default_factory=dict)
    n_decoded: int = 0
    n_passes: int = 0

    def put(self, lam: float, image: torch.Tensor, pred: float) -> None:
        lam = float(lam)
        self.images[lam] = image
        self.preds[lam] = float(pred)
        self.pixel_diffs[lam] = float((self.x0[0, 0] - image).abs().sum())

    def evaluate(self, lambdas: Sequence[float]) -> None:
        evaluate_shifts([self], [lambdas])


@torch.no_grad()
def evaluate_shifts(caches: Sequence[ShiftCache], requests: Sequence[Sequence[float]]) -> None:
    """Decode + classify every requested lambda missing from its cache, all images together
    in passes of at most ``caches[0].max_batch`` images."""
    items: list[tuple[ShiftCache, float]] = []
    for cache, lambdas in zip(caches, requests):
        seen: set[float] = set()
        for lam in lambdas:
            lam = float(lam)
            if lam not in cache.images and lam not in seen:
                seen.add(lam)
                items.append((cache, lam))
    if not items:
        return
    first = items[0][0]
    for start in range(0, len(items), first.max_batch):
        chunk = items[start : start + first.max_batch]
        zs = torch.cat([c.z + lam * c.dz for c, lam in chunk])
        xs = first.decode(zs)
        probs = first.classifier(xs)
        rows = torch.arange(len(chunk), device=probs.device)
        cols = torch.as_tensor([c.target for c, _ in chunk], device=probs.device)
        ps = probs[rows, cols].double().cpu().numpy()
        for j, (c, lam) in enumerate(chunk):
            c.put(lam, xs[j, 0], float(ps[j]))
            c.n_decoded += 1
        for c in {id(c): c for c, _ in chunk}.values():
            c.n_passes += 1


@dataclass
class SearchResult:
    bound: float
    index: int
    reason: str
    images_evaluated: int
    passes: int


SearchSteps = Generator[list, None, SearchResult]


def search_steps(
    cache: ShiftCache,
    seq: Sequence[float],
    rules: StopRules,
    batch: int = 4,
    stride: int = 1,
) -> SearchSteps:
    """The search as a generator: it yields the lambdas it needs next (the caller evaluates
    them into ``cache``, possibly together with other images' requests) and returns the
    :class:`SearchResult`. See :func:`search_bound`."""
    n0, p0 = cache.n_decoded, cache.n_passes
    preds, diffs = cache.preds, cache.pixel_diffs

    def result(k: int, reason: str) -> SearchResult:
        return SearchResult(float(seq[k]), k, reason, cache.n_decoded - n0, cache.n_passes - p0)

    reason = rules.absolute(seq[0], preds[seq[0]], diffs[seq[0]])
    if reason:  # e.g. the prediction is already below 0.05 at lambda 0
        return result(0, reason)
    last = len(seq) - 1
    pos = 0  # every index <= pos has passed (exactly, or at bracket level)
    exact = 0  # every index <= exact has passed the exact step-by-step rules
    before = 0  # the bracket point before ``pos`` (a step-by-step rescan starts there)
    while pos < last:
        step = max(1, int(stride))
        cand: list[int] = []
        k = pos
        while len(cand) < batch and k < last:
            k = min(k + step, last)
            cand.append(k)
        yield [seq[i] for i in cand]
        for c in cand:
            prev = pos
            if step == 1:
                reason = rules.check(seq[c], preds[seq[c]], preds[seq[c - 1]], diffs[seq[c]])
                if reason:
                    return result(c, reason)
                exact = c
            else:
                coarse = rules.absolute(seq[c], preds[seq[c]], diffs[seq[c]])
                if coarse is None and rules.reversal(preds[seq[c]], preds[seq[prev]]):
                    coarse = "pred_reversed"
                if coarse:
                    # Scan step by step from one bracket back: a rise right at the previous
                    # bracket point is only visible against its own predecessor.
                    start = max(exact, before)
                    yield [seq[i] for i in range(start + 1, c)]
                    for j in range(start + 1, c + 1):
                        reason = rules.check(seq[j], preds[seq[j]], preds[seq[j - 1]], diffs[seq[j]])
                        if reason:
                            return result(j, reason)
                    # Not confirmed step by step: continue exactly after the bracket.
                    stride = 1
                    exact = pos = c
                    break
            before, pos = prev, c
    # The last candidate has |lambda| >= max_lambda, so a rule always fires before here.
    return result(last, "max_lambda")


def run_searches(caches: Sequence[ShiftCache], searches: Sequence[SearchSteps]) -> list[SearchResult]:
    """Drive several searches in lock step: each round evaluates every pending request of
    every image in shared batched passes."""
    results: list[SearchResult | None] = [None] * len(searches)
    pending: dict[int, list] = {}
    for i, gen in enumerate(searches):
        try:
            pending[i] = next(gen)
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        order = sorted(pending)
        evaluate_shifts([caches[i] for i in order], [pending[i] for i in order])
        for i in order:
            try:
                pending[i] = searches[i].send(None)
            except StopIteration as stop:
                results[i] = stop.value
                del pending[i]
    return [r for r in results if r is not None]


def search_bound(
    cache: ShiftCache,
    seq: Sequence[float],
    rules: StopRules,
    batch: int = 4,
    stride: int = 1,
) -> SearchResult:
    """First index of ``seq`` at which a rule fires, evaluating ``batch`` candidates per pass.

    ``stride=1``: every candidate, exact (same bound as the sequential walk).
    ``stride>1``: bracket, then scan from one bracket back step by step (module docstring)."""
    return run_searches([cache], [search_steps(cache, seq, rules, batch, stride)])[0]


def refine_candidates(lo: float, hi: float, n: int) -> list[float]:
    """``n`` lambdas evenly spaced strictly between two walk points."""
    return [float(v) for v in np.linspace(lo, hi, n + 2)[1:-1]]


def zoom_interval(cache: ShiftCache, walk_bound: float, best: float) -> tuple[float, float]:
    """The neighbours of ``best`` among the evaluated lambdas between 0 and ``walk_bound``."""
    lo_, hi_ = sorted((0.0, walk_bound))
    pts = sorted(v for v in cache.preds if lo_ <= v <= hi_)
    i = pts.index(best)
    return pts[max(i - 1, 0)], pts[min(i + 1, len(pts) - 1)]


def refined_bound(cache: ShiftCache, walk_bound: float, rules: StopRules) -> float:
    """The evaluated lambda between 0 and ``walk_bound`` (inclusive) with the lowest prediction
    (highest when ``rules.sign > 0``) within the pixel-change limit; ties -> larger |lambda|.
    Lambda 0 always qualifies."""
    limit = rules.pixel_sum * rules.max_pixel_diff_pct
    best, best_key = 0.0, None
    for lam, pred in cache.preds.items():
        if lam * rules.sign < 0 or abs(lam) > abs(walk_bound):
            continue
        if lam != 0.0 and cache.pixel_diffs[lam] > limit:
            continue
        key = (-rules.sign * pred, -abs(lam))
        if best_key is None or key < best_key:
            best, best_key = lam, key
    return float(best)


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


# ---------------------------------------------------------------------- honesty checks
RISE_TOLERANCE = 0.01
"""A frame's prediction may move against the path's direction by this much (probability)
before :func:`frame_warnings` warns."""
CLIP_LEVEL = 1023.0
"""|pixel| >= this counts as at the [-1024, 1024] limits (the decoder's 1024 tanh saturates
there; other decoders may overshoot it and are clipped by the model input)."""
CLIP_SHARE = 0.01
"""Warn when a frame has this share of its pixels more at the limits than the reconstruction."""


def flips_decision(pred_original: float, pred_reconstruction: float, threshold: float) -> bool:
    """True when the reconstruction D(E(x)) is on the other side of ``threshold`` from the
    original x (positive = p >= threshold, as :meth:`Bundle.positive`): the autoencoder alone
    changes the model's decision (Latent Shift paper, appendix K)."""
    return bool((float(pred_original) >= threshold) != (float(pred_reconstruction) >= threshold))


def decision_record(pred_original: float, pred_reconstruction: float, threshold: float) -> dict[str, Any]:
    """``params["decision"]`` of a Latent Shift explanation."""
    return {
        "threshold": float(threshold),
        "original_positive": bool(pred_original >= threshold),
        "reconstruction_positive": bool(pred_reconstruction >= threshold),
        "autoencoder_flips_decision": flips_decision(pred_original, pred_reconstruction, threshold),
    }


def decision_warning(decision: dict[str, Any], pred_original: float, pred_reconstruction: float) -> str:
    side = {True: "positive", False: "negative"}
    return (
        f"the autoencoder alone flips the decision: the original is {side[decision['original_positive']]} "
        f"(p = {pred_original:.3f}) but its reconstruction, where every frame starts, is "
        f"{side[decision['reconstruction_positive']]} (p = {pred_reconstruction:.3f}) at the bundle's "
        f"threshold {decision['threshold']:.3f}; the frames explain the reconstruction's decision, "
        "not the original's (Latent Shift paper, appendix K)"
    )


def explanation_flips_decision(explanation: Any) -> bool:
    """Whether an :class:`Explanation` (or its ``summary()`` dict) is flagged: the autoencoder
    alone flips the decision. False when it records no decision (no autoencoder)."""
    params = explanation.get("params", {}) if isinstance(explanation, dict) else explanation.params
    return bool(((params or {}).get("decision") or {}).get("autoencoder_flips_decision", False))


def frame_warnings(
    frames: np.ndarray,
    lambdas: np.ndarray,
    preds: np.ndarray,
    *,
    max_pixel_diff_pct: float = SEARCH_DEFAULTS["search_max_pixel_diff_pct"],
    max_lambda: float = SEARCH_DEFAULTS["search_max_lambda"],
    rise_tolerance: float = RISE_TOLERANCE,
    clip_share: float = CLIP_SHARE,
) -> list[str]:
    """What is wrong with a set of frames (sorted by lambda, x_0 = the lambda = 0 frame), as
    sentences for ``params["warnings"]`` (empty: nothing found):

    * along lambda = 0 -> the lower bound (meant to lower the prediction) a frame's prediction
      rises by more than ``rise_tolerance`` over the previous one, or the counterfactual ends
      higher than the reconstruction (and the mirror image for the frames above lambda 0);
    * a frame changes the image by more than the search's pixel limit,
      sum |x_0 - x| > ``max_pixel_diff_pct`` sum |x_0|, or lies beyond ``max_lambda``;
    * a frame has ``clip_share`` of its pixels more at the [-1024, 1024] limits than x_0
      (|x| >= :data:`CLIP_LEVEL`: saturated black-and-white blobs)."""
    frames = np.asarray(frames, dtype=np.float64)
    lambdas = np.asarray(lambdas, dtype=np.float64)
    preds = np.asarray(preds, dtype=np.float64)
    out: list[str] = []
    if len(frames) == 0:
        return out
    i0 = int(np.argmin(np.abs(lambdas)))
    x0 = frames[i0]
    for sign, what in ((-1, "lower"), (1, "raise")):
        # this direction's frames, from lambda = 0 outwards
        idx = sorted((i for i in range(len(lambdas)) if lambdas[i] * sign >= 0), key=lambda i: abs(lambdas[i]))
        if len(idx) < 2 or not np.isfinite(preds[idx]).all():
            continue
        path = preds[idx]
        against = -sign * np.diff(path)  # > 0: the prediction moves the wrong way
        k = int(np.argmax(against))
        if against[k] > rise_tolerance:
            verb = "rises" if sign < 0 else "falls"
            step = (f"{path[k]:.3f} -> {path[k + 1]:.3f} (lambda {lambdas[idx[k]]:.4g} -> "
                    f"{lambdas[idx[k + 1]]:.4g}; tolerance {rise_tolerance:g})")
            ends = (f"p = {path[0]:.3f} at lambda = 0 to {path[-1]:.3f} at lambda = "
                    f"{lambdas[idx[-1]]:.4g}")
            if -sign * (path[-1] - path[0]) > rise_tolerance:
                out.append(f"the prediction {verb} along the frames meant to {what} it: from {ends}, "
                           f"largest step {step}: these frames are not a path that {what}s it")
            else:
                out.append(f"the prediction {verb} between frames meant to {what} it: {step}, although "
                           f"it goes from {ends}: the path is not monotone")
    pixel_sum = float(np.abs(x0).sum())
    diffs = np.abs(frames - x0).sum(axis=(1, 2))
    k = int(np.argmax(diffs))
    if pixel_sum > 0 and diffs[k] > pixel_sum * max_pixel_diff_pct * (1 + 1e-6):
        out.append(
            f"the image leaves the search limits: the frame at lambda = {lambdas[k]:.4g} changes it by "
            f"{100 * diffs[k] / pixel_sum:.1f} % of sum |x_0| (the search stops at "
            f"{100 * max_pixel_diff_pct:g} %, search_max_pixel_diff_pct)"
        )
    if np.abs(lambdas).max() > max_lambda:
        out.append(
            f"the frames reach |lambda| = {np.abs(lambdas).max():.4g}, beyond the search limit "
            f"search_max_lambda = {max_lambda:g}"
        )
    at_limit = (np.abs(frames) >= CLIP_LEVEL).mean(axis=(1, 2))
    extra = at_limit - at_limit[i0]
    k = int(np.argmax(extra))
    if extra[k] > clip_share:
        out.append(
            f"the image leaves the pixel range: at lambda = {lambdas[k]:.4g} {100 * at_limit[k]:.1f} % of "
            f"the pixels are at the [-1024, 1024] limits against {100 * at_limit[i0]:.1f} % in the "
            "reconstruction (the decoder saturates: black and white blobs, not anatomy)"
        )
    return out


class LatentShiftExplainer(Explainer):
    """Latent Shift counterfactual frames + 2D map. See the module docstring."""

    name = "latentshift"
    needs_autoencoder = True
    defaults: dict[str, Any] = {
        **SEARCH_DEFAULTS,
        "n_frames": 10,
        "up_frames": 4,
        "map": "max",
        "max_batch": 16,
    }

    def validate(self) -> None:
        p = self.params
        if p["map"] not in MAP_METHODS:
            raise self._bad("map", f"must be one of {', '.join(MAP_METHODS)}")
        if p["n_frames"] < 2:
            raise self._bad("n_frames", "must be >= 2 (lambda = 0 and the bound)")
        if p["up_frames"] < 2:
            raise self._bad("up_frames", "must be >= 2")
        if p["gradient_of"] not in GRADIENT_OF:
            raise self._bad("gradient_of", f"must be one of {', '.join(GRADIENT_OF)}")
        if p["gradient_of"] == "logit" and not has_logits(self.bundle.classifier):
            raise self._bad(
                "gradient_of",
                f"'logit' needs a classifier with a .logits method; "
                f"{type(self.bundle.classifier).__name__} has none (use 'auto' or 'probability')",
            )
        for key in ("search_batch", "search_stride", "max_batch", "refine_points", "refine_rounds"):
            if p[key] < 1:
                raise self._bad(key, "must be >= 1")
        for key in ("search_step_size", "search_max_lambda"):
            if p[key] <= 0:
                raise self._bad(key, "must be > 0")
        fr = p["fix_range"]
        if fr is not None:
            ok = isinstance(fr, (list, tuple)) and len(fr) == 2
            if not ok or not all(isinstance(v, (int, float)) for v in fr) or not fr[0] <= 0 <= fr[1]:
                raise self._bad("fix_range", "must be [low, high] with low <= 0 <= high, e.g. [-100, 0]")

    # ------------------------------------------------------------------ core
    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.bundle.autoencoder.decode(z)

    def _explain_one(self, x: torch.Tensor, target: str, t: int) -> Explanation:
        return self._explain_tensors(x, [target], [t])[0]

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
            z, x0, pred0, dz = target_gradient(ae, clf, x, idx, grad_of)
        pred0_np = pred0.double().cpu().numpy()
        caches = []
        for i in range(n):
            c = ShiftCache(
                decode=self._decode, classifier=clf, target=idx[i], z=z[i : i + 1],
                dz=dz[i : i + 1], x0=x0[i : i + 1], max_batch=p["max_batch"],
            )
            c.put(0.0, x0[i, 0], float(pred0_np[i]))
            caches.append(c)
        infos: list[dict[str, Any]] = [{"gradient_of": grad_of} for _ in range(n)]
        with timer("search"):
            bounds = self._search(caches, infos)
        with timer("frames"):
            all_lambdas = []
            for lower, upper in bounds:
                lambdas = np.linspace(lower, 0.0, p["n_frames"])
                if upper > 0:
                    lambdas = np.concatenate([lambdas, np.linspace(0.0, upper, p["up_frames"])[1:]])
                all_lambdas.append(lambdas)
            before = [c.n_decoded for c in caches]
            evaluate_shifts(caches, all_lambdas)
        timings = {k: v / n for k, v in timer.done().items()}
        out = []
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
                "search_steps": info.get("lower_index", 0),
                "refine_images": info.get("refine_images", 0),
            }
            params = dict(p)
            params["search"] = dict(info)
            threshold = float((getattr(self.bundle, "thresholds", None) or {}).get(targets[i], 0.5))
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

    def _rules(self, cache: ShiftCache, sign: int) -> StopRules:
        p = self.params
        return StopRules(
            sign=sign,
            pred_start=cache.preds[0.0],
            pixel_sum=float(cache.x0.abs().sum()),
            pred_diff=p["search_pred_diff"],
            min_pred=p["search_min_pred"],
            max_pred=p["search_max_pred"],
            pred_rise=p["search_pred_rise"],
            max_lambda=p["search_max_lambda"],
            max_pixel_diff_pct=p["search_max_pixel_diff_pct"],
            stop_on_rise=p["search_stop_on_rise"],
        )

    def _search(self, caches: list[ShiftCache], infos: list[dict[str, Any]]) -> list[tuple[float, float]]:
        """(lower, upper) bound per image; fills each image's search facts into ``infos``."""
        p = self.params
        for info in infos:
            info["search_images"] = 0
            info["search_passes"] = 0
            info["refined"] = False
        if p["fix_range"] is not None:
            lo, hi = (float(v) for v in p["fix_range"])
            for info in infos:
                info.update(lower=lo, upper=hi, lower_reason="fix_range")
            return [(lo, hi)] * len(caches)
        bounds: list[dict[str, float]] = [{} for _ in caches]
        for sign in ((-1, 1) if p["search_up"] else (-1,)):
            seq = lambda_sequence(p["search_step_size"], p["search_max_lambda"], sign)
            gens = [
                search_steps(c, seq, self._rules(c, sign), batch=p["search_batch"], stride=p["search_stride"])
                for c in caches
            ]
            key = "lower" if sign < 0 else "upper"
            for i, res in enumerate(run_searches(caches, gens)):
                bounds[i][key] = res.bound
                infos[i][key] = res.bound
                infos[i][f"{key}_index"] = res.index
                infos[i][f"{key}_reason"] = res.reason
                infos[i]["search_images"] += res.images_evaluated
                infos[i]["search_passes"] += res.passes
            if p["refine"]:
                self._refine(caches, infos, seq, sign, bounds, key)
        return [(b["lower"], b.get("upper", 0.0)) for b in bounds]

    def _refine(
        self,
        caches: list[ShiftCache],
        infos: list[dict[str, Any]],
        seq: Sequence[float],
        sign: int,
        bounds: list[dict[str, float]],
        key: str,
    ) -> None:
        """Overshoot refinement (module docstring): each round one batched pass for all images."""
        npts = self.params["refine_points"]
        walks = [b[key] for b in bounds]
        active = [info[f"{key}_index"] >= 1 for info in infos]
        before = [(c.n_decoded, c.n_passes) for c in caches]
        best = list(walks)
        for rnd in range(self.params["refine_rounds"]):
            requests: list[list[float]] = []
            for i, (c, info) in enumerate(zip(caches, infos)):
                if not active[i]:
                    requests.append([])
                elif rnd == 0:
                    k = info[f"{key}_index"]
                    requests.append(refine_candidates(seq[k - 1], seq[k], npts))
                else:
                    a, b = zoom_interval(c, walks[i], best[i])
                    requests.append(refine_candidates(a, b, npts) if abs(a - b) > 1e-6 else [])
            if not any(requests):
                break
            evaluate_shifts(caches, requests)
            for i, c in enumerate(caches):
                if active[i]:
                    best[i] = refined_bound(c, walks[i], self._rules(c, sign))
        for i, (c, info) in enumerate(zip(caches, infos)):
            info["refine_images"] = info.get("refine_images", 0) + c.n_decoded - before[i][0]
            info["refine_passes"] = info.get("refine_passes", 0) + c.n_passes - before[i][1]
            walk = walks[i]
            info[f"walk_{key}"] = walk
            new = best[i] if active[i] else walk
            if new != walk:
                info["refined"] = True
                info[f"{key}_refined"] = True
                bounds[i][key] = info[key] = new


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
    the stopping rules use the probability either way. No refinement (``refine=False``).

    Returns (bound, decoder images used: the gradient's decode + one per distinct lambda). For
    tests: the batched search must find the same bound. What the public reference itself does,
    defaults and frames included, is :func:`reference_run`."""
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


register("latentshift", LatentShiftExplainer)
for _m in MAP_METHODS:
    register(f"latentshift-{_m}", LatentShiftExplainer, map=_m)
