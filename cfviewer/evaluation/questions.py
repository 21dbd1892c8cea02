"""One function per evaluation question, each returning a typed result.

Every question scores maps (N x R x R, larger = more important) that the runner
(:mod:`cfviewer.evaluation.runner`) produced for a list of cases, with :mod:`cfviewer.metrics`:

1. :func:`localisation` -- do the maps point at the finding? (top-p IoU, AUC_loc, Hausdorff,
   fixed-percentile IoU, weak localisation, pointing; per case)
2. :func:`faithfulness` -- do the pixels the map ranks first drive the score? (deletion curve,
   AOPC)
3. :func:`randomisation` -- does the map depend on the model? (cascading randomisation)
4. :func:`confounder` -- does the map reveal the chest-tube shortcut behind a false positive?
5. :func:`class_specificity` -- is the map specific to the class? (Attri-Net protocol: the
   model's own most confident true positive and three most confident true negatives, each
   explained on its own; share of the grid's |attribution| on the true positive)
6. :func:`speed` -- milliseconds and image evaluations per explanation.
7. :func:`counterfactual` -- does the counterfactual (Latent Shift's most shifted frame, a
   generator's or an inpainter's image) change the finding, or is it an adversarial
   perturbation? (:mod:`cfviewer.metrics.counterfactual`; only explainers that return frames
   or a counterfactual)

The chance level of questions 1, 2, 4 and 5 is the same function applied to random maps
(:func:`cfviewer.metrics.random_map`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cfviewer.evaluation.cases import Case, Grid
from cfviewer.metrics import (
    cascading_randomization,
    class_sensitivity_score,
    confounder_mass,
    deletion_curves,
    localization_scores,
)


# ---------------------------------------------------------------------- 1. localisation
@dataclass
class Localisation:
    """Per-case localisation scores (``cfviewer.metrics.localization_scores`` keys)."""

    scores: list[dict[str, float]] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    case_ids: list[str] = field(default_factory=list)

    def values(self, key: str) -> np.ndarray:
        """One score (e.g. ``"auc_loc"``) over the cases, in case order."""
        return np.array([d[key] for d in self.scores], dtype=float)

    def __len__(self) -> int:
        return len(self.scores)


def localisation(maps: Sequence[np.ndarray], cases: Sequence[Case]) -> Localisation:
    """Scores of each map against its case's ground-truth mask."""
    out = Localisation()
    for c, m in zip(cases, maps):
        out.scores.append(localization_scores(m, c.mask))
        out.targets.append(c.target)
        out.case_ids.append(c.uid)
    return out


# ---------------------------------------------------------------------- 2. faithfulness
@dataclass
class Faithfulness:
    """Deletion curves: pixels removed most-important-first, target probability re-predicted."""

    aopc: np.ndarray
    """Per case: mean drop from the unperturbed probability over the steps (higher = more faithful)."""
    deletion_auc: np.ndarray
    """Per case: area under the probability curve (lower = better)."""
    mean_curve: np.ndarray
    """Mean probability at each removed fraction (steps + 1 values, 0 % first)."""


def faithfulness(bundle: Any, cases: Sequence[Case], maps: np.ndarray, steps: int) -> Faithfulness:
    """Deletion curves in ``steps`` equal steps with a blurred-image baseline (the phantoms are
    generated at the model resolution)."""
    fractions = np.linspace(0.0, 1.0, steps + 1)
    targets = np.array([bundle.target_index(c.target) for c in cases])
    images = np.stack([c.image for c in cases])
    n_out = len(bundle.pathologies)
    scores = np.empty((len(cases), len(fractions)))
    aopc, auc = np.empty(len(cases)), np.empty(len(cases))
    for t in np.unique(targets):  # one target per pass: the model is asked for that output only

        def predict(x: np.ndarray, t: int = int(t)) -> np.ndarray:
            out = np.full((len(x), n_out), np.nan, dtype=np.float32)
            out[:, t] = bundle.predict_class(x, t)
            return out

        rows = np.flatnonzero(targets == t)
        curves = deletion_curves(predict, images[rows], maps[rows], targets[rows], fractions,
                                 baseline="blur", batch_size=32, seeds=rows)
        scores[rows], aopc[rows], auc[rows] = curves.scores, curves.aopc, curves.auc
    return Faithfulness(aopc=aopc, deletion_auc=auc, mean_curve=scores.mean(axis=0))


# ---------------------------------------------------------------------- 3. randomisation
@dataclass
class Randomisation:
    """Cascading randomisation (Adebayo et al.): Spearman correlation of |map| with the trained
    model's map after each cumulative block reset."""

    steps: list[str]
    correlations: np.ndarray
    """(len(steps) x cases); row 0 is the trained model (1.0), NaN = the map became constant."""


def randomisation(bundle: Any, explain_with: Callable[[Any], np.ndarray], seed: int) -> Randomisation:
    """``explain_with(bundle_state)`` returns the maps of the same cases for each model state."""
    curve = cascading_randomization(bundle, explain_with, seed=seed)
    return Randomisation(steps=list(curve.steps), correlations=curve.correlations)


# ---------------------------------------------------------------------- 4. confounder
@dataclass
class Confounder:
    """Attribution mass on the chest tube of tube-only pneumothorax false positives."""

    mass: np.ndarray
    """Per case: share of the map's positive mass on the tube mask (NaN = no positive mass)."""
    ratio: np.ndarray
    """Per case: mass / the tube's share of the image (1 = no preference for the tube)."""

    @property
    def empty(self) -> int:
        """Maps with no positive attribution (left out of the means)."""
        return int(np.isnan(self.mass).sum())


