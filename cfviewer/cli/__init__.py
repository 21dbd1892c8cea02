"""The `cfviewer` command line. Each sub-command lives in its own module under cfviewer/cli/
and exposes `register(subparsers)`, which adds its parser and sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import sys

from cfviewer import __version__
from cfviewer.errors import CfviewerError

# Order = order in `cfviewer --help`.
COMMAND_MODULES = (
    "phantoms",   # cfviewer phantoms: synthetic chest radiographs with masks
    "train",      # cfviewer train / model-card: demo classifier + autoencoder
    "train_explainer",  # cfviewer train-explainer sagen: an explainer's own models (SAGen generators)
    "train_attrinet",  # cfviewer train-attrinet: an Attri-Net bundle (inherently interpretable classifier)
    "domain",     # cfviewer bundle-domain: store a bundle's training domain, check images against it
    "explain",    # cfviewer explain: one explanation of one image
    "bench",      # cfviewer bench: explainer benchmark on phantoms (+ speed tables)
    "study",      # cfviewer study ...: create/import/sample/readers/precompute/status/export/analyze
    "sample_size",  # cfviewer sample-size: readers x cases for MRMC power (Hillis & Obuchowski)
    "demo",       # cfviewer demo: build the embedded demo study
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cfviewer",
        description="Reader studies for explanations of chest X-ray classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"cfviewer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cfviewer.cli.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet
            if exc.name == f"cfviewer.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CfviewerError as exc:
        print(f"cfviewer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
