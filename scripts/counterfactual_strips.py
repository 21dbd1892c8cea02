"""One counterfactual strip per pathology (original, counterfactual, difference, finding mask)
for the README, plus the Latent Shift GIFs of one true and one false positive per pathology
for review.

    python scripts/counterfactual_strips.py                         # demo bundle -> docs/
    python scripts/counterfactual_strips.py --bundle DIR --out DIR --gifs /tmp/gifs
    python scripts/counterfactual_strips.py --bundle study_data/demo/attrinet --explainer attrinet \
        --name attrinet_strips.png                                  # Attri-Net's x + M_c(x)

Cases are the benchmark's held-out phantoms (``cfviewer.evaluation.cases``, rendered as the
bundle was trained); the first true positive of each pathology is shown. False positives for
the GIFs come from the same stream with the finding forced off. Each strip's title gives the
counterfactual scores of ``cfviewer.metrics.counterfactual`` (drop, share of the change inside
the dilated mask, mean change inside in grey levels).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=ROOT / "study_data" / "demo" / "bundle")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--explainer", default="latentshift")
    ap.add_argument("--gifs", type=Path, default=None, help="also write TP / FP GIFs here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="counterfactual_strips.png", help="file name of the strip in --out")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.ndimage import binary_erosion

    from cfviewer import PATHOLOGIES
    from cfviewer.evaluation.cases import PhantomSource, bench_seeds
    from cfviewer.explain import get_explainer
    from cfviewer.explain.render import write_gif
    from cfviewer.metrics.counterfactual import GREY_PER_UNIT, score_explanation
    from cfviewer.models import Bundle

    bundle = Bundle.load(args.bundle, device="cpu")
    src = PhantomSource.for_bundle(bundle)
    ex = get_explainer(args.explainer, bundle)
    pats = [p for p in PATHOLOGIES if p in bundle.pathologies]
    rows: dict[str, tuple] = {}
    fps: dict[str, tuple] = {}
    seeds = bench_seeds(3000, args.seed, 0)
    for i, s in enumerate(seeds):
        p = pats[i % len(pats)]
        k = bundle.target_index(p)
        if p not in rows:
            image, masks = src.render(int(s), labels={p: 1})
            if masks.get(p) is not None and masks[p].any() and bundle.positive(bundle.predict(image))[0, k]:
                e = ex.explain(image, p)
                rows[p] = (e, masks[p], int(s))
        elif args.gifs is not None and p not in fps:
            image, _ = src.render(int(s), labels={p: 0})
            if bundle.positive(bundle.predict(image))[0, k]:
                fps[p] = (ex.explain(image, p), int(s))
        if len(rows) == len(pats) and (args.gifs is None or len(fps) == len(pats)):
            break
    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2.15 * len(rows)), squeeze=False)
    for r, (p, (e, mask, s)) in enumerate(rows.items()):
        sc = score_explanation(e, mask)
        i0 = int(np.argmin(np.abs(e.lambdas)))
        start, cf = e.frames[i0], e.frames[0]
        diff = (cf - start) * GREY_PER_UNIT
        lim = max(8.0, float(np.abs(diff).max()))
        edge = mask & ~binary_erosion(mask)
        panels = [(start, f"{p}: f = {e.frame_preds[i0]:.2f}"), (cf, f"counterfactual: f = {e.frame_preds[0]:.2f}"),
                  (diff, f"change: {sc.share_inside:.0%} inside, {sc.mean_inside:.0f} grey"), (start, "finding mask")]
        for c, (img, title) in enumerate(panels):
            ax = axes[r, c]
            if c == 2:
                ax.imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim)
            else:
                ax.imshow(img, cmap="gray", vmin=-1024, vmax=1024)
            if c == 3:
                ov = np.zeros((*mask.shape, 4))
                ov[edge] = (1.0, 0.2, 0.1, 1.0)
                ax.imshow(ov)
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        print(f"{p:14s} seed {s}: drop {sc.drop:.2f}, inside {sc.share_inside:.2f}, mean inside "
              f"{sc.mean_inside:.1f}, visible {sc.visible}")
        if args.gifs is not None:
            args.gifs.mkdir(parents=True, exist_ok=True)
            write_gif(e, args.gifs / f"tp_{p.replace(' ', '_')}.gif")
            if p in fps:
                write_gif(fps[p][0], args.gifs / f"fp_{p.replace(' ', '_')}.gif")
    fig.suptitle(f"{args.explainer} counterfactuals on held-out true positives ({bundle.resolution} px)", fontsize=9)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / args.name
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
