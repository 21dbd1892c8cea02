"""`cfviewer model-card`: evaluate a bundle on held-out phantoms and write MODEL_CARD.md.

Reported: training summary (from ``bundle.meta["training"]``), per-pathology AUC with the
stored threshold and sensitivity / specificity at it, the autoencoder's reconstruction error,
the Latent Shift paper's Appendix-K table (mean prediction on x and on D(E(x)), for positives
and negatives) and the chest-tube shortcut for Pneumothorax.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cfviewer.errors import CfviewerError
from cfviewer.formatting import number
from cfviewer.models.bundle import Bundle
from cfviewer.models.data import phantom_config, phantom_data
from cfviewer.models.evaluation import expected_calibration_error, roc_auc, sensitivity_specificity


class HeldOutSeedError(CfviewerError):
    """The evaluation seed overlaps the bundle's training or validation phantoms."""


TUBE_SET_SIZE = 300
"""Size of each targeted chest-tube set (Pneumothorax-negative, all or none with a tube)."""


def _check_disjoint(bundle: Bundle, n: int, seed: int) -> None:
    from cfviewer.models.train import training_splits
    from cfviewer.phantoms import image_seeds

    held = set(image_seeds(n, seed).tolist())
    for split, split_seed, count in training_splits(bundle.meta.get("training", {})):
        overlap = held & set(image_seeds(count, split_seed).tolist())
        if overlap:
            raise HeldOutSeedError(
                f"--seed {seed}: {len(overlap)} of the {n} held-out phantoms are in the "
                f"bundle's {split} split (dataset seed {split_seed}); choose another --seed"
            )


def _probs_and_recon(bundle: Bundle, images: torch.Tensor, batch: int = 64) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    probs, rec_probs, maes = [], [], []
    for i in range(0, len(images), batch):
        x = images[i : i + batch].float().numpy()
        probs.append(bundle.predict(x))
        if bundle.autoencoder is not None:
            rec = bundle.reconstruct(x)
            rec_probs.append(bundle.predict(rec))
            maes.append(np.abs(rec - x).reshape(len(x), -1).mean(1))
    p = np.concatenate(probs)
    if bundle.autoencoder is None:
        return p, None, None
    return p, np.concatenate(rec_probs), np.concatenate(maes)


def counterfactual_report(bundle: Bundle, per_pathology: int, seed: int,
                          explainer: str = "latentshift", max_tries: int = 40) -> dict[str, Any]:
    """Issue 10's counterfactual question on held-out true positives: ``explainer``'s
    counterfactual (the most shifted frame against the lambda = 0 frame) scored against the
    finding's mask (:mod:`cfviewer.metrics.counterfactual`), ``per_pathology`` true positives
    each, from the benchmark's case stream (rendered as the bundle was trained)."""
    from cfviewer.evaluation.cases import PhantomSource, bench_seeds
    from cfviewer.explain import get_explainer
    from cfviewer.metrics.counterfactual import score_explanation, summarise

    src = PhantomSource.for_bundle(bundle)
    ex = get_explainer(explainer, bundle)
    pats = list(bundle.pathologies)
    scores: dict[str, list] = {p: [] for p in pats}
    tried = dict.fromkeys(pats, 0)
    seeds = bench_seeds(per_pathology * len(pats) * max_tries, seed, 0)
    for i, s in enumerate(seeds):
        p = pats[i % len(pats)]
        if len(scores[p]) >= per_pathology or tried[p] >= per_pathology * max_tries:
            if all(len(v) >= per_pathology for v in scores.values()):
                break
            continue
        tried[p] += 1
        image, masks = src.render(int(s), labels={p: 1})
        m = masks.get(p)
        if m is None or not m.any() or not bundle.positive(bundle.predict(image))[0, bundle.target_index(p)]:
            continue
        sc = score_explanation(ex.explain(image, p), m)
        if sc is not None:
            scores[p].append(sc)
    out = {p: summarise(v) for p, v in scores.items()}
    out["all"] = summarise([sc for v in scores.values() for sc in v])
    return {"explainer": explainer, "per_pathology": per_pathology, "seed": seed, "summary": out}


def counterfactual_explainer(bundle: Bundle) -> str | None:
    """The explainer whose counterfactual the card scores: an Attri-Net's own x + M_c(x),
    Latent Shift for a bundle with an autoencoder, else none."""
    from cfviewer.models.attrinet import is_attrinet

    if is_attrinet(bundle.classifier):
        return "attrinet"
    return "latentshift" if bundle.autoencoder is not None else None


