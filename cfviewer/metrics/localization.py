"""Localisation of an attribution map against a pixel-exact ground-truth mask.

Every function takes a 2D map (larger = more important, as in ``Explanation.map``) and a
boolean mask of the same shape. Binarisation keeps an exact number of pixels: ties at the
threshold are broken at random with a fixed seed, so a constant map scores at chance level
instead of selecting the whole image or its top rows.

References
----------
- Top-p IoU: Cohen et al., "Gifsplanation via Latent Shift" (MIDL 2022): the map is
  binarised at the percentile that keeps as many pixels as the ground-truth mask holds, then
  compared with the mask by IoU. IoU at fixed percentiles (80/90/95/98) is reported alongside.
- AUC_loc: Charachon et al., "Combining similarity and adversarial learning to generate
  visual explanation" (ICPR 2020) and "Leveraging conditional generative models in a general
  explanation framework of classifier decisions" (2022): the map used as a pixel score for
  "inside the mask", summarised by the ROC AUC (here by the rank / Mann-Whitney formula).
- Weak localisation: the protocol of Fong & Vedaldi, "Interpretable explanations of black
  boxes by meaningful perturbation" (ICCV 2017), which Charachon et al. reuse: threshold the
  map at ``alpha`` of its range, take the tightest bounding box around the kept pixels and
  count a hit when its IoU with the ground truth's bounding box is at least 0.5.
- Pointing game: Zhang et al., "Top-down neural attention by excitation backprop"
  (ECCV 2016): a hit when the map's maximum falls inside the mask (optionally dilated by a
  tolerance in pixels).
- Hausdorff distance between the top-p binarised map and the mask, symmetric, in pixels
  (scipy.spatial.distance.directed_hausdorff both ways).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.distance import directed_hausdorff
from scipy.stats import rankdata

from cfviewer.metrics._checks import MetricInputError, as_map, as_mask

PERCENTILES: tuple[float, ...] = (80.0, 90.0, 95.0, 98.0)
"""Fixed percentiles for :func:`iou_at_percentiles` (keep the top 20 / 10 / 5 / 2 %)."""

_TIE_SEED = 0


def _tie_breaker(n: int) -> np.ndarray:
    return np.random.default_rng(_TIE_SEED).random(n)


def binarize_top_k(attr_map: np.ndarray, k: int) -> np.ndarray:
    """Bool mask of exactly ``k`` pixels: the ``k`` largest map values (random tie-break)."""
    a = as_map(attr_map)
    n = a.size
    if not 1 <= k <= n:
        raise MetricInputError(f"k={k} pixels must lie in [1, {n}] for a map of shape {a.shape}")
    order = np.lexsort((_tie_breaker(n), -a.ravel()))  # by value descending, then random
    out = np.zeros(n, dtype=bool)
    out[order[:k]] = True
    return out.reshape(a.shape)


def binarize_top_share(attr_map: np.ndarray, share: float) -> np.ndarray:
    """Keep the top ``share`` (0 < share <= 1) of the pixels; at least one pixel."""
    a = np.asarray(attr_map)
    if not 0.0 < share <= 1.0:
        raise MetricInputError(f"share={share} must lie in (0, 1]")
    k = max(1, int(round(share * a.size)))
    return binarize_top_k(a, k)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def iou_top_p(attr_map: np.ndarray, mask: np.ndarray) -> float:
    """IoU of the mask with the map binarised at p = the mask's share of pixels (Latent Shift)."""
    a = as_map(attr_map)
    m = as_mask(mask, a.shape)
    return iou(binarize_top_k(a, int(m.sum())), m)


def iou_at_percentiles(
    attr_map: np.ndarray, mask: np.ndarray, percentiles: tuple[float, ...] = PERCENTILES
) -> dict[float, float]:
    """IoU of the mask with the map binarised at each percentile q (top (100 - q) % kept)."""
    a = as_map(attr_map)
    m = as_mask(mask, a.shape)
    out: dict[float, float] = {}
    for q in percentiles:
        if not 0.0 <= q < 100.0:
            raise MetricInputError(f"percentile {q} must lie in [0, 100)")
        out[float(q)] = iou(binarize_top_share(a, 1.0 - q / 100.0), m)
    return out


