"""Gradient baselines, strictly through captum (no hand-written copies).

All four take the gradient of the **probability** of the target pathology (the classifier
already applies the sigmoid, as torchxrayvision's models do) and return an R x R map:

* ``gradient`` -- ``captum.attr.Saliency(abs=True)``: |d p / d x|. The sign of a raw input
  gradient says in which direction a pixel would move the prediction, not whether it matters,
  so the absolute value is the map.
* ``guided_backprop`` -- ``captum.attr.GuidedBackprop``; map = |attribution| by default
  (``abs=True``), as in the Latent Shift reader study's Method A.
* ``integrated_gradients`` -- ``captum.attr.IntegratedGradients`` with ``n_steps`` (50) and a
  baseline that defaults to **zeros in model space**: a uniform image of value 0 in the
  [-1024, 1024] convention, i.e. mid-grey (``baseline="min"`` = -1024 = black, or a number).
  Map = |attribution| by default (``abs=True``); ``abs=False`` keeps the signed attribution.
* ``gradcam`` -- ``captum.attr.LayerGradCam`` on ``bundle.classifier.target_layer`` (the last
  convolutional block) with ``relu_attributions=True`` (Grad-CAM's ReLU: only evidence *for*
  the class), upsampled with ``LayerAttribution.interpolate`` (bilinear) to R x R.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from captum.attr import (
    GuidedBackprop,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Saliency,
)

from cfviewer.errors import BundleError
from cfviewer.explain.base import (
    Explainer,
    ExplainerParams,
    Explanation,
    Timer,
    param,
    register,
    to_map,
)


@dataclass(frozen=True)
class CaptumParams(ExplainerParams):
    """Parameters shared by the captum baselines."""

    batch_size: int = param(16, "images per captum call (memory vs speed; no effect on the maps)", minimum=1)


@dataclass(frozen=True)
class GradientParams(CaptumParams):
    """``gradient``: |d p / d x| (captum ``Saliency(abs=True)``)."""


@dataclass(frozen=True)
class GuidedBackpropParams(CaptumParams):
    """``guided_backprop`` (captum ``GuidedBackprop``)."""

    abs: bool = param(True, "map = |attribution| (True) or the signed attribution (False)")


@dataclass(frozen=True)
class IntegratedGradientsParams(GuidedBackpropParams):
    """``integrated_gradients`` (captum ``IntegratedGradients``)."""

    batch_size: int = param(4, "images per captum call (memory vs speed; no effect on the maps)", minimum=1)
    n_steps: int = param(50, "integration steps (captum n_steps)", minimum=1)
    baseline: str | float = param(
        "zeros", "baseline image: 'zeros' (0 in model space, mid-grey), 'min' (-1024, black), "
        "'max' (1024) or a number in [-1024, 1024]")
    method: Literal["riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre"] = param(
        "gausslegendre", "captum's integral approximation")
    internal_batch_size: int = param(64, "path points per forward/backward pass (captum)", minimum=1)

    def check(self, explainer: str) -> None:
        b = self.baseline
        if b in ("zeros", "min", "max"):
            return
        try:
            v = float(b)
        except (TypeError, ValueError):
            raise self.bad(explainer, "baseline", "must be 'zeros' (0 in model space), 'min' (-1024), "
                           "'max' (1024) or a number in [-1024, 1024]") from None
        if not -1024.0 <= v <= 1024.0:
            raise self.bad(explainer, "baseline", "must lie in [-1024, 1024]")


@dataclass(frozen=True)
class GradCamParams(CaptumParams):
    """``gradcam`` (captum ``LayerGradCam`` + ``LayerAttribution.interpolate``)."""

    interpolate_mode: Literal["bilinear", "nearest", "bicubic", "area"] = param(
        "bilinear", "upsampling of the coarse map to R x R")


class PerRowTarget(nn.Module):
    """A classifier that can evaluate one class per row (``logits_of(x, k)``, Attri-Net: one
    generator pass per class) seen by captum as a one-output model: ``forward(x, k)`` =
    p(class k_i | x_i) as N x 1, so a gradient of the target does not pay for every class's map.
    ``k`` travels as captum's ``additional_forward_args`` (expanded with the inputs)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier.logits_of(x, k))[:, None]


