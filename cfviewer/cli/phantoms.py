"""`cfviewer phantoms`: write phantom chest radiographs (PNG16 + DICOM + masks + labels.csv),
or a 4 x 4 contact sheet with --grid."""

from __future__ import annotations

import argparse
import time

from cfviewer import PATHOLOGIES
from cfviewer.errors import CfviewerError


class PhantomArgsError(CfviewerError):
    pass


def _prevalence(text: str) -> tuple[str, float]:
    name, sep, val = text.rpartition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=P, e.g. Mass=0.2")
    lookup = {p.lower().replace(" ", "_"): p for p in PATHOLOGIES}
    key = lookup.get(name.strip().lower().replace(" ", "_"))
    if key is None:
        raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(PATHOLOGIES)}")
    try:
        return key, float(val)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{val!r} is not a number in [0, 1]") from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "phantoms",
        help="synthetic chest radiographs with masks",
        description="Write N phantom chest radiographs: images/*.png (16-bit), dicom/*.dcm (DX), "
                    "masks/<id>_<finding>.png and labels.csv; or a 4x4 preview grid with --grid.",
    )
    p.add_argument("--n", type=int, default=16, help="number of phantoms (default 16)")
    p.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--out", help="output directory (required unless --grid)")
    p.add_argument("--grid", metavar="PNG", help="write a 4x4 labelled preview grid to this PNG and exit")
    p.add_argument("--prevalence", type=_prevalence, action="append", default=[], metavar="NAME=P",
                   help="prevalence of one pathology (repeatable), e.g. --prevalence Mass=0.2")
    p.add_argument("--tube-given-pneumothorax", type=float, default=0.8)
    p.add_argument("--tube-given-no-pneumothorax", type=float, default=0.05)
    p.add_argument("--marker-probability", type=float, default=0.5)
    p.add_argument("--clinical", action="store_true",
                   help="the clinical preset (PhantomConfig.clinical: mimics, subtle findings, label "
                        "noise, AP and low-inspiration films, collimation, annotation text, detailed "
                        "anatomy), as the demo model is trained on")
    p.add_argument("--no-dicom", action="store_true", help="skip the DICOM files")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (same output for any value)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cfviewer.phantoms import PhantomConfig

    if args.n < 1:
        raise PhantomArgsError(f"--n {args.n}: ask for at least 1 phantom")
    if args.jobs < 1:
        raise PhantomArgsError(f"--jobs {args.jobs}: use 1 or more worker processes")
    make = PhantomConfig.clinical if args.clinical else PhantomConfig
    config = make(
        size=args.size,
        prevalence=dict(args.prevalence),
        tube_given_pneumothorax=args.tube_given_pneumothorax,
        tube_given_no_pneumothorax=args.tube_given_no_pneumothorax,
        marker_probability=args.marker_probability,
    )
    if args.grid:
        from cfviewer.phantoms.grid import make_grid

        path = make_grid(args.grid, seed=args.seed, size=args.size, config=config)
        print(f"wrote {path}")
        return 0
    if not args.out:
        raise PhantomArgsError("--out DIR is required (where to write the phantoms), or use --grid PNG")
    from cfviewer.phantoms import write_dataset

    t0 = time.perf_counter()
    labels = write_dataset(args.out, args.n, args.size, args.seed, config, dicom=not args.no_dicom,
                           overwrite=args.overwrite, n_jobs=args.jobs)
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} phantoms ({args.size} px) to {labels.parent} in {dt:.1f} s; labels: {labels}")
    return 0