def hausdorff_distance(attr_map: np.ndarray, mask: np.ndarray) -> float:
    """Symmetric Hausdorff distance in pixels between the top-p binarised map and the mask.

    p is the mask's share of pixels (as for :func:`iou_top_p`), so both point sets have the
    same size; 0 means identical regions.
    """
    a = as_map(attr_map)
    m = as_mask(mask, a.shape)
    b = binarize_top_k(a, int(m.sum()))
    u = np.argwhere(b).astype(np.float64)
    v = np.argwhere(m).astype(np.float64)
    return float(max(directed_hausdorff(u, v, seed=0)[0], directed_hausdorff(v, u, seed=0)[0]))


def auc_loc(attr_map: np.ndarray, mask: np.ndarray) -> float:
    """ROC AUC of the map as a score for "pixel inside the mask" (Charachon et al.).

    Mann-Whitney form with average ranks for ties: 1 = every mask pixel scores above every
    other pixel, 0 = the reverse, 0.5 = chance (and any constant map).
    """
    a = as_map(attr_map)
    m = as_mask(mask, a.shape).ravel()
    ranks = rankdata(a.ravel())
    n_pos = int(m.sum())
    n_neg = m.size - n_pos
    u = ranks[m].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _bbox(region: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def _box_iou(b1: tuple[int, int, int, int], b2: tuple[int, int, int, int]) -> float:
    r0, r1 = max(b1[0], b2[0]), min(b1[1], b2[1])
    c0, c1 = max(b1[2], b2[2]), min(b1[3], b2[3])
    inter = max(0, r1 - r0 + 1) * max(0, c1 - c0 + 1)
    area = lambda b: (b[1] - b[0] + 1) * (b[3] - b[2] + 1)  # noqa: E731
    return float(inter / (area(b1) + area(b2) - inter))


@dataclass(frozen=True)
class WeakLocalization:
    hit: bool
    box_iou: float
    box: tuple[int, int, int, int]
    """(row0, row1, col0, col1) of the thresholded map, inclusive."""


def weak_localization(
    attr_map: np.ndarray, mask: np.ndarray, alpha: float = 0.5, iou_threshold: float = 0.5
) -> WeakLocalization:
    """Weak localisation (Fong & Vedaldi 2017, as used by Charachon et al.).

    Keep the pixels with ``map >= min + alpha * (max - min)`` ("value thresholding"), take the
    tightest bounding box around them and compare it with the mask's bounding box: a hit
    when their IoU is at least ``iou_threshold`` (0.5, the usual detection criterion).
    """
    a = as_map(attr_map)
    m = as_mask(mask, a.shape)
    if not 0.0 <= alpha <= 1.0:
        raise MetricInputError(f"alpha={alpha} must lie in [0, 1]")
    lo, hi = float(a.min()), float(a.max())
    region = a >= lo + alpha * (hi - lo)
    box = _bbox(region)
    biou = _box_iou(box, _bbox(m))
    return WeakLocalization(hit=biou >= iou_threshold, box_iou=biou, box=box)


def pointing_game(attr_map: np.ndarray, mask: np.ndarray, tolerance: int = 0) -> bool:
    """Whether the map's maximum lies in the mask dilated by ``tolerance`` pixels (Zhang et al.).

    Several maxima: one of them is picked at random with a fixed seed.
    """
    a = as_map(attr_map)
    m = as_mask(mask, a.shape)
    if tolerance < 0:
        raise MetricInputError(f"tolerance={tolerance} must be >= 0 pixels")
    if tolerance:
        m = ndimage.distance_transform_edt(~m) <= tolerance
    flat = a.ravel()
    maxima = np.flatnonzero(flat == flat.max())
    pick = maxima[int(_tie_breaker(1)[0] * len(maxima))]
    return bool(m.ravel()[pick])


def localization_scores(attr_map: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Every localisation score of one map against one mask, as a flat dict of floats."""
    a = as_map(attr_map)
    m = as_mask(mask, a.shape)
    out: dict[str, float] = {
        "iou_top_p": iou_top_p(a, m),
        "auc_loc": auc_loc(a, m),
        "hausdorff": hausdorff_distance(a, m),
        "weak_loc": float(weak_localization(a, m).hit),
        "pointing": float(pointing_game(a, m)),
    }
    for q, v in iou_at_percentiles(a, m).items():
        out[f"iou_p{int(q)}"] = v
    return out
