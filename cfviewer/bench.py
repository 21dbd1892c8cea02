"""The explainer benchmark: every registered explainer against the phantoms' ground truth.

``run_bench(bundle, options)`` explains held-out phantoms with each method and scores the
maps with :mod:`cfviewer.metrics`; ``render_markdown(result)`` writes one table per question:

1. localisation (top-p IoU, AUC_loc, Hausdorff; per method and pathology) -- do the maps point
   at the finding?
2. faithfulness (deletion curve / AOPC) -- do the pixels the map ranks first drive the score?
3. cascading randomisation (Spearman at full reset) -- does the map depend on the model?
4. confounder mass on chest-tube-only pneumothorax false positives -- does the map reveal the
   shortcut behind a false positive?
5. class sensitivity on 2 x 2 grids (Attri-Net) -- is the map specific to the class?
6. milliseconds per explanation on this CPU, with image-evaluation counts.

Cases: phantom ``i`` of the benchmark is forced positive for pathology ``i mod 6`` and is
explained for that pathology (its other findings, drawn at the default prevalences, stay in
the image as distractors), so each pathology gets n/6 positives. Phantom seeds
come from ``SeedSequence([seed, BENCH_TAG])``, a stream disjoint from the training sets'
``SeedSequence(train_seed)`` (checked against the training seeds recorded in the bundle
when it records them).
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cfviewer import PATHOLOGIES
from cfviewer.errors import CfviewerError
from cfviewer.metrics import (
    cascading_randomization,
    class_sensitivity,
    confounder_mass,
    deletion_curves,
    layer_groups,
    localization_scores,
    make_grid,
    random_map,
)

BENCH_SECTION = "explainers"
BENCH_TAG = 0x62656E6368  # "bench": keeps benchmark phantoms off the training seed streams
RANDOM_METHOD = "random (reference)"
TUBE = "chest_tube"
TUBE_TARGET = "Pneumothorax"

# Parameters the benchmark passes to particular registry names (printed in the report);
# empty = every explainer runs with its registry defaults.
METHOD_PARAMS: dict[str, dict[str, Any]] = {}


class BenchError(CfviewerError):
    """The benchmark cannot run with the given options."""


@dataclass
class BenchOptions:
    n: int = 200
    methods: Sequence[str] | None = None
    seed: int = 0
    batch_size: int = 8
    deletion_steps: int = 10
    randomization_cases: int = 6
    confounder_cases: int = 40
    confounder_max_phantoms: int = 1500
    grids_per_pathology: int = 3
    timing_cases: int = 5
    reference_cases: int = 20
    """Cases on which the public reference's own Latent Shift walk is counted
    (:func:`cfviewer.explain.latentshift.reference_run`)."""
    progress: bool = True
    quick: bool = False

    @classmethod
    def quick_mode(cls, **overrides: Any) -> "BenchOptions":
        """Small settings for tests and smoke runs."""
        base = dict(n=6, batch_size=6, deletion_steps=4, randomization_cases=1,
                    confounder_cases=2, confounder_max_phantoms=12, grids_per_pathology=1,
                    timing_cases=1, reference_cases=2, quick=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def validate(self) -> None:
        for key in ("n", "batch_size", "deletion_steps", "timing_cases"):
            if int(getattr(self, key)) < 1:
                raise BenchError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        for key in ("randomization_cases", "confounder_cases", "confounder_max_phantoms",
                    "grids_per_pathology", "reference_cases"):
            if int(getattr(self, key)) < 0:
                raise BenchError(f"--{key.replace('_', '-')} must be >= 0, got {getattr(self, key)}")


@dataclass
class Case:
    uid: str
    seed: int
    target: str
    image: np.ndarray
    mask: np.ndarray


@dataclass
class MethodResult:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    alias_of: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    loc: list[dict[str, float]] = field(default_factory=list)
    loc_targets: list[str] = field(default_factory=list)
    loc_case_ids: list[str] = field(default_factory=list)
    shared_check: float | None = None
    """Max |map difference| / max |map| between the shared-Latent-Shift path and the
    method's own explain() on the timing cases (0 = identical)."""
    aopc: np.ndarray | None = None
    deletion_auc: np.ndarray | None = None
    deletion_mean_curve: np.ndarray | None = None
    rand_steps: list[str] = field(default_factory=list)
    rand_corr: np.ndarray | None = None
    tube_mass: np.ndarray | None = None
    tube_ratio: np.ndarray | None = None
    grid_share: np.ndarray | None = None
    grid_max: np.ndarray | None = None
    ms_single: list[float] = field(default_factory=list)
    ms_single_cpu: list[float] = field(default_factory=list)
    """Process CPU time of the same calls (all threads): robust to other jobs on the machine."""
    tube_empty: int = 0
    """Tube cases where the map had no positive mass (e.g. Latent Shift found no shift)."""
    ms_batched: float | None = None
    evaluations: dict[str, float] = field(default_factory=dict)

    @property
    def ran(self) -> bool:
        return self.error is None and self.alias_of is None


