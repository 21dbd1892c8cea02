"""Does a counterfactual change the finding, or is it an adversarial perturbation?

A counterfactual explanation (the most shifted Latent Shift frame, a generator's adversarial
image, an inpainted healthy image) is useful to a radiologist only if what it changes is the
finding. On phantoms the finding's pixel mask is known, so this is measurable:

- ``drop``: prediction on the starting image minus prediction on the counterfactual. For
  Latent Shift the start is the lambda = 0 frame (the reconstruction D(E(x))), as in the
  paper's animation: the reconstruction's own prediction change is Appendix K's business.
- ``share_inside``: the share of the total absolute change |x_cf - x_0| that lies inside the
  finding's mask dilated by ``dilate`` x the image side (4 % by default, a few pixels of
  tolerance for the finding's blurred edge).
- ``mean_inside``: the mean absolute change inside the (undilated) mask, in grey levels of 255
  over the full [-1024, 1024] range (the 8-bit display a reader sees without windowing). For a
  finding that is a *size* (:data:`SIZE_FINDINGS`: Cardiomegaly, whose mask is the whole heart
  silhouette) the evidence is the border, not the interior: a counterfactual that shrinks the
  heart changes only the band inside its outline, so the mean is taken over that band, the
  mask minus its erosion by the same ``dilate`` x side (:func:`evidence_region`). Over the
  whole silhouette a heart whose border moves in by several pixels would score a few grey
  levels, like a heart that does not change.
- ``visible``: the counterfactual visibly removes the finding: ``mean_inside >= 8`` grey levels,
  ``share_inside >= 0.4`` and ``drop >= 0.3`` (the thresholds of issue 10, chosen so that a
  reader comparing the two images sees the finding fade and little else change).

:func:`counterfactual_change` scores one pair; :func:`summarise` aggregates per pathology.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
from scipy.ndimage import binary_dilation

GREY_PER_UNIT = 255.0 / 2048.0
"""8-bit grey levels per intensity unit over the full [-1024, 1024] range."""

VISIBLE_MEAN_INSIDE = 8.0
VISIBLE_SHARE_INSIDE = 0.4
VISIBLE_DROP = 0.3
DILATE_FRACTION = 0.04
SIZE_FINDINGS = frozenset({"Cardiomegaly"})
"""Findings whose mask is an organ's silhouette and whose evidence is its size (its border)."""


@dataclass(frozen=True)
class CounterfactualScore:
    drop: float
    share_inside: float
    mean_inside: float
    mean_outside: float
    visible: bool

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def dilate_mask(mask: np.ndarray, fraction: float = DILATE_FRACTION) -> np.ndarray:
    """The mask grown by ``fraction`` of the image side (a disc, at least one pixel)."""
    mask = np.asarray(mask, bool)
    r = max(1, int(round(fraction * max(mask.shape))))
    return binary_dilation(mask, structure=_disc(r))


def _disc(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy ** 2 + xx ** 2) <= r * r


def evidence_region(mask: np.ndarray, target: str | None, dilate: float = DILATE_FRACTION) -> np.ndarray:
    """Where ``mean_inside`` is measured: the mask, or for a size finding
    (:data:`SIZE_FINDINGS`) the band inside its outline, ``dilate`` x the side wide."""
    mask = np.asarray(mask, bool)
    if target not in SIZE_FINDINGS:
        return mask
    from scipy.ndimage import binary_erosion

    r = max(1, int(round(dilate * max(mask.shape))))
    band = mask & ~binary_erosion(mask, structure=_disc(r))
    return band if band.any() else mask


def counterfactual_change(start: np.ndarray, counterfactual: np.ndarray, mask: np.ndarray,
                          pred_start: float, pred_counterfactual: float,
                          dilate: float = DILATE_FRACTION, target: str | None = None) -> CounterfactualScore:
    """Score one counterfactual against the finding's mask (all arrays the same R x R shape,
    images in [-1024, 1024]); ``target`` names the finding (a size finding's ``mean_inside``
    is taken over its border band, :func:`evidence_region`)."""
    start = np.asarray(start, np.float64)
    cf = np.asarray(counterfactual, np.float64)
    mask = np.asarray(mask, bool)
    if start.shape != cf.shape or start.shape != mask.shape:
        raise ValueError(f"counterfactual_change: shapes differ: start {start.shape}, "
                         f"counterfactual {cf.shape}, mask {mask.shape}")
    if not mask.any():
        raise ValueError("counterfactual_change: the finding mask is empty")
    diff = np.abs(cf - start)
    total = float(diff.sum())
    wide = dilate_mask(mask, dilate)
    share = float(diff[wide].sum() / total) if total > 0 else 0.0
    inside = float(diff[evidence_region(mask, target, dilate)].mean() * GREY_PER_UNIT)
    outside = float(diff[~wide].mean() * GREY_PER_UNIT) if (~wide).any() else 0.0
    drop = float(pred_start - pred_counterfactual)
    visible = inside >= VISIBLE_MEAN_INSIDE and share >= VISIBLE_SHARE_INSIDE and drop >= VISIBLE_DROP
    return CounterfactualScore(drop=drop, share_inside=share, mean_inside=inside,
                               mean_outside=outside, visible=bool(visible))


def score_explanation(explanation, mask: np.ndarray, dilate: float = DILATE_FRACTION) -> CounterfactualScore | None:
    """Score an :class:`~cfviewer.explain.base.Explanation` by its frames: the lambda = 0 frame
    (the start) against ``frames[0]``, the counterfactual (``Explanation.summary``'s
    ``pred_counterfactual`` is ``frame_preds[0]``). None when it has no frames: every explainer
    with a counterfactual gives the path to it as frames for the reader's animation."""
    e = explanation
    if e.frames is None or len(e.frames) < 2 or e.frame_preds is None:
        return None
    i0 = int(np.argmin(np.abs(np.asarray(e.lambdas)))) if e.lambdas is not None else len(e.frames) - 1
    return counterfactual_change(e.frames[i0], e.frames[0], mask, float(e.frame_preds[i0]),
                                 float(e.frame_preds[0]), dilate, target=e.target)


def summarise(scores: Iterable[CounterfactualScore]) -> dict[str, float]:
    """Means over cases, plus the visible rate and the count."""
    rows = list(scores)
    if not rows:
        return {"n": 0, "drop": float("nan"), "share_inside": float("nan"),
                "mean_inside": float("nan"), "mean_outside": float("nan"), "visible_rate": float("nan")}
    return {
        "n": len(rows),
        "drop": float(np.mean([r.drop for r in rows])),
        "share_inside": float(np.mean([r.share_inside for r in rows])),
        "mean_inside": float(np.mean([r.mean_inside for r in rows])),
        "mean_outside": float(np.mean([r.mean_outside for r in rows])),
        "visible_rate": float(np.mean([r.visible for r in rows])),
    }