def evaluate_bundle(bundle: Bundle, n: int = 1000, seed: int = 2026, progress: bool = True,
                    tube_n: int = TUBE_SET_SIZE, counterfactuals: int = 0) -> dict[str, Any]:
    """All numbers of the model card as a JSON-serialisable dict (``tube_n`` phantoms in each
    targeted chest-tube set; ``counterfactuals`` true positives per pathology for the
    counterfactual section, :func:`counterfactual_explainer`, 0 = none)."""
    if n < 10:
        raise CfviewerError(f"--n {n}: evaluate on at least 10 phantoms (1,000 recommended)")
    _check_disjoint(bundle, n, seed)
    training = bundle.meta.get("training", {})
    ph_opts = dict(training.get("config", {}).get("phantoms", {}))
    scale = int(training.get("config", {}).get("render_scale", 1))
    r = bundle.resolution
    t0 = time.perf_counter()
    data = phantom_data(n, seed, r, ph_opts, progress=progress, desc="held-out phantoms", render_scale=scale)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    probs, rec_probs, maes = _probs_and_recon(bundle, data.images)
    t_eval = time.perf_counter() - t0
    y = data.labels.numpy().astype(bool)

    per: dict[str, Any] = {}
    for i, p in enumerate(bundle.pathologies):
        thr = bundle.thresholds[p]
        sens, spec = sensitivity_specificity(y[:, i], probs[:, i], thr)
        row: dict[str, Any] = {
            "n_pos": int(y[:, i].sum()),
            "n_neg": int((~y[:, i]).sum()),
            "auc": roc_auc(y[:, i], probs[:, i]),
            "threshold": thr,
            "sensitivity": sens,
            "specificity": spec,
            "mean_pred_pos": float(probs[y[:, i], i].mean()) if y[:, i].any() else float("nan"),
            "mean_pred_neg": float(probs[~y[:, i], i].mean()) if (~y[:, i]).any() else float("nan"),
            "false_positives": int(((probs[:, i] >= thr) & ~y[:, i]).sum()),
            "false_negatives": int(((probs[:, i] < thr) & y[:, i]).sum()),
            "ece": expected_calibration_error(y[:, i], probs[:, i]),
            "saturated": float(((probs[:, i] < 1e-4) | (probs[:, i] > 1 - 1e-4)).mean()),
        }
        if rec_probs is not None:
            row.update(
                auc_reconstruction=roc_auc(y[:, i], rec_probs[:, i]),
                mean_pred_pos_recon=float(rec_probs[y[:, i], i].mean()) if y[:, i].any() else float("nan"),
                mean_pred_neg_recon=float(rec_probs[~y[:, i], i].mean()) if (~y[:, i]).any() else float("nan"),
            )
        per[p] = row
    aucs = [v["auc"] for v in per.values()]
    report: dict[str, Any] = {
        "n": n,
        "seed": seed,
        "resolution": r,
        "per_pathology": per,
        "mean_auc": float(np.nanmean(aucs)),
        "min_auc": float(np.nanmin(aucs)),
        "seconds": {"phantoms": t_data, "inference": t_eval},
    }
    if maes is not None:
        x = data.images.float()
        report["autoencoder"] = {
            "mae": float(maes.mean()),
            "mae_fraction_of_range": float(maes.mean() / 2048.0),
            "mae_relative_to_mean_abs_intensity": float(maes.mean() / x.abs().mean()),
            "mae_relative_to_mean_abs_deviation": float(
                maes.mean() / (x - x.mean(dim=(1, 2), keepdim=True)).abs().mean()
            ),
        }

    # --- the chest-tube shortcut for Pneumothorax
    if "Pneumothorax" in bundle.pathologies and data.confounders is not None:
        k = bundle.target_index("Pneumothorax")
        thr = bundle.thresholds["Pneumothorax"]
        tube = data.confounders[:, 0]
        neg = ~y[:, k]
        groups = {
            "held_out_tube_negatives": neg & tube,
            "held_out_no_tube_negatives": neg & ~tube,
            "held_out_tube_positives": ~neg & tube,
            "held_out_no_tube_positives": ~neg & ~tube,
        }
        shortcut: dict[str, Any] = {}
        for name, m in groups.items():
            shortcut[name] = {
                "n": int(m.sum()),
                "positive_rate": float((probs[m, k] >= thr).mean()) if m.any() else float("nan"),
                "mean_pred": float(probs[m, k].mean()) if m.any() else float("nan"),
            }
        # A targeted set: Pneumothorax-negative phantoms, all with a tube vs none with a tube.
        base = {**ph_opts, "prevalence": {**ph_opts.get("prevalence", {}), "Pneumothorax": 0.0}}
        for name, p_tube, off in (("targeted_tube_only_negatives", 1.0, 1), ("targeted_no_tube_negatives", 0.0, 2)):
            opts = {**base, "tube_given_no_pneumothorax": p_tube}
            phantom_config(r, opts)  # validate
            tset = phantom_data(tube_n, seed + 7919 * off, r, opts, progress=progress, desc=name,
                                render_scale=scale)
            tp = bundle.predict(tset.images.float().numpy())[:, k]
            shortcut[name] = {
                "n": tube_n,
                "positive_rate": float((tp >= thr).mean()),
                "mean_pred": float(tp.mean()),
                "seed": seed + 7919 * off,
            }
        report["pneumothorax_shortcut"] = shortcut
    cf_explainer = counterfactual_explainer(bundle)
    if counterfactuals > 0 and cf_explainer is not None:
        t0 = time.perf_counter()
        report["counterfactual"] = counterfactual_report(bundle, counterfactuals, seed, explainer=cf_explainer)
        report["seconds"]["counterfactual"] = time.perf_counter() - t0
    return report


