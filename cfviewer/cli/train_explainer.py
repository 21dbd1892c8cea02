"""`cfviewer train-explainer sagen --bundle DIR`: train the SAGen similar / adversarial
generators of a bundle's classifier (Charachon et al. 2020, :mod:`cfviewer.models.sagen`) and
save them beside it (DIR/sagen.pt + DIR/sagen.json).

`cfviewer train-explainer inpainter --bundle DIR`: train the partial-convolution inpainter that
marginalises regions for inpainting attribution (:mod:`cfviewer.models.inpainter`), saved as
DIR/inpainter.pt + DIR/inpainter.json."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-explainer",
        help="train an explainer's own models for a bundle (SAGen generators, the inpainter)",
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

    i = sub.add_parser(
        "inpainter",
        help="partial-convolution inpainter (the marginalisation of inpainting attribution)",
        description="Train the partial-convolution inpainter (Liu et al. 2018, as in the inpainting-attribution "
                    "paper, section 2.2) on healthy phantoms of the bundle's training domain, then run the "
                    "marginalisation check (classifier AUC with healthy regions / findings inpainted) on held-out "
                    "phantoms. Saved as DIR/inpainter.pt + DIR/inpainter.json. Checkpoints go to --work-dir; "
                    "--resume continues an interrupted (or --max-minutes-limited) run.",
    )
    i.add_argument("--bundle", required=True, type=Path, help="bundle directory (the inpainter is saved into it)")
    i.add_argument("--epochs", type=int, default=None,
                   help="phase-1 epochs (BN everywhere, lr 2e-4); default from InpainterConfig")
    i.add_argument("--epochs-phase2", type=int, default=None,
                   help="phase-2 epochs (encoder BN frozen, lr 1e-5); may change on --resume")
    i.add_argument("--n-train", type=int, default=None, help="healthy training phantoms (default 1700, the paper's)")
    i.add_argument("--n-val", type=int, default=None, help="healthy held-out phantoms (default 135; 0 = skip)")
    i.add_argument("--n-check", type=int, default=None,
                   help="phantoms of the marginalisation check (default 200; 0 = skip)")
    i.add_argument("--batch-size", type=int, default=None, help="batch size (default 5, the paper's)")
    i.add_argument("--lr", type=float, default=None, help="phase-1 Adam learning rate (default 2e-4)")
    i.add_argument("--lr-phase2", type=float, default=None, help="phase-2 learning rate (default 1e-5)")
    i.add_argument("--widths", type=str, default=None,
                   help="encoder channels per level, e.g. 16,32,64,96,96 (default; the paper's: 64,128,256,512,512)")
    i.add_argument("--finding-holes", type=float, default=None,
                   help="share of training holes that are a finding's region on the same healthy patient "
                        "(default 0: only random blobs and strokes; 0.5 was measured and did not help, "
                        "docs/experiments.md)")
    i.add_argument("--features", choices=("autoencoder", "random"), default=None,
                   help="perceptual / style features: the bundle's autoencoder encoder (default) or a fixed "
                        "random conv net (bundles without an autoencoder)")
    i.add_argument("--max-minutes", type=float, default=None,
                   help="stop at the step where this many minutes are spent and save the inpainter "
                        "(continue with --resume)")
    i.add_argument("--seed", type=int, default=None, help="seed of data, masks, shuffling and the check (default 0)")
    i.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    i.add_argument("--revalidate", action="store_true",
                   help="train nothing: recompute the marginalisation check (and its hole-size sweep) of the "
                        "bundle's inpainter against its classifier as it is now, and rewrite inpainter.json")
    i.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work-dir")
    i.add_argument("--work-dir", type=Path, default=None,
                   help="checkpoints + phantom cache (default ~/.cache/cfviewer/inpainter/<hash of --bundle>)")
    i.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    i.add_argument("--no-progress", action="store_true", help="no progress bars")
    i.set_defaults(func=run_inpainter)
    register_masknet(sub)
    p.set_defaults(func=lambda args: _no_explainer(p))


def _no_explainer(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _set_from_args(cfg, args: argparse.Namespace, names) -> None:
    """Copy each given option onto the config: ``names`` are option names or (option, field) pairs."""
    for name in names:
        key, attr = (name, name) if isinstance(name, str) else name
        value = getattr(args, key, None)
        if value is not None:
            setattr(cfg, attr, value)


def _widths(args: argparse.Namespace, error: type[Exception], example: str) -> list[int] | None:
    """--widths as integers (None when not given); ``error`` naming the example otherwise."""
    if not args.widths:
        return None
    try:
        return [int(v) for v in str(args.widths).split(",") if v.strip()]
    except ValueError:
        raise error(f"--widths {args.widths!r}: give comma-separated integers, e.g. {example}") from None


def _report(doc: dict, quality_line, stopped: bool, status: str) -> None:
    """The two closing lines of a training command: steps and time, then the held-out quality."""
    tr = doc["training"]
    print(f"trained {tr['steps']} steps in {tr['seconds']['training']:.0f} s{status if stopped else ''}")
    print(quality_line(doc.get("validation")))


def sagen_config_from_args(args: argparse.Namespace):
    from cfviewer.models.sagen import SAGenConfig, SAGenError

    cfg = SAGenConfig()
    _set_from_args(cfg, args, ("preset", "epochs", "n_train", "n_val", "batch_size", "lr", "beta", "alpha_l1",
                               "max_minutes", "seed"))
    widths = _widths(args, SAGenError, "16,32,64")
    if widths is not None:
        cfg.widths = widths
    cfg.validate()
    return cfg


def run_sagen(args: argparse.Namespace) -> int:
    from cfviewer.models.bundle import Bundle
    from cfviewer.models.sagen import get_preset, quality_line, train_sagen

    config = sagen_config_from_args(args)  # a bad preset fails before the bundle is loaded
    bundle = Bundle.load(args.bundle, device=args.device)
    if getattr(args, "continue_", False):
        from cfviewer.models.sagen import continue_sha256, continued_architecture

        config.continue_from = continue_sha256(bundle)
        arch = continued_architecture(bundle)  # what --widths / --preset leave unsaid: the bundle's generators
        if not args.widths and "widths" in arch:
            config.widths = arch["widths"]
        if args.preset is None and "preset" in arch:
            config.preset = arch["preset"]
    preset = get_preset(config.preset)
    beta = "" if config.beta is None else f", beta override {config.beta:g}"
    print(f"SAGen {preset.name}{beta} for {args.bundle} ({len(bundle.pathologies)} pathologies, "
          f"{2 * len(bundle.pathologies)} heads, {bundle.resolution} px, device {bundle.device})")
    result = train_sagen(bundle, config, out_dir=args.bundle, work_dir=args.work_dir, resume=args.resume,
                         progress=not args.no_progress)
    _report(result.doc, quality_line, bool(result.doc["training"].get("stopped")),
            " (stopped by --max-minutes; continue with --resume)")
    return 0


def inpainter_config_from_args(args: argparse.Namespace):
    from cfviewer.models.inpainter import InpainterConfig, InpainterError

    cfg = InpainterConfig()
    _set_from_args(cfg, args, (("epochs", "epochs_phase1"), "epochs_phase2", "n_train", "n_val", "n_check",
                               "batch_size", ("lr", "lr_phase1"), "lr_phase2", "finding_holes", "features", "max_minutes",
                               "seed"))
    widths = _widths(args, InpainterError, "16,32,64,96,96")
    if widths is not None:
        cfg.widths = widths
    cfg.validate()
    return cfg


def run_inpainter(args: argparse.Namespace) -> int:
    import torch

    from cfviewer.models.bundle import Bundle
    from cfviewer.models.inpainter import InpainterConfig, quality_line, train_inpainter

    config = inpainter_config_from_args(args)
    if args.threads:
        torch.set_num_threads(int(args.threads))
    bundle = Bundle.load(args.bundle, device=args.device)
    if args.revalidate:
        from cfviewer.models.inpainter import revalidate_inpainter

        n_check = config.n_check or InpainterConfig().n_check
        validation = revalidate_inpainter(bundle, n_check=n_check, seed=args.seed, progress=not args.no_progress)
        print(quality_line(validation))
        return 0
    config.validate(bundle.resolution)
    print(f"partial-convolution inpainter for {args.bundle} ({bundle.resolution} px, widths "
          f"{','.join(map(str, config.widths))}, {config.epochs_phase1}+{config.epochs_phase2} epochs, "
          f"device {bundle.device}, {torch.get_num_threads()} CPU threads)")
    result = train_inpainter(bundle, config, out_dir=args.bundle, work_dir=args.work_dir, resume=args.resume,
                             progress=not args.no_progress)
    _report(result.doc, quality_line, bool(result.doc["training"].get("stopped")),
            " (stopped by --max-minutes; continue with --resume)")
    return 0


# ---------------------------------------------------------------------- masknet (inpainting attribution)
def register_masknet(sub) -> None:
    """`cfviewer train-explainer masknet --bundle DIR`: the one-pass mask network of the
    `inpainting` explainer (:mod:`cfviewer.models.masknet`), saved as DIR/masknet.pt + DIR/masknet.json;
    needs the bundle's inpainter (`cfviewer train-explainer inpainter --bundle DIR`) first."""
    m = sub.add_parser(
        "masknet",
        help="the mask network of the `inpainting` explainer (needs the inpainter first)",
        description="Train the one-pass attribution network (encoder = the frozen classifier's last four scales) "
                    "through the bundle's frozen inpainter on phantoms rendered as its training images: every "
                    "(image, pathology) pair the classifier calls positive, with the iterative masks of "
                    "--distill-pairs of them as distillation targets. Saved as DIR/masknet.pt + DIR/masknet.json. "
                    "Checkpoints and targets go to --work-dir; --resume continues an interrupted run.",
    )
    m.add_argument("--bundle", required=True, type=Path, help="bundle directory (with inpainter.pt; the network is saved into it)")
    m.add_argument("--epochs", type=int, default=None, help="epochs at most (default 200; early stopping on validation ends it before)")
    m.add_argument("--n-train", type=int, default=None, help="training phantoms (default 300)")
    m.add_argument("--n-val", type=int, default=None, help="validation phantoms (default 50; 0 = none)")
    m.add_argument("--batch-size", type=int, default=None, help="batch size (default 8)")
    m.add_argument("--distill-pairs", type=int, default=None,
                   help="training pairs with an iterative target (default 160; 0 = the paper's objective alone)")
    m.add_argument("--target-steps", type=int, default=None, help="iterative search steps per target (default 150)")
    m.add_argument("--lr-min", type=float, default=None, help="cyclic learning rate, low end (default 1e-4)")
    m.add_argument("--lr-max", type=float, default=None, help="cyclic learning rate, high end (default 1e-3)")
    m.add_argument("--max-area", type=float, default=None, help="delta, the largest mask share (default 0.2)")
    m.add_argument("--max-minutes", type=float, default=None,
                   help="stop when this many minutes are spent and save the best network so far (continue with --resume)")
    m.add_argument("--seed", type=int, default=None, help="seed of the pair choice, shuffling and init (default 0)")
    m.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work-dir")
    m.add_argument("--work-dir", type=Path, default=None,
                   help="checkpoints, targets, phantom cache (default ~/.cache/cfviewer/masknet/<hash of --bundle>)")
    m.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    m.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's); 1 when other jobs share the cores "
                        "(oversubscribed threads run the inpainter ~15x slower)")
    m.add_argument("--no-progress", action="store_true", help="no progress bars")
    m.set_defaults(func=run_masknet)


