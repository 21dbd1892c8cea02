"""`cfviewer demo`: build (or reuse) the demo study and print the two reader links."""

from __future__ import annotations

import argparse
import sys


def cmd_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cfviewer.study.demo import build_demo

    bar = tqdm(total=0, desc="precompute (case x arm)", unit="it", disable=args.quiet, file=sys.stderr,
               leave=False)

    def prog(i: int, n: int, label: str) -> None:
        bar.total = n
        bar.update(i - bar.n)

    res = build_demo(force=args.force, simulate=args.simulate_readers, quiet=args.quiet,
                     precompute_progress=prog)
    bar.close()
    if res.precompute is not None and res.precompute.failed:
        print(f"cfviewer demo: {len(res.precompute.failed)} explanation(s) failed:", file=sys.stderr)
        for f in res.precompute.failed[:10]:
            print(f"  {f}", file=sys.stderr)
        return 1
    if res.simulation is not None and not args.quiet:
        print(f"simulated readers {', '.join(res.simulation.readers)}: {res.simulation.reads} reads answered now "
              "(flagged simulated)")
    if not args.quiet:
        print(f"demo study ready in {res.root} ({res.seconds.get('total', 0):.0f} s). "
              "Start the app with scripts/run-app, then open a reader link:")
    for name, link in res.links.items():
        print(f"  {name}: {link}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="build the demo study from phantoms and print the reader links",
        description="Build the embedded demo study under study_data/demo/: phantom cases, a cohort of "
                    "6 pathologies x 10 (half false positives where the model allows), arm A (gradient + "
                    "guided backprop + integrated gradients) and arm B (latentshift-max + animation), every "
                    "explanation precomputed, two readers. A second run reuses it.")
    p.add_argument("--simulate-readers", action="store_true",
                   help="add two simulated readers who answer everything (flagged simulated)")
    p.add_argument("--quiet", action="store_true", help="print only the reader links")
    p.add_argument("--force", action="store_true", help="delete the generated demo files and rebuild")
    p.set_defaults(func=cmd_demo)
