"""`cfviewer bench`: every registered explainer on held-out phantoms, scored against their
pixel-exact ground truth (:mod:`cfviewer.evaluation`); writes the "explainers" section of a
markdown file."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

DEFAULT_OUT = "docs/benchmarks.md"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark the explainers on held-out phantoms (localisation, AOPC, randomisation, "
        "confounder mass, class sensitivity, speed)",
        description=__doc__,
    )
    p.add_argument("--n", type=int, default=None, help="held-out phantoms (default 200, quick 6)")
    p.add_argument("--bundle", type=Path, default=None,
                   help="model bundle directory (default: the demo bundle)")
    p.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                   help="explainers to run (default: every registered one)")
    p.add_argument("--seed", type=int, default=0, help="benchmark seed (phantoms, randomisation)")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT),
                   help=f"markdown file whose 'explainers' section is replaced (default {DEFAULT_OUT})")
    p.add_argument("--section", default=None,
                   help="name of the section of --out to replace (default 'explainers'; e.g. "
                        "'explainers-attrinet' for a second bundle's run beside the demo bundle's)")
    p.add_argument("--quick", action="store_true", help="tiny settings for tests and smoke runs")
    p.add_argument("--batch-size", type=int, default=None, help="images per explain_batch call")
    p.add_argument("--randomization-cases", type=int, default=None,
                   help="cases for cascading randomisation (default 6)")
    p.add_argument("--confounder-cases", type=int, default=None,
                   help="tube-only false positives wanted (default 40)")
    p.add_argument("--confounder-max-phantoms", type=int, default=None,
                   help="phantoms generated at most while looking for them (default 1500)")
    p.add_argument("--grids", type=int, default=None, dest="grids_per_pathology",
                   help="class-sensitivity grids per pathology, Attri-Net protocol: the model's most "
                   "confident true positive + 3 true negatives, 4 explanations each (default 5, quick 1)")
    p.add_argument("--device", default="cpu", help="torch device for the bundle (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--note", default=None, help="a remark printed in the report header "
                   "(e.g. why n was reduced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cfviewer.evaluation import (
        EVALUATION_SECTION,
        EvaluationOptions,
        render_markdown,
        run_evaluation,
        write_section,
    )
    from cfviewer.models import Bundle
    from cfviewer.paths import demo_bundle_dir

    overrides = {
        "n": args.n, "methods": args.methods, "seed": args.seed, "batch_size": args.batch_size,
        "randomization_cases": args.randomization_cases, "confounder_cases": args.confounder_cases,
        "confounder_max_phantoms": args.confounder_max_phantoms,
        "grids_per_pathology": args.grids_per_pathology, "progress": not args.no_progress,
    }
    if args.quick:
        options = EvaluationOptions.quick_mode(**overrides)
    else:
        options = EvaluationOptions(**{k: v for k, v in overrides.items() if v is not None})
    bundle_dir = args.bundle if args.bundle is not None else demo_bundle_dir()
    bundle = Bundle.load(bundle_dir, device=args.device)
    desc = describe_bundle(bundle, bundle_dir)
    if args.note:
        desc["run_note"] = args.note
    result = run_evaluation(bundle, options, bundle_desc=desc)
    result.command = "cfviewer bench " + " ".join(shlex.quote(a) for a in _argv(args))
    section = args.section or EVALUATION_SECTION
    path = write_section(args.out, section, render_markdown(result))
    n_ok = sum(m.ran for m in result.methods) - 1
    print(f"cfviewer bench: {n_ok} explainers on {len(result.cases)} cases in "
          f"{result.seconds / 60:.1f} min -> {path} (section '{section}')")
    for m in result.methods:
        if m.error:
            print(f"  {m.name}: {m.error}", file=sys.stderr)
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    """The options given, as a command line to reproduce the run."""
    out: list[str] = ["--quick"] if args.quick else []
    for flag, val in (("--n", args.n), ("--bundle", args.bundle), ("--seed", args.seed),
                      ("--batch-size", args.batch_size),
                      ("--randomization-cases", args.randomization_cases),
                      ("--confounder-cases", args.confounder_cases),
                      ("--confounder-max-phantoms", args.confounder_max_phantoms),
                      ("--grids", args.grids_per_pathology), ("--out", args.out),
                      ("--section", getattr(args, "section", None))):
        if val is not None:
            out += [flag, str(val)]
    if args.methods:
        out += ["--methods", *args.methods]
    return out


def describe_bundle(bundle, bundle_dir: Path) -> dict:
    """Path + a one-line summary of what the bundle's metadata says about it (source, training
    set size, held-out AUC per pathology as written by `cfviewer train`)."""
    meta = dict(getattr(bundle, "meta", {}) or {})
    bits = []
    for key in ("source", "name", "description"):
        if isinstance(meta.get(key), (str, int, float)):
            bits.append(f"{key}: {meta[key]}")
    training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
    if isinstance(training.get("n_train"), int):
        bits.append(f"trained on {training['n_train']} phantoms")
    auc = training.get("val_auc") or meta.get("val_auc")
    if isinstance(auc, dict):
        nums = {k: v for k, v in auc.items() if isinstance(v, (int, float))}
        if nums:
            bits.append("held-out AUC " + ", ".join(f"{k} {v:.3f}" for k, v in nums.items()))
    thr = getattr(bundle, "thresholds", None)
    if isinstance(thr, dict) and thr:
        bits.append("thresholds " + ", ".join(f"{k} {v:.2f}" for k, v in thr.items()))
    from cfviewer.paths import PROJECT_ROOT

    shown = Path(bundle_dir).resolve()
    if shown.is_relative_to(PROJECT_ROOT):
        shown = shown.relative_to(PROJECT_ROOT)
    return {
        "path": str(shown),
        "resolution": bundle.resolution,
        "autoencoder": type(bundle.autoencoder).__name__ if bundle.autoencoder is not None else None,
        "summary": "; ".join(bits),
    }
