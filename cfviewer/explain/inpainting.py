"""Inpainting attribution (issue 12; ``shared/papers/inpainting-attribution.txt``): the smallest
compact region M whose marginalisation by a healthy-tissue inpainter pi brings the classifier
below its threshold, M_hat = argmin d(M) s.t. p(c | pi(M)) <= theta, d(M) <= delta, M in S
(section 2). The objective L(M), the compaction S, the constraint and the mask network are in
:mod:`cfviewer.models.masknet` (its docstring says how phi and psi are read); the inpainter is
:mod:`cfviewer.models.inpainter` (section 2.2).

``inpainting``: the one-pass mask network of section 2.1 (encoder = the frozen classifier's
last four scales, feature filters, four decoder blocks, per-pathology c1 / c2 pair), trained by
``cfviewer train-explainer masknet --bundle DIR`` (through the inpainter, with a distillation
term toward the iterative masks: :mod:`cfviewer.models.masknet`, "Training"); one
classifier-encoder pass, one network pass and one inpainter pass per image ("a single
forward-pass", section 4 "Timing"): ~0.06 s per map at 128 px on this 2-core CPU, frames included.

``inpainting-iterative``: the slow reference (section 1: "this gradient descent based
optimization method works iteratively", Major et al. [22]; section 4: 27 s per map; here 4-12 s
per map at 128 px, 40-60 ms per step, on this 2-core CPU): per image,
a mask logit grid of ``grid_fraction`` of the side (32 x 32 at 128 px) is optimised by Adam
against the same L(M) through the frozen classifier and inpainter. M = S(sigmoid(logits)) on the
grid, upsampled bilinearly; the inpainter sees the binary M >= 0.55 (straight-through
gradient). It starts from ``init_mask`` (0.75: every pixel a hole, the fully inpainted image;
:mod:`cfviewer.models.masknet` explains why an empty start has no gradient) and keeps, among
the steps whose binary mask is feasible (p(c | pi(M)) <= theta and area <= delta), the one of
the smallest area; it stops ``patience`` steps after the last smaller feasible mask or after
``max_steps``. ``params["search"]`` records the steps, the stopping rule, the best step and the
seconds. It uses the classifier as a black box (logits, or ``logits_of`` for Attri-Net), so it
also explains an Attri-Net bundle that has an inpainter.

A prediction already below theta has the empty mask as M_hat by definition: the iterative
search returns it at once (``params["warnings"]`` says so); the network maps such an image as
it is and the warning is the same.

Both give the same result shape as SAGen / Attri-Net, so the reader page's toggle and
animation work:

* ``map``: the continuous attribution S(m) in [0, 1] at the input resolution (1 = inpainted);
  ``params["mask"]``: the binary mask M = map >= ``threshold`` (0.55) that made the
  counterfactual: threshold, area share, shape and the packed bits (``packbits_b64``;
  :func:`binary_mask` unpacks it).
* ``counterfactual``: pi(M), the inpainted healthy image ``keep x + (1 - keep) raw`` with keep
  = 1 - M; ``frames`` on the straight path x(lambda) = x - lambda (pi(M) - x) =
  (1 - a M) x + a M raw (a = -lambda) for ``lambdas = linspace(-1, 0, n_frames)``:
  ``frames[0]`` = pi(M), ``frames[-1]`` = x; ``frame_preds`` the classifier's probability of
  the target on each frame; ``pred_reconstruction`` is None (nothing stands between x and the
  frames).

Errors: a bundle without an inpainter raises
:class:`cfviewer.models.inpainter.InpainterMissingError` naming
``cfviewer train-explainer inpainter --bundle DIR``; ``inpainting`` without a mask network
:class:`cfviewer.models.masknet.MaskNetMissingError` naming
``cfviewer train-explainer masknet --bundle DIR`` (stale: :class:`MaskNetStaleError`); a
classifier without multi-scale features (Attri-Net, an external model) a
:class:`~cfviewer.errors.BundleError` naming ``attrinet`` / ``inpainting-iterative``; a target
the bundle does not predict :class:`~cfviewer.errors.UnknownPathologyError` (base class).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cfviewer.explain.base import (
    Explainer,
    Explanation,
    ExplainerParams,
    Timer,
    param,
    register,
    to_map,
)
from cfviewer.explain.path import path_frames, path_lambdas
from cfviewer.models.masknet import (
    Objective,
    iterative_search,
    load_masknet,
    masknet_doc,
    masknet_maps,
    supports_masknet,
    target_logits,
    unsupported_classifier_error,
)


def pack_mask(mask: np.ndarray, threshold: float) -> dict[str, Any]:
    """``params["mask"]``: the binary mask as packed bits (base64), with its area and shape."""
    m = np.asarray(mask, bool)
    return {"threshold": float(threshold), "area": float(m.mean()), "pixels": int(m.sum()),
            "shape": [int(s) for s in m.shape],
            "packbits_b64": base64.b64encode(np.packbits(m.reshape(-1)).tobytes()).decode("ascii")}


def binary_mask(explanation: Any) -> np.ndarray:
    """The binary mask of an inpainting explanation (an :class:`Explanation` or its
    ``summary()``), H x W bool."""
    params = explanation.get("params", {}) if isinstance(explanation, dict) else explanation.params
    rec = (params or {}).get("mask")
    if not rec:
        raise ValueError("this explanation has no params['mask'] (not an inpainting explanation)")
    shape = tuple(rec["shape"])
    bits = np.frombuffer(base64.b64decode(rec["packbits_b64"]), dtype=np.uint8)
    return np.unpackbits(bits)[: int(np.prod(shape))].reshape(shape).astype(bool)


def _load_inpainter(bundle: Any):
    from cfviewer.models.inpainter import load_inpainter

    return load_inpainter(bundle)


@dataclass(frozen=True)
class InpaintingParams(ExplainerParams):
    """Parameters of ``inpainting`` (module docstring); the objective's parameters are the
    trained network's (masknet.json)."""

    threshold: float | None = param(None, "theta for the warnings (None: the bundle's threshold of the target)",
                                    minimum=0.0, maximum=1.0)
    n_frames: int = param(10, "frames on the straight path from pi(M) to x, both included", minimum=2)
    max_batch: int = param(32, "images per network / inpainter / classifier pass", minimum=1)