# ---------------------------------------------------------------------- markdown
def classification_section(bundle: Bundle, report: dict[str, Any], tr: dict[str, Any], targets: bool = True) -> list[str]:
    """The held-out classification and calibration tables (any bundle)."""
    L: list[str] = []
    add = L.append
    add(f"## Classification on {report['n']} held-out phantoms")
    add("")
    add(f"Mean AUC **{number(report['mean_auc'])}** (lowest {number(report['min_auc'])}"
        + ("; targets: mean 0.85-0.95, each >= 0.75: hard enough for real false positives, good enough to "
           "explain)." if targets else ")."))
    add("")
    add("| pathology | positives | AUC | threshold | sensitivity | specificity | false positives | false negatives |")
    add("|---|---|---|---|---|---|---|---|")
    for p, v in report["per_pathology"].items():
        add(f"| {p} | {v['n_pos']} / {v['n_pos'] + v['n_neg']} | {number(v['auc'])} | "
            f"{number(v['threshold'])} | {number(v['sensitivity'])} | {number(v['specificity'])} | "
            f"{v.get('false_positives', 'n/a')} | {v.get('false_negatives', 'n/a')} |")
    if all("ece" in v for v in report["per_pathology"].values()):
        cal = tr.get("calibration") or {"method": "none"}
        add("")
        add("### Calibration")
        add("")
        add(f"Calibration: {cal.get('method', 'none')} "
            "(Platt scaling of each logit on the validation split when 'platt'). ECE = expected "
            "calibration error over 10 equal-width bins on the held-out phantoms; saturated = share "
            "of predictions below 1e-4 or above 1 - 1e-4 (where a gradient explainer sees almost "
            "no gradient).")
        add("")
        add("| pathology | ECE | saturated | mean prediction, positives | mean prediction, negatives |")
        add("|---|---|---|---|---|")
        for p, v in report["per_pathology"].items():
            add(f"| {p} | {number(v['ece'])} | {number(v['saturated'])} | {number(v['mean_pred_pos'])} | "
                f"{number(v['mean_pred_neg'])} |")
    return L


