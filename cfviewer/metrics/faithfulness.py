"""Faithfulness by deletion: remove the most important pixels first and watch the score fall.

The deletion curve (most-relevant-first, "MoRF") removes the top k % of pixels ranked by the
map, for k on a grid from 0 to 100 %, replacing them by a baseline, and records the model's
probability for the target. AOPC, the area over the perturbation curve of Samek et al.,
"Evaluating the visualization of what a deep neural network has learned" (IEEE TNNLS 2017),
is the mean drop from the unperturbed score over the L + 1 steps::

    AOPC = 1 / (L + 1) * sum_{k=0..L} ( f(x^(0)) - f(x^(k)) )

Larger AOPC = the map ranks decisive pixels first. Samek et al. perturb 9 x 9 regions with
uniform noise; here single pixels are replaced by a baseline (a blurred copy of the image by
default, which removes local structure such as a mass without adding out-of-distribution
noise; the image mean or a constant are also available). Compare methods against the AOPC of
a random ranking (:func:`random_map`) on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from cfviewer.metrics._checks import MetricInputError, as_map

PredictFn = Callable[[np.ndarray], np.ndarray]
"""images N x H x W (model space) -> probabilities N x C (e.g. ``bundle.predict``)."""

DEFAULT_FRACTIONS: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 3))


def make_baseline(image: np.ndarray, baseline: str | float | np.ndarray = "blur",
                  blur_sigma: float | None = None) -> np.ndarray:
    """The replacement values for deleted pixels.

    "blur": Gaussian blur with sigma = ``blur_sigma`` (default: 1/20 of the image side);
    "mean": the image mean; a number: that constant; an array: used as is.
    """
    img = np.asarray(image, dtype=np.float32)
    if isinstance(baseline, np.ndarray):
        if baseline.shape != img.shape:
            raise MetricInputError(
                f"baseline shape {baseline.shape} differs from the image shape {img.shape}"
            )
        return baseline.astype(np.float32)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return np.full_like(img, float(baseline))
    if baseline == "blur":
        sigma = blur_sigma if blur_sigma is not None else max(img.shape) / 20.0
        return ndimage.gaussian_filter(img, sigma=sigma, mode="reflect").astype(np.float32)
    if baseline == "mean":
        return np.full_like(img, float(img.mean()))
    raise MetricInputError(
        f"unknown deletion baseline {baseline!r}: use 'blur', 'mean', a number or an array"
    )


def deletion_order(attr_map: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices, most important first (ties broken at random with ``seed``)."""
    a = as_map(attr_map).ravel()
    tie = np.random.default_rng(seed).random(a.size)
    return np.lexsort((tie, -a))


def random_map(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A map of i.i.d. uniform scores: the random-ranking reference for deletion / AOPC."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@dataclass(frozen=True)
class DeletionCurves:
    fractions: np.ndarray
    """Shares of pixels removed, length L + 1, starting at 0."""
    scores: np.ndarray
    """N x (L + 1) probabilities of the target after each deletion step."""

    @property
    def aopc(self) -> np.ndarray:
        """Per-image AOPC (Samek et al.): mean over steps of score[0] - score[k]."""
        return np.mean(self.scores[:, :1] - self.scores, axis=1)

    @property
    def auc(self) -> np.ndarray:
        """Per-image area under the deletion curve (Petsiuk et al., RISE): lower = better."""
        return np.trapezoid(self.scores, self.fractions, axis=1)


def deletion_curves(
    predict: PredictFn,
    images: np.ndarray,
    maps: np.ndarray,
    target_indices: Sequence[int] | np.ndarray,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    baseline: str | float | np.ndarray = "blur",
    batch_size: int = 32,
    seeds: Sequence[int] | None = None,
) -> DeletionCurves:
    """Deletion curves of N images (N x H x W) with their maps, in batched model calls.

    ``target_indices[i]`` is the output column of image i's target. The first fraction must
    be 0 so that AOPC is measured from the unperturbed score. ``seeds[i]`` breaks image i's
    ties in the deletion order (default: i), so a subset keeps the curves of the whole set.
    """
    imgs = np.asarray(images, dtype=np.float32)
    if imgs.ndim == 2:
        imgs = imgs[None]
    mps = np.asarray(maps)
    if mps.ndim == 2:
        mps = mps[None]
    if imgs.shape != mps.shape:
        raise MetricInputError(f"images {imgs.shape} and maps {mps.shape} must have one shape")
    targets = np.asarray(target_indices, dtype=int).reshape(-1)
    if len(targets) != len(imgs):
        raise MetricInputError(f"{len(targets)} targets for {len(imgs)} images")
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr[0] != 0.0 or np.any(np.diff(fr) <= 0) or fr[-1] > 1.0:
        raise MetricInputError(f"fractions {list(fr)} must start at 0, increase, and end <= 1")
    if batch_size < 1:
        raise MetricInputError(f"batch_size={batch_size} must be >= 1")

    n, h, w = imgs.shape
    counts = np.round(fr * h * w).astype(int)

    def perturbed():  # yields (image index, step index, perturbed image) lazily
        for i in range(n):
            order = deletion_order(mps[i], seed=i if seeds is None else int(seeds[i]))
            base = make_baseline(imgs[i], baseline).ravel()
            flat = imgs[i].ravel().copy()
            done = 0
            for s, k in enumerate(counts):
                idx = order[done:k]
                flat[idx] = base[idx]
                done = k
                yield i, s, flat.reshape(h, w).copy()

    scores = np.empty((n, len(fr)), dtype=np.float64)
    batch: list[tuple[int, int, np.ndarray]] = []

    def flush() -> None:
        probs = np.asarray(predict(np.stack([b[2] for b in batch])))
        for row, (i, s, _) in enumerate(batch):
            scores[i, s] = probs[row, targets[i]]
        batch.clear()

    for item in perturbed():
        batch.append(item)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return DeletionCurves(fractions=fr, scores=scores)


def aopc(
    predict: PredictFn,
    image: np.ndarray,
    attr_map: np.ndarray,
    target_index: int,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    baseline: str | float | np.ndarray = "blur",
) -> float:
    """AOPC of one map on one image (see :func:`deletion_curves`)."""
    curves = deletion_curves(predict, image, attr_map, [target_index], fractions, baseline)
    return float(curves.aopc[0])