class CaptumExplainer(Explainer):
    """Shared batching: one captum call per chunk of ``batch_size`` images."""

    Params = CaptumParams

    def captum_model(self, idx: list[int]) -> tuple[nn.Module, Any, Any]:
        """(model, target, additional_forward_args) for captum: the bundle's classifier with a
        target per row, or :class:`PerRowTarget` for one that evaluates a class per row."""
        clf = self.bundle.classifier
        if callable(getattr(clf, "logits_of", None)):
            k = torch.as_tensor(list(idx), dtype=torch.long, device=next(clf.parameters()).device)
            return PerRowTarget(clf), 0, (k,)
        return clf, idx, None

    def attribute(self, x: torch.Tensor, idx: list[int]) -> torch.Tensor:
        """N x 1 x R x R (or N x 1 x h x w for Grad-CAM) attributions."""
        raise NotImplementedError

    def reduce(self, attr: torch.Tensor) -> torch.Tensor:
        """Attribution -> map (N x 1 x R x R), larger = more important."""
        return attr.abs() if self.params.get("abs", True) else attr

    def evaluations_per_image(self) -> dict[str, int]:
        return {"classifier": 1, "backward": 1}

    def _explain_tensors(
        self, x: torch.Tensor, targets: list[str], idx: list[int], **kwargs: Any
    ) -> list[Explanation]:
        if kwargs:
            raise TypeError(f"{self.method}.explain() got unexpected arguments {sorted(kwargs)}")
        out: list[Explanation] = []
        bs = self.params["batch_size"]
        for start in range(0, len(x), bs):
            timer = Timer()
            xb = x[start : start + bs]
            ib = idx[start : start + bs]
            with timer("predict"):
                preds = self.predict_target(xb, ib)
            with timer("attribute"), torch.enable_grad():
                attr = self.attribute(xb.detach().clone().requires_grad_(True), ib)
                maps = to_map(self.reduce(attr.detach()))
            timings = timer.done()
            n = len(xb)
            per = {k: v / n for k, v in timings.items()}  # a batch's time shared equally
            evals = dict(self.evaluations_per_image())
            evals["classifier"] = evals.get("classifier", 0) + 1  # pred_original
            evals["passes"] = 2
            images = to_map(xb)
            for j in range(n):
                out.append(
                    Explanation(
                        method=self.method,
                        target=targets[start + j],
                        map=maps[j],
                        image=images[j],
                        pred_original=float(preds[j]),
                        params=dict(self.params),
                        timings=dict(per),
                        evaluations=dict(evals),
                    )
                )
        return out


class GradientExplainer(CaptumExplainer):
    name = "gradient"
    Params = GradientParams

    def attribute(self, x: torch.Tensor, idx: list[int]) -> torch.Tensor:
        model, target, extra = self.captum_model(idx)
        return Saliency(model).attribute(x, target=target, abs=True, additional_forward_args=extra)

    def reduce(self, attr: torch.Tensor) -> torch.Tensor:
        return attr  # Saliency(abs=True) is already |gradient|


class GuidedBackpropExplainer(CaptumExplainer):
    name = "guided_backprop"
    Params = GuidedBackpropParams

    def attribute(self, x: torch.Tensor, idx: list[int]) -> torch.Tensor:
        model, target, extra = self.captum_model(idx)
        return GuidedBackprop(model).attribute(x, target=target, additional_forward_args=extra)


class IntegratedGradientsExplainer(CaptumExplainer):
    name = "integrated_gradients"
    Params = IntegratedGradientsParams

    def baseline_value(self) -> float:
        b = self.params["baseline"]
        named = {"zeros": 0.0, "min": -1024.0, "max": 1024.0}
        return named[b] if b in named else float(b)

    def attribute(self, x: torch.Tensor, idx: list[int]) -> torch.Tensor:
        baseline = torch.full_like(x, self.baseline_value())
        model, target, extra = self.captum_model(idx)
        ig = IntegratedGradients(model)
        return ig.attribute(
            x,
            baselines=baseline,
            target=target,
            additional_forward_args=extra,
            n_steps=self.params["n_steps"],
            method=self.params["method"],
            internal_batch_size=self.params["internal_batch_size"],
        )

    def evaluations_per_image(self) -> dict[str, int]:
        n = self.params["n_steps"]
        return {"classifier": n, "backward": n}


class GradCamExplainer(CaptumExplainer):
    name = "gradcam"
    Params = GradCamParams

    def validate(self) -> None:
        if getattr(self.bundle.classifier, "target_layer", None) is None:
            from cfviewer.models.attrinet import is_attrinet

            hint = ("; this is an Attri-Net bundle, whose own explanation is `attrinet` (its class maps)"
                    if is_attrinet(self.bundle.classifier) else "")
            raise BundleError(
                f"gradcam needs bundle.classifier.target_layer (its last convolutional block); "
                f"{type(self.bundle.classifier).__name__} has none{hint}"
            )

    def attribute(self, x: torch.Tensor, idx: list[int]) -> torch.Tensor:
        clf = self.bundle.classifier
        cam = LayerGradCam(clf, clf.target_layer).attribute(x, target=idx, relu_attributions=True)
        return LayerAttribution.interpolate(
            cam, tuple(x.shape[-2:]), interpolate_mode=self.params["interpolate_mode"]
        )

    def reduce(self, attr: torch.Tensor) -> torch.Tensor:
        # ReLU already applied on the coarse map; bilinear upsampling keeps it >= 0, but clamp
        # away round-off so "larger = more important" holds with 0 = no evidence.
        return attr.clamp_min(0.0)


for _cls in (GradientExplainer, GuidedBackpropExplainer, IntegratedGradientsExplainer, GradCamExplainer):
    register(_cls.name, _cls)

__all__ = [
    "CaptumParams",
    "GradCamExplainer",
    "GradCamParams",
    "GradientExplainer",
    "GradientParams",
    "GuidedBackpropExplainer",
    "GuidedBackpropParams",
    "IntegratedGradientsExplainer",
    "IntegratedGradientsParams",
]
