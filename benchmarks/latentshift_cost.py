"""Latent Shift cost at the default settings against the public reference's walk.

    python benchmarks/latentshift_cost.py --bundle study_data/demo/bundle --n 20

Prints one table: decoder images per explanation, milliseconds per explanation single-image
(``explain``) and with ``explain_batch``, and how many counterfactuals lower the prediction by
>= 0.3 (the reconstruction's prediction minus the counterfactual's; the paper's section 4.2
range is "the prediction decreases by 30 %"), for cfviewer's default ``latentshift`` and for
the public reference (ieee8023/latentshift ``LatentShift.attribute`` with its defaults, as
counted by :func:`cfviewer.explain.latentshift.reference_run`; one image at a time: it has no
batching). A third row times the cost floor -- the same explainer with a fixed range
(``fix_range``), i.e. no search: 1 encode, 1 decode + 1 backward for the gradient and the 9
frames other than lambda = 0 -- the best any search can do.

Cases: held-out phantoms, phantom i forced positive for pathology i mod 6 and explained for it,
seeds from ``SeedSequence([seed, 0x62656E6368, 0])`` -- the explainer benchmark's case stream
(disjoint from the training seed streams). One process; ``--threads`` torch threads (1).
Times are wall-clock, the minimum over ``--repeats`` runs per case (or per batch), cfviewer and
the reference interleaved case by case so that load from other jobs hits both alike, after one
warm-up explanation each; on a shared machine run it twice and keep the lower numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

BENCH_TAG = 0x62656E6368  # the explainer benchmark's "bench" stream tag


def held_out_cases(n: int, seed: int, size: int, pathologies: list[str]) -> list[tuple[np.ndarray, str]]:
    from cfviewer import PATHOLOGIES
    from cfviewer.phantoms import generate

    pats = [p for p in PATHOLOGIES if p in pathologies]
    seeds = np.random.SeedSequence([int(seed), BENCH_TAG, 0]).generate_state(4 * n + 12, dtype=np.uint64)
    out: list[tuple[np.ndarray, str]] = []
    for i, s in enumerate(seeds):
        p = pats[i % len(pats)]
        ph = generate(int(s), size=size, labels={p: 1})
        m = ph.masks.get(p)
        if m is None or not m.any() or m.all():
            continue  # as the explainer benchmark: skip empty masks
        out.append((ph.image, p))
        if len(out) == n:
            break
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="study_data/demo/bundle")
    ap.add_argument("--n", type=int, default=20, help="held-out phantoms (20)")
    ap.add_argument("--seed", type=int, default=0, help="benchmark seed (0, the explainer benchmark's)")
    ap.add_argument("--batch", type=int, default=10, help="images per explain_batch call (10)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case; the minimum is kept (3)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="a cfviewer latentshift parameter (repeatable), e.g. search_pred_diff=0.8")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    from cfviewer.explain import get_explainer
    from cfviewer.explain.latentshift import reference_run
    from cfviewer.models import Bundle

    bundle = Bundle.load(Path(args.bundle), device="cpu")
    params = dict(kv.split("=", 1) for kv in args.param)
    ex = get_explainer("latentshift", bundle, **params)
    # the floor: no search at all (a fixed range), 1 encode + 1 backward + the 9 frames
    floor = get_explainer("latentshift", bundle, **{**params, "fix_range": [-1.0, 0.0]})
    cases = held_out_cases(args.n, args.seed, bundle.resolution, list(bundle.pathologies))
    ex.explain(*cases[0])  # warm-up
    reference_run(bundle, *cases[0])

    # Interleaved (cfviewer single, reference, per case; then the batches), each timed
    # ``repeats`` times and the minimum kept, so that load from other jobs hits both alike.
    n = len(cases)
    chunks = [cases[i : i + args.batch] for i in range(0, n, args.batch)]
    single_s, ref_s, floor_s = [float("inf")] * n, [float("inf")] * n, [float("inf")] * n
    batch_s = [float("inf")] * len(chunks)
    floor_batch_s = [float("inf")] * len(chunks)
    floor_dec = []
    expl: list = [None] * n
    runs: list = [None] * n
    for _ in range(args.repeats):
        for i, (img, t) in enumerate(cases):
            s, expl[i] = timed(lambda img=img, t=t: ex.explain(img, t), 1)
            single_s[i] = min(single_s[i], s)
            s, runs[i] = timed(lambda img=img, t=t: reference_run(bundle, img, t), 1)
            ref_s[i] = min(ref_s[i], s)
            s, e = timed(lambda img=img, t=t: floor.explain(img, t), 1)
            floor_s[i] = min(floor_s[i], s)
            floor_dec.append(e.evaluations["decoder"])
        for k, chunk in enumerate(chunks):
            s, _ = timed(lambda chunk=chunk: ex.explain_batch([c[0] for c in chunk], [c[1] for c in chunk]), 1)
            batch_s[k] = min(batch_s[k], s)
            s, _ = timed(lambda chunk=chunk: floor.explain_batch([c[0] for c in chunk], [c[1] for c in chunk]), 1)
            floor_batch_s[k] = min(floor_batch_s[k], s)
    batch_s = sum(batch_s)  # type: ignore[assignment]

    cf_dec = np.mean([e.evaluations["decoder"] for e in expl])
    cf_drop = sum(e.pred_reconstruction - e.frame_preds[0] >= 0.3 for e in expl)
    cf_drop_orig = sum(e.pred_original - e.frame_preds[0] >= 0.3 for e in expl)
    cf_up = sum(e.frame_preds[0] > e.pred_reconstruction + 1e-6 for e in expl)
    ref_dec = np.mean([r.decoder_images for r in runs])
    ref_drop = sum(r.frame_preds[-1] - r.frame_preds[0] >= 0.3 for r in runs)
    ref_up = sum(r.frame_preds[0] > r.frame_preds[-1] + 1e-6 for r in runs)
    pred_orig = [float(e.pred_original) for e in expl]
    ref_drop_orig = sum(po - r.frame_preds[0] >= 0.3 for po, r in zip(pred_orig, runs))
    ms_single = 1000 * np.mean(single_s)
    ms_batch = 1000 * batch_s / n
    ms_ref = 1000 * np.mean(ref_s)
    ms_floor = 1000 * np.mean(floor_s)
    ms_floor_batch = 1000 * sum(floor_batch_s) / n

    shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
    print(f"Latent Shift cost: {n} held-out phantoms (seed {args.seed}), bundle {args.bundle} "
          f"({bundle.resolution} px), {args.threads} thread(s), explain_batch of {args.batch}, "
          f"min of {args.repeats} runs; cfviewer latentshift with {shown}")
    print()
    print("| | decoder images / explanation | ms single | ms explain_batch | speed-up single / batch "
          "| drop >= 0.3 (vs reconstruction) | drop >= 0.3 (vs original) | counterfactual above reconstruction |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| cfviewer `latentshift` | {cf_dec:.1f} | {ms_single:.1f} | {ms_batch:.1f} | "
          f"{ms_ref / ms_single:.2f}x / {ms_ref / ms_batch:.2f}x | {cf_drop} of {n} | {cf_drop_orig} of {n} | {cf_up} |")
    print(f"| the floor: no search (`fix_range`), frames only | {np.mean(floor_dec):.1f} | {ms_floor:.1f} | "
          f"{ms_floor_batch:.1f} | {ms_ref / ms_floor:.2f}x / {ms_ref / ms_floor_batch:.2f}x | - | - | - |")
    print(f"| reference walk (`reference_run`) | {ref_dec:.1f} | {ms_ref:.1f} | (no batching) | 1x | "
          f"{ref_drop} of {n} | {ref_drop_orig} of {n} | {ref_up} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
