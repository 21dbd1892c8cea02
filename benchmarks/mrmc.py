"""Time of the MRMC analysis (cfviewer.analysis.mrmc.orh) and of study sizing.

    python benchmarks/mrmc.py [--readers 20] [--cases 1000] [--repeat 5]

A synthetic fully crossed ROC study (binormal-like 5-point ratings with reader and case
effects), analysed with `orh` (AUCs, jackknife covariances, the three OR analyses), best and
median of `repeat` runs; then `sizing.sizing_table` for 3-20 readers. Prints one table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd

from cfviewer.analysis import sizing
from cfviewer.analysis.mrmc import orh


def synthetic(readers: int, cases: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = (np.arange(cases) % 2).astype(int)
    case_effect = rng.normal(0, 1, cases)
    parts = []
    for j in range(readers):
        bias = rng.normal(0, 0.3)
        for m, shift in (("A", 0.0), ("B", 0.3)):
            latent = truth * (1.2 + shift) + 0.5 * case_effect + bias + rng.normal(0, 1, cases)
            parts.append(pd.DataFrame({"reader": f"r{j:02d}", "modality": m, "case": np.arange(cases),
                                       "truth": truth, "rating": np.clip(np.round(latent + 3), 1, 5)}))
    return pd.concat(parts, ignore_index=True)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readers", type=int, default=20)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    df = synthetic(args.readers, args.cases)
    res = orh(df)
    t_orh = timed(lambda: orh(df), args.repeat)
    t_size = timed(lambda: sizing.sizing_table(res.components, 0.05, range(3, 21)), args.repeat)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared); "
          f"{len(df):,} ratings = {args.readers} readers x 2 arms x {args.cases} cases")
    print("| step | best s | median s |")
    print("|---|---|---|")
    print(f"| orh (AUCs, jackknife, RRRC/FRRC/RRFC) | {min(t_orh):.3f} | {np.median(t_orh):.3f} |")
    print(f"| sizing_table, 3-20 readers | {min(t_size):.3f} | {np.median(t_size):.3f} |")
    print(f"RRRC: F = {res.rrrc.statistic:.2f}, ddf = {res.rrrc.df2:.1f}, p = {res.rrrc.p:.3g}")


if __name__ == "__main__":
    main()