@dataclass(frozen=True)
class InpaintingIterativeParams(ExplainerParams):
    """Parameters of ``inpainting-iterative`` (module docstring; the objective: the module
    docstring of :mod:`cfviewer.models.masknet`)."""

    threshold: float | None = param(None, "theta: p(c | pi(M)) must reach it (None: the bundle's threshold of the "
                                          "target)", minimum=0.0, maximum=1.0)
    max_area: float = param(0.2, "delta: the mask covers at most this share of the image", above=0.0, maximum=1.0)
    max_steps: int = param(300, "Adam steps at most per image", minimum=1)
    patience: int = param(40, "stop this many steps after the last smaller feasible mask", minimum=1)
    lr: float = param(0.05, "Adam learning rate on the mask logits", above=0.0)
    init_mask: float = param(0.75, "starting mask value on the grid (0.75: every pixel a hole)", above=0.0,
                             maximum=0.999)
    mask_threshold: float = param(0.55, "binary mask = S(m) >= this (section 3: 0.55)", above=0.0, maximum=0.999)
    sigma: float = param(0.05, "Gaussian RBF sigma of S, share of the image side (section 3: 5e-2)", above=0.0)
    temperature: float = param(30.0, "smooth-max parameter of S (section 3: 30)", above=0.0)
    grid_fraction: float = param(0.25, "mask logit grid (and S grid) side / image side", above=0.0, maximum=1.0)
    tv_weight: float = param(3.0, "lambda, the weight of the normalised weighted TV", minimum=0.0)
    area_weight: float = param(1.0, "mu, the weight of the area share (0: the printed objective)", minimum=0.0)
    n_frames: int = param(10, "frames on the straight path from pi(M) to x, both included", minimum=2)
    max_batch: int = param(32, "images per classifier pass for the frames", minimum=1)

    def objective(self) -> Objective:
        obj = Objective(max_area=self.max_area, mask_threshold=self.mask_threshold, sigma=self.sigma,
                        temperature=self.temperature, grid_fraction=self.grid_fraction,
                        tv_weight=self.tv_weight, area_weight=self.area_weight)
        obj.validate()
        return obj


