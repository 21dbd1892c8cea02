"""The evaluation's cases: held-out phantoms with pixel-exact ground truth.

Four streams of ``SeedSequence([seed, BENCH_TAG, stream])``, disjoint from the training sets'
``SeedSequence(train_seed)`` (checked against the training seeds recorded in the bundle when
it records them, :func:`training_seed_overlap`):

- stream 0, :func:`make_cases`: phantom ``i`` is forced positive for pathology ``i mod 6`` and
  explained for that pathology (its other findings, drawn at the default prevalences, stay in
  the image as distractors), so each pathology gets n/6 positives;
- stream 1, :func:`find_tube_false_positives`: chest tube, no pneumothorax, called positive;
- stream 2, :func:`make_grids`: the candidate pool of the class-sensitivity grids (Attri-Net
  protocol): per pathology, phantoms forced positive and phantoms forced negative for it (other
  findings at their prevalences), predicted by the bundle; each grid is the model's next most
  confident true positive with three of its most confident true negatives;
- stream 3 (``SeedSequence([seed, BENCH_TAG, 3, pathology index])``): the shuffle that deals
  the true negatives to the grids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cfviewer import PATHOLOGIES
from cfviewer.errors import CfviewerError
from cfviewer.metrics import GRID_IMAGES

BENCH_TAG = 0x62656E6368  # "bench": keeps evaluation phantoms off the training seed streams
TUBE = "chest_tube"
TUBE_TARGET = "Pneumothorax"


class EvaluationError(CfviewerError):
    """The evaluation cannot run with the given options."""


@dataclass
class Case:
    uid: str
    seed: int
    target: str
    image: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class PhantomSource:
    """How the evaluation renders a phantom for a bundle: the phantom options and render
    scale the bundle was trained with (``meta["training"]["config"]``: ``phantoms``,
    ``render_scale``), at the model's resolution ``size``. With render scale k the phantom is
    drawn at k x size and resized as ``Bundle.model_input`` resizes a film; its masks are
    pooled to size (a pixel is in the mask when any of its k x k source pixels is), so thin
    findings (a pleural line, a tube) keep their mask."""

    size: int
    options: dict = field(default_factory=dict)
    render_scale: int = 1

    @classmethod
    def for_bundle(cls, bundle: Any) -> "PhantomSource":
        tr = (getattr(bundle, "meta", {}) or {}).get("training") or {}
        cfg = tr.get("config") or {} if isinstance(tr, dict) else {}
        return cls(size=int(bundle.resolution), options=dict(cfg.get("phantoms") or {}),
                   render_scale=int(cfg.get("render_scale", 1) or 1))

    def render(self, seed: int, labels: dict[str, int] | None = None, size: int | None = None,
               **overrides: Any):
        """(image, masks) of phantom ``seed`` at ``size`` (default: the model's)."""
        from cfviewer.models.data import phantom_config
        from cfviewer.phantoms import generate

        size = int(size or self.size)
        k = self.render_scale
        cfg = phantom_config(size * k, {**self.options, **overrides})
        ph = generate(int(seed), size=size * k, config=cfg, labels=labels)
        if k == 1:
            return ph.image, ph.masks
        import torch

        from cfviewer.models.bundle import resize_to_resolution

        image = resize_to_resolution(torch.from_numpy(ph.image)[None, None], size)[0, 0].numpy()
        masks = {name: m.reshape(size, k, size, k).any(axis=(1, 3)) for name, m in ph.masks.items()}
        return image, masks


def bench_seeds(n: int, seed: int, stream: int = 0) -> np.ndarray:
    """Per-phantom seeds of the benchmark (stream 0: cases, 1: tube false positives, 2: the
    grids' candidate pool)."""
    return np.random.SeedSequence([int(seed), BENCH_TAG, int(stream)]).generate_state(
        int(n), dtype=np.uint64
    )


def training_seed_overlap(bundle: Any, seeds: Sequence[int]) -> int | None:
    """How many benchmark seeds are also seeds of the training/validation phantoms recorded in
    ``bundle.meta["training"]`` (``data_seeds`` + ``n_train`` / ``n_val``, as written by
    ``cfviewer train``, every stage of an ``init_from`` chain); None when the bundle records none."""
    from cfviewer.models.train import training_splits
    from cfviewer.phantoms import image_seeds

    used: set[int] = set()
    for _split, s, n in training_splits((getattr(bundle, "meta", {}) or {}).get("training")):
        if n <= 2_000_000:
            used.update(int(v) for v in image_seeds(n, s))
    if not used:
        return None
    return sum(int(v) in used for v in seeds)


def make_cases(n: int, seed: int, size: int, pathologies: Sequence[str],
               source: PhantomSource | None = None) -> tuple[list[Case], dict[str, int]]:
    """Held-out phantoms; phantom i is forced positive for pathologies[i mod k] and explained
    for that pathology (its other findings, drawn at the bundle's prevalences, stay in the
    image as distractors). Phantoms whose mask for the target is empty are skipped.
    ``source``: how to render them (default: the generator's defaults at ``size``)."""
    source = source or PhantomSource(size)

    pats = [p for p in PATHOLOGIES if p in pathologies]
    if not pats:
        raise EvaluationError(
            f"the bundle predicts none of the phantom pathologies ({', '.join(PATHOLOGIES)}); "
            "benchmark a bundle trained on cfviewer phantoms"
        )
    cases: list[Case] = []
    skipped: dict[str, int] = {}
    for i, s in enumerate(bench_seeds(n, seed, 0)):
        p = pats[i % len(pats)]
        image, masks = source.render(int(s), labels={p: 1}, size=size)
        m = masks.get(p)
        if m is None or not m.any() or m.all():
            skipped[p] = skipped.get(p, 0) + 1
            continue
        cases.append(Case(uid=f"case{i}", seed=int(s), target=p, image=image, mask=m))
    return cases, skipped


def find_tube_false_positives(bundle: Any, want: int, max_phantoms: int, seed: int,
                              size: int, batch: int = 32,
                              source: PhantomSource | None = None) -> tuple[list[Case], int]:
    """Phantoms with a chest tube and no pneumothorax that the model calls Pneumothorax
    positive; generates until ``want`` are found or ``max_phantoms`` were tried."""
    if TUBE_TARGET not in bundle.pathologies or want <= 0:
        return [], 0
    source = source or PhantomSource(size)
    t = bundle.target_index(TUBE_TARGET)
    seeds = bench_seeds(max_phantoms, seed, 1)
    found: list[Case] = []
    tried = 0
    while tried < max_phantoms and len(found) < want:
        chunk = seeds[tried : tried + batch]
        phs = [(int(s), *source.render(int(s), labels={TUBE_TARGET: 0}, size=size,
                                       tube_given_no_pneumothorax=1.0)) for s in chunk]
        tried += len(chunk)
        phs = [p for p in phs if TUBE in p[2] and p[2][TUBE].any()]
        if not phs:
            continue
        probs = bundle.predict(np.stack([p[1] for p in phs]))
        pos = bundle.positive(probs)[:, t]
        for (s, image, masks), is_pos in zip(phs, pos):
            if is_pos and len(found) < want:
                found.append(Case(uid=f"tube{len(found)}", seed=s, target=TUBE_TARGET,
                                  image=image, mask=masks[TUBE]))
    return found, tried


GRID_NEGATIVES = GRID_IMAGES - 1
"""True negatives per class-sensitivity grid (2 x 2: one true positive, three true negatives)."""
GRID_POOL_FACTOR = 4
"""Candidates rendered per pathology: this many times the images the grids need, positives
(one per grid) and negatives (three per grid) separately ..."""
GRID_POOL_MIN = 12
"""... and at least this many of each."""


@dataclass
class Grid:
    """One class-sensitivity grid (Attri-Net protocol): ``cases[positive_index]`` is a true
    positive of the model for ``target``, the other three are true negatives; each is
    explained on its own, at the model's resolution, for ``target``."""

    uid: str
    target: str
    cases: list[Case]
    probs: list[float]
    """The model's probability for ``target`` of each image, in ``cases`` order."""
    positive_index: int = 0


@dataclass
class GridPool:
    """How one pathology's grids were made (what the report says about shortfalls)."""

    pathology: str
    wanted: int
    positive_candidates: int
    """Phantoms rendered forced positive whose finding is drawn (non-empty mask)."""
    negative_candidates: int
    true_positives: int
    """Positive candidates the model calls positive (prob >= the bundle threshold)."""
    true_negatives: int
    """Negative candidates the model calls negative (prob < the bundle threshold)."""
    grids: int
    threshold: float

    @property
    def shortfall(self) -> int:
        return max(0, self.wanted - self.grids)

    def reason(self) -> str:
        """Why fewer grids than wanted were made ("" when none are missing)."""
        if not self.shortfall:
            return ""
        parts = []
        if self.true_positives < self.wanted:
            parts.append(f"{self.true_positives} true positives among {self.positive_candidates} "
                         "positive candidates")
        if self.true_negatives // GRID_NEGATIVES < self.wanted:
            parts.append(f"{self.true_negatives} true negatives among {self.negative_candidates} "
                         f"negative candidates, {GRID_NEGATIVES} needed per grid")
        return f"threshold {self.threshold:.2f}: " + "; ".join(parts)


def grid_pool_sizes(per_pathology: int) -> tuple[int, int]:
    """(positive, negative) candidates rendered per pathology for ``per_pathology`` grids."""
    if per_pathology <= 0:
        return 0, 0
    return (max(GRID_POOL_MIN, GRID_POOL_FACTOR * per_pathology),
            max(GRID_POOL_MIN, GRID_POOL_FACTOR * GRID_NEGATIVES * per_pathology))


def select_grids(positive_probs: Sequence[float], negative_probs: Sequence[float], threshold: float,
                 wanted: int, rng: np.random.Generator) -> tuple[list[tuple[int, list[int]]], int, int]:
    """The reference's grid selection (``eval_class_sensitivity.py``: ``filter_correct_pred``,
    ``create_grids``) on candidate indices.

    True positives (``positive_probs >= threshold``) sorted most confident first, true
    negatives (``negative_probs < threshold``) most confident (lowest) first; n = min(wanted,
    TPs, TNs // 3) grids; the first 3n true negatives are shuffled with ``rng`` and dealt three
    per grid; grid i gets the i-th true positive. Returns ([(positive index, [three negative
    indices]), ...], number of TPs, number of TNs); NaN probabilities are neither."""
    pp = np.asarray(positive_probs, dtype=np.float64).reshape(-1)
    npb = np.asarray(negative_probs, dtype=np.float64).reshape(-1)
    tp = np.flatnonzero(pp >= threshold)
    tp = tp[np.argsort(-pp[tp], kind="stable")]
    tn = np.flatnonzero(npb < threshold)
    tn = tn[np.argsort(npb[tn], kind="stable")]
    n = max(0, min(int(wanted), len(tp), len(tn) // GRID_NEGATIVES))
    dealt = tn[: GRID_NEGATIVES * n].copy()
    rng.shuffle(dealt)
    grids = [(int(tp[i]), [int(v) for v in dealt[GRID_NEGATIVES * i : GRID_NEGATIVES * (i + 1)]])
             for i in range(n)]
    return grids, len(tp), len(tn)


def make_grids(bundle: Any, per_pathology: int, seed: int, source: PhantomSource | None = None,
               batch: int = 32) -> tuple[list[Grid], dict[str, GridPool]]:
    """Class-sensitivity grids of the Attri-Net reference protocol for ``bundle``.

    For each phantom pathology the bundle predicts (in ``PATHOLOGIES`` order): render
    :func:`grid_pool_sizes` candidates from stream 2 (``source.render(s, labels={c: 1})`` /
    ``labels={c: 0}``, other findings at their prevalences; a positive candidate whose finding
    mask is empty is dropped), predict them with ``bundle.predict`` in batches of ``batch`` and
    pick the grids with :func:`select_grids` (threshold ``bundle.thresholds[c]``, shuffle from
    stream 3). A pathology with too few true positives / negatives gets fewer grids (possibly
    none): see the returned :class:`GridPool` per pathology. Grids are in pathology order."""
    pats = [p for p in PATHOLOGIES if p in bundle.pathologies]
    n_pos, n_neg = grid_pool_sizes(int(per_pathology))
    if not pats or n_pos == 0:
        return [], {}
    source = source or PhantomSource(int(bundle.resolution))
    block = n_pos + n_neg
    seeds = bench_seeds(len(PATHOLOGIES) * block, seed, 2)  # a fixed block per pathology
    grids: list[Grid] = []
    pools: dict[str, GridPool] = {}
    for p in pats:
        k = PATHOLOGIES.index(p)
        t = bundle.target_index(p)
        thr = float(bundle.thresholds[p])
        mine = seeds[k * block : (k + 1) * block]
        positives: list[Case] = []
        for s in mine[:n_pos]:
            image, masks = source.render(int(s), labels={p: 1})
            m = masks.get(p)
            if m is not None and m.any():
                positives.append(Case(uid="", seed=int(s), target=p, image=image, mask=m))
        negatives: list[Case] = []
        for s in mine[n_pos:]:
            image, _ = source.render(int(s), labels={p: 0})
            negatives.append(Case(uid="", seed=int(s), target=p, image=image,
                                  mask=np.zeros(image.shape, dtype=bool)))

        def probs_of(cases: list[Case]) -> np.ndarray:
            out = [np.asarray(bundle.predict(np.stack([c.image for c in cases[i : i + batch]])))[:, t]
                   for i in range(0, len(cases), batch)]
            return np.concatenate(out) if out else np.zeros(0)

        pp, npb = probs_of(positives), probs_of(negatives)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), BENCH_TAG, 3, k]))
        chosen, n_tp, n_tn = select_grids(pp, npb, thr, int(per_pathology), rng)
        for pi, nis in chosen:
            j = len(grids)
            members = [positives[pi]] + [negatives[i] for i in nis]
            probs = [float(pp[pi])] + [float(npb[i]) for i in nis]
            cases = [Case(uid=f"grid{j}.{q}", seed=c.seed, target=p, image=c.image, mask=c.mask)
                     for q, c in enumerate(members)]
            grids.append(Grid(uid=f"grid{j}", target=p, cases=cases, probs=probs))
        pools[p] = GridPool(pathology=p, wanted=int(per_pathology),
                            positive_candidates=len(positives), negative_candidates=len(negatives),
                            true_positives=n_tp, true_negatives=n_tn, grids=len(chosen), threshold=thr)
    return grids, pools


def round_robin(cases: Sequence[Case], k: int) -> list[Case]:
    """Up to k cases, cycling over the targets so each pathology is represented."""
    by_target: dict[str, list[Case]] = {}
    for c in cases:
        by_target.setdefault(c.target, []).append(c)
    out: list[Case] = []
    depth = 0
    while len(out) < min(k, len(cases)):
        for lst in by_target.values():
            if depth < len(lst) and len(out) < k:
                out.append(lst[depth])
        depth += 1
    return out