@dataclass
class BenchResult:
    options: BenchOptions
    bundle_desc: dict[str, Any]
    cases: list[Case]
    case_counts: dict[str, int]
    skipped_cases: dict[str, int]
    methods: list[MethodResult]
    tube_found: int
    tube_generated: int
    tube_area_share: float
    grids: int
    randomization_layers: list[str]
    seconds: float
    started: str
    machine: dict[str, Any]
    command: str = ""
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    shared_latentshift_ms: float | None = None
    """Batched ms per explanation of the shared Latent Shift search + frames."""
    reference_latentshift: dict[str, Any] | None = None
    """What the public reference ieee8023/latentshift evaluates per explanation with its own
    defaults and walk (:func:`reference_counts`); None without an autoencoder method."""


# ---------------------------------------------------------------------- phantoms
def bench_seeds(n: int, seed: int, stream: int = 0) -> np.ndarray:
    """Per-phantom seeds of the benchmark (stream 0: cases, 1: tube false positives, 2: grids)."""
    return np.random.SeedSequence([int(seed), BENCH_TAG, int(stream)]).generate_state(
        int(n), dtype=np.uint64
    )


def _training_seed_overlap(bundle: Any, seeds: Sequence[int]) -> int | None:
    """How many benchmark seeds are also seeds of the training/validation phantoms recorded in
    ``bundle.meta["training"]`` (``data_seeds`` + ``n_train`` / ``n_val``, as written by
    ``cfviewer train``); None when the bundle records none."""
    from cfviewer.phantoms import image_seeds

    tr = (getattr(bundle, "meta", {}) or {}).get("training")
    if not isinstance(tr, dict) or not isinstance(tr.get("data_seeds"), dict):
        return None
    ds = tr["data_seeds"]
    used: set[int] = set()
    for split, n_key in (("train", "n_train"), ("val", "n_val")):
        s, n = ds.get(split), tr.get(n_key)
        if isinstance(s, int) and isinstance(n, int) and 0 < n <= 2_000_000:
            used.update(int(v) for v in image_seeds(n, s))
    if not used:
        return None
    return sum(int(v) in used for v in seeds)


def make_cases(n: int, seed: int, size: int, pathologies: Sequence[str]) -> tuple[list[Case], dict[str, int]]:
    """Held-out phantoms; phantom i is forced positive for pathologies[i mod k] and explained
    for that pathology (its other findings, drawn at the default prevalences, stay in the
    image as distractors). Phantoms whose mask for the target is empty are skipped."""
    from cfviewer.phantoms import generate

    pats = [p for p in PATHOLOGIES if p in pathologies]
    if not pats:
        raise BenchError(
            f"the bundle predicts none of the phantom pathologies ({', '.join(PATHOLOGIES)}); "
            "benchmark a bundle trained on cfviewer phantoms"
        )
    cases: list[Case] = []
    skipped: dict[str, int] = {}
    for i, s in enumerate(bench_seeds(n, seed, 0)):
        p = pats[i % len(pats)]
        ph = generate(int(s), size=size, labels={p: 1})
        m = ph.masks.get(p)
        if m is None or not m.any() or m.all():
            skipped[p] = skipped.get(p, 0) + 1
            continue
        cases.append(Case(uid=f"case{i}", seed=int(s), target=p, image=ph.image, mask=m))
    return cases, skipped


