"""The explainer evaluation: every registered explainer against the phantoms' ground truth.

``run_evaluation(bundle, options)`` explains the held-out phantoms of
:mod:`cfviewer.evaluation.cases` with each method and asks each question of
:mod:`cfviewer.evaluation.questions` of the maps; :mod:`cfviewer.evaluation.report` writes one
table per question (``cfviewer bench``).

Methods built on Latent Shift frames share one Latent Shift search per case
(:class:`_LatentShiftShare`); the speed question checks that the shared path reproduces each
method's own ``explain()``.
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

from cfviewer.evaluation import questions as Q
from cfviewer.evaluation.cases import (
    Case,
    EvaluationError,
    Grid,
    GridPool,
    PhantomSource,
    bench_seeds,
    find_tube_false_positives,
    make_cases,
    make_grids,
    round_robin,
    training_seed_overlap,
)
from cfviewer.metrics import layer_groups, random_map

EVALUATION_SECTION = "explainers"
"""The section of docs/benchmarks.md that ``cfviewer bench`` rewrites."""
RANDOM_METHOD = "random (reference)"

# Parameters the evaluation passes to particular registry names (printed in the report);
# empty = every explainer runs with its registry defaults.
METHOD_PARAMS: dict[str, dict[str, Any]] = {}


@dataclass
class EvaluationOptions:
    n: int = 200
    methods: Sequence[str] | None = None
    seed: int = 0
    batch_size: int = 8
    deletion_steps: int = 10
    randomization_cases: int = 6
    confounder_cases: int = 40
    confounder_max_phantoms: int = 1500
    grids_per_pathology: int = 5
    """Class-sensitivity grids per pathology (Attri-Net protocol, 4 explanations each)."""
    timing_cases: int = 5
    reference_cases: int = 20
    """Cases on which the public reference's own Latent Shift walk is counted
    (:func:`cfviewer.explain.latentshift.reference_run`)."""
    progress: bool = True
    quick: bool = False

    @classmethod
    def quick_mode(cls, **overrides: Any) -> "EvaluationOptions":
        """Small settings for tests and smoke runs."""
        base = dict(n=6, batch_size=6, deletion_steps=4, randomization_cases=1,
                    confounder_cases=2, confounder_max_phantoms=12, grids_per_pathology=1,
                    timing_cases=1, reference_cases=2, quick=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def validate(self) -> None:
        for key in ("n", "batch_size", "deletion_steps", "timing_cases"):
            if int(getattr(self, key)) < 1:
                raise EvaluationError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        for key in ("randomization_cases", "confounder_cases", "confounder_max_phantoms",
                    "grids_per_pathology", "reference_cases"):
            if int(getattr(self, key)) < 0:
                raise EvaluationError(f"--{key.replace('_', '-')} must be >= 0, got {getattr(self, key)}")


@dataclass
class MethodResult:
    """One explainer's answers to the questions (None = not asked: no cases, or it failed)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    alias_of: str | None = None
    error: str | None = None
    localisation: Q.Localisation | None = None
    faithfulness: Q.Faithfulness | None = None
    randomisation: Q.Randomisation | None = None
    confounder: Q.Confounder | None = None
    class_specificity: Q.ClassSpecificity | None = None
    speed: Q.Speed | None = None
    counterfactual: Q.Counterfactual | None = None

    @property
    def ran(self) -> bool:
        return self.error is None and self.alias_of is None


