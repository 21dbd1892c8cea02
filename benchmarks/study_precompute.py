"""Precompute throughput of the study engine: phantom cases, the reference study's two arms,
every artifact, on the CPU with one torch thread.

    python benchmarks/study_precompute.py --cases 10 --bundle study_data/demo/bundle
    python benchmarks/study_precompute.py --cases 10 [--resolution 128]   # a random bundle

The demo bundle when given (--bundle), else a random bundle of --resolution (explainer cost
depends on the architecture, not the weights, except Latent Shift's search length, which
depends on the trained autoencoder). Every case is called positive (thresholds 0), so the
cohort is every case. The study is the sample study of `cfviewer.study.demo.build_sample_study`
(224 px phantoms). Prints one table: case x arm units, seconds, units per minute, and the time
of an up-to-date re-run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time


def bench_precompute(n_cases: int, resolution: int, bundle_dir: str | None) -> dict[str, float]:
    import torch

    from cfviewer.models import Bundle
    from cfviewer.study import artifacts
    from cfviewer.study.db import open_database
    from cfviewer.study.demo import build_sample_study, positive_bundle

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if bundle_dir:
            bundle = Bundle.load(bundle_dir, device="cpu")
            bundle.thresholds = {p: 0.0 for p in bundle.pathologies}  # every case positive: cohort = all
        else:
            bundle = positive_bundle(resolution)
        sample = build_sample_study(tmp, name="bench", readers=("r",), n_phantoms=n_cases, image_size=224,
                                    per_pathology=n_cases, bundle=bundle, precompute=False)
        db = open_database(sample.db_url, study_dir=sample.root)
        try:
            rep = artifacts.precompute(db, "bench", bundle=bundle, bundle_id=sample.bundle_id)
            t = time.perf_counter()
            again = artifacts.precompute(db, "bench", bundle=bundle, bundle_id=sample.bundle_id)
            resume = time.perf_counter() - t
        finally:
            db.dispose()
        if rep.failed:
            raise SystemExit(f"precompute failed: {rep.failed}")
        return {"units": rep.units, "seconds": rep.seconds, "per_minute": rep.units / rep.seconds * 60,
                "resume_s": resume, "resume_skipped": again.skipped}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/study_precompute.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=10)
    p.add_argument("--resolution", type=int, default=128, help="random bundle resolution (no --bundle)")
    p.add_argument("--bundle", default=None, help="a model bundle folder (default: a random bundle)")
    a = p.parse_args(argv)
    r = bench_precompute(a.cases, a.resolution, a.bundle)
    model = a.bundle or f"random {a.resolution} px bundle"
    print(f"precompute, {model}, {a.cases} cases x 2 arms, 1 torch thread\n")
    print("| units (case x arm) | seconds | units per minute | up-to-date re-run (s) | skipped on re-run |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {r['units']} | {r['seconds']:.1f} | {r['per_minute']:.0f} | {r['resume_s']:.2f} | "
          f"{r['resume_skipped']} |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
