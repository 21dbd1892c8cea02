"""Augmentation averaging (Charachon et al., "Combining similarity and adversarial learning
to generate visual explanation", eq. 11): explain the image under N random geometric
transforms T_i, bring each map back with the inverse transform and average them with the
map of the untransformed image:

    E_aug(x) = 1 / (N + 1) * ( E(x) + sum_i T_i^{-1}( E(T_i(x)) ) )

Pixels that a transform moved outside the image have no value after the inverse transform;
each pixel is averaged over the maps that cover it (the untransformed map always does).

Transforms (seeded, ``numpy.random.SeedSequence(seed)``): rotation uniform in
+-``max_rotation`` (5 degrees), shift uniform in +-``max_shift`` (10 px at 224 px, scaled with
the resolution) on each axis, zoom uniform in [``zoom_min``, ``zoom_max``] = [0.9, 1.0]
(zoom z < 1 shows a z-sized central field enlarged, as Keras' ``zoom_range``); horizontal
and vertical flips off by default (``flip=True`` / ``vflip=True`` enable each with probability
0.5, as Table II's "random horizontal / vertical flip": chest laterality matters, so a study
decides). A vertical flip mirrors the output's y axis before the rotation and zoom (the
affine's second column negated); its inverse is the inverted matrix like every other. The affines and the warp are the training augmentation's
(:func:`cfviewer.models.data.affine_matrices`, :func:`~cfviewer.models.data.warp`:
``affine_grid`` / ``grid_sample``, bilinear), with this module's own seeded draws; the inverse
uses the inverted affine matrix. The transformed image is border-padded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cfviewer.explain.base import (
    Explainer,
    ExplainerParameterError,
    ExplainerParams,
    Explanation,
    Timer,
    explainer_class,
    param,
    register,
)
from cfviewer.models.data import affine_matrices, warp

REFERENCE_RESOLUTION = 224


def random_affines(
    n: int,
    seed: int,
    resolution: int,
    max_rotation: float = 5.0,
    max_shift: float = 10.0,
    zoom_min: float = 0.9,
    zoom_max: float = 1.0,
    flip: bool = False,
    vflip: bool = False,
) -> torch.Tensor:
    """n x 2 x 3 affine matrices (``affine_grid`` convention: output coords -> input coords,
    normalised to [-1, 1]); ``max_shift`` is in pixels at 224 px. The vertical-flip draw is
    made only when ``vflip`` is on, so the transforms of a seed without it are unchanged."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    draws = np.zeros((5, n), dtype=np.float64)  # angle, zoom, tx, ty, flip
    vflips = np.zeros(n, dtype=bool)
    shift_px = max_shift * resolution / REFERENCE_RESOLUTION
    for i in range(n):
        angle = math.radians(rng.uniform(-max_rotation, max_rotation))
        zoom = rng.uniform(zoom_min, zoom_max)
        tx, ty = rng.uniform(-shift_px, shift_px, size=2) * 2.0 / resolution
        draws[:, i] = angle, zoom, tx, ty, bool(flip and rng.uniform() < 0.5)
        vflips[i] = bool(vflip and rng.uniform() < 0.5)
    angle, zoom, tx, ty, flips = torch.from_numpy(draws)
    thetas = affine_matrices(angle, 1.0 / zoom, tx, ty, flips > 0).float()
    if vflips.any():
        thetas[torch.from_numpy(vflips), :, 1] *= -1.0
    return thetas


def invert_affines(thetas: torch.Tensor) -> torch.Tensor:
    """Inverse of each 2 x 3 affine (as 3 x 3 with a last row 0 0 1)."""
    n = len(thetas)
    full = torch.zeros(n, 3, 3, dtype=torch.float64)
    full[:, :2] = thetas.double()
    full[:, 2, 2] = 1.0
    return torch.linalg.inv(full)[:, :2].float()


