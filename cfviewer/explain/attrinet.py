"""Attri-Net's own explanation: the class attribution map M_c(x) and its counterfactual
x + M_c(x) (Sun et al., MIDL 2023, section 2.1 and Appendix A.1; the model is
:mod:`cfviewer.models.attrinet`).

Unlike the post-hoc methods this explains nothing from outside: the prediction of class c *is*
a logistic regression on the pooled M_c(x) (eq. 3), so the map is the model's evidence.

* ``attrinet``: map = |M_c(x)| in grey levels (the magnitude a localisation metric scores);
  ``abs=False`` gives the signed -M_c(x): positive where removing class c darkens the film (bright
  evidence such as a mass, an effusion, an enlarged heart), negative where it brightens it (dark
  evidence such as the air of a pneumothorax).
* The counterfactual is x + M_c(x) (the image "indistinguishable from images not containing
  class c" that the WGAN critic was trained for), clipped to the film range; ``frames`` run on the
  straight path x(lambda) = x - lambda M_c(x) for ``lambdas = linspace(-1, 0, n_frames)``
  (increasing, as Latent Shift's): ``frames[0]`` is the counterfactual, ``frames[-1]`` = x, so the
  reader page shows the same toggle and animation; ``frame_preds`` are Attri-Net's own
  probabilities of c on each frame (its map of each frame, pooled and regressed).
  ``pred_reconstruction`` is None: no autoencoder stands between x and the frames.
* ``params["logit_terms"]`` gives the pooled map, the regression weights and the bias of class c
  (the whole decision, eq. 3), and ``params["warnings"]`` says when the counterfactual does not
  cross the threshold.

Building it for a bundle whose classifier is not an Attri-Net raises a :class:`BundleError`
naming the fix (post-hoc methods explain those); the post-hoc methods that need parts an
Attri-Net bundle lacks (an autoencoder, a Grad-CAM layer) raise theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cfviewer.errors import BundleError
from cfviewer.explain.base import Explainer, Explanation, ExplainerParams, Timer, param, register, to_map
from cfviewer.explain.path import path_lambdas
from cfviewer.models.attrinet import INPUT_SCALE, is_attrinet, to_grey_levels


@dataclass(frozen=True)
class AttriNetParams(ExplainerParams):
    """Parameters of ``attrinet`` (module docstring)."""

    abs: bool = param(True, "map = |M_c(x)| (True) or the signed -M_c(x): positive where removing the class "
                            "darkens the film (False)")
    n_frames: int = param(10, "frames on the straight path from x + M_c(x) to x, both included", minimum=2)
    max_batch: int = param(32, "images per Attri-Net pass (memory vs speed)", minimum=1)


class AttriNetExplainer(Explainer):
    """M_c(x) of an Attri-Net bundle (module docstring); parameters: :class:`AttriNetParams`."""

    name = "attrinet"
    Params = AttriNetParams

    def validate(self) -> None:
        clf = getattr(self.bundle, "classifier", None)
        if not is_attrinet(clf):
            raise BundleError(
                f"explainer {self.method!r} shows an Attri-Net's own class maps, but this bundle's classifier is "
                f"{type(clf).__name__} (a post-hoc model with no maps of its own); load an Attri-Net bundle "
                "(study_data/demo/attrinet, or train one with `cfviewer train-attrinet --out DIR`) or choose a "
                "post-hoc method (gradient, guided_backprop, integrated_gradients, gradcam, latentshift, ...)")

    @torch.no_grad()
    def _maps(self, x: torch.Tensor, idx: list[int]) -> tuple[torch.Tensor, int]:
        mb = self.params["max_batch"]
        out = [self.bundle.classifier.class_maps(x[i:i + mb], idx[i:i + mb]) for i in range(0, len(x), mb)]
        return torch.cat(out), (len(x) + mb - 1) // mb

    def _explain_tensors(self, x: torch.Tensor, targets: list[str], idx: list[int], **kwargs: Any
                         ) -> list[Explanation]:
        if kwargs:
            raise TypeError(f"{self.method}.explain() got unexpected arguments {sorted(kwargs)}")
        p = self.params
        n, k = len(x), p["n_frames"]
        clf = self.bundle.classifier
        timer = Timer()
        with timer("maps"):
            m01, passes_map = self._maps(x, idx)
            m = to_grey_levels(m01)  # N x 1 x R x R, grey levels
            heat = m.abs() if p["abs"] else -m
        lambdas = path_lambdas(k)
        with timer("frames"):
            lam = torch.as_tensor(lambdas, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            frames = (x - lam * m).clamp(-INPUT_SCALE, INPUT_SCALE)  # N x K x R x R
            flat = frames.reshape(n * k, 1, *frames.shape[-2:])
            preds, passes_clf = self.predict_in_passes(flat, [t for t in idx for _ in range(k)], self.params["max_batch"])
            preds = preds.reshape(n, k)
        with timer("predict"), torch.no_grad():
            kk = torch.as_tensor(idx, device=x.device)
            pooled = clf.head.pooled(m01)
            logits = clf.head(m01, kk)
            pred_original = torch.sigmoid(logits).double().cpu().numpy()
        timings = {key: v / n for key, v in timer.done().items()}
        thresholds = getattr(self.bundle, "thresholds", None) or {}
        maps = to_map(heat)
        frames_np = to_map(frames.reshape(n * k, *frames.shape[-2:])).reshape(n, k, *frames.shape[-2:])
        grid = clf.head.grid
        out = []
        for i in range(n):
            c = idx[i]
            p0, pc = float(pred_original[i]), float(preds[i, 0])
            thr = float(thresholds.get(targets[i], 0.5))
            params = dict(p)
            params["logit_terms"] = {
                "pooled_map": pooled[i].reshape(grid, grid).cpu().numpy().round(6).tolist(),
                "weights": clf.head.weight[c].reshape(grid, grid).detach().cpu().numpy().round(6).tolist(),
                "bias": float(clf.head.bias[c].detach()),
                "calibration": [float(clf.head.calib_scale[c].detach()), float(clf.head.calib_bias[c].detach())],
                "logit": float(logits[i].detach()),
                "pool": int(clf.head.pool),
            }
            params["pred_counterfactual"] = pc
            params["warnings"] = counterfactual_warnings(p0, pc, thr)
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
                evaluations={"generator": 1 + k, "classifier": 1 + k, "backward": 0,
                             "passes": passes_map + passes_clf, "frame_images": k},
            ))
        return out


def counterfactual_warnings(pred_original: float, pred_counterfactual: float, threshold: float) -> list[str]:
    """A sentence when x + M_c(x) stays on the side of the threshold that x is on (positives)."""
    if pred_original >= threshold and pred_counterfactual >= threshold:
        return [f"the counterfactual x + M_c(x) is still positive (p = {pred_counterfactual:.3f} at the bundle's "
                f"threshold {threshold:.3f}): Attri-Net's map of the counterfactual still carries evidence for the "
                "class, so the map shows what the model weighs, not everything it would take to remove it"]
    return []


register("attrinet", AttriNetExplainer)
register("attrinet-signed", AttriNetExplainer, abs=False)

__all__ = ["AttriNetExplainer", "AttriNetParams", "counterfactual_warnings", "path_lambdas"]
