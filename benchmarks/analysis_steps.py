"""Timing of the analysis over simulated responses (default 100,000).

    python benchmarks/analysis_steps.py                    # 10 readers x 2500 cases x 2 x 2
    python benchmarks/analysis_steps.py --readers 4 --cases 200 --n-boot 500

The answers come from the simulated readers' rating model (`cfviewer.study.simulate.
simulate_frame`). Prints a markdown table of wall-clock seconds per step (best of --repeat
runs), then the comparison of the two arms over all cases.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

def _best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    from cfviewer.analysis import (
        compare_arms,
        describe,
        krippendorff_alpha,
        likert_figure,
        paired_means_figure,
        pathology_figure,
        reader_kappa,
    )

    from cfviewer.study.simulate import simulate_frame

    p = argparse.ArgumentParser(prog="python benchmarks/analysis_steps.py",
                                description=__doc__.splitlines()[0])
    p.add_argument("--readers", type=int, default=10)
    p.add_argument("--cases", type=int, default=2500)
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    df = simulate_frame(args.readers, args.cases, seed=args.seed)
    arm_a, arm_b = "Method A", "Method B"
    steps: list[tuple[str, Callable[[], object]]] = [
        ("compare_arms (all strata, n_boot=%d)" % args.n_boot,
         lambda: compare_arms(df, arm_a, arm_b, n_boot=args.n_boot, seed=args.seed)),
        ("compare_arms (boot_unit='case')",
         lambda: compare_arms(df, arm_a, arm_b, n_boot=args.n_boot, seed=args.seed,
                              boot_unit="case")),
        ("describe", lambda: describe(df)),
        ("reader_kappa (all reader pairs)", lambda: reader_kappa(df)),
        ("krippendorff_alpha (ordinal)", lambda: krippendorff_alpha(df)),
    ]
    rows = []
    results = {}
    for name, fn in steps:
        seconds, out = _best_of(fn, args.repeat)
        results[name] = out
        rows.append((name, seconds, len(out)))
    comparison = results[steps[0][0]]
    seconds, _ = _best_of(lambda: (likert_figure(df), paired_means_figure(comparison),
                                   pathology_figure(comparison)), args.repeat)
    rows.append(("3 figures", seconds, 3))

    print(f"analysis benchmark: {len(df):,} responses ({args.readers} readers x {args.cases} "
          f"cases x 2 arms x 2 questions), best of {args.repeat}, "
          f"numpy {np.__version__}, pandas {pd.__version__}\n")
    print("| step | seconds | output rows |")
    print("|---|---:|---:|")
    for name, sec, n in rows:
        print(f"| {name} | {sec:.3f} | {n} |")
    allrow = comparison[comparison["stratum_kind"] == "all"]
    print("\ncomparison, stratum 'all' (the simulated readers' rating model, cfviewer.study.simulate):\n")
    print("| question | n_pairs | mean_diff | p | r_rb [95% CI] |")
    print("|---|---:|---:|---:|---|")
    for _, r in allrow.iterrows():
        print(f"| {r['question']} | {r['n_pairs']} | {r['mean_diff']:+.3f} | {r['p']:.2g} | "
              f"{r['r_rb']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