class _InpaintingBase(Explainer):
    """What both explainers share: the inpainter, thresholds, the Explanation."""

    def _thresholds(self, targets: list[str]) -> list[float]:
        fixed = self.params.get("threshold")
        thr = getattr(self.bundle, "thresholds", None) or {}
        return [float(fixed) if fixed is not None else float(thr.get(t, 0.5)) for t in targets]

    def _explanations(self, x: torch.Tensor, targets: list[str], idx: list[int], soft: torch.Tensor,
                      hard: torch.Tensor, cf: torch.Tensor, extra: list[dict[str, Any]], timer: Timer,
                      evaluations: dict[str, int], passes: int, thetas: list[float]) -> list[Explanation]:
        n, k = len(x), self.params["n_frames"]
        lambdas = path_lambdas(k)
        with timer("frames"):
            frames = path_frames(x, cf, lambdas)
            flat = frames.reshape(n * k, 1, *frames.shape[-2:])
            preds, passes_clf = self.predict_in_passes(flat, [t for t in idx for _ in range(k)], self.params["max_batch"])
            preds = preds.reshape(n, k)
        with timer("predict"):
            pred_original, passes0 = self.predict_in_passes(x, idx, self.params["max_batch"])
        timings = {key: v / n for key, v in timer.done().items()}
        maps = to_map(soft)
        masks = to_map(hard) > 0.5
        frames_np = to_map(frames.reshape(n * k, *frames.shape[-2:])).reshape(n, k, *frames.shape[-2:])
        out = []
        for i in range(n):
            p0, pc = float(pred_original[i]), float(preds[i, 0])
            params = dict(self.params)
            params.update(extra[i])
            params["threshold_used"] = thetas[i]
            params["mask"] = pack_mask(masks[i], params.get("mask_threshold_used", 0.55))
            params["pred_counterfactual"] = pc
            params["warnings"] = list(params.get("warnings") or []) + counterfactual_warnings(
                p0, pc, thetas[i], float(masks[i].mean()), params.get("max_area_used"))
            out.append(Explanation(
                method=self.method,
                target=targets[i],
                map=maps[i],
                image=to_map(x[i:i + 1])[0],
                pred_original=p0,
                frames=frames_np[i],
                lambdas=lambdas.astype(np.float64),
                frame_preds=preds[i].astype(np.float64),
                counterfactual=frames_np[i, 0].copy(),
                pred_reconstruction=None,
                params=params,
                timings=dict(timings),
                evaluations={**evaluations, "classifier": evaluations.get("classifier", 0) + 1 + k,
                             "passes": passes + passes_clf + passes0, "frame_images": k},
            ))
        return out


def counterfactual_warnings(pred_original: float, pred_cf: float, threshold: float, area: float,
                            max_area: float | None) -> list[str]:
    """Sentences for ``params["warnings"]``."""
    out = []
    if pred_original < threshold:
        out.append(f"the prediction p = {pred_original:.3f} is already below the threshold {threshold:.3f}: by the "
                   "definition of the map (the smallest region whose inpainting brings p below the threshold) "
                   "the minimal mask is empty")
    elif pred_cf > threshold:
        out.append(f"the inpainted image is still positive (p = {pred_cf:.3f} > threshold {threshold:.3f}): no mask "
                   "within the area limit made the image healthy for the classifier; the map shows the region that "
                   "lowered the prediction most, not one that changes the decision")
    if area == 0.0 and pred_original >= threshold:
        out.append("the mask is empty: the counterfactual is the image itself")
    if max_area is not None and area > float(max_area) + 1e-9:
        out.append(f"the mask covers {100 * area:.1f} % of the image, above the area limit "
                   f"{100 * float(max_area):.1f} %")
    return out


