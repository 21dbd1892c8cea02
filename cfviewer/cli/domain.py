"""`cfviewer bundle-domain`: store a bundle's training domain (a reference distribution of its
training images) in bundle.json without retraining, and measure which images fall outside it."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bundle-domain",
        help="store a bundle's training domain in bundle.json; check images against it",
        description="Build the reference distribution of the bundle's training domain (see "
                    "cfviewer.models.domain) and store it as meta.domain in DIR/bundle.json; the "
                    "weights are not touched. A bundle trained on phantoms by `cfviewer train` is "
                    "rebuilt from its validation phantoms (what training records); any other bundle "
                    "needs --images FOLDER of its training-domain images and a --description. "
                    "Imports, sampling and the sandbox then warn about images outside the domain. "
                    "--check FOLDER / --check-phantoms N report the share outside.",
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle directory (bundle.json is rewritten)")
    p.add_argument("--images", type=Path, default=None,
                   help="folder of training-domain images (recursive) to build the reference from")
    p.add_argument("--description", default=None,
                   help="what the bundle was trained on, shown in every warning (with --images)")
    p.add_argument("--n", type=int, default=None,
                   help="reference images to use (default: all validation phantoms / all images)")
    p.add_argument("--quantile", type=float, default=None,
                   help="threshold: this percentile of the calibration distances (default 99.5)")
    p.add_argument("--check-only", action="store_true",
                   help="do not rebuild: check images against the stored domain")
    p.add_argument("--remove", action="store_true", help="remove the stored domain from bundle.json")
    p.add_argument("--check", type=Path, action="append", default=[],
                   help="report the share of the images in this folder outside the domain (repeatable)")
    p.add_argument("--check-phantoms", type=int, default=0,
                   help="also report the share of N held-out phantoms outside the domain")
    p.add_argument("--check-seed", type=int, default=2026,
                   help="dataset seed of the held-out phantoms (default 2026, as `cfviewer model-card`)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_bundle_domain)


def run_bundle_domain(args: argparse.Namespace) -> int:
    from cfviewer.errors import CfviewerError
    from cfviewer.models import domain as dm

    doc = dm.read_bundle_json(args.bundle)
    resolution = int(doc["resolution"])
    if args.remove:
        dm.write_domain(args.bundle, None)
        print(f"removed the training domain from {args.bundle / 'bundle.json'}")
        return 0
    if args.check_only:
        d = dm.get_domain(doc)
        if d is None:
            raise CfviewerError(f"{args.bundle / 'bundle.json'}: {dm.NO_DOMAIN}")
    else:
        if args.description and not args.images:
            raise CfviewerError("--description goes with --images FOLDER (a phantom bundle describes itself)")
        q = dm.DEFAULT_QUANTILE if args.quantile is None else float(args.quantile)
        if not 50 <= q <= 100:
            raise CfviewerError(f"--quantile {q:g}: give a percentile between 50 and 100 (e.g. 99.5)")
        if args.images:
            if not args.description:
                raise CfviewerError("--images needs a --description of the training domain "
                                    "(e.g. \"NIH ChestX-ray14 frontal films\")")
            d = dm.folder_domain(args.images, resolution, description=args.description, n=args.n, quantile=q)
        else:
            d = dm.phantom_domain_for_bundle(doc.get("meta") or {}, resolution, n=args.n, quantile=q,
                                             progress=not args.no_progress)
        path = dm.write_domain(args.bundle, d)
        doc = dm.read_bundle_json(args.bundle)
        print(f"stored the training domain in {path}: {d['description']} ({d.get('details', d['source'])})")
        print(f"  reference: {d['n_fit']} images, "
              f"{len(d['features'])} image statistics, Mahalanobis distance"
              + (", each image also once with the training augmentation" if d.get("augmented") else ""))
        q = d["calibration_quantiles"]
        print(f"  threshold {d['threshold']:.2f} = {d['threshold_quantile']:g}th percentile of their out-of-fold "
              f"distances ({d.get('calibration', 'a held-out calibration split')}; "
              f"median {q['50']:.2f}, max {q['100']:.2f})")
    for folder in args.check:
        files = dm.image_files(folder)
        chk = dm.check_files(args.bundle, files, what=f"images in {folder}", keys=[str(f) for f in files])
        print(chk.line())
        _print_distances(chk)
    if args.check_phantoms:
        from cfviewer.phantoms import PhantomConfig, iter_phantoms

        from cfviewer.models.data import phantom_config

        train_cfg = ((doc.get("meta") or {}).get("training") or {}).get("config", {})
        opts = train_cfg.get("phantoms") or {}
        size = resolution * int(train_cfg.get("render_scale", 1))  # drawn as in training, then resized
        cfg = phantom_config(size, opts) if opts else PhantomConfig(size=size)
        imgs = (ph.image for ph in iter_phantoms(args.check_phantoms, args.check_seed, size, cfg))
        chk = dm.check_images(doc, imgs, what=f"held-out phantoms (seed {args.check_seed})",
                              keys=list(range(args.check_phantoms)))
        print(chk.line())
        _print_distances(chk)
    return 0


def _print_distances(chk) -> None:
    import numpy as np

    if chk.known and chk.distances:
        q = np.percentile(chk.distances, [0, 50, 100])
        print(f"  distance min {q[0]:.2f}, median {q[1]:.2f}, max {q[2]:.2f} (threshold {chk.threshold:.2f})")
