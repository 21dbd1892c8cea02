"""The evaluation's report: one markdown table per question, in a shared markdown file.

:func:`render_markdown` writes the "explainers" section of docs/benchmarks.md from an
:class:`~cfviewer.evaluation.runner.EvaluationResult` (``cfviewer bench``).

Each command that writes docs/benchmarks.md owns one named section, delimited by HTML comments::

    <!-- section:NAME -->
    ...markdown...
    <!-- /section:NAME -->

:func:`write_section` replaces that block (or appends it when absent) and leaves every other
byte of the file alone, so several commands can write the same file.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from cfviewer.errors import CfviewerError
from cfviewer.evaluation.questions import Speed

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ReportError(CfviewerError):
    """The markdown file or the section name cannot be used."""


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section:{name} -->", f"<!-- /section:{name} -->"


def read_section(md_path: str | Path, section_name: str) -> str | None:
    """The markdown between the section's markers (without them), or None when absent."""
    path = Path(md_path)
    if not path.is_file():
        return None
    start, end = _markers(section_name)
    text = path.read_text(encoding="utf-8")
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if i < 0 or j < 0:
        return None
    return text[i + len(start) : j].strip("\n")


def write_section(md_path: str | Path, section_name: str, markdown: str) -> Path:
    """Replace the block of ``section_name`` in ``md_path`` by ``markdown``; append it if the
    section is absent (creating the file and its folder if needed). Writes atomically."""
    if not _NAME.match(section_name):
        raise ReportError(
            f"section name {section_name!r} may only hold letters, digits, '_', '.' and '-'"
        )
    path = Path(md_path)
    if path.exists() and not path.is_file():
        raise ReportError(f"{path} is not a file; pass a markdown file path with --out")
    start, end = _markers(section_name)
    if start in markdown or end in markdown:
        raise ReportError(f"the markdown of section {section_name!r} contains its own markers")
    block = f"{start}\n{markdown.strip(chr(10))}\n{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    i = text.find(start)
    if i >= 0:
        j = text.find(end, i + len(start))
        if j < 0:
            raise ReportError(
                f"{path}: section {section_name!r} opens with {start!r} but never closes; add "
                f"{end!r} after it or delete the broken block"
            )
        new = text[:i] + block + text[j + len(end) :]
    else:
        if not text or text.endswith("\n\n"):
            sep = ""
        elif text.endswith("\n"):
            sep = "\n"
        else:
            sep = "\n\n"
        new = text + sep + block + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc}") from None
    return path


# ---------------------------------------------------------------------- rendering
def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "—"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "—"
    return f"{v:.{nd}f}"


def _mean(values: Any) -> float:
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def _mean_sd(values: Any, nd: int = 3) -> str:
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    if not a.size:
        return "—"
    return f"{a.mean():.{nd}f} ± {a.std(ddof=1) if a.size > 1 else 0.0:.{nd}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _status(m: Any) -> str | None:
    if m.alias_of:
        return f"same explainer as `{m.alias_of}` (identical class and parameters)"
    if m.error:
        return f"not run: {m.error}"
    return None


def _find(result: Any, *names: str) -> Any:
    by = {m.name: m for m in result.methods}
    for n in names:
        m = by.get(n)
        while m is not None and m.alias_of:
            m = by.get(m.alias_of)
        if m is not None and m.ran:
            return m
    return None