def confounder(maps: Sequence[np.ndarray], tube_cases: Sequence[Case]) -> Confounder:
    mass = np.array([confounder_mass(m, c.mask) for m, c in zip(maps, tube_cases)])
    return Confounder(mass=mass, ratio=mass / np.array([c.mask.mean() for c in tube_cases]))


# ---------------------------------------------------------------------- 5. class specificity
@dataclass
class ClassSpecificity:
    """Class sensitivity on the grids of :func:`cfviewer.evaluation.cases.make_grids` (Attri-Net
    protocol: one true positive + three true negatives of the model, each explained alone)."""

    share: np.ndarray
    """Per grid: sum |map| over the true positive / sum |map| over the four images (0.25 =
    chance; 0 when all four maps are zero)."""
    tp_largest: np.ndarray
    """Per grid: 1.0 when the true positive's total |map| is the largest of the four."""
    targets: list[str] = field(default_factory=list)
    """Per grid: the pathology explained."""

    def by_pathology(self) -> dict[str, float]:
        """Mean share per pathology (grid order), plus ``"all"`` (mean over all grids)."""
        tg = np.array(self.targets)
        out = {t: float(self.share[tg == t].mean()) for t in dict.fromkeys(self.targets)}
        out["all"] = float(self.share.mean()) if len(self.share) else float("nan")
        return out

    def __len__(self) -> int:
        return len(self.share)


def class_specificity(maps: Sequence[np.ndarray], grids: Sequence[Grid]) -> ClassSpecificity:
    """``maps``: the maps of every grid's images, grid after grid, in ``Grid.cases`` order."""
    n_maps = sum(len(g.cases) for g in grids)
    if len(maps) != n_maps:
        raise ValueError(f"class_specificity: {len(maps)} maps for {len(grids)} grids of "
                         f"{n_maps} images in all")
    scores, k = [], 0
    for g in grids:
        scores.append(class_sensitivity_score(maps[k : k + len(g.cases)], g.positive_index))
        k += len(g.cases)
    return ClassSpecificity(share=np.array([s.share for s in scores], dtype=float),
                            tp_largest=np.array([s.positive_largest for s in scores], dtype=float),
                            targets=[g.target for g in grids])


# ---------------------------------------------------------------------- 6. speed
@dataclass
class Speed:
    """What one explanation costs on this machine."""

    ms_single: list[float] = field(default_factory=list)
    """Wall-clock ms of single-image ``explain()`` calls (what ``cfviewer explain`` waits)."""
    ms_single_cpu: list[float] = field(default_factory=list)
    """Process CPU ms of the same calls (all threads): robust to other jobs on the machine."""
    ms_batched: float | None = None
    """CPU ms per explanation amortised over ``explain_batch`` (the method's own part)."""
    evaluations: dict[str, float] = field(default_factory=dict)
    """Mean image evaluations per explanation (``Explanation.evaluations``)."""
    shared_check: float | None = None
    """Max |map difference| / max |map| between the maps the runner used (shared Latent Shift
    frames) and the method's own ``explain()`` (0 = identical); None when not shared."""


def speed(explainer: Any, cases: Sequence[Case], maps: np.ndarray | None = None,
          ms_batched: float | None = None, on_case: Callable[[], None] | None = None) -> Speed:
    """Time ``explainer.explain`` on each case and average its evaluation counts; with ``maps``
    (the runner's maps of the same cases) also the largest relative deviation from them."""
    out = Speed(ms_batched=ms_batched)
    ev_sum: dict[str, float] = {}
    dev = 0.0
    for j, c in enumerate(cases):
        t1, c1 = time.perf_counter(), time.process_time()
        e = explainer.explain(c.image, c.target)
        out.ms_single.append(1000.0 * (time.perf_counter() - t1))
        out.ms_single_cpu.append(1000.0 * (time.process_time() - c1))
        for k, v in (e.evaluations or {}).items():
            ev_sum[k] = ev_sum.get(k, 0.0) + float(v)
        if maps is not None:
            scale = float(np.abs(e.map).max()) or 1.0
            dev = max(dev, float(np.abs(e.map - maps[j]).max()) / scale)
        if on_case:
            on_case()
    out.evaluations = {k: v / len(cases) for k, v in ev_sum.items()} if cases else {}
    if maps is not None:
        out.shared_check = dev
    return out


# ---------------------------------------------------------------------- 7. counterfactual
@dataclass
class Counterfactual:
    """Per case: :class:`cfviewer.metrics.counterfactual.CounterfactualScore` of the
    explanation's counterfactual against the case's finding mask."""

    scores: list[Any] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)

    def by_pathology(self) -> dict[str, dict[str, float]]:
        """``summarise`` per target pathology, plus ``"all"``."""
        from cfviewer.metrics.counterfactual import summarise

        out = {t: summarise([s for s, u in zip(self.scores, self.targets) if u == t])
               for t in dict.fromkeys(self.targets)}
        out["all"] = summarise(self.scores)
        return out


def counterfactual(explanations: Sequence[Any], cases: Sequence[Case]) -> Counterfactual | None:
    """Scores of the explanations that carry frames; None when none does."""
    from cfviewer.metrics.counterfactual import score_explanation

    out = Counterfactual()
    for e, c in zip(explanations, cases):
        s = score_explanation(e, c.mask) if c.mask.any() else None
        if s is not None:
            out.scores.append(s)
            out.targets.append(c.target)
    return out if out.scores else None
