"""Adversarial-path feature importance (Charachon et al., "Visual Explanation by Unifying
Adversarial Generation and Feature Importance Attributions", 2021) and the plain
adversarial-difference maps.

A generator pair gives a *stable* image x_s (classified like x) and an *adversarial* image
x_a (classified otherwise). By default x_s = D(E(x)), the autoencoder reconstruction, and
x_a = the Latent Shift counterfactual at its lower search bound; any pair can be passed in:
``explain(image, target, x_s=..., x_a=...)``.

Along the straight path gamma(alpha) = x_s + alpha (x_a - x_s), with the M-step right Riemann
sum (alpha_k = k / M, k = 1..M, M = ``steps`` = 50, evaluated ``batch_size`` images per
backward pass) of the gradient of the target probability f:

    G      = 1/M sum_k  d f(gamma(alpha_k)) / d x          (signed)
    |G|    = 1/M sum_k |d f(gamma(alpha_k)) / d x|         (absolute)

    E_FI^v1 = | (x_s - x_a) * G |            path-integrated gradient from x_a to x_s
                                             (integrated gradients with the adversarial
                                             image as baseline), absolute value
    E_FI^v2 = (x_s - x_a)^2 * |G|            the squared path displacement times the
                                             mean absolute gradient
    E_FI^v2_smooth = g_sigma * E_FI^v2       Gaussian smoothing, kernel ``smooth_kernel``
                                             (11) x 11, sigma ``smooth_sigma`` (5) pixels at
                                             224 px, both scaled with the resolution R

(``*`` element-wise). Note: the paper could not be consulted on this offline machine; the
forms above follow the project's issue text (Riemann sum of |df/dx| times (x_a - x_s)^2 for
v2), and the smoothing kernel (11, sigma 5) is recalled, not verified -- both are parameters.

Plain maps: ``adversarial_diff`` = |x_s - x_a| (SAGen's explanation) and
``adversarial_diff_x`` = |x - x_a|.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from scipy import ndimage

from cfviewer.errors import BundleError
from cfviewer.explain.base import (
    Explainer,
    ExplainerParameterError,
    Explanation,
    Timer,
    register,
    to_map,
)
from cfviewer.explain.latentshift import SEARCH_DEFAULTS, LatentShiftExplainer

VARIANTS = ("v1", "v2", "v2_smooth", "diff", "diff_x")
REFERENCE_RESOLUTION = 224


def path_gradients(
    classifier: torch.nn.Module,
    x_s: torch.Tensor,
    x_a: torch.Tensor,
    target: int,
    steps: int = 50,
    batch_size: int = 25,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean signed and mean absolute gradient of the target probability over the right
    Riemann points x_s + k/M (x_a - x_s), k = 1..M, for one pair (1 x 1 x R x R tensors).

    Returns (G, |G|, number of backward passes)."""
    alphas = torch.arange(1, steps + 1, dtype=x_s.dtype, device=x_s.device) / steps
    delta = x_a - x_s
    g_sum = torch.zeros_like(x_s)
    a_sum = torch.zeros_like(x_s)
    passes = 0
    for start in range(0, steps, batch_size):
        a = alphas[start : start + batch_size].view(-1, 1, 1, 1)
        with torch.enable_grad():
            pts = (x_s + a * delta).detach().requires_grad_(True)
            p = classifier(pts)[:, target]
            (g,) = torch.autograd.grad(p.sum(), pts)
        g_sum += g.sum(0, keepdim=True)
        a_sum += g.abs().sum(0, keepdim=True)
        passes += 1
    return g_sum / steps, a_sum / steps, passes


def smoothing_geometry(resolution: int, kernel: int, sigma: float) -> tuple[int, float]:
    """Kernel side (odd, >= 3) and sigma scaled from 224 px to ``resolution``."""
    scale = resolution / REFERENCE_RESOLUTION
    k = max(3, int(round(kernel * scale)))
    if k % 2 == 0:
        k += 1
    return k, float(sigma) * scale


