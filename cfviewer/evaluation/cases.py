"""The evaluation's cases: held-out phantoms with pixel-exact ground truth.

Three streams of ``SeedSequence([seed, BENCH_TAG, stream])``, disjoint from the training sets'
``SeedSequence(train_seed)`` (checked against the training seeds recorded in the bundle when
it records them, :func:`training_seed_overlap`):

- stream 0, :func:`make_cases`: phantom ``i`` is forced positive for pathology ``i mod 6`` and
  explained for that pathology (its other findings, drawn at the default prevalences, stay in
  the image as distractors), so each pathology gets n/6 positives;
- stream 1, :func:`find_tube_false_positives`: chest tube, no pneumothorax, called positive;
- stream 2 (+3 for the cell choice), :func:`make_grids`: 2 x 2 grids, one positive cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cfviewer import PATHOLOGIES
from cfviewer.errors import CfviewerError
from cfviewer.metrics import make_grid

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
    """Per-phantom seeds of the benchmark (stream 0: cases, 1: tube false positives, 2: grids)."""
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


def make_grids(per_pathology: int, seed: int, size: int, pathologies: Sequence[str],
               source: PhantomSource | None = None) -> list[tuple[Case, int]]:
    """2 x 2 grids of R/2 phantoms, exactly one positive for the target (Attri-Net)."""
    source = source or PhantomSource(size)

    half = size // 2
    pats = [p for p in PATHOLOGIES if p in pathologies]
    total = per_pathology * len(pats)
    if total == 0 or half < 32:
        return []
    seeds = bench_seeds(4 * total, seed, 2)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), BENCH_TAG, 3]))
    out: list[tuple[Case, int]] = []
    k = 0
    for j in range(total):
        p = pats[j % len(pats)]
        cell = int(rng.integers(0, 4))
        tiles = []
        for c in range(4):
            image, _ = source.render(int(seeds[k]), labels={p: int(c == cell)}, size=half)
            k += 1
            tiles.append(image)
        grid = make_grid(tiles)
        if grid.shape[0] != size:
            grid = np.pad(grid, ((0, size - grid.shape[0]), (0, size - grid.shape[1])), mode="edge")
        out.append((Case(uid=f"grid{j}", seed=int(seeds[k - 1]), target=p, image=grid,
                         mask=np.zeros_like(grid, bool)), cell))
    return out


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