def find_tube_false_positives(bundle: Any, want: int, max_phantoms: int, seed: int,
                              size: int, batch: int = 32) -> tuple[list[Case], int]:
    """Phantoms with a chest tube and no pneumothorax that the model calls Pneumothorax
    positive; generates until ``want`` are found or ``max_phantoms`` were tried."""
    from cfviewer.phantoms import PhantomConfig, generate

    if TUBE_TARGET not in bundle.pathologies or want <= 0:
        return [], 0
    config = PhantomConfig(size=size, tube_given_no_pneumothorax=1.0)
    t = bundle.target_index(TUBE_TARGET)
    seeds = bench_seeds(max_phantoms, seed, 1)
    found: list[Case] = []
    tried = 0
    while tried < max_phantoms and len(found) < want:
        chunk = seeds[tried : tried + batch]
        phs = [generate(int(s), size=size, config=config, labels={TUBE_TARGET: 0}) for s in chunk]
        tried += len(chunk)
        phs = [p for p in phs if TUBE in p.masks and p.masks[TUBE].any()]
        if not phs:
            continue
        probs = bundle.predict(np.stack([p.image for p in phs]))
        pos = bundle.positive(probs)[:, t]
        for p, is_pos in zip(phs, pos):
            if is_pos and len(found) < want:
                found.append(Case(uid=f"tube{len(found)}", seed=p.seed, target=TUBE_TARGET,
                                  image=p.image, mask=p.masks[TUBE]))
    return found, tried


def make_grids(per_pathology: int, seed: int, size: int, pathologies: Sequence[str]) -> list[tuple[Case, int]]:
    """2 x 2 grids of R/2 phantoms, exactly one positive for the target (Attri-Net)."""
    from cfviewer.phantoms import generate

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
            ph = generate(int(seeds[k]), size=half, labels={p: int(c == cell)})
            k += 1
            tiles.append(ph.image)
        grid = make_grid(tiles)
        if grid.shape[0] != size:
            grid = np.pad(grid, ((0, size - grid.shape[0]), (0, size - grid.shape[1])), mode="edge")
        out.append((Case(uid=f"grid{j}", seed=int(seeds[k - 1]), target=p, image=grid,
                         mask=np.zeros_like(grid, bool)), cell))
    return out


# ---------------------------------------------------------------------- runner
class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="bench", unit="expl", dynamic_ncols=True)

    def update(self, k: int, method: str, stage: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{method}: {stage}", refresh=False)
            self.bar.update(k)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _LatentShiftShare:
    """Runs the Latent Shift search once per (Latent Shift parameters, model state, case) and
    hands its frames to every method built on it, through public APIs only:

    - ``latentshift-<map>``: ``frames_to_map(frames, lambdas, map)`` -- the function the
      explainer itself applies to its frames;
    - ``adversarial_*``: ``explain_batch(..., x_s=frame at lambda 0, x_a=counterfactual)`` --
      exactly the default pair the adversarial explainer would compute itself.

    The benchmark checks the equivalence on the timing cases (``MethodResult.shared_check``).
    """

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str, str], Any] = {}
        self.seconds = 0.0
        """Process CPU seconds spent computing shared frames for the trained model."""
        self.computed = 0

    @staticmethod
    def key_of(explainer: Any) -> tuple[str, dict[str, Any]] | None:
        """(cache key, Latent Shift parameters) when ``explainer`` can reuse shared frames."""
        from cfviewer.explain.adversarial import AdversarialExplainer
        from cfviewer.explain.latentshift import LatentShiftExplainer

        if isinstance(explainer, LatentShiftExplainer):
            ls = {k: v for k, v in explainer.params.items() if k != "map"}
        elif isinstance(explainer, AdversarialExplainer) and explainer._latentshift is not None:
            ls = {k: v for k, v in explainer._latentshift.params.items() if k != "map"}
        else:
            return None
        return repr(sorted(ls.items())), ls

    def base(self, key: tuple[str, dict[str, Any]], bundle: Any, state: str,
             cases: Sequence[Case], batch: int) -> list[Any]:
        from cfviewer.explain import get_explainer

        todo = [c for c in cases if (key[0], state, c.uid) not in self.cache]
        if todo:
            t0 = time.process_time()
            ls = get_explainer("latentshift", bundle, **key[1])
            for i in range(0, len(todo), batch):
                chunk = todo[i : i + batch]
                for c, e in zip(chunk, ls.explain_batch([c.image for c in chunk],
                                                        [c.target for c in chunk])):
                    self.cache[(key[0], state, c.uid)] = e
            if state == "trained":
                self.seconds += time.process_time() - t0
                self.computed += len(todo)
        return [self.cache[(key[0], state, c.uid)] for c in cases]

    def forget(self, state_prefix: str) -> None:
        for k in [k for k in self.cache if k[1].startswith(state_prefix)]:
            del self.cache[k]


