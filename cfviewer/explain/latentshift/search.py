"""The lambda search of Latent Shift (Cohen et al., "Gifsplanation via Latent Shift", MIDL 2021,
section 4.2 "Determining the lambda range" and appendix C "Lambda Search").

With z = E(x) and dz = d q(D(z)) / d z (q the target's probability or logit, see
:func:`target_gradient`), the frames are x_lambda = D(z + lambda dz) (paper eq. 1, 2); the
search finds the lower bound of lambda, the counterfactual. Two searches share the same
stopping rules (:class:`StopRules`, the reference's: the prediction rises again, falls below
``min_pred``, falls more than ``pred_diff`` below its value at lambda 0 -- section 4.2: "the
prediction decreases by 30 %" --, |lambda| reaches ``max_lambda``, or the image changes by more
than ``max_pixel_diff_pct`` of sum |x_0|):

* :func:`grid_steps` (cfviewer's default, ``search_mode="grid"``): the first-order estimate of the
  lambda that reaches the target prediction p*, lambda* = -(q(0) - q(p*)) / ||dz||^2 (along dz,
  q moves by lambda ||dz||^2 to first order), scales a geometric grid lambda* x 3^k,
  k = -1, 0, 1 (:data:`GRID_FIRST`), evaluated in one batched decoder + classifier pass. The
  bound is the first grid point, in order of |lambda|, at which the target is reached (as the
  walk's, the first point where a rule fires); a point beyond the pixel limit or where the
  prediction rises again is never the bound (the lowest prediction before it is). Only when
  the points do not decide -- all short of the target (a pass further out), the first one
  already beyond the limits (closer in), or the target lies between the last point within
  the limits and the one beyond (two points between) -- does it take another pass, at most
  :data:`GRID_PASSES` in all. Ratio 3 makes the grid points below the bound frames
  (:data:`GRID_RATIO`), so most explanations cost exactly the floor: 1 encode, 1 decode +
  1 backward for the gradient and the 9 frames other than lambda = 0.
* :func:`walk_steps` (``search_mode="walk"``): the reference's sequential walk 0, -10, -21, -34, ...
  (``l = l - step + l // 10``), keeping the first candidate at which a rule fires, exactly;
  candidates are evaluated :data:`WALK_BATCH` at a time, which never changes the bound.

Both drive :class:`ShiftCache` objects through :func:`evaluate_shifts`, so several images'
requests share batched passes (``explain_batch``) and every decoded image is cached by lambda
and reused for the frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Sequence

import numpy as np
import torch

GRADIENT_OF = ("auto", "probability", "logit")

GRID_RATIO = 3.0
"""The grid's ratio. Powers of 3 because the frames are ``linspace(bound, 0, 10)``: the frames
of a grid point c contain c / 3 and c / 9, so grid points below the bound are frames too
and the search costs (almost) no image beyond the frames."""
GRID_FIRST: tuple[int, ...] = (-1, 0, 1)
"""Exponents of the first pass: lambda* x 3^k. On the demo bundle the first-order estimate is
short by a factor 1-8 (the decoder and the classifier bend the path)."""
GRID_MORE = 2
"""Points per further pass (further out, closer in, or between two points)."""
GRID_PASSES = 4
"""At most this many candidate passes per image (the first included)."""
WALK_BATCH = 4
"""Walk candidates per batched pass (the bound is the sequential walk's whatever this is)."""


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
    ae: Any, classifier: Any, x: torch.Tensor, idx: Sequence[int], gradient_of: str,
    return_q: bool = False,
) -> tuple[torch.Tensor, ...]:
    """z = E(x), x0 = D(z), the target probabilities at x0 and dz = d q / d z with q the
    target's probability or logit (``gradient_of`` resolved), plus q itself when
    ``return_q``. All detached."""
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
    out = (z.detach(), x0.detach(), prob.detach(), dz.detach())
    return out + (q.detach(),) if return_q else out


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
    """The reference's stopping rules, for the downward search."""

    pred_start: float
    pixel_sum: float
    pred_diff: float = 0.3
    min_pred: float = 0.05
    max_lambda: float = 3000.0
    max_pixel_diff_pct: float = 0.05
    stop_on_rise: bool = True

    @property
    def pixel_limit(self) -> float:
        return self.pixel_sum * self.max_pixel_diff_pct

    @property
    def target(self) -> float:
        """The prediction below which a rule fires (``min_pred`` or ``pred_diff`` below the start)."""
        return max(self.pred_start - self.pred_diff, self.min_pred)

    def reversal(self, pred: float, prev_pred: float) -> bool:
        """The prediction moves back up."""
        return self.stop_on_rise and prev_pred < pred

    def reached(self, pred: float) -> str | None:
        if pred < self.min_pred:
            return "pred_below_min"
        if self.pred_start - self.pred_diff > pred:
            return "pred_diff_reached"
        return None

    def absolute(self, lam: float, pred: float, pixel_diff: float) -> str | None:
        """Rules that depend on one candidate only (in the reference's order)."""
        reason = self.reached(pred)
        if reason:
            return reason
        if abs(lam) >= self.max_lambda:
            return "max_lambda"
        if pixel_diff > self.pixel_limit:
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
    max_batch: int = 16
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
    # equal-sized passes (e.g. 18 images with max_batch 16: 9 + 9, not 16 + 2)
    n_pass = -(-len(items) // first.max_batch)
    size = -(-len(items) // n_pass)
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
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
    """The lower bound one search found and what it cost."""

    bound: float
    index: int  # walk: the bound's index in the walk; grid: lambdas checked beyond 0
    reason: str
    images_evaluated: int
    passes: int
    checked: float = 0.0  # the farthest lambda checked
    info: dict[str, Any] = field(default_factory=dict)


SearchSteps = Generator[list, None, SearchResult]


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


# ---------------------------------------------------------------------- the reference's walk
def walk_steps(cache: ShiftCache, seq: Sequence[float], rules: StopRules, batch: int = WALK_BATCH) -> SearchSteps:
    """The reference's walk as a generator: it yields the lambdas it needs next (the caller
    evaluates them into ``cache``, possibly together with other images' requests) and returns
    the :class:`SearchResult`: the first index of ``seq`` at which a rule fires, exactly the
    sequential walk's, evaluating ``batch`` candidates per pass (at most ``batch - 1`` more
    images than the walk's)."""
    n0, p0 = cache.n_decoded, cache.n_passes
    preds, diffs = cache.preds, cache.pixel_diffs

    def result(k: int, reason: str) -> SearchResult:
        return SearchResult(float(seq[k]), k, reason, cache.n_decoded - n0, cache.n_passes - p0,
                            checked=float(seq[k]))

    reason = rules.absolute(seq[0], preds[seq[0]], diffs[seq[0]])
    if reason:  # e.g. the prediction is already below 0.05 at lambda 0
        return result(0, reason)
    last = len(seq) - 1
    pos = 0
    while pos < last:
        cand = list(range(pos + 1, min(pos + batch, last) + 1))
        yield [seq[i] for i in cand]
        for c in cand:
            reason = rules.check(seq[c], preds[seq[c]], preds[seq[c - 1]], diffs[seq[c]])
            if reason:
                return result(c, reason)
        pos = cand[-1]
    # The last candidate has |lambda| >= max_lambda, so a rule always fires before here.
    return result(last, "max_lambda")


# ---------------------------------------------------------------------- the grid search
def first_order_lambda(rules: StopRules, q0: float, dz_norm2: float, gradient_of: str) -> float:
    """lambda* = -(q(0) - q(p*)) / ||dz||^2 with p* = ``rules.target`` and q the logit or the
    probability: where the first-order model q(lambda) = q(0) + lambda ||dz||^2 reaches the
    target. NaN when it cannot be estimated (no gradient)."""
    if not (dz_norm2 > 0 and math.isfinite(dz_norm2)):
        return float("nan")
    p_star = min(max(rules.target, 1e-12), 1 - 1e-12)
    if gradient_of == "logit":
        q_star = math.log(p_star / (1 - p_star))
    else:
        q_star = p_star
    delta = q0 - q_star
    if not delta > 0:  # already at the target (a rule fires at lambda 0)
        return float("nan")
    return -delta / dz_norm2


def scan_grid(cache: ShiftCache, rules: StopRules) -> tuple[float, str | None, list[float]]:
    """Apply the rules to every evaluated lambda <= 0 in order of |lambda|.

    Returns (bound, reason, next request): the first point that reaches the target is the
    bound; a point beyond the pixel limit, or where the prediction rises again, ends the scan
    and the bound is the lowest prediction before it (ties: the larger |lambda|). The request
    is non-empty when another pass could still reach the target: further out (every point is
    short of it, within the limits), closer in (the first point is already beyond them) or
    between the bound and the point that ended the scan."""
    lams = sorted((v for v in cache.preds if v <= 0.0), key=abs)
    preds, diffs = cache.preds, cache.pixel_diffs
    r = GRID_RATIO
    best = 0.0
    for k in range(1, len(lams)):
        lam, pred = lams[k], preds[lams[k]]
        stop = None
        if diffs[lam] > rules.pixel_limit:
            stop = "pixel_diff"
        elif rules.reversal(pred, preds[lams[k - 1]]):
            stop = "pred_reversed"
        if stop:
            a = lams[k - 1]
            if k == 1:  # the first point is already too far: closer in
                more = [lam * r ** -(i + 1) for i in range(GRID_MORE)]
            elif stop == "pixel_diff":
                more = _toward_pixel_limit(rules, a, lam, diffs[a], diffs[lam], preds[a], pred)
            else:  # between the last point within the limits and this one
                step = abs(lam / a) ** (1.0 / (GRID_MORE + 1))
                more = [a * step ** (i + 1) for i in range(GRID_MORE)]
            return best, stop, more
        reason = rules.reached(pred)
        if reason:
            return lam, reason, []
        if pred <= preds[best]:
            best = lam
        if abs(lam) >= rules.max_lambda:
            return best, "max_lambda", []
    far = lams[-1]
    return best, None, [max(far * r ** (i + 1), -rules.max_lambda) for i in range(GRID_MORE)]


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def _toward_pixel_limit(rules: StopRules, a: float, b: float, da: float, db: float,
                        pa: float, pb: float) -> list[float]:
    """Points between a (within the pixel limit, short of the target) and b (beyond the
    limit): where the pixel change reaches the limit (secant, a little inside) and, when b
    reached the target, where the prediction's logit crosses it (secant) if that is closer."""
    if not db > da:
        return []
    t_pix = 0.98 * (rules.pixel_limit - da) / (db - da)
    out = [a + t_pix * (b - a)]
    if rules.reached(pb):
        qa, qb, qt = _logit(pa), _logit(pb), _logit(rules.target)
        if qa > qt > qb:
            t_cross = (qa - qt) / (qa - qb)
            if 0 < t_cross < t_pix:
                out.insert(0, a + t_cross * (b - a))
    return out


def grid_steps(cache: ShiftCache, rules: StopRules, lam_star: float, passes: int = GRID_PASSES) -> SearchSteps:
    """The grid search (module docstring) as a generator, like :func:`walk_steps`."""
    n0, p0 = cache.n_decoded, cache.n_passes

    def result(bound: float, reason: str) -> SearchResult:
        checked = [v for v in cache.preds if v < 0.0]
        return SearchResult(
            float(bound), len(checked), reason, cache.n_decoded - n0, cache.n_passes - p0,
            checked=float(min(checked, default=0.0)),
        )

    reason = rules.absolute(0.0, cache.preds[0.0], 0.0)
    if reason:
        return result(0.0, reason)
    if math.isfinite(lam_star) and lam_star < 0:
        request = [max(lam_star * GRID_RATIO ** k, -rules.max_lambda) for k in GRID_FIRST]
    else:  # no usable gradient: nothing moves before the lambda limit (the reference's end)
        request = [-rules.max_lambda]
    bound, reason = 0.0, None
    for _ in range(passes):
        request = sorted({float(v) for v in request if v < 0.0} - set(cache.preds), key=abs)
        if not request:
            break
        yield request
        bound, reason, request = scan_grid(cache, rules)
    return result(bound, reason or "grid_passes")


def search_bound(cache: ShiftCache, seq: Sequence[float], rules: StopRules, batch: int = WALK_BATCH) -> SearchResult:
    """The walk for one image (:func:`walk_steps`)."""
    return run_searches([cache], [walk_steps(cache, seq, rules, batch)])[0]


def dz_norm2(dz: torch.Tensor) -> np.ndarray:
    """||dz||^2 per image (float64)."""
    return dz.double().pow(2).flatten(1).sum(1).cpu().numpy()