def shortcut_section(bundle: Bundle, report: dict[str, Any]) -> list[str]:
    """The chest-tube shortcut table, when the report has one."""
    L: list[str] = []
    add = L.append
    if "pneumothorax_shortcut" in report:
        s = report["pneumothorax_shortcut"]
        add("")
        add("## The chest-tube shortcut (Pneumothorax)")
        add("")
        add("In the training phantoms a chest tube accompanies 80 % of pneumothoraces and 5 % of "
            "other images, so a classifier can learn the tube as a shortcut. Rate = fraction "
            f"predicted positive at the stored threshold ({number(bundle.thresholds.get('Pneumothorax'))}).")
        add("")
        add("| group | n | predicted positive | mean prediction |")
        add("|---|---|---|---|")
        labels = {
            "held_out_tube_negatives": "held-out: no pneumothorax, chest tube (tube-only negatives)",
            "held_out_no_tube_negatives": "held-out: no pneumothorax, no tube",
            "held_out_tube_positives": "held-out: pneumothorax with tube",
            "held_out_no_tube_positives": "held-out: pneumothorax without tube",
            "targeted_tube_only_negatives": "targeted set: negatives, all with a tube",
            "targeted_no_tube_negatives": "targeted set: negatives, none with a tube",
        }
        for key, label in labels.items():
            if key in s:
                v = s[key]
                add(f"| {label} | {v['n']} | {number(v['positive_rate'])} | {number(v['mean_pred'])} |")
        a, b = s.get("targeted_tube_only_negatives"), s.get("targeted_no_tube_negatives")
        if a and b:
            ratio = a["positive_rate"] / b["positive_rate"] if b["positive_rate"] > 0 else float("inf")
            add("")
            add(f"A tube alone makes a Pneumothorax-free phantom positive {100 * a['positive_rate']:.1f} % "
                f"of the time vs {100 * b['positive_rate']:.1f} % without one "
                f"({'x' + format(ratio, '.1f') if np.isfinite(ratio) else 'never without'}): "
                + _shortcut_verdict(a, b))
    return L


