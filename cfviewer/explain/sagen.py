"""SAGen explainers (Charachon et al., "Combining Similarity and Adversarial Learning to
Generate Visual Explanation", ICPR 2020; the generators and their training are in
:mod:`cfviewer.models.sagen`).

``sagen``: the explanation of eq. 3, E(x) = |g_s(x) - g_a(x)| (section III-A), averaged over
N = 10 random geometric transforms psi_i of the input brought back by psi_i^{-1}, plus the
untransformed map (section III-D, eq. 11; section IV-D: "for each image x, we generate 10
augmented images"):

    E_aug(x) = 1 / (N + 1) * ( E(x) + sum_i psi_i^{-1}( E(psi_i(x)) ) )

with Table II's ranges: rotation in +-5 degrees, height and width shifts in +-10 px (at 224 px,
scaled to the resolution), zoom in [0.9, 1], random horizontal and vertical flips (each with
probability 0.5; ``flip`` / ``vflip`` turn them off). The transforms, the warp and the inverse
are :mod:`cfviewer.explain.augment`'s (``random_affines``, ``realign``): pixels a transform
moved outside the image are averaged over the maps that cover them. ``sagen-single``: the
map of eq. 3 alone (N = 0).

Both give the reader's animation: ``frames`` on the straight path from g_s(x) to g_a(x),
x(lambda) = g_s(x) - lambda (g_a(x) - g_s(x)) for ``lambdas = linspace(-1, 0, n_frames)``
(increasing, like Latent Shift's): the counterfactual g_a(x) is ``frames[0]`` (lambda = -1),
g_s(x) the lambda = 0 frame (``frames[-1]``), so
:func:`cfviewer.metrics.counterfactual.score_explanation` compares g_a(x) with g_s(x).
``frame_preds`` are the classifier's target probabilities on the frames, ``counterfactual`` =
g_a(x), ``pred_reconstruction`` = f(g_s(x)) and ``start_frame`` = ``"similar"`` (the animation
and the reader's slider call the lambda = 0 frame "similar image g_s(x)", not a
reconstruction). Maps, frames and counterfactual are of the untransformed image. ``explain_batch`` runs every image, its transforms and its frames through
the generators and the classifier in shared batched passes (``max_batch`` images each).

``params["decision"]`` records whether g_s(x) is on the other side of the bundle's threshold
from x (the key ``autoencoder_flips_decision`` is shared with Latent Shift: here the similar
generator is the "autoencoder"), ``params["warnings"]`` says so, and says when g_a(x) does not
cross the threshold (the adversarial generator failed on this image).

Building either explainer for a bundle without trained generators raises
:class:`cfviewer.models.sagen.SAGenMissingError` naming the fix
(``cfviewer train-explainer sagen --bundle DIR``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cfviewer.explain.augment import AffineParams, draw_affines, realign
from cfviewer.explain.base import (
    Explainer,
    Explanation,
    Timer,
    param,
    register,
    to_map,
)
from cfviewer.explain.latentshift.checks import decision_record
from cfviewer.explain.path import path_frames, path_lambdas
from cfviewer.models.data import warp
from cfviewer.models.sagen import load_sagen, sagen_doc


@dataclass(frozen=True)
class SAGenParams(AffineParams):
    """Parameters of ``sagen`` and ``sagen-single`` (module docstring); the transforms'
    ranges are :class:`~cfviewer.explain.augment.AffineParams` (Table II), flips on."""

    n_augment: int = param(10, "N, the random transforms averaged with the plain map (eq. 11; section IV-D: 10)",
                           minimum=0)
    flip: bool = param(True, "random horizontal flips, probability 0.5 (Table II)")
    vflip: bool = param(True, "random vertical flips, probability 0.5 (Table II)")
    n_frames: int = param(10, "frames on the straight path from g_s(x) to g_a(x), both included", minimum=2)
    max_batch: int = param(32, "images per generator / classifier pass (memory vs speed)", minimum=1)


class SAGenExplainer(Explainer):
    """|g_s(x) - g_a(x)| with eq. 11's augmentation averaging (module docstring); parameters:
    :class:`SAGenParams`."""

    name = "sagen"
    Params = SAGenParams

    def validate(self) -> None:
        self.generator = load_sagen(self.bundle)  # raises SAGenMissingError / SAGenStaleError
        doc = sagen_doc(self.bundle)
        training = doc.get("training") or {}
        self.generator_record = {
            "preset": (doc.get("preset") or {}).get("name"),
            "classifier_identity": (doc.get("classifier") or {}).get("identity"),
            "steps": training.get("steps"),
            "stopped": training.get("stopped"),
            "created": doc.get("created"),
        }

    def transforms(self) -> torch.Tensor:
        return draw_affines(self.params, self.params["n_augment"], self.bundle.resolution)

    @torch.no_grad()
    def generate(self, x: torch.Tensor, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(g_s(x), g_a(x)) of N x 1 x R x R images, row i with head pair ``idx[i]``, in passes
        of ``max_batch`` images; also the number of passes."""
        mb = self.params["max_batch"]
        gs, ga = [], []
        for i in range(0, len(x), mb):
            s, a = self.generator(x[i:i + mb], idx[i:i + mb])
            gs.append(s)
            ga.append(a)
        return torch.cat(gs), torch.cat(ga), (len(x) + mb - 1) // mb

    def _explain_tensors(self, x: torch.Tensor, targets: list[str], idx: list[int], **kwargs: Any
                         ) -> list[Explanation]:
        if kwargs:
            raise TypeError(f"{self.method}.explain() got unexpected arguments {sorted(kwargs)}")
        p = self.params
        n, n_aug, k = len(x), p["n_augment"], p["n_frames"]
        timer = Timer()
        with timer("generate"):
            gs, ga, passes_gen = self.generate(x, idx)
            heat = (gs - ga).abs()
        if n_aug:
            with timer("augment"):
                thetas = self.transforms()
                xt = warp(x.repeat_interleave(n_aug, 0), thetas.repeat(n, 1, 1), padding_mode="border")
                ts, ta, passes_aug = self.generate(xt, [t for t in idx for _ in range(n_aug)])
                back, cover = realign((ts - ta).abs(), thetas.repeat(n, 1, 1))
                r = x.shape[-1]
                back = back.view(n, n_aug, 1, r, r).sum(1)
                cover = cover.view(n, n_aug, 1, r, r).sum(1)
                heat = (heat + back) / (1.0 + cover)
                passes_gen += passes_aug
        lambdas = path_lambdas(k)
        with timer("frames"):
            frames = path_frames(gs, ga, lambdas)  # N x K x R x R
            flat = frames.reshape(n * k, 1, *frames.shape[-2:])
            preds, passes_clf = self.predict_in_passes(flat, [t for t in idx for _ in range(k)], self.params["max_batch"])
            preds = preds.reshape(n, k)
        with timer("predict"):
            pred_original, passes0 = self.predict_in_passes(x, idx, self.params["max_batch"])
        timings = {key: v / n for key, v in timer.done().items()}
        thresholds = getattr(self.bundle, "thresholds", None) or {}
        maps = to_map(heat)
        frames_np = to_map(frames.reshape(n * k, *frames.shape[-2:])).reshape(n, k, *frames.shape[-2:])
        out = []
        for i in range(n):
            p0, ps, pa = float(pred_original[i]), float(preds[i, -1]), float(preds[i, 0])
            thr = float(thresholds.get(targets[i], 0.5))
            params = dict(p)
            params["generator"] = dict(self.generator_record)
            params["decision"] = decision_record(p0, ps, thr)
            params["pred_x_s"], params["pred_x_a"] = ps, pa
            params["warnings"] = pair_warnings(p0, ps, pa, thr)
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
                pred_reconstruction=ps,
                start_frame="similar",
                params=params,
                timings=dict(timings),
                evaluations={
                    "generator": 1 + n_aug,
                    "classifier": 1 + k,
                    "backward": 0,
                    "passes": passes_gen + passes_clf + passes0,
                    "augment_images": n_aug,
                    "frame_images": k,
                },
            ))
        return out


def pair_warnings(pred_original: float, pred_s: float, pred_a: float, threshold: float) -> list[str]:
    """Sentences for ``params["warnings"]``: g_s(x) not classified like x, g_a(x) not across."""
    side = {True: "positive", False: "negative"}
    pos = pred_original >= threshold
    out = []
    if (pred_s >= threshold) != pos:
        out.append(
            f"the similar image g_s(x) (p = {pred_s:.3f}) is {side[pred_s >= threshold]} at the bundle's "
            f"threshold {threshold:.3f} but x (p = {pred_original:.3f}) is {side[pos]}: the frames start "
            "from an image the model already decides otherwise (Charachon et al. 2020, section III-A)")
    if (pred_a >= threshold) == pos:
        out.append(
            f"the adversarial image g_a(x) (p = {pred_a:.3f}) is still {side[pos]} at the bundle's threshold "
            f"{threshold:.3f}: the generator did not flip the decision on this image, so the map shows a change "
            "that moves the prediction, not one that changes the decision")
    return out


register("sagen", SAGenExplainer)
register("sagen-single", SAGenExplainer, n_augment=0)

__all__ = ["SAGenExplainer", "SAGenParams", "pair_warnings", "path_frames", "path_lambdas"]