def realign(maps: torch.Tensor, thetas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring maps computed on T_i(x) back to x's frame: (maps, coverage weights in [0, 1])."""
    inv = invert_affines(thetas)
    back = warp(maps, inv, padding_mode="zeros")
    cover = warp(torch.ones_like(maps), inv, padding_mode="zeros")
    return back, cover


@dataclass(frozen=True)
class AffineParams(ExplainerParams):
    """The random geometric transforms of eq. 11 (Charachon et al. 2020, Table II ranges),
    shared by every explainer that averages over them (:func:`draw_affines`)."""

    seed: int = param(0, "seed of the transforms (numpy SeedSequence)")
    max_rotation: float = param(5.0, "rotation uniform in +- this many degrees", minimum=0.0)
    max_shift: float = param(10.0, "shift uniform in +- this many pixels at 224 px (scaled with R)", minimum=0.0)
    zoom_min: float = param(0.9, "zoom uniform in [zoom_min, zoom_max]", above=0.0)
    zoom_max: float = param(1.0, "zoom uniform in [zoom_min, zoom_max]", above=0.0)
    flip: bool = param(False, "horizontal flips with probability 0.5 (chest laterality matters)")
    vflip: bool = param(False, "vertical flips with probability 0.5 (Table II)")

    def check(self, explainer: str) -> None:
        if self.zoom_min > self.zoom_max:
            raise self.bad(explainer, "zoom_min", "must satisfy 0 < zoom_min <= zoom_max")


def draw_affines(params: Any, n: int, resolution: int) -> torch.Tensor:
    """:func:`random_affines` with an explainer's resolved :class:`AffineParams`."""
    return random_affines(n, params["seed"], resolution, params["max_rotation"], params["max_shift"],
                          params["zoom_min"], params["zoom_max"], params["flip"], params["vflip"])


@dataclass(frozen=True)
class AugmentedParams(AffineParams):
    """Parameters of ``augmented`` (``get_explainer(name, bundle, augment=N)`` builds it)."""

    base: str = param("gradient", "the registered explainer whose maps are averaged")
    n: int = param(8, "N, the random transforms (plus the identity)", minimum=0)
    base_params: dict | None = param(None, "the base explainer's parameters")


class AugmentedExplainer(Explainer):
    """Wrap any registered explainer with augmentation averaging (module docstring)."""

    name = "augmented"
    Params = AugmentedParams

    def __init__(self, bundle: Any, *, method: str | None = None, **params: Any):
        super().__init__(bundle, method=method, **params)
        if method in (None, self.name):
            self.method = f"{self.params['base']}+aug{self.params['n']}"

    def validate(self) -> None:
        p = self.params
        if p["base"] == self.name:
            raise self._bad("base", "cannot be 'augmented' itself")
        base_cls, fixed = explainer_class(p["base"])
        base_params = p["base_params"] or {}
        self.base = base_cls(self.bundle, method=p["base"], **{**fixed, **base_params})
        self.params["base_params"] = dict(self.base.params)

    def transforms(self) -> torch.Tensor:
        return draw_affines(self.params, self.params["n"], self.bundle.resolution)

    def _explain_tensors(
        self, x: torch.Tensor, targets: list[str], idx: list[int], **kwargs: Any
    ) -> list[Explanation]:
        if kwargs:
            raise ExplainerParameterError(
                f"{self.method}: extra explain() arguments {sorted(kwargs)} cannot be "
                "transformed with the image; call the base explainer directly"
            )
        n = self.params["n"]
        thetas = self.transforms()
        out = []
        for i in range(len(x)):
            timer = Timer()
            xi = x[i : i + 1]
            with timer("base"):
                plain = self.base._explain_tensors(xi, [targets[i]], [idx[i]])[0]
            total = torch.as_tensor(plain.map, device=x.device)[None, None].clone()
            weight = torch.ones_like(total)
            evaluations = dict(plain.evaluations)
            if n:
                with timer("transform"):
                    xt = warp(xi.expand(n, -1, -1, -1), thetas, padding_mode="border")
                with timer("augmented"):
                    expl = self.base._explain_tensors(xt, [targets[i]] * n, [idx[i]] * n)
                for e in expl:
                    for key, val in e.evaluations.items():
                        evaluations[key] = evaluations.get(key, 0) + val
                with timer("realign"):
                    maps = torch.as_tensor(np.stack([e.map for e in expl]), device=x.device)[:, None]
                    back, cover = realign(maps, thetas)
                    total = total + back.sum(0, keepdim=True)
                    weight = weight + cover.sum(0, keepdim=True)
            heat = (total / weight)[0, 0].cpu().numpy().astype(np.float32)
            params = dict(self.params)
            params["base_method"] = plain.method
            timings = timer.done()
            out.append(
                Explanation(
                    method=self.method,
                    target=plain.target,
                    map=heat,
                    image=plain.image,
                    pred_original=plain.pred_original,
                    frames=plain.frames,
                    lambdas=plain.lambdas,
                    frame_preds=plain.frame_preds,
                    counterfactual=plain.counterfactual,
                    pred_reconstruction=plain.pred_reconstruction,
                    start_frame=plain.start_frame,
                    params=params,
                    timings=timings,
                    evaluations=evaluations,
                )
            )
        return out


register("augmented", AugmentedExplainer)