def counterfactual_section(report: dict[str, Any]) -> list[str]:
    """The counterfactual table (Latent Shift, or the explainer the report names)."""
    L: list[str] = []
    add = L.append
    if "counterfactual" in report:
        cf = report["counterfactual"]
        add("")
        attri = str(cf["explainer"]).startswith("attrinet")
        add(f"## Counterfactuals: does {'x + M_c(x)' if attri else 'Latent Shift'} remove the finding?")
        add("")
        what = ("The counterfactual x + M_c(x) against x" if attri
                else "The counterfactual (most shifted frame) against the lambda = 0 frame")
        add(f"`{cf['explainer']}` on up to {cf['per_pathology']} held-out true positives per pathology "
            "(benchmark case stream, seed "
            f"{cf['seed']}). {what}: "
            "drop = fall of the prediction; inside = share of the absolute change inside the "
            "finding's mask dilated by 4 % of the side; mean inside = mean change inside the mask in "
            "grey levels of 255 (Cardiomegaly, a size: in the band along the heart's outline, 4 % of "
            "the side wide); visible = mean inside >= 8, inside >= 0.4 and drop >= 0.3 "
            "(`cfviewer.metrics.counterfactual`). Targets (issue 10): visible in at least 60 %, "
            "inside at least 0.5.")
        add("")
        add("| pathology | true positives | drop | inside | mean inside | mean outside | visible |")
        add("|---|---|---|---|---|---|---|")
        for p, v in cf["summary"].items():
            name = "**all**" if p == "all" else p
            add(f"| {name} | {v['n']} | {number(v['drop'])} | {number(v['share_inside'])} | "
                f"{number(v['mean_inside'], 1)} | {number(v['mean_outside'], 1)} | {number(v['visible_rate'])} |")
    return L


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def inpainting_section(bundle_dir: str | Path | None) -> list[str]:
    """The inpainting attribution's models beside the bundle, from what their training recorded
    (DIR/inpainter.json: the marginalisation check of the paper's Fig. 1c; DIR/masknet.json: the
    mask network's validation); nothing when the bundle has neither."""
    if bundle_dir is None:
        return []
    d = Path(bundle_dir)
    inp, mn = _read_json(d / "inpainter.json"), _read_json(d / "masknet.json")
    if inp is None and mn is None:
        return []
    L = ["", "## Inpainting attribution: the inpainter and the mask network", ""]
    v = (inp or {}).get("validation") or {}
    m = v.get("marginalisation") or {}
    if m:
        hh = m.get("hole_error_healthy") or v.get("healthy_holes") or {}
        L += [f"Partial-convolution inpainter (`inpainter.pt`, trained on healthy phantoms of this domain; "
              f"`cfviewer train-explainer inpainter`). Marginalisation check on {m.get('n_images')} held-out "
              "phantoms (the paper's Fig. 1c): the classifier's AUC on the images, with random healthy regions "
              f"inpainted ({100 * float(m.get('healthy_hole_share') or 0):.0f} % of the image, outside every "
              "finding; the paper: within about 0.01) and with each positive's own finding inpainted; below = "
              "share of the positives the classifier called positive that fall below its threshold once the "
              f"finding is inpainted. Hole error on healthy held-out images: MAE {number(hh.get('hole_mae'), 1)} "
              "of 2048.", "",
              "| pathology | AUC | AUC, healthy regions inpainted | AUC, finding inpainted | below threshold | mean drop |",
              "|---|---|---|---|---|---|"]
        for name, r in (m.get("per_pathology") or {}).items():
            L.append(f"| {name} | {number(r.get('auc_original'))} | {number(r.get('auc_healthy_inpainted'))} | "
                     f"{number(r.get('auc_pathology_inpainted'))} | {number(r.get('share_below_threshold'), 2)} | "
                     f"{number(r.get('mean_prediction_drop'))} |")
        L.append(f"| **mean** | {number(m.get('mean_auc_original'))} | {number(m.get('mean_auc_healthy_inpainted'))} | "
                 f"{number(m.get('mean_auc_pathology_inpainted'))} | {number(m.get('mean_share_below_threshold'), 2)} | "
                 f"{number(m.get('mean_prediction_drop'))} |")
    sizes = v.get("marginalisation_by_size") or []
    if sizes:
        names = list((sizes[0].get("auc_delta_healthy") or {}))
        L += ["", "The healthy check by the size of the inpainted regions (the paper does not give its own): "
              "the explainers' masks cover about 1-5 % of the film (the mask network) and at most 20 % (the "
              "iterative search's size limit). Change of each pathology's AUC:", "",
              "| random holes | share inpainted | mean AUC | healthy inpainted | " + " | ".join(names) + " |",
              "|---|---|---|---|" + "---|" * len(names)]
        for r in sizes:
            d = r.get("auc_delta_healthy") or {}
            L.append(f"| {100 * float(r['min_cover']):.0f}-{100 * float(r['max_cover']):.0f} % | "
                     f"{100 * float(r.get('healthy_hole_share') or 0):.1f} % | {number(r.get('mean_auc_original'))} | "
                     f"{number(r.get('mean_auc_healthy_inpainted'))} | "
                     + " | ".join(f"{float(d[q]):+.3f}" if d.get(q) is not None else "n/a" for q in names) + " |")
    if v.get("revalidated"):
        L += ["", f"(Checked again against this classifier on {v['revalidated'].get('created', '?')[:10]} with "
              "`cfviewer train-explainer inpainter --bundle DIR --revalidate`.)"]
    val = (mn or {}).get("validation") or {}
    if mn is not None:
        L += ["", "Mask network of `inpainting` (`masknet.pt`, `cfviewer train-explainer masknet`), on held-out "
              "(image, pathology) pairs the classifier calls positive: success = the binary mask brings the "
              "prediction on the inpainted image to the threshold or below within the area limit."]
        if val:
            L += ["", "| pairs | success | mean mask area | mean prediction after inpainting | loss |", "|---|---|---|---|---|",
                  f"| {val.get('pairs')} | {number(val.get('success'), 2)} | {number(val.get('mean_area'))} | "
                  f"{number(val.get('mean_p'))} | {number(val.get('loss'))} |"]
    return L


def _weights_size(bundle_dir: Path | None) -> str:
    if bundle_dir is None or not Path(bundle_dir).is_dir():
        return "n/a"
    total = sum(f.stat().st_size for f in Path(bundle_dir).iterdir() if f.is_file())
    return f"{total / 1e6:.1f} MB"


def _shortcut_verdict(tube: dict[str, Any], no_tube: dict[str, Any]) -> str:
    """One sentence grading the chest-tube shortcut from the two targeted sets."""
    ra, rb = tube["positive_rate"], no_tube["positive_rate"]
    ma, mb = tube["mean_pred"], no_tube["mean_pred"]
    ratio = f"mean prediction {ma:.3f} vs {mb:.3f}"
    if ra > 2 * rb + 0.2:
        return f"the model relies strongly on the tube ({ratio}); explainers should reveal it."
    if ra > 2 * rb + 0.01 or ma > 3 * mb + 0.01:
        return (f"a weak shortcut: the tube raises the prediction ({ratio}) but rarely past the "
                "threshold; explainers may show some attribution on the tube.")
    return f"little evidence that the model relies on the tube ({ratio})."