def masknet_config_from_args(args: argparse.Namespace):
    from cfviewer.models.masknet import MaskNetConfig

    cfg = MaskNetConfig()
    _set_from_args(cfg, args, ("epochs", "n_train", "n_val", "batch_size", "distill_pairs", "target_steps", "lr_min",
                               "lr_max", "max_minutes", "seed"))
    if getattr(args, "max_area", None) is not None:
        cfg.objective = {**cfg.objective, "max_area": float(args.max_area)}
    cfg.validate()
    return cfg


def run_masknet(args: argparse.Namespace) -> int:
    from cfviewer.models.bundle import Bundle
    from cfviewer.models.masknet import quality_line, train_masknet

    config = masknet_config_from_args(args)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(max(1, int(args.threads)))
    bundle = Bundle.load(args.bundle, device=args.device)
    print(f"inpainting mask network for {args.bundle} ({len(bundle.pathologies)} pathologies, {bundle.resolution} px, "
          f"device {bundle.device})")
    result = train_masknet(bundle, config, out_dir=args.bundle, work_dir=args.work_dir, resume=args.resume,
                           progress=not args.no_progress)
    stopped = result.doc["training"].get("stopped")
    _report(result.doc, quality_line, stopped == "max_minutes", f" (stopped: {stopped}; continue with --resume)")
    return 0