def render_markdown(result: Any) -> str:
    """The evaluation section (markdown) of a :class:`cfviewer.evaluation.EvaluationResult`."""
    o = result.options
    out: list[str] = []
    ran = [m for m in result.methods if m.ran]
    pats = [p for p in result.case_counts]
    b = result.bundle_desc
    mc = result.machine
    out.append("## Explainers on held-out phantoms (`cfviewer bench`)")
    out.append("")
    out.append(f"- Command: `{result.command or 'cfviewer bench'}`")
    out.append(f"- Date: {result.started}; wall time {result.seconds / 60:.1f} min"
               + (" (**quick mode**: tiny settings, numbers are a smoke test)" if o.quick else ""))
    out.append(f"- Machine: {mc['cpu']}, {mc['cpu_count']} CPUs (shared with other jobs), "
               f"torch {mc['torch']} with {mc['torch_threads']} threads, Python {mc['python']}")
    bdesc = f"`{b.get('path', 'in-memory bundle')}`, {b.get('resolution')} px"
    if b.get("note"):
        bdesc += f" — {b['note']}"
    out.append(f"- Bundle: {bdesc}")
    if b.get("run_note"):
        out.append(f"- Note: {b['run_note']}")
    if b.get("summary"):
        out.append(f"- Bundle metadata: {b['summary']}")
    overlap = b.get("training_seed_overlap")
    seeds_note = ("no overlap with the training phantoms recorded in the bundle" if overlap == 0
                  else f"{overlap} seeds overlap the recorded training phantoms" if overlap
                  else "the bundle records no training seeds; the seed stream is disjoint by construction")
    out.append(
        f"- Cases: {o.n} held-out phantoms (`SeedSequence([{o.seed}, BENCH_TAG, 0])`, {seeds_note}); "
        f"phantom i is forced positive for pathology i mod 6 and explained for it (its other findings stay as distractors): "
        + ", ".join(f"{p} {k}" for p, k in result.case_counts.items())
        + f" = {len(result.cases)} cases"
        + (f"; skipped (no mask): {result.skipped_cases}" if result.skipped_cases else "")
    )
    extra = ", ".join(f"`{k}` with {v}" for k, v in result.method_params.items())
    out.append("- Maps are used as produced (`Explanation.map`, larger = more important). "
               "Explainer parameters are the registry defaults" + (f"; {extra}" if extra else "") + ".")
    out.append("")

    notes = [(m.name, _status(m)) for m in result.methods if _status(m)]
    if notes:
        out.append("**Registered explainers not run separately:**")
        out.append("")
        out += [f"- `{n}`: {s}" for n, s in notes]
        out.append("")

    # 1. localisation
    out.append("### 1. Localisation: do the maps point at the finding?")
    out.append("")
    out.append("Mean over cases. Top-p IoU: map binarised at the mask's share of pixels (Latent Shift "
               "protocol). AUC_loc: ROC AUC of the map as a pixel score for the mask (Charachon et al.; "
               "0.5 = chance). Hausdorff: symmetric, pixels, top-p binarised map vs mask (lower = better).")
    for key, title in (("iou_top_p", "Top-p IoU"), ("auc_loc", "AUC_loc"), ("hausdorff", "Hausdorff distance (px)")):
        out.append("")
        out.append(f"**{title}**")
        out.append("")
        rows = []
        for m in result.methods:
            if not m.ran:
                continue
            vals = m.localisation.values(key)
            tg = np.array(m.localisation.targets)
            row = [f"`{m.name}`"] + [_f(_mean(vals[tg == p]), 1 if key == "hausdorff" else 3) for p in pats]
            row.append(_f(_mean(vals), 1 if key == "hausdorff" else 3))
            rows.append(row)
        out.append(_table(["method"] + pats + ["all"], rows))
    out.append("")
    out.append("**All localisation scores (all cases)**: IoU at fixed percentiles keeps the top 20/10/5/2 %; "
               "weak localisation = Fong & Vedaldi box IoU >= 0.5 after thresholding at half the map's range; "
               "pointing = the map's maximum inside the mask.")
    out.append("")
    keys = ["iou_p80", "iou_p90", "iou_p95", "iou_p98", "weak_loc", "pointing"]
    rows = [[f"`{m.name}`"] + [_f(_mean(m.localisation.values(k))) for k in keys]
            + [str(len(m.localisation))] for m in result.methods if m.ran]
    out.append(_table(["method", "IoU p80", "IoU p90", "IoU p95", "IoU p98", "weak loc.", "pointing", "n"], rows))
    out.append("")

    # 2. faithfulness
    out.append("### 2. Faithfulness: deletion curve and AOPC")
    out.append("")
    steps = o.deletion_steps
    out.append(f"Pixels removed most-important-first in {steps} steps of {100 / steps:.0f} % (replaced by a "
               "Gaussian blur of the image, sigma = side/20), target probability re-predicted. AOPC (Samek et al.) "
               "= mean drop from the unperturbed probability over the steps (higher = more faithful); deletion "
               "AUC = area under the probability curve (lower = better).")
    out.append("")
    mids = [k for k in (1, steps // 2, steps) if 0 < k <= steps]
    rows = []
    for m in result.methods:
        if not m.ran or m.faithfulness is None:
            continue
        fa = m.faithfulness
        curve = fa.mean_curve
        rows.append([f"`{m.name}`", _mean_sd(fa.aopc), _f(_mean(fa.deletion_auc))]
                    + [_f(curve[0])] + [_f(curve[k]) for k in mids])
    out.append(_table(["method", "AOPC (mean ± sd)", "deletion AUC", "p at 0 %"]
                      + [f"p at {100 * k / steps:.0f} %" for k in mids], rows))
    out.append("")

    # 3. randomisation
    out.append("### 3. Sanity: cascading randomisation")
    out.append("")
    nr = max((0 if m.randomisation is None else m.randomisation.correlations.shape[1])
             for m in ran) if ran else 0
    out.append(f"Classifier blocks re-initialised from the output down, cumulatively (Adebayo et al.), on {nr} "
               f"cases; Spearman rank correlation of |map| with the trained model's map (lower = the map "
               f"depends more on the model). Blocks: {', '.join(f'`{g}`' for g in result.randomization_layers)}. "
               "'undefined' counts maps that became constant (no ranking).")
    out.append("")
    rows = []
    for m in ran:
        if m.randomisation is None:
            continue
        corr = m.randomisation.correlations
        mean_curve = _nanmean_rows(corr)
        undefined = int(np.isnan(corr[1:]).sum())
        rows.append([f"`{m.name}`", _f(mean_curve[1] if len(mean_curve) > 1 else float("nan")),
                     _f(_mean(mean_curve[1:])), _mean_sd(corr[-1]), str(undefined)])
    out.append(_table(["method", "after top block", "mean over steps", "full reset (mean ± sd)", "undefined"], rows))
    out.append("")

    # 4. confounder
    out.append("### 4. Confounder: attribution mass on the chest tube of tube-only pneumothorax false positives")
    out.append("")
    out.append(f"Phantoms with a chest tube and no pneumothorax, kept when the model calls Pneumothorax positive: "
               f"**{result.tube_found} found among {result.tube_generated} generated** (wanted {o.confounder_cases}). "
               + (f"The tube covers {100 * result.tube_area_share:.2f} % of the image on average. "
                  if result.tube_found else "")
               + "Mass = share of the map's positive mass on the tube mask; ratio = mass / tube area share "
               "(1 = no preference for the tube).")
    out.append("")
    if result.tube_found:
        rows = [[f"`{m.name}`", _mean_sd(m.confounder.mass), _f(_mean(m.confounder.ratio), 1),
                 f"{m.confounder.empty} of {len(m.confounder.mass)}"]
                for m in result.methods if m.ran and m.confounder is not None]
        out.append(_table(["method", "mass on tube (mean ± sd)", "ratio to area", "empty maps"], rows))
        out.append("")
        out.append("Empty maps (no positive attribution) are left out of the means; for Latent Shift they "
                   "occur when the search stops at lambda = 0 (e.g. the reconstruction's prediction is already "
                   "below 0.05), so no counterfactual shift exists to show.")
    else:
        out.append("No tube-only false positive was found, so this question has no data for this bundle.")
    out.append("")

    # 5. class sensitivity
    out += class_sensitivity_section(result)

    # 6. speed
    out.append("### 6. Speed on this CPU")
    out.append("")
    out.append(f"Milliseconds per explanation: single-image `explain()` on {o.timing_cases} cases (what "
               "`cfviewer explain` waits): wall-clock minimum and median (the machine is shared, so the median "
               "includes waiting for other jobs) and the median process CPU time (all torch threads); and the CPU "
               f"time per explanation amortised over `explain_batch` batches of {o.batch_size}. "
               "Image evaluations per explanation (mean, from `Explanation.evaluations`): classifier and "
               "decoder images, backward images; for Latent Shift also the search images.")
    out.append("")
    rows = []
    for m in ran:
        sp = m.speed or Speed()
        ev = sp.evaluations
        rows.append([f"`{m.name}`", _f(min(sp.ms_single) if sp.ms_single else None, 0),
                     _f(np.median(sp.ms_single) if sp.ms_single else None, 0),
                     _f(np.median(sp.ms_single_cpu) if sp.ms_single_cpu else None, 0),
                     _f(sp.ms_batched, 0),
                     _f(ev.get("classifier"), 1), _f(ev.get("decoder"), 1), _f(ev.get("backward"), 1),
                     _f(ev.get("search_images"), 1)])
    out.append(_table(["method", "wall ms min", "wall ms median", "CPU ms median",
                       "CPU ms batched (own part)", "classifier imgs", "decoder imgs",
                       "backward imgs", "search imgs"], rows))
    out.append("")
    ref = getattr(result, "reference_latentshift", None)
    if ref:
        out.append(reference_sentence(ref))
        out.append("")
    shared = [m for m in ran if m.speed is not None and m.speed.shared_check is not None]
    if shared:
        out.append(
            "Methods built on Latent Shift frames ("
            + ", ".join(f"`{m.name}`" for m in shared)
            + "; the `adversarial_*` maps are among them when their pair is Latent Shift's, i.e. the bundle "
            "has no SAGen generators) share one Latent Shift search per case in the benchmark: "
            + (f"{result.shared_latentshift_ms:.0f} CPU ms per case batched, " if result.shared_latentshift_ms else "")
            + "not included in their 'batched (own part)'; the single-image columns are the full cost of the "
            "method's own "
            "`explain()`. The shared path reproduces each method's own `explain()` on the timing cases up to "
            "a max relative map deviation of "
            + ", ".join(f"`{m.name}` {m.speed.shared_check:.1e}" for m in shared) + "."
        )
        out.append("")

    # 7. counterfactual
    out.append("### 7. Counterfactuals: does the counterfactual remove the finding?")
    out.append("")
    out.append("True positives only (the model calls the target positive); explainers that return frames. The "
               "change from the lambda = 0 frame to the counterfactual (the most shifted frame). "
               "drop = prediction change; inside = share of the absolute change inside the finding mask dilated "
               "by 4 % of the side; mean in = mean change inside the mask in grey levels of 255; visible = "
               "mean in >= 8, inside >= 0.4 and drop >= 0.3 (`cfviewer.metrics.counterfactual`).")
    out.append("")
    cf_methods = [m for m in ran if getattr(m, "counterfactual", None) is not None]
    if cf_methods:
        rows = []
        for m in cf_methods:
            for pat, v in m.counterfactual.by_pathology().items():
                rows.append([f"`{m.name}`", "**all**" if pat == "all" else pat, str(v["n"]), _f(v["drop"], 2),
                             _f(v["share_inside"], 2), _f(v["mean_inside"], 1), _f(v["mean_outside"], 2),
                             _f(v["visible_rate"], 2)])
        out.append(_table(["method", "pathology", "n", "drop", "inside", "mean in", "mean outside",
                           "visible"], rows))
    else:
        out.append("No explainer in this run returns frames.")
    out.append("")

    # claims
    out.append("### Claims from the papers, as measured here")
    out.append("")
    out += claims(result)
    out.append("")
    return "\n".join(out)


def class_sensitivity_section(result: Any) -> list[str]:
    """Section 5: class sensitivity with the Attri-Net reference protocol (lines of markdown)."""
    from cfviewer.evaluation.cases import GRID_NEGATIVES, grid_pool_sizes

    o = result.options
    wanted = int(o.grids_per_pathology)
    pools = dict(getattr(result, "grid_pools", {}) or {})
    n_pos, n_neg = grid_pool_sizes(wanted)
    out = ["### 5. Class sensitivity (Attri-Net protocol)", ""]
    out.append(
        "Protocol of Sun et al. (Attri-Net, MIDL 2023, section 3; reference "
        "`evaluations/eval_class_sensitivity.py`). For each pathology, held-out phantoms "
        f"(`SeedSequence([{o.seed}, BENCH_TAG, 2])`: {n_pos} rendered with the finding, {n_neg} "
        "without it, other findings at their prevalences) are predicted by the bundle. Grid i = "
        "the model's own i-th most confident true positive (label 1, p >= the bundle's threshold) "
        f"+ {GRID_NEGATIVES} of its most confident true negatives (label 0, p < threshold; the "
        f"first {GRID_NEGATIVES} x grids shuffled with `SeedSequence([{o.seed}, BENCH_TAG, 3, k])` "
        f"and dealt {GRID_NEGATIVES} per grid). Each of the four images is explained on its own at the "
        "model's resolution for the pathology; score = sum |attribution| over the true positive / "
        "sum over the four images (0 when all four maps are zero; 0.25 = chance, 1 = only the "
        "positive is attributed); 'TP largest' = the true positive's total |attribution| is the "
        "largest of the four. Paper (Table 2, 200 grids per class on real chest X-rays): "
        "0.49-0.62 for Attri-Net, at most 0.58 for the post-hoc methods on a ResNet. The reference "
        "sums |attribution| for Attri-Net and signed attributions for the post-hoc methods; here "
        "every method is scored on |map|."
    )
    out.append("")
    if wanted == 0:
        out.append("Not asked in this run (`--grids 0`).")
        out.append("")
        return out
    counts = ", ".join(f"{p} {g.grids}" for p, g in pools.items())
    out.append(f"**{result.grids} grids** ({wanted} asked per pathology; {counts or 'none'}), "
               f"{4 * result.grids} explanations per method.")
    out.append("")
    if result.grids:
        pats = [p for p, g in pools.items() if g.grids]
        rows = []
        for m in result.methods:
            cs = getattr(m, "class_specificity", None) if m.ran else None
            if cs is None:
                continue
            by = cs.by_pathology()
            rows.append([f"`{m.name}`", _mean_sd(cs.share), _f(_mean(cs.tp_largest), 2)]
                        + [_f(by.get(p)) for p in pats] + [str(len(cs))])
        out.append(_table(["method", "share on TP (mean ± sd)", "TP largest"] + pats + ["grids"], rows))
        out.append("")
    short = [g for g in pools.values() if g.shortfall]
    if short:
        out.append("Fewer grids than asked: " + "; ".join(
            f"{g.pathology} {g.grids} of {g.wanted} ({g.reason()})" for g in short) + ".")
    else:
        out.append(f"Every pathology got the {wanted} grids asked.")
    out.append("")
    return out


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(a, dtype=float), axis=1)


def claims(result: Any) -> list[str]:
    """Verdicts on the two claims, stated from the numbers without forcing them."""
    lines: list[str] = []
    ls = _find(result, "latentshift-max", "latentshift")
    gbp = _find(result, "guided_backprop")
    c1 = "1. *Latent Shift decorrelates faster than guided backprop under cascading randomisation* (Cohen et al.): "
    if ls is None or gbp is None or ls.randomisation is None or gbp.randomisation is None:
        lines.append(c1 + "not measurable here (one of the two methods did not run).")
    else:
        ls_corr, gbp_corr = ls.randomisation.correlations, gbp.randomisation.correlations
        a, g = _nanmean_rows(ls_corr)[1:], _nanmean_rows(gbp_corr)[1:]
        both = np.isfinite(a) & np.isfinite(g)
        faster = int(np.sum(a[both] < g[both]))
        ma, mg = _mean(a), _mean(g)
        verdict = ("**holds**" if ma < mg and faster > both.sum() / 2 else
                   "**does not hold**" if ma >= mg and faster < both.sum() / 2 else "**mixed**")
        lines.append(c1 + f"{verdict} here: mean Spearman over the {len(a)} randomisation steps "
                     f"{_f(ma)} (`{ls.name}`) vs {_f(mg)} (`guided_backprop`); Latent Shift lower at "
                     f"{faster} of {int(both.sum())} steps; at full reset {_f(_mean(ls_corr[-1]))} vs "
                     f"{_f(_mean(gbp_corr[-1]))}. Caveat: only the classifier is randomised; the "
                     "autoencoder, which shapes the Latent Shift frames, keeps its weights.")
    v2 = _find(result, "adversarial_fi-v2_smooth", "adversarial_fi")
    if v2 is not None and v2.params.get("variant") != "v2_smooth":
        v2 = None
    diff = _find(result, "adversarial_diff", "adversarial_fi-diff")
    c2 = "2. *Adversarial feature importance E_FI v2 with smoothing localises better than |x_s - x_a|* (Charachon et al.): "
    lines.append(_localises_better(c2, v2, diff))
    grad = _find(result, "gradient")
    lines.append(_localises_better(
        "3. *E_FI v2 with smoothing localises better than the gradient* (Charachon et al. 2022, Table 1): ", v2, grad))
    sag1 = _find(result, "sagen-single")
    sag = _find(result, "sagen")
    lines.append(_localises_better(
        "4. *SAGen's |g_s(x) - g_a(x)| localises better than gradient maps* (Charachon et al. 2020, Tables VIII-IX): ",
        sag1, grad))
    lines.append(_localises_better(
        "5. *Averaging over random geometric augmentations improves SAGen's localisation* (Charachon et al. 2020, "
        "eq. 11, Tables VI-VII): ", sag, sag1))
    return lines


def _localises_better(claim: str, a: Any, b: Any) -> str:
    """Verdict on "a localises better than b": AUC_loc and top-p IoU over the same cases,
    paired Wilcoxon; holds when both are higher with p < 0.05, does not hold when both are lower."""
    if a is None or b is None:
        return claim + "not measurable here (one of the two methods did not run)."
    parts, wins, losses = [], 0, 0
    for key, label in (("auc_loc", "AUC_loc"), ("iou_top_p", "top-p IoU")):
        x = a.localisation.values(key)
        y = b.localisation.values(key)
        p = float("nan")
        if len(x) == len(y) and len(x) > 1 and np.any(x != y):
            p = float(stats.wilcoxon(x, y).pvalue)
        wins += int(_mean(x) > _mean(y) and p < 0.05)
        losses += int(_mean(x) < _mean(y))
        p_txt = "n/a" if not math.isfinite(p) else "< 0.001" if p < 0.001 else f"= {_f(p)}"
        parts.append(f"{label} {_f(_mean(x))} vs {_f(_mean(y))} (paired Wilcoxon p {p_txt})")
    verdict = "**holds**" if wins == 2 else "**does not hold**" if losses == 2 else "**mixed / not significant**"
    return claim + f"{verdict} here: " + "; ".join(parts) + f" over {len(a.localisation)} cases (`{a.name}` vs `{b.name}`)."


def reference_sentence(ref: dict[str, Any]) -> str:
    """The public reference's own evaluation count (EvaluationResult.reference_latentshift)."""
    cfg = ref.get("settings", {})
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(ref.get("stop_reasons", {}).items()))
    return (
        "The public reference ([ieee8023/latentshift](https://github.com/ieee8023/latentshift) "
        "`LatentShift.attribute`) with its own defaults (the probability's gradient, search_pred_diff "
        f"{cfg.get('search_pred_diff', 0.8)}, step {cfg.get('search_step_size', 10.0):g}, "
        f"{cfg.get('lambda_sweep_steps', 10)} frames, one image at a time), its walk and its frame cache, "
        f"counted by `cfviewer.explain.latentshift.reference_run` on the first {ref['cases']} cases: "
        f"**{ref['decoder_mean']:.1f} decoder images per explanation** (min {ref['decoder_min']}, max "
        f"{ref['decoder_max']}; {ref['steps_mean']:.1f} walk steps on average; stopped by: {reasons}). "
        "cfviewer's own counts are the `latentshift` row above (its settings differ: the logit's "
        "gradient, search_pred_diff 0.3, the overshoot refinement)."
    )