def _autoencoder_epochs(tr: dict[str, Any]) -> str:
    """'8 epochs', or 'N epochs (stage k)' summed over an init_from chain."""
    from cfviewer.models.train import training_chain

    parts = [int((t.get("config") or {}).get("autoencoder_training", {}).get("epochs", 0) or 0)
             for t in training_chain(tr)]
    if len(parts) == 1:
        return f"{parts[0]} epochs"
    stages = [f"{e} in stage {i + 1}" for i, e in enumerate(parts) if e]
    return f"{sum(parts)} epochs ({', '.join(stages) or 'none'})"


def _stage_lines(tr: dict[str, Any]) -> list[str]:
    """One line per earlier training stage of an ``init_from`` chain (oldest first)."""
    from cfviewer.models.train import training_chain

    stages = training_chain(tr)
    if len(stages) < 2:
        return []
    # each later stage's init_from names the file of the stage before it
    files = [(st.get("init_from") or {}).get("config_file", "?") for st in stages[1:]]
    chain = stages[:-1]
    out = [f"- Trained in {len(stages)} stages (`init_from`): each stage starts from the previous "
           "stage's weights and trains on its own phantoms."]
    for i, st in enumerate(chain):
        c = st.get("config") or {}
        ct, at = c.get("classifier_training") or {}, c.get("autoencoder_training") or {}
        sec = st.get("seconds") or {}
        out.append(
            f"  - stage {i + 1} (`{files[i]}`): {st.get('n_train', '?')} training / "
            f"{st.get('n_val', '?')} validation phantoms from `SeedSequence({c.get('seed', '?')})`; "
            f"classifier {ct.get('epochs', '?')} epochs at lr {ct.get('lr', '?')} "
            f"({number(sec.get('classifier'), 0)} s), autoencoder {at.get('epochs', '?')} epochs "
            f"({number(sec.get('autoencoder'), 0)} s); validation mean AUC "
            f"{number(float(np.nanmean(list((st.get('val_auc') or {'': float('nan')}).values()))))}.")
    cfg = tr.get("config") or {}
    ct, at = cfg.get("classifier_training") or {}, cfg.get("autoencoder_training") or {}
    extra = (f"; {cfg['reconstruction_fraction']:.0%} of each classifier batch shown as D(E(x)), the "
             "autoencoder's reconstruction" if cfg.get("reconstruction_fraction") else "")
    out.append(f"  - stage {len(chain) + 1} (this bundle): classifier {ct.get('epochs', '?')} more epochs at lr "
               f"{ct.get('lr', '?')}{extra}; autoencoder {at.get('epochs', '?')} more epochs"
               + (" (kept as trained in the earlier stage)" if not at.get("epochs") else "") + ".")
    return out


def render_model_card(bundle: Bundle, report: dict[str, Any], bundle_dir: str | Path | None = None) -> str:
    tr = bundle.meta.get("training", {})
    cfg = tr.get("config", {})
    secs = tr.get("seconds", {})
    params = tr.get("parameters", {})
    L: list[str] = []
    add = L.append
    add("# Model card: cfviewer demo classifier + autoencoder")
    add("")
    add(f"Generated by `cfviewer model-card --bundle {bundle_dir or 'DIR'} --n {report['n']} "
        f"--seed {report['seed']}` on {_dt.date.today().isoformat()} ({platform.machine()}, "
        f"torch {torch.__version__}). Every number below is computed by the project's code from "
        "the committed weights; nothing is typed in by hand.")
    add("")
    add("**Intended use:** a demonstration model for the embedded reader study and for testing "
        "explanation methods against pixel-exact ground truth. It is trained on synthetic "
        "phantom radiographs only and must never be used on patients.")
    add("")
    add("## Data and training")
    add("")
    add(f"- Data: procedural phantom chest radiographs (`cfviewer.phantoms`), "
        f"{tr.get('n_train', 'n/a')} for training and {tr.get('n_val', 'n/a')} for validation "
        f"(threshold choice), generated from `SeedSequence({cfg.get('seed', 'n/a')})` "
        f"(dataset seeds {tr.get('data_seeds', {}).get('train', 'n/a')} / "
        f"{tr.get('data_seeds', {}).get('val', 'n/a')}); phantom options "
        f"`{cfg.get('phantoms', {})}` (empty = the generator's defaults: prevalence 0.3 each, "
        "chest tube in 80 % of Pneumothorax positives and 5 % of negatives).")
    add(f"- Held-out evaluation: {report['n']} new phantoms, dataset seed {report['seed']} "
        "(checked disjoint from the training and validation phantoms of every stage).")
    L.extend(_stage_lines(tr))
    add(f"- Resolution: **{bundle.resolution} px**. {cfg.get('resolution_note', '')}")
    probe = tr.get("speed_probe")
    if probe:
        add("")
        add("  Training-step cost measured before training (forward + backward + AdamW, batch 16, "
            f"{tr.get('torch_threads', '?')} threads, on the shared machine):")
        add("")
        add("  | resolution | classifier ms/image | autoencoder ms/image |")
        add("  |---|---|---|")
        for res, v in sorted(probe.items(), key=lambda kv: int(kv[0])):
            add(f"  | {res} px | {v['classifier_ms_per_image']:.1f} | {v['autoencoder_ms_per_image']:.1f} |")
        if str(bundle.resolution) in probe:
            c = cfg.get("classifier_training", {})
            a = cfg.get("autoencoder_training", {})
            n_img_c = tr.get("n_train", 0) * c.get("epochs", 0)
            n_img_a = tr.get("n_train", 0) * a.get("epochs", 0)
            for res, v in sorted(probe.items(), key=lambda kv: int(kv[0])):
                est = (n_img_c * v["classifier_ms_per_image"] + n_img_a * v["autoencoder_ms_per_image"]) / 60000
                add(f"  - projected training time of this schedule at {res} px: {est:.0f} min")
    add(f"- Classifier: `{type(bundle.classifier).__name__}` {getattr(bundle.classifier, 'config', lambda: {})()}, "
        f"{params.get('classifier', 'n/a'):,} parameters; BCE on logits, AdamW, warm-up + cosine, "
        f"{cfg.get('classifier_training', {}).get('epochs', 'n/a')} epochs, batch "
        f"{cfg.get('classifier_training', {}).get('batch_size', 'n/a')}, lr "
        f"{cfg.get('classifier_training', {}).get('lr', 'n/a')}; light augmentation "
        f"{cfg.get('augment', {})}. Outputs probabilities (sigmoid applied).")
    ccfg = getattr(bundle.classifier, "config", lambda: {})()
    if ccfg.get("pool") == "lse":
        add(f"  Head: a 1 x 1 convolution gives one logit map per pathology, pooled by log-sum-exp "
            f"(r = {ccfg.get('lse_r')}; Wang et al. 2017, ChestX-ray8) instead of global average "
            "pooling, so the gradient of a prediction goes to the locations that carry the evidence "
            "rather than equally to every location.")
    if cfg.get("classifier_note"):
        add(f"  {cfg['classifier_note']}")
    if cfg.get("label_smoothing"):
        add(f"  Label smoothing {cfg['label_smoothing']} (targets y (1 - s) + s / 2) keeps logits off "
            "saturation.")
    if cfg.get("adversarial"):
        add(f"  Adversarial training (L2, {cfg['adversarial']}; see `robust_classifier_loss`).")
    if int(cfg.get("render_scale", 1)) > 1:
        add(f"  Training phantoms are drawn at {cfg['render_scale']} x {bundle.resolution} px and resized "
            "as `Bundle.model_input` resizes a film (`render_scale`), so the model learns from the "
            "pixels a downsampled film gives it.")
    if bundle.autoencoder is not None:
        ae = bundle.autoencoder
        lat = ae.latent_shape(bundle.resolution) if hasattr(ae, "latent_shape") else "n/a"
        add(f"- Autoencoder: `{type(ae).__name__}` {getattr(ae, 'config', lambda: {})()}, latent "
            f"{' x '.join(map(str, lat)) if isinstance(lat, tuple) else lat}, "
            f"{params.get('autoencoder', 'n/a'):,} parameters; elastic-net loss (L1 + "
            f"{cfg.get('ae_l2_weight', 1.0)} x L2 on images scaled to [-1, 1]) as in the Latent "
            f"Shift paper, {_autoencoder_epochs(tr)}.")
        if cfg.get("autoencoder_note"):
            add(f"  {cfg['autoencoder_note']}")
    add(f"- Wall time ({tr.get('device', '?')}, {tr.get('cpu_count', '?')} CPU cores shared with "
        f"other jobs): phantoms {number(secs.get('data'), 0)} s, classifier "
        f"{number(secs.get('classifier'), 0)} s, autoencoder {number(secs.get('autoencoder'), 0)} s"
        + (" in the last stage (earlier stages above)." if tr.get("init_from") else "."))
    add(f"- Weights on disk: {_weights_size(Path(bundle_dir) if bundle_dir else None)}.")
    add(f"- Thresholds: {tr.get('thresholds_method', 'stored')} "
        "(Youden's J on the validation split; 0.5 = 'fixed').")
    add("")
    L.extend(classification_section(bundle, report, tr))
    if "autoencoder" in report:
        a = report["autoencoder"]
        add("")
        add("## Autoencoder")
        add("")
        add(f"- Reconstruction MAE: **{number(a['mae'], 1)}** in [-1024, 1024] units = "
            f"{100 * a['mae_fraction_of_range']:.2f} % of the intensity range; "
            f"{100 * a['mae_relative_to_mean_abs_deviation']:.1f} % of the mean absolute deviation "
            f"of an image from its own mean.")
        add("")
        add("### Appendix-K table (Latent Shift paper): mean prediction on x and on D(E(x))")
        add("")
        add("The autoencoder must not erase the findings: the reference reports a mean drop of "
            "about 0.12 on positives. AUC(D(E(x))) is the classifier's AUC on reconstructions.")
        add("")
        add("| pathology | pos: f(x) | pos: f(D(E(x))) | pos: diff | neg: f(x) | neg: f(D(E(x))) | neg: diff | AUC(D(E(x))) |")
        add("|---|---|---|---|---|---|---|---|")
        dp, dn = [], []
        for p, v in report["per_pathology"].items():
            d_pos = v["mean_pred_pos_recon"] - v["mean_pred_pos"]
            d_neg = v["mean_pred_neg_recon"] - v["mean_pred_neg"]
            dp.append(d_pos)
            dn.append(d_neg)
            add(f"| {p} | {number(v['mean_pred_pos'])} | {number(v['mean_pred_pos_recon'])} | {d_pos:+.3f} | "
                f"{number(v['mean_pred_neg'])} | {number(v['mean_pred_neg_recon'])} | {d_neg:+.3f} | "
                f"{number(v['auc_reconstruction'])} |")
        add(f"| **mean** | | | **{np.nanmean(dp):+.3f}** | | | **{np.nanmean(dn):+.3f}** | |")
        lost = [p for p, d in zip(report["per_pathology"], dp) if d < -0.3]
        if lost:
            add("")
            add(f"Reconstruction removes much of the evidence for {', '.join(lost)} (mean drop on "
                "positives beyond 0.3): Latent Shift explanations of these start from a lower "
                "prediction on D(E(x)) than on x; read them with the prediction on the "
                "reconstruction next to the original.")
    L.extend(shortcut_section(bundle, report))
    L.extend(counterfactual_section(report))
    L.extend(inpainting_section(bundle_dir))
    add("")
    hist = tr.get("classifier_history") or []
    if hist:
        add("## Training curves")
        add("")
        add("| epoch | classifier train loss | val loss | val mean AUC |")
        add("|---|---|---|---|")
        for h in hist:
            add(f"| {h['epoch']} | {number(h.get('train_loss'), 4)} | {number(h.get('val_loss'), 4)} | {number(h.get('val_mean_auc'))} |")
        ah = tr.get("autoencoder_history") or []
        if ah:
            add("")
            add("| epoch | autoencoder train loss | val MAE |")
            add("|---|---|---|")
            for h in ah:
                add(f"| {h['epoch']} | {number(h.get('train_loss'), 4)} | {number(h.get('val_mae'), 1)} |")
        add("")
    add("## Limitations")
    add("")
    add("- Synthetic data only: phantom findings are simplified renderings; performance on real "
        "radiographs is unknown and expected to be poor.")
    add(f"- {bundle.resolution} px input (torchxrayvision models use 224 px).")
    add("- The autoencoder is small and blurs fine detail (see the Appendix-K table); Latent "
        "Shift counterfactuals inherit that blur.")
    add("")
    return "\n".join(L)
