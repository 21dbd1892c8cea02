"""`cfviewer train-attrinet --like DIR --out OUT`: train Attri-Net (Sun et al. 2023), an
inherently interpretable classifier explained by its own class maps, on the task and phantoms of
the bundle in DIR, and save it as a bundle in OUT (:mod:`cfviewer.models.attrinet_train`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-attrinet",
        help="train an Attri-Net bundle (inherently interpretable classifier with class maps)",
        description="Train Attri-Net (Sun et al., MIDL 2023) on the phantoms and pathologies of the bundle given "
                    "by --like (its training set's first --n-train images and its validation set) and save it as "
                    "a bundle in --out. Checkpoints go to --work-dir; --resume continues an interrupted (or "
                    "--max-minutes-limited) run.",
    )
    p.add_argument("--like", type=Path, default=None,
                   help="bundle whose task and phantoms Attri-Net learns (default: the demo bundle)")
    p.add_argument("--out", type=Path, required=True, help="folder for the Attri-Net bundle")
    p.add_argument("--steps", type=int, default=None, help="generator steps (default 1000)")
    p.add_argument("--n-train", type=int, default=None, help="training phantoms (default 4000)")
    p.add_argument("--n-val", type=int, default=None,
                   help="validation phantoms for step selection, calibration and thresholds (default 1000)")
    p.add_argument("--per-class", type=int, default=None,
                   help="positives and negatives of each class per step (default 2 + 2)")
    p.add_argument("--width", type=int, default=None, help="generator channels at full resolution (default 16)")
    p.add_argument("--critic-steps", type=int, default=None, help="critic updates per generator step (default 1; the paper 5)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop when this many minutes are spent and save the best step (continue with --resume)")
    p.add_argument("--seed", type=int, default=None, help="seed of initialisation and batches (default 0)")
    p.add_argument("--init-from", type=Path, default=None,
                   help="an Attri-Net bundle to start from (warm start, e.g. on new phantoms); the critic starts fresh")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work-dir")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="checkpoints + phantom cache (default OUT.work beside --out)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from cfviewer.models.attrinet_train import AttriNetConfig

    cfg = AttriNetConfig()
    for key in ("steps", "n_train", "n_val", "per_class", "width", "critic_steps", "max_minutes", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            setattr(cfg, key, value)
    if getattr(args, "init_from", None) is not None:
        cfg.init_from = str(args.init_from)
    cfg.validate()
    return cfg


def run(args: argparse.Namespace) -> int:
    from cfviewer.models.attrinet_train import train_attrinet_bundle
    from cfviewer.paths import demo_bundle_dir

    config = config_from_args(args)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(max(1, int(args.threads)))
    like = args.like if args.like is not None else demo_bundle_dir()
    train_attrinet_bundle(like, args.out, config, work_dir=args.work_dir, resume=args.resume,
                          progress=not args.no_progress, device=args.device)
    return 0