def _method_maps(explainer: Any, share: _LatentShiftShare, bundle: Any, state: str,
                 cases: Sequence[Case], batch: int,
                 on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Maps (N x R x R float32) of ``cases``: shared Latent Shift frames when the method is
    built on them, else the explainer's own ``explain_batch`` in batches."""
    from cfviewer.explain.latentshift import LatentShiftExplainer, frames_to_map

    key = share.key_of(explainer)
    maps: list[np.ndarray] = []
    for i in range(0, len(cases), batch):
        chunk = list(cases[i : i + batch])
        if key is None:
            out = [e.map for e in explainer.explain_batch([c.image for c in chunk],
                                                          [c.target for c in chunk])]
        else:
            base = share.base(key, bundle, state, chunk, batch)
            if isinstance(explainer, LatentShiftExplainer):
                out = [frames_to_map(e.frames, e.lambdas, explainer.params["map"])
                       for e in base]
            else:
                x_s = [e.frames[int(np.argmin(np.abs(e.lambdas)))] for e in base]
                x_a = [e.counterfactual for e in base]
                out = [e.map for e in explainer.explain_batch(
                    [c.image for c in chunk], [c.target for c in chunk], x_s=x_s, x_a=x_a)]
        maps += [np.asarray(m, dtype=np.float32) for m in out]
        if on_batch:
            on_batch(len(chunk))
    return np.stack(maps)


def _err(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:300]


def resolve_methods(requested: Sequence[str] | None) -> list[str]:
    from cfviewer.explain import list_explainers

    known = list_explainers()
    if not requested:
        return known
    unknown = [m for m in requested if m not in known]
    if unknown:
        raise BenchError(f"unknown method(s) {', '.join(unknown)}; registered: {', '.join(known)}")
    return list(dict.fromkeys(requested))


def _round_robin(cases: Sequence[Case], k: int) -> list[Case]:
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


def run_bench(bundle: Any, options: BenchOptions, bundle_desc: dict[str, Any] | None = None) -> BenchResult:
    """Run the whole benchmark on ``bundle`` (see the module docstring)."""
    from cfviewer.explain import get_explainer

    options.validate()
    with warnings.catch_warnings():
        # captum warns "Setting backward hooks on ReLU activations" on every guided backprop call
        warnings.filterwarnings("ignore", message="Setting backward hooks", category=UserWarning)
        return _run(bundle, options, bundle_desc)


def _run(bundle: Any, options: BenchOptions, bundle_desc: dict[str, Any] | None) -> BenchResult:
    from cfviewer.explain import get_explainer

    t_start = time.perf_counter()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    size = int(bundle.resolution)
    names = resolve_methods(options.methods)

    cases, skipped = make_cases(options.n, options.seed, size, bundle.pathologies)
    if not cases:
        raise BenchError("no benchmark case has a usable ground-truth mask; increase --n")
    case_counts: dict[str, int] = {}
    for c in cases:
        case_counts[c.target] = case_counts.get(c.target, 0) + 1
    overlap = _training_seed_overlap(bundle, bench_seeds(options.n, options.seed, 0))
    tube_cases, tube_tried = find_tube_false_positives(
        bundle, options.confounder_cases, options.confounder_max_phantoms, options.seed, size)
    grids = make_grids(options.grids_per_pathology, options.seed, size, bundle.pathologies)
    grid_cases = [g for g, _ in grids]
    rand_cases = _round_robin(cases, options.randomization_cases)
    timing_cases = cases[: options.timing_cases]
    param = next(bundle.classifier.parameters())
    groups = layer_groups(bundle.classifier, torch.zeros(1, 1, size, size, device=param.device))

    per_method = (len(cases) + len(timing_cases) + len(rand_cases) * (len(groups) + 1)
                  + len(tube_cases) + len(grids))
    progress = _Progress(per_method * len(names), options.progress)
    fractions = np.linspace(0.0, 1.0, options.deletion_steps + 1)
    targets_idx = np.array([bundle.target_index(c.target) for c in cases])
    share = _LatentShiftShare()
    results: list[MethodResult] = []
    seen: dict[str, str] = {}

    for name in names:
        res = MethodResult(name=name)
        results.append(res)
        params = dict(METHOD_PARAMS.get(name, {}))
        try:
            explainer = get_explainer(name, bundle, **params)
        except Exception as exc:  # noqa: BLE001 - reported in the table, never hidden
            res.error = f"cannot be built: {_err(exc)}"
            progress.update(per_method, name, "skipped")
            continue
        res.params = dict(getattr(explainer, "params", {}))
        ident = f"{type(explainer).__qualname__}:{sorted(res.params.items())!r}"
        if ident in seen:
            res.alias_of = seen[ident]
            progress.update(per_method, name, "alias")
            continue
        seen[ident] = name

        def tick(stage: str, name: str = name) -> Callable[[int], None]:
            return lambda k: progress.update(k, name, stage)

        stage = "localisation"
        try:
            # 1. localisation
            t0, shared_before = time.process_time(), share.seconds
            maps = _method_maps(explainer, share, bundle, "trained", cases, options.batch_size,
                                tick("localisation"))
            # own CPU cost only: shared Latent Shift frames are reported once, separately
            own = time.process_time() - t0 - (share.seconds - shared_before)
            res.ms_batched = 1000.0 * own / len(cases)
            for c, m in zip(cases, maps):
                res.loc.append(localization_scores(m, c.mask))
                res.loc_targets.append(c.target)
                res.loc_case_ids.append(c.uid)

            # 2. deletion / AOPC (the phantoms are generated at the model resolution)
            stage = "deletion"
            curves = deletion_curves(bundle.predict, np.stack([c.image for c in cases]), maps,
                                     targets_idx, fractions, baseline="blur", batch_size=32)
            res.aopc, res.deletion_auc = curves.aopc, curves.auc
            res.deletion_mean_curve = curves.scores.mean(axis=0)

            # 3. single-image explain() as a user calls it: time, evaluations, and a check
            #    that the shared-frames path gave the same maps
            stage = "timing"
            ev_sum: dict[str, float] = {}
            dev = 0.0
            for j, c in enumerate(timing_cases):
                t1, c1 = time.perf_counter(), time.process_time()
                e = explainer.explain(c.image, c.target)
                res.ms_single.append(1000.0 * (time.perf_counter() - t1))
                res.ms_single_cpu.append(1000.0 * (time.process_time() - c1))
                for kk, v in (e.evaluations or {}).items():
                    ev_sum[kk] = ev_sum.get(kk, 0.0) + float(v)
                scale = float(np.abs(e.map).max()) or 1.0
                dev = max(dev, float(np.abs(e.map - maps[j]).max()) / scale)
                progress.update(1, name, "timing")
            res.evaluations = {kk: v / len(timing_cases) for kk, v in ev_sum.items()}
            if share.key_of(explainer) is not None:
                res.shared_check = dev
            del maps

            # 4. cascading randomisation (model states are identical across methods: same
            #    seed, same blocks, so the shared Latent Shift frames are reused per step)
            stage = "randomisation"
            if rand_cases:
                step = iter(range(10_000))

                def explain_with(b: Any, name: str = name, params: dict = params) -> np.ndarray:
                    k = next(step)
                    state = "trained" if k == 0 else f"rand{k}"
                    ex = get_explainer(name, b, **params)
                    return _method_maps(ex, share, b, state, rand_cases, options.batch_size,
                                        tick("randomisation"))

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # captum warns about hooks on every call
                    curve = cascading_randomization(bundle, explain_with, seed=options.seed)
                res.rand_steps, res.rand_corr = curve.steps, curve.correlations

            # 5. confounder mass on tube-only false positives
            stage = "confounder"
            if tube_cases:
                tmaps = _method_maps(explainer, share, bundle, "trained", tube_cases,
                                     options.batch_size, tick("confounder"))
                res.tube_mass = np.array([confounder_mass(m, c.mask) for m, c in zip(tmaps, tube_cases)])
                res.tube_empty = int(np.isnan(res.tube_mass).sum())
                res.tube_ratio = res.tube_mass / np.array([c.mask.mean() for c in tube_cases])

            # 6. class sensitivity on grids
            stage = "grids"
            if grids:
                gmaps = _method_maps(explainer, share, bundle, "trained", grid_cases,
                                     options.batch_size, tick("grids"))
                scores = [class_sensitivity(m, cell) for m, (_, cell) in zip(gmaps, grids)]
                res.grid_share = np.array([s.mass_share for s in scores])
                res.grid_max = np.array([s.max_in_cell for s in scores], dtype=float)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - reported in the table, never hidden
            res.error = f"failed during {stage}: {_err(exc)}"
        progress.update(0, name, "done")
    progress.close()
    shared_ms = 1000.0 * share.seconds / share.computed if share.computed else None
    share.cache.clear()

    results.append(_random_reference(bundle, options, cases, targets_idx, fractions, tube_cases, grids))
    reference = None
    if getattr(bundle, "autoencoder", None) is not None and any(
            n.startswith(("latentshift", "adversarial")) for n in names):
        reference = reference_counts(bundle, cases[: options.reference_cases])
    desc = dict(bundle_desc or {})
    desc.setdefault("resolution", size)
    desc.setdefault("pathologies", list(bundle.pathologies))
    desc["training_seed_overlap"] = overlap
    return BenchResult(
        options=options,
        bundle_desc=desc,
        cases=cases,
        case_counts=case_counts,
        skipped_cases=skipped,
        methods=results,
        tube_found=len(tube_cases),
        tube_generated=tube_tried,
        tube_area_share=float(np.mean([c.mask.mean() for c in tube_cases])) if tube_cases else float("nan"),
        grids=len(grids),
        randomization_layers=[g for g, _ in groups],
        seconds=time.perf_counter() - t_start,
        started=started,
        machine=machine_info(),
        method_params={k: v for k, v in METHOD_PARAMS.items() if k in names},
        shared_latentshift_ms=shared_ms,
        reference_latentshift=reference,
    )


def reference_counts(bundle: Any, cases: Sequence[Case]) -> dict[str, Any] | None:
    """Mean decoder / classifier images of the public reference's ``LatentShift.attribute``
    (its defaults, its walk, its frames: :func:`~cfviewer.explain.latentshift.reference_run`)
    on ``cases``; None when there are none."""
    from cfviewer.explain.latentshift import REFERENCE_DEFAULTS, reference_run

    if not cases:
        return None
    runs = [reference_run(bundle, c.image, c.target) for c in cases]
    dec = np.array([r.decoder_images for r in runs], dtype=float)
    reasons: dict[str, int] = {}
    for r in runs:
        reasons[r.stop_reason] = reasons.get(r.stop_reason, 0) + 1
    return {
        "cases": len(runs),
        "decoder_mean": float(dec.mean()),
        "decoder_min": int(dec.min()),
        "decoder_max": int(dec.max()),
        "classifier_mean": float(np.mean([r.classifier_images for r in runs])),
        "steps_mean": float(np.mean([r.steps for r in runs])),
        "stop_reasons": reasons,
        "settings": dict(REFERENCE_DEFAULTS),
    }


def _random_reference(bundle: Any, options: BenchOptions, cases: list[Case], targets_idx: np.ndarray,
                      fractions: np.ndarray, tube_cases: list[Case],
                      grids: list[tuple[Case, int]]) -> MethodResult:
    """Scores of i.i.d. uniform random maps: the chance level of every question."""
    size = int(bundle.resolution)
    ref = MethodResult(name=RANDOM_METHOD)

    def rmap(i: int) -> np.ndarray:
        return random_map((size, size), seed=options.seed * 100_003 + i)

    rmaps = np.stack([rmap(i) for i in range(len(cases))])
    for c, m in zip(cases, rmaps):
        ref.loc.append(localization_scores(m, c.mask))
        ref.loc_targets.append(c.target)
        ref.loc_case_ids.append(c.uid)
    curves = deletion_curves(bundle.predict, np.stack([c.image for c in cases]), rmaps,
                             targets_idx, fractions, baseline="blur", batch_size=32)
    ref.aopc, ref.deletion_auc = curves.aopc, curves.auc
    ref.deletion_mean_curve = curves.scores.mean(axis=0)
    if tube_cases:
        ref.tube_mass = np.array([confounder_mass(rmap(i), c.mask) for i, c in enumerate(tube_cases)])
        ref.tube_ratio = ref.tube_mass / np.array([c.mask.mean() for c in tube_cases])
    if grids:
        scores = [class_sensitivity(rmap(i), cell) for i, (_, cell) in enumerate(grids)]
        ref.grid_share = np.array([s.mass_share for s in scores])
        ref.grid_max = np.array([s.max_in_cell for s in scores], dtype=float)
    return ref


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu or "unknown",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }
