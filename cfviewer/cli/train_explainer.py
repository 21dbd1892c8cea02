"""`cfviewer train-explainer sagen --bundle DIR`: train the SAGen similar / adversarial
generators of a bundle's classifier (Charachon et al. 2020, :mod:`cfviewer.models.sagen`) and
save them beside it (DIR/sagen.pt + DIR/sagen.json)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-explainer",
        help="train an explainer's own models for a bundle (SAGen generators)",
        description="Train the models an explainer needs for a bundle's classifier. "
                    "`sagen`: the similar and adversarial generators of Charachon et al. 2020 "
                    "(Single AE, one head pair per pathology), saved as DIR/sagen.pt + DIR/sagen.json; "
                    "the explainers `sagen`, `sagen-single` and adversarial_fi's SAGen pair use them.",
    )
    sub = p.add_subparsers(dest="explainer", metavar="EXPLAINER")
    s = sub.add_parser(
        "sagen",
        help="SAGen generators (Charachon et al. 2020)",
        description="Train SAGen generators against the bundle's classifier on phantoms rendered as its "
                    "training images, then report their quality on held-out phantoms. Checkpoints go to "
                    "--work-dir; --resume continues an interrupted (or --max-minutes-limited) run.",
    )
    s.add_argument("--bundle", required=True, type=Path, help="bundle directory (the generators are saved into it)")
    s.add_argument("--preset", default=None,
                   help="Table I row, e.g. 'Single AE1 (W,TV)' (default) or a slug: ae1-tv, ae1-w, ae1-w-tv, "
                        "ae2-w, ae2-w-tv")
    s.add_argument("--epochs", type=int, default=None, help="epochs (default 10)")
    s.add_argument("--n-train", type=int, default=None, help="training phantoms (default 2000)")
    s.add_argument("--n-val", type=int, default=None,
                   help="held-out phantoms for the quality line (default 200; 0 = skip)")
    s.add_argument("--batch-size", type=int, default=None, help="batch size (default 8, the paper's)")
    s.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-4, the paper's)")
    s.add_argument("--beta", type=float, default=None,
                   help="override b1 = b2 of the preset (the paper's 0.001) when the adversarial head does not "
                        "reach its target in the budget; recorded in sagen.json")
    s.add_argument("--alpha-l1", type=float, default=None,
                   help="override a4, the L1 weight on g_s(x) - g_a(x) in L_d (the preset's 0.2): larger = a "
                        "sparser, more local difference map; recorded in sagen.json")
    s.add_argument("--widths", type=str, default=None, help="shared U-Net channels per level, e.g. 16,32,64 (default)")
    s.add_argument("--max-minutes", type=float, default=None,
                   help="stop at the step where this many minutes are spent and save the generators "
                        "(continue with --resume)")
    s.add_argument("--seed", type=int, default=None, help="seed of shuffling, augmentation and validation (default 0)")
    s.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work-dir")
    s.add_argument("--continue", dest="continue_", action="store_true",
                   help="start from the generators the bundle has (more epochs on a finished run, e.g. "
                        "with another --lr or --beta; the checkpoint of that run is not needed), also "
                        "when the bundle's classifier was retrained since: a warm start for the new one")
    s.add_argument("--work-dir", type=Path, default=None,
                   help="checkpoints + phantom cache (default ~/.cache/cfviewer/sagen/<hash of --bundle>)")
    s.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=run_sagen)
    p.set_defaults(func=lambda args: _no_explainer(p))


def _no_explainer(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def sagen_config_from_args(args: argparse.Namespace):
    from cfviewer.models.sagen import SAGenConfig, SAGenError

    cfg = SAGenConfig()
    for key in ("preset", "epochs", "n_train", "n_val", "batch_size", "lr", "beta", "alpha_l1", "max_minutes",
                "seed"):
        value = getattr(args, key, None)
        if value is not None:
            setattr(cfg, key, value)
    if args.widths:
        try:
            cfg.widths = [int(v) for v in str(args.widths).split(",") if v.strip()]
        except ValueError:
            raise SAGenError(f"--widths {args.widths!r}: give comma-separated integers, e.g. 16,32,64") from None
    cfg.validate()
    return cfg


def run_sagen(args: argparse.Namespace) -> int:
    from cfviewer.models.bundle import Bundle
    from cfviewer.models.sagen import get_preset, quality_line, train_sagen

    config = sagen_config_from_args(args)  # a bad preset fails before the bundle is loaded
    bundle = Bundle.load(args.bundle, device=args.device)
    if getattr(args, "continue_", False):
        from cfviewer.models.sagen import continue_sha256

        config.continue_from = continue_sha256(bundle)
    preset = get_preset(config.preset)
    beta = "" if config.beta is None else f", beta override {config.beta:g}"
    print(f"SAGen {preset.name}{beta} for {args.bundle} ({len(bundle.pathologies)} pathologies, "
          f"{2 * len(bundle.pathologies)} heads, {bundle.resolution} px, device {bundle.device})")
    result = train_sagen(bundle, config, out_dir=args.bundle, work_dir=args.work_dir, resume=args.resume,
                         progress=not args.no_progress)
    tr = result.doc["training"]
    status = " (stopped by --max-minutes; continue with --resume)" if tr.get("stopped") else ""
    print(f"trained {tr['steps']} steps in {tr['seconds']['training']:.0f} s{status}")
    print(quality_line(result.doc.get("validation")))
    return 0
