"""`cfviewer train` (demo classifier + autoencoder on phantoms) and `cfviewer model-card`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cfviewer.errors import CfviewerError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the demo classifier + autoencoder on phantoms",
        description="Train the classifier, then the autoencoder, on phantom radiographs as the "
                    "config says, and write a model bundle (bundle.json + classifier.pt + "
                    "autoencoder.pt) to --out. Checkpoints go to --work-dir; --resume continues "
                    "an interrupted run from its last checkpoint.",
    )
    p.add_argument("--config", required=True, type=Path, help="training config (JSON), e.g. study_data/demo/train_config.json")
    p.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work-dir")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="checkpoints + phantom cache (default ~/.cache/cfviewer/train/<hash of --out>)")
    p.add_argument("--probe-resolution", type=int, action="append", default=[],
                   help="also measure the training speed at this resolution (repeatable) and "
                        "record it in the bundle's metadata (why this resolution)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)

    m = subparsers.add_parser(
        "model-card",
        help="evaluate a bundle on held-out phantoms and write MODEL_CARD.md",
        description="Evaluate a bundle on N held-out phantoms (seed disjoint from training): "
                    "per-pathology AUC, threshold, sensitivity/specificity, autoencoder MAE, the "
                    "Latent Shift paper's Appendix-K table and the chest-tube shortcut.",
    )
    m.add_argument("--bundle", required=True, type=Path, help="bundle directory")
    m.add_argument("--n", type=int, default=1000, help="held-out phantoms (default 1000)")
    m.add_argument("--seed", type=int, default=2026, help="held-out dataset seed (default 2026)")
    m.add_argument("--tube-n", type=int, default=300,
                   help="phantoms in each targeted chest-tube set (default 300)")
    m.add_argument("--counterfactuals", type=int, default=20,
                   help="held-out true positives per pathology for the counterfactual section "
                        "(Latent Shift; default 20, 0 = skip)")
    m.add_argument("--compare", type=Path, default=None,
                   help="(Attri-Net bundles) also evaluate this bundle on the same held-out phantoms and "
                        "show its AUC and false positives next to Attri-Net's (e.g. study_data/demo/bundle)")
    m.add_argument("--out", type=Path, default=None, help="markdown file (default: print)")
    m.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    m.add_argument("--device", default="auto")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=run_model_card)


def run_train(args: argparse.Namespace) -> int:
    from cfviewer.models.train import TrainConfig, measure_training_speed, run_training

    config = TrainConfig.from_json(args.config)
    extra = {}
    if args.probe_resolution:
        res = sorted(set(args.probe_resolution) | {config.resolution})
        print(f"measuring training speed at {res} px ...")
        speed = measure_training_speed(config, res, device=args.device)
        extra["speed_probe"] = {str(r): v for r, v in speed.items()}
        for r, v in speed.items():
            print(f"  {r} px: classifier {v['classifier_ms_per_image']:.1f} ms/img, "
                  f"autoencoder {v['autoencoder_ms_per_image']:.1f} ms/img per training step")
    run_training(config, args.out, resume=args.resume, device=args.device,
                 work_dir=args.work_dir, progress=not args.no_progress, extra_meta=extra)
    return 0


def run_model_card(args: argparse.Namespace) -> int:
    from cfviewer.models.bundle import Bundle
    from cfviewer.models.model_card import evaluate_bundle, render_model_card

    bundle = Bundle.load(args.bundle, device=args.device)
    report = evaluate_bundle(bundle, n=args.n, seed=args.seed, progress=not args.no_progress,
                             tube_n=args.tube_n, counterfactuals=args.counterfactuals)
    from cfviewer.models.attrinet import is_attrinet

    if is_attrinet(bundle.classifier):
        from cfviewer.models.attrinet_card import render_attrinet_card

        reference = None
        if args.compare is not None:
            other = Bundle.load(args.compare, device=args.device)
            reference = evaluate_bundle(other, n=args.n, seed=args.seed, progress=not args.no_progress,
                                        tube_n=args.tube_n, counterfactuals=0)
            report["reference"] = {"bundle": str(args.compare), **reference}
        text = render_attrinet_card(bundle, report, bundle_dir=args.bundle, reference=reference,
                                    reference_dir=args.compare)
    else:
        if args.compare is not None:
            raise CfviewerError("--compare is for Attri-Net bundles (their AUC next to a post-hoc classifier's); "
                                f"{args.bundle} is not one")
        text = render_model_card(bundle, report, bundle_dir=args.bundle)
    if args.json:
        import json

        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0
