"""Adversarial-path feature importance (Charachon et al., "Visual Explanation by Unifying
Adversarial Generation and Feature Importance Attributions", 2022; the text is in
``shared/papers/charachon2022-adversarial-feature-importance.txt``) and the plain
adversarial-difference maps.

A generator pair gives a *stable* image x_s (classified like x) and an *adversarial* image
x_a (classified otherwise). Which pair (parameter ``pair``, recorded with the pair actually
used in ``params["pair"]``, the request in ``params["pair_requested"]``):

* ``"sagen"``: x_s = g_s(x), x_a = g_a(x), the similar and adversarial generators of SAGen
  (Charachon et al. 2020, :mod:`cfviewer.models.sagen`) -- the paper's own reference [4], a
  "stable"-image generator pair (section 2: "the closest element to x ... classified by f like
  x"); refused (:class:`~cfviewer.models.sagen.SAGenMissingError`) when the bundle has none;
* ``"latentshift"``: x_s = D(E(x)), the autoencoder reconstruction, and x_a = the Latent Shift
  counterfactual at its lower search bound (the Latent Shift search parameters below make it);
* ``"auto"`` (default): SAGen's pair when the bundle has trained generators for its classifier,
  else Latent Shift's (stale generators, trained for another classifier, are passed over with a
  sentence in ``params["warnings"]``).

Every registered name (``adversarial_fi`` = v2_smooth, ``adversarial_fi-v1``, ``-v2``,
``-v2_smooth``, ``adversarial_diff``, ``adversarial_diff_x``) takes ``pair`` with the same
``"auto"`` default: SAGen's (g_s(x), g_a(x)) on a bundle with generators, Latent Shift's pair
otherwise. The stable-image variant (the paper's SyCE setting, section 4.2, eq. 6: v1, v2,
v2_smooth and ``adversarial_diff``) starts the path at x_s; the input-image variant (CyCE:
``adversarial_diff_x`` = |x - x_a|) compares x itself with x_a. Any pair can also be passed in:
``explain(image, target, x_s=..., x_a=...)`` (``params["pair"] = "given"``). With a generated
pair the explanation carries that pair's frames (Latent Shift's frames, or the straight path
g_s(x) -> g_a(x)) for the reader's animation.

What the paper defines (followed here)
--------------------------------------
Section 3.2 takes the straight path gamma(u) = x_s + u (x_a - x_s), u in [0, 1], so
d gamma / d u = x_a - x_s, and with f the target probability defines (eq. 4, 5)

    E_FI^v1          = (x_a - x_s)^2 * | int_0^1 df/dx (gamma(u)) du |      (F(x, y) = x . y)
    E_FI^v2          = (x_a - x_s)^2 *   int_0^1 |df/dx (gamma(u))| du      (F(x, y) = |x| . y)
    E_FI,k_sigma^v2  = int_0^1 ((x_a - x_s)^2 |df/dx (gamma(u))|) * k_sigma du
                     = k_sigma * E_FI^v2      (the convolution is linear, so smoothing the
                                               v2 map is the same as smoothing under the integral)

(products and absolute values pixel-wise, ``*`` a 2D convolution). v1 is *not*
|(x_a - x_s) G| (integrated gradients with x_a as the baseline): eq. 3 with F(x, y) = x . y
gives |int (df/dx . dgamma) dgamma du| = (x_a - x_s)^2 |int df/dx du| because dgamma/du is
constant on the straight path.

Section 4.2 approximates the integral with an M-step **midpoint** Riemann sum (eq. 6):
gamma_m = x_s + (m - 1/2) / M (x_a - x_s), m = 1..M, M = 50 (``steps``), evaluated
``batch_size`` points per backward pass:

    G   = 1/M sum_m  df/dx (gamma_m)          E_FI^v1 = (x_a - x_s)^2 |G|
    |G| = 1/M sum_m |df/dx (gamma_m)|         E_FI^v2 = (x_a - x_s)^2 |G|_abs

Smoothing kernel (section 4.2, after eq. 6): "a Gaussian filtering of kernel 28x28 and
sigma = 2" at the paper's 224 x 224 px. Defaults ``smooth_kernel=28``, ``smooth_sigma=2.0``
are given at 224 px and both scaled with the resolution R (kernel 28 R / 224, sigma 2 R / 224;
at the demo's 128 px: 17 x 17, sigma 1.14), recorded in ``params["smooth_kernel_effective"]``
and ``params["smooth_sigma_effective"]``. Two readings of the text, stated here:

* sigma is the Gaussian's standard deviation in pixels (section 4.2's "sigma = 2"; eq. 5
  calls k_sigma a kernel "of variance sigma", which we read as loose wording for the same
  parameter, as in the usual ``gaussian_filter(sigma=...)`` APIs);
* a 28-pixel side is even, so its centre falls between pixels and the map would move by
  half a pixel; the support used is the odd 2 * 14 + 1 = 29 centred on each pixel (radius
  ``kernel // 2``). The extra outer row carries exp(-14^2 / (2 * 2^2)) = 2e-11 of the
  centre's weight: numerically the paper's kernel, without the shift.

The kernel is normalised to sum 1 and the border reflected (scipy ``mode="reflect"``).

Plain maps: ``adversarial_diff`` = |x_s - x_a| (SyCE's explanation, section 4.2 (3)) and
``adversarial_diff_x`` = |x - x_a| (CyCE's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch
from scipy import ndimage

from cfviewer.errors import BundleError
from cfviewer.explain.base import (
    Explainer,
    ExplainerParameterError,
    Explanation,
    Timer,
    param,
    register,
    to_map,
)
from cfviewer.explain.latentshift import (
    LatentShiftExplainer,
    LatentShiftSearchParams,
    decision_record,
)

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
    """Mean signed and mean absolute gradient of the target probability over the midpoint
    Riemann points gamma_m = x_s + (m - 1/2)/M (x_a - x_s), m = 1..M (Charachon et al. eq. 6),
    for one pair (1 x 1 x R x R tensors).

    Returns (G, |G|, number of backward passes)."""
    alphas = (torch.arange(1, steps + 1, dtype=torch.float64, device=x_s.device) - 0.5) / steps
    alphas = alphas.to(x_s.dtype)
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
    """Kernel side and sigma given at 224 px (the paper's 28, 2) scaled to ``resolution``:
    the side is made odd (centred on the pixel, module docstring) and >= 3."""
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


PAIRS = ("auto", "sagen", "latentshift")


@dataclass(frozen=True)
class AdversarialParams(LatentShiftSearchParams):
    """Parameters of ``adversarial_fi`` and its aliases. The Latent Shift search parameters
    (inherited, :class:`~cfviewer.explain.latentshift.LatentShiftSearchParams`) make the
    Latent Shift pair's x_a; they are unused with the SAGen pair or a pair given to
    ``explain`` (``n_frames`` and ``max_batch`` also set the SAGen pair's frames)."""

    pair: Literal["auto", "sagen", "latentshift"] = param(
        "auto", "(x_s, x_a): 'sagen' = (g_s(x), g_a(x)) of the bundle's SAGen generators, 'latentshift' = "
        "(D(E(x)), Latent Shift counterfactual), 'auto' = SAGen's when the bundle has generators, else Latent Shift's")
    variant: Literal["v1", "v2", "v2_smooth", "diff", "diff_x"] = param(
        "v2_smooth", "E_FI v1 / v2 (eq. 4, 5), v2 smoothed (eq. 5 with k_sigma), |x_s - x_a| (SyCE) "
        "or |x - x_a| (CyCE)")
    steps: int = param(50, "M, the midpoint Riemann points on the path (section 4.2, eq. 6)", minimum=1)
    batch_size: int = param(25, "path points per backward pass (memory vs speed)", minimum=1)
    smooth_kernel: int = param(28, "Gaussian kernel side at 224 px (section 4.2), scaled with R", minimum=1)
    smooth_sigma: float = param(2.0, "Gaussian sigma in pixels at 224 px (section 4.2), scaled with R", above=0.0)


class AdversarialExplainer(Explainer):
    """E_FI v1 / v2 / v2_smooth and the |x_s - x_a|, |x - x_a| maps (module docstring);
    parameters: :class:`AdversarialParams`."""

    name = "adversarial_fi"
    needs_autoencoder = False  # only the default pair needs it (checked when used)
    Params = AdversarialParams
    _LS_KEYS = tuple(LatentShiftSearchParams.names())

    def validate(self) -> None:
        self._latentshift: LatentShiftExplainer | None = None
        self._sagen: Any = None
        self._pair_notes: list[str] = []
        want = self.params["pair"]
        if want in ("auto", "sagen"):
            from cfviewer.explain.sagen import SAGenExplainer
            from cfviewer.models.sagen import SAGenError, SAGenMissingError

            try:
                self._sagen = SAGenExplainer(
                    self.bundle, method="sagen-single", n_augment=0, n_frames=self.params["n_frames"],
                    max_batch=self.params["max_batch"])
            except SAGenMissingError:
                if want == "sagen":
                    raise
            except SAGenError as exc:
                if want == "sagen":
                    raise
                self._pair_notes.append(f"pair 'auto' used Latent Shift's pair: the bundle's SAGen generators "
                                        f"are unusable ({exc})")
        self.pair_source = "sagen" if self._sagen is not None else "latentshift"
        if self.pair_source == "latentshift" and getattr(self.bundle, "autoencoder", None) is not None:
            self._latentshift = LatentShiftExplainer(
                self.bundle, method="latentshift", **self.config.subset(LatentShiftSearchParams)
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
                "or neither (then the pair comes from SAGen or Latent Shift, parameter 'pair')"
            )
        pairs: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(x)
        if x_s is not None:
            xs_t = self._pair_tensor(x_s, len(x), "x_s")
            xa_t = self._pair_tensor(x_a, len(x), "x_a")
            pairs = [(xs_t[i : i + 1], xa_t[i : i + 1]) for i in range(len(x))]
        sources: list[Explanation | None] = [None] * len(x)
        if x_s is None:
            if self._sagen is not None:
                sources = list(self._sagen._explain_tensors(x, targets, idx))  # batched
            elif self._latentshift is None:
                raise BundleError(
                    f"{self.method}: the bundle has no autoencoder and no SAGen generators, so no "
                    "pair (x_s, x_a) can be generated; load a bundle with an autoencoder, train "
                    "SAGen generators (cfviewer train-explainer sagen --bundle DIR) or pass "
                    "x_s=... and x_a=... to explain()"
                )
            else:
                sources = list(self._latentshift._explain_tensors(x, targets, idx))  # batched
        return [
            self._explain_one(x[i : i + 1], targets[i], idx[i], pairs[i], sources[i])
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
        """One image; ``ls`` = the explanation that made its pair (Latent Shift's or SAGen's,
        ``self.pair_source``) when the pair is not given: x_s is its lambda = 0 frame, x_a its
        counterfactual."""
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
                delta = xa - xs
                if variant == "v1":  # eq. 4: (x_a - x_s)^2 |1/M sum df/dx|
                    heat = to_map(delta.pow(2) * g.abs())[0]
                else:  # eq. 4 / 6: (x_a - x_s)^2 1/M sum |df/dx|
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
        source = None if ls is None else self.pair_source
        used = {"latentshift": self._LS_KEYS, "sagen": ("n_frames", "max_batch")}.get(source or "", ())
        params = {k: v for k, v in p.items() if k in used or k not in self._LS_KEYS}
        params["pair_requested"] = p["pair"]
        if ls is not None:
            if source == "latentshift":
                params["search"] = ls.params.get("search", {})
            else:
                params["generator"] = ls.params.get("generator", {})
            params["decision"] = ls.params.get("decision")
            params["warnings"] = list(self._pair_notes) + list(ls.params.get("warnings") or [])
        else:
            thr = float((getattr(self.bundle, "thresholds", None) or {}).get(target, 0.5))
            params["decision"] = decision_record(pred_original, pred_s, thr)
            params["warnings"] = [] if not params["decision"]["autoencoder_flips_decision"] else [
                f"the stable image x_s (p = {pred_s:.3f}) is on the other side of the threshold {thr:.3f} "
                f"from x (p = {pred_original:.3f}): it is not classified like x, as the method assumes "
                "(Charachon et al., section 2)"]
        params["pair"] = source if source is not None else "given"
        params["pred_x_s"], params["pred_x_a"] = pred_s, pred_a
        if variant == "v2_smooth":
            k, s = smoothing_geometry(heat.shape[-1], p["smooth_kernel"], p["smooth_sigma"])
            params["smooth_kernel_effective"], params["smooth_sigma_effective"] = k, s
        timings = timer.done()
        if ls is not None:
            for key, val in ls.timings.items():
                if key != "total":
                    timings[f"{source}_{key}"] = val
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
            start_frame=None if ls is None else ls.start_kind,
            params=params,
            timings=timings,
            evaluations=evaluations,
        )


register("adversarial_fi", AdversarialExplainer)
for _v in ("v1", "v2", "v2_smooth"):
    register(f"adversarial_fi-{_v}", AdversarialExplainer, variant=_v)
register("adversarial_diff", AdversarialExplainer, variant="diff")
register("adversarial_diff_x", AdversarialExplainer, variant="diff_x")

__all__ = ["PAIRS", "AdversarialExplainer", "AdversarialParams", "gaussian_smooth", "path_gradients",
           "smoothing_geometry"]