class InpaintingIterativeExplainer(_InpaintingBase):
    """Per-image mask optimisation (module docstring); parameters: :class:`InpaintingIterativeParams`."""

    name = "inpainting-iterative"
    Params = InpaintingIterativeParams

    def validate(self) -> None:
        self.objective = self.config.objective()  # type: ignore[attr-defined]
        self.inpainter = _load_inpainter(self.bundle)  # InpainterMissingError names the command

    def _explain_tensors(self, x: torch.Tensor, targets: list[str], idx: list[int], **kwargs: Any
                         ) -> list[Explanation]:
        if kwargs:
            raise TypeError(f"{self.method}.explain() got unexpected arguments {sorted(kwargs)}")
        p = self.params
        timer = Timer()
        thetas = self._thresholds(targets)
        clf = self.bundle.classifier
        softs, hards, cfs, extra = [], [], [], []
        steps_total = 0
        with timer("search"):
            with torch.no_grad():
                z_x = torch.cat([target_logits(clf, x[i:i + 1], torch.tensor([idx[i]], device=x.device))
                                 for i in range(len(x))])
            for i in range(len(x)):
                xi = x[i:i + 1]
                if float(torch.sigmoid(z_x[i])) < thetas[i]:
                    softs.append(torch.zeros_like(xi))
                    hards.append(torch.zeros_like(xi))
                    cfs.append(xi.clone())
                    rec = {"steps": 0, "stopped": "already_below_threshold", "feasible": True, "best_step": None,
                           "p": float(torch.sigmoid(z_x[i])), "area": 0.0, "grid": self.objective.grid(x.shape[-1]),
                           "seconds": 0.0}
                else:
                    with torch.enable_grad():
                        res = iterative_search(clf, self.inpainter, xi, idx[i], thetas[i], self.objective,
                                               max_steps=p["max_steps"], patience=p["patience"], lr=p["lr"],
                                               init_mask=p["init_mask"])
                    softs.append(res["soft"])
                    hards.append(res["hard"])
                    cfs.append(res["composite"])
                    rec = res["record"]
                steps_total += rec["steps"]
                extra.append({"search": rec, "mask_threshold_used": self.objective.mask_threshold,
                              "max_area_used": self.objective.max_area})
        n = len(x)
        return self._explanations(
            x, targets, idx, torch.cat(softs), torch.cat(hards), torch.cat(cfs), extra, timer,
            {"classifier": steps_total // max(n, 1), "inpainter": steps_total // max(n, 1),
             "backward": steps_total // max(n, 1), "steps": steps_total // max(n, 1)},
            steps_total + n, thetas)


class InpaintingExplainer(_InpaintingBase):
    """The one-pass mask network (module docstring); parameters: :class:`InpaintingParams`."""

    name = "inpainting"
    Params = InpaintingParams

    def validate(self) -> None:
        if not supports_masknet(self.bundle.classifier):
            raise unsupported_classifier_error(self.bundle, self.method)
        self.inpainter = _load_inpainter(self.bundle)
        self.net = load_masknet(self.bundle)  # MaskNetMissingError / MaskNetStaleError name the command
        doc = masknet_doc(self.bundle)
        self.objective = Objective.from_dict(doc.get("objective"))
        training = doc.get("training") or {}
        self.net_record = {
            "classifier_identity": (doc.get("classifier") or {}).get("identity"),
            "inpainter_sha256": (doc.get("inpainter") or {}).get("sha256"),
            "steps": training.get("steps"),
            "stopped": training.get("stopped"),
            "validation": doc.get("validation"),
            "created": doc.get("created"),
        }

    @torch.no_grad()
    def _explain_tensors(self, x: torch.Tensor, targets: list[str], idx: list[int], **kwargs: Any
                         ) -> list[Explanation]:
        if kwargs:
            raise TypeError(f"{self.method}.explain() got unexpected arguments {sorted(kwargs)}")
        mb = self.params["max_batch"]
        timer = Timer()
        thetas = self._thresholds(targets)
        softs, hards, cfs = [], [], []
        passes = 0
        with timer("map"):
            for i in range(0, len(x), mb):
                xb = x[i:i + mb]
                _, s = masknet_maps(self.net, self.bundle.classifier, xb, idx[i:i + mb], self.objective)
                softs.append(s)
                hards.append((s >= self.objective.mask_threshold).to(xb.dtype))
                passes += 1
        with timer("inpaint"):
            for i, h in zip(range(0, len(x), mb), hards):
                cfs.append(self.inpainter(x[i:i + mb], 1.0 - h))
                passes += 1
        extra = [{"masknet": dict(self.net_record), "mask_threshold_used": self.objective.mask_threshold,
                  "max_area_used": self.objective.max_area} for _ in range(len(x))]
        return self._explanations(x, targets, idx, torch.cat(softs), torch.cat(hards), torch.cat(cfs), extra,
                                  timer, {"classifier": 1, "masknet": 1, "inpainter": 1, "backward": 0}, passes,
                                  thetas)


register("inpainting", InpaintingExplainer)
register("inpainting-iterative", InpaintingIterativeExplainer)

__all__ = [
    "InpaintingExplainer", "InpaintingIterativeExplainer", "InpaintingIterativeParams", "InpaintingParams",
    "binary_mask", "counterfactual_warnings", "iterative_search", "pack_mask", "path_frames", "path_lambdas",
]