@dataclass
class EvaluationResult:
    options: EvaluationOptions
    bundle_desc: dict[str, Any]
    cases: list[Case]
    case_counts: dict[str, int]
    skipped_cases: dict[str, int]
    methods: list[MethodResult]
    tube_found: int
    tube_generated: int
    tube_area_share: float
    grids: int
    """Class-sensitivity grids made, all pathologies together (``grid_pools``: per pathology)."""
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
    grid_pools: dict[str, GridPool] = field(default_factory=dict)
    """Per pathology: candidates, true positives / negatives and grids made (wanted:
    ``options.grids_per_pathology``); empty when no grid was asked."""

    @property
    def grid_counts(self) -> dict[str, int]:
        """Class-sensitivity grids made per pathology."""
        return {p: g.grids for p, g in self.grid_pools.items()}


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
                 on_batch: Callable[[int], None] | None = None,
                 explanations: list | None = None) -> np.ndarray:
    """Maps (N x R x R float32) of ``cases``: shared Latent Shift frames when the method is
    built on them, else the explainer's own ``explain_batch`` in batches. ``explanations``
    (a list) collects the explanation that carries each case's frames / counterfactual."""
    from cfviewer.explain.latentshift import LatentShiftExplainer, frames_to_map

    key = share.key_of(explainer)
    maps: list[np.ndarray] = []
    for i in range(0, len(cases), batch):
        chunk = list(cases[i : i + batch])
        if key is None:
            own = explainer.explain_batch([c.image for c in chunk], [c.target for c in chunk])
            out = [e.map for e in own]
            if explanations is not None:
                explanations += own
        else:
            base = share.base(key, bundle, state, chunk, batch)
            if explanations is not None and isinstance(explainer, LatentShiftExplainer):
                explanations += base  # adversarial_* maps reuse this counterfactual: no copy rows
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
        raise EvaluationError(f"unknown method(s) {', '.join(unknown)}; registered: {', '.join(known)}")
    return list(dict.fromkeys(requested))


def run_evaluation(bundle: Any, options: EvaluationOptions,
                   bundle_desc: dict[str, Any] | None = None) -> EvaluationResult:
    """Run the whole evaluation on ``bundle`` (see the module docstring)."""
    options.validate()
    with warnings.catch_warnings():
        # captum warns "Setting backward hooks on ReLU activations" on every guided backprop call
        warnings.filterwarnings("ignore", message="Setting backward hooks", category=UserWarning)
        return _run(bundle, options, bundle_desc)


