"""Timing of the analysis over simulated responses (default 100,000).

    python -m cfviewer.analysis.bench                      # 10 readers x 2500 cases x 2 x 2
    python -m cfviewer.analysis.bench --readers 4 --cases 200 --n-boot 500

Prints a markdown table of wall-clock seconds per step (best of --repeat runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from cfviewer import PATHOLOGIES

DEFAULT_QUESTIONS = (
    "How confident are you in the model's prediction?",
    "Is the model looking at the correct feature?",
)


def simulate_responses(
    n_readers: int = 10,
    n_cases: int = 2500,
    arms: Sequence[str] = ("Method A", "Method B"),
    questions: Sequence[str] = DEFAULT_QUESTIONS,
    effect: float = 0.3,
    seed: int = 0,
) -> pd.DataFrame:
    """A long-format response table with the export's analysis columns, marked simulated.

    Latent score per response = case difficulty + reader bias + `effect` x arm index + noise,
    cut into 1..5; cases cycle through the six pathologies, a third are false positives.
    """
    rng = np.random.default_rng(seed)
    n_arms, n_q = len(arms), len(questions)
    case_effect = rng.normal(0, 0.8, n_cases)
    reader_bias = rng.normal(0, 0.4, n_readers)
    r, c, a, q = (g.ravel() for g in np.meshgrid(
        np.arange(n_readers), np.arange(n_cases), np.arange(n_arms), np.arange(n_q),
        indexing="ij"))
    latent = (3.0 + case_effect[c] + reader_bias[r] + effect * a
              + rng.normal(0, 0.9, r.size))
    rating = np.clip(np.rint(latent), 1, 5).astype(np.int64)
    pathologies = np.asarray(PATHOLOGIES)
    return pd.DataFrame({
        "reader": np.char.add("reader", r.astype(str)),
        "case": c,
        "arm": np.asarray(arms)[a],
        "pathology": pathologies[c % len(pathologies)],
        "stratum": np.where(c % 3 == 0, "FP", "TP"),
        "question": np.asarray(questions)[q],
        "rating": rating,
        "simulated": True,
    })


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

    p = argparse.ArgumentParser(prog="python -m cfviewer.analysis.bench",
                                description=__doc__.splitlines()[0])
    p.add_argument("--readers", type=int, default=10)
    p.add_argument("--cases", type=int, default=2500)
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    df = simulate_responses(args.readers, args.cases, seed=args.seed)
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
    print("\ncomparison, stratum 'all' (simulated effect 0.3 on the latent scale):\n")
    print("| question | n_pairs | mean_diff | p | r_rb [95% CI] |")
    print("|---|---:|---:|---:|---|")
    for _, r in allrow.iterrows():
        print(f"| {r['question']} | {r['n_pairs']} | {r['mean_diff']:+.3f} | {r['p']:.2g} | "
              f"{r['r_rb']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