def gaussian_smooth(m: np.ndarray, kernel: int, sigma: float) -> np.ndarray:
    """Gaussian filter with a ``kernel`` x ``kernel`` support (radius kernel // 2), reflecting
    the border (scipy ``mode="reflect"``)."""
    return ndimage.gaussian_filter(
        np.asarray(m, dtype=np.float64), sigma=sigma, radius=kernel // 2, mode="reflect"
    ).astype(np.float32)


class AdversarialExplainer(Explainer):
    """E_FI v1 / v2 / v2_smooth and the |x_s - x_a|, |x - x_a| maps (module docstring)."""

    name = "adversarial_fi"
    needs_autoencoder = False  # only the default pair needs it (checked when used)
    defaults: dict[str, Any] = {
        "variant": "v2_smooth",
        "steps": 50,
        "batch_size": 25,
        "smooth_kernel": 11,
        "smooth_sigma": 5.0,
        **SEARCH_DEFAULTS,
        "n_frames": 10,
        "max_batch": 16,
    }
    _LS_KEYS = tuple(SEARCH_DEFAULTS) + ("n_frames", "max_batch")

    def validate(self) -> None:
        p = self.params
        if p["variant"] not in VARIANTS:
            raise self._bad("variant", f"must be one of {', '.join(VARIANTS)}")
        if p["steps"] < 1:
            raise self._bad("steps", "must be >= 1")
        if p["batch_size"] < 1:
            raise self._bad("batch_size", "must be >= 1")
        if p["smooth_kernel"] < 1 or p["smooth_sigma"] <= 0:
            raise self._bad("smooth_kernel", "and smooth_sigma must be positive")
        self._latentshift: LatentShiftExplainer | None = None
        if getattr(self.bundle, "autoencoder", None) is not None:
            self._latentshift = LatentShiftExplainer(
                self.bundle, method="latentshift", **{k: p[k] for k in self._LS_KEYS}
            )

    def _explain_tensors(
        self,
        x: torch.Tensor,
        targets: list[str],
        idx: list[int],
        x_s: Sequence[np.ndarray] | np.ndarray | None = None,
        x_a: Sequence[np.ndarray] | np.ndarray | None = None,
    ) -> list[Explanation]:
        if (x_s is None) != (x_a is None):
            raise ExplainerParameterError(
                f"{self.method}: give both x_s (stable image) and x_a (adversarial image), "
                "or neither (then x_s = D(E(x)) and x_a = the Latent Shift counterfactual)"
            )
        pairs: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(x)
        if x_s is not None:
            xs_t = self._pair_tensor(x_s, len(x), "x_s")
            xa_t = self._pair_tensor(x_a, len(x), "x_a")
            pairs = [(xs_t[i : i + 1], xa_t[i : i + 1]) for i in range(len(x))]
        shifts: list[Explanation | None] = [None] * len(x)
        if x_s is None:
            if self._latentshift is None:
                raise BundleError(
                    f"{self.method}: the bundle has no autoencoder, so the default pair "
                    "(x_s = D(E(x)), x_a = Latent Shift counterfactual) is unavailable; load a "
                    "bundle with an autoencoder or pass x_s=... and x_a=... to explain()"
                )
            shifts = list(self._latentshift._explain_tensors(x, targets, idx))  # batched
        return [
            self._explain_one(x[i : i + 1], targets[i], idx[i], pairs[i], shifts[i])
            for i in range(len(x))
        ]

    def _pair_tensor(self, imgs: Any, n: int, name: str) -> torch.Tensor:
        if isinstance(imgs, np.ndarray) and imgs.ndim == 2 or torch.is_tensor(imgs) and imgs.ndim == 2:
            imgs = [imgs]
        t = self.prepare(list(imgs) if not isinstance(imgs, (list, tuple)) else imgs)
        if len(t) != n:
            raise ExplainerParameterError(f"{self.method}: {n} images but {len(t)} {name} images")
        return t

    def _explain_one(
        self,
        x: torch.Tensor,
        target: str,
        t: int,
        pair: tuple[torch.Tensor, torch.Tensor] | None,
        ls: Explanation | None = None,
    ) -> Explanation:
        """One image; ``ls`` = its Latent Shift explanation when the default pair is used."""
        p = self.params
        timer = Timer()
        if pair is None:
            assert ls is not None
            dev = x.device
            xs = torch.as_tensor(ls.frames[np.argmin(np.abs(ls.lambdas))], device=dev)[None, None]
            xa = torch.as_tensor(ls.counterfactual, device=dev)[None, None]
        else:
            xs, xa = pair
        variant = p["variant"]
        evaluations: dict[str, int] = dict(ls.evaluations) if ls else {}
        with timer("attribution"):
            if variant == "diff":
                heat = to_map((xs - xa).abs())[0]
            elif variant == "diff_x":
                heat = to_map((x - xa).abs())[0]
            else:
                g, g_abs, passes = path_gradients(
                    self.bundle.classifier, xs, xa, t, p["steps"], p["batch_size"]
                )
                delta = xs - xa
                if variant == "v1":
                    heat = to_map((delta * g).abs())[0]
                else:
                    heat = to_map(delta.pow(2) * g_abs)[0]
                    if variant == "v2_smooth":
                        k, s = smoothing_geometry(heat.shape[-1], p["smooth_kernel"], p["smooth_sigma"])
                        heat = gaussian_smooth(heat, k, s)
                evaluations["classifier"] = evaluations.get("classifier", 0) + p["steps"]
                evaluations["backward"] = evaluations.get("backward", 0) + p["steps"]
                evaluations["passes"] = evaluations.get("passes", 0) + passes
                evaluations["path_images"] = p["steps"]
        with timer("predict"):
            if ls is None:
                pred_original = float(self.predict_target(x, [t])[0])
                pred_s = float(self.predict_target(xs, [t])[0])
                pred_a = float(self.predict_target(xa, [t])[0])
                evaluations["classifier"] = evaluations.get("classifier", 0) + 3
            else:
                pred_original, pred_s = ls.pred_original, float(ls.pred_reconstruction)
                pred_a = float(ls.frame_preds[0])
        params = {k: v for k, v in p.items() if ls is not None or k not in self._LS_KEYS}
        if ls is not None:
            params["search"] = ls.params.get("search", {})
        params["pair"] = "latentshift" if ls is not None else "given"
        params["pred_x_s"], params["pred_x_a"] = pred_s, pred_a
        if variant == "v2_smooth":
            k, s = smoothing_geometry(heat.shape[-1], p["smooth_kernel"], p["smooth_sigma"])
            params["smooth_kernel_effective"], params["smooth_sigma_effective"] = k, s
        timings = timer.done()
        if ls is not None:
            for key, val in ls.timings.items():
                if key != "total":
                    timings[f"latentshift_{key}"] = val
            timings["total"] += ls.timings["total"]
        return Explanation(
            method=self.method,
            target=target,
            map=heat.astype(np.float32),
            image=to_map(x)[0],
            pred_original=pred_original,
            frames=None if ls is None else ls.frames,
            lambdas=None if ls is None else ls.lambdas,
            frame_preds=None if ls is None else ls.frame_preds,
            counterfactual=to_map(xa)[0],
            pred_reconstruction=pred_s,
            params=params,
            timings=timings,
            evaluations=evaluations,
        )


register("adversarial_fi", AdversarialExplainer)
for _v in ("v1", "v2", "v2_smooth"):
    register(f"adversarial_fi-{_v}", AdversarialExplainer, variant=_v)
register("adversarial_diff", AdversarialExplainer, variant="diff")
register("adversarial_diff_x", AdversarialExplainer, variant="diff_x")

__all__ = ["AdversarialExplainer", "gaussian_smooth", "path_gradients", "smoothing_geometry"]