def _run(bundle: Any, options: EvaluationOptions, bundle_desc: dict[str, Any] | None) -> EvaluationResult:
    from cfviewer.explain import get_explainer

    t_start = time.perf_counter()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    size = int(bundle.resolution)
    names = resolve_methods(options.methods)

    source = PhantomSource.for_bundle(bundle)
    cases, skipped = make_cases(options.n, options.seed, size, bundle.pathologies, source)
    if not cases:
        raise EvaluationError("no evaluation case has a usable ground-truth mask; increase --n")
    case_counts: dict[str, int] = {}
    for c in cases:
        case_counts[c.target] = case_counts.get(c.target, 0) + 1
    overlap = training_seed_overlap(bundle, bench_seeds(options.n, options.seed, 0))
    tube_cases, tube_tried = find_tube_false_positives(
        bundle, options.confounder_cases, options.confounder_max_phantoms, options.seed, size,
        source=source)
    # class sensitivity (Attri-Net protocol): the model's own true positives / negatives,
    # four images per grid, each explained on its own
    grids, grid_pools = make_grids(bundle, options.grids_per_pathology, options.seed, source,
                                   batch=max(options.batch_size, 32))
    grid_cases = [c for g in grids for c in g.cases]
    rand_cases = round_robin(cases, options.randomization_cases)
    # which cases the model calls positive for their target (the counterfactual question
    # asks only of true positives: a counterfactual of a negative call has nothing to remove)
    called = bundle.positive(bundle.predict([c.image for c in cases]))
    true_positives = [i for i, c in enumerate(cases) if called[i, bundle.pathologies.index(c.target)]]
    timing_cases = cases[: options.timing_cases]
    param = next(bundle.classifier.parameters())
    groups = layer_groups(bundle.classifier, torch.zeros(1, 1, size, size, device=param.device))

    per_method = (len(cases) + len(timing_cases) + len(rand_cases) * (len(groups) + 1)
                  + len(tube_cases) + len(grid_cases))
    progress = _Progress(per_method * len(names), options.progress)
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
            explained: list = []
            maps = _method_maps(explainer, share, bundle, "trained", cases, options.batch_size,
                                tick("localisation"), explanations=explained)
            # own CPU cost only: shared Latent Shift frames are reported once, separately
            own = time.process_time() - t0 - (share.seconds - shared_before)
            res.localisation = Q.localisation(maps, cases)
            # 7. counterfactual (true positives only: a counterfactual of a case the model
            #    calls negative has nothing to remove)
            if explained and true_positives:
                res.counterfactual = Q.counterfactual([explained[i] for i in true_positives],
                                                      [cases[i] for i in true_positives])
            del explained

            # 2. deletion / AOPC
            stage = "deletion"
            res.faithfulness = Q.faithfulness(bundle, cases, maps, options.deletion_steps)

            # 6. single-image explain() as a user calls it: time, evaluations, and a check
            #    that the shared-frames path gave the same maps
            stage = "timing"
            res.speed = Q.speed(explainer, timing_cases, maps, ms_batched=1000.0 * own / len(cases),
                                on_case=lambda: progress.update(1, name, "timing"))
            if share.key_of(explainer) is None:
                res.speed.shared_check = None
            del maps

            # 3. cascading randomisation (model states are identical across methods: same
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
                    res.randomisation = Q.randomisation(bundle, explain_with, options.seed)

            # 4. confounder mass on tube-only false positives
            stage = "confounder"
            if tube_cases:
                tmaps = _method_maps(explainer, share, bundle, "trained", tube_cases,
                                     options.batch_size, tick("confounder"))
                res.confounder = Q.confounder(tmaps, tube_cases)

            # 5. class sensitivity: each grid image explained on its own for the grid's target
            stage = "grids"
            if grids:
                gmaps = _method_maps(explainer, share, bundle, "trained", grid_cases,
                                     options.batch_size, tick("grids"))
                res.class_specificity = Q.class_specificity(gmaps, grids)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - reported in the table, never hidden
            res.error = f"failed during {stage}: {_err(exc)}"
        progress.update(0, name, "done")
    progress.close()
    shared_ms = 1000.0 * share.seconds / share.computed if share.computed else None
    share.cache.clear()

    results.append(_random_reference(bundle, options, cases, tube_cases, grids))
    reference = None
    if getattr(bundle, "autoencoder", None) is not None and any(
            n.startswith(("latentshift", "adversarial")) for n in names):
        reference = reference_counts(bundle, cases[: options.reference_cases])
    desc = dict(bundle_desc or {})
    desc.setdefault("resolution", size)
    desc.setdefault("pathologies", list(bundle.pathologies))
    desc["training_seed_overlap"] = overlap
    return EvaluationResult(
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
        grid_pools=grid_pools,
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


def _random_reference(bundle: Any, options: EvaluationOptions, cases: list[Case],
                      tube_cases: list[Case], grids: list[Grid]) -> MethodResult:
    """The questions asked of i.i.d. uniform random maps: the chance level of each."""
    size = int(bundle.resolution)
    ref = MethodResult(name=RANDOM_METHOD)

    def rmap(i: int) -> np.ndarray:
        return random_map((size, size), seed=options.seed * 100_003 + i)

    rmaps = np.stack([rmap(i) for i in range(len(cases))])
    ref.localisation = Q.localisation(rmaps, cases)
    ref.faithfulness = Q.faithfulness(bundle, cases, rmaps, options.deletion_steps)
    if tube_cases:
        ref.confounder = Q.confounder([rmap(i) for i in range(len(tube_cases))], tube_cases)
    if grids:
        n_maps = sum(len(g.cases) for g in grids)
        ref.class_specificity = Q.class_specificity([rmap(i) for i in range(n_maps)], grids)
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
