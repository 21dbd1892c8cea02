"""Mimics: normal structures and harmless marks that look like a finding and are not one.

Real films are hard less because findings are small than because normal things look like
them; a reader (or a classifier) that has only seen clean negatives calls them. None of these
sets a label; each has a mask named "mimic_<kind>" so their effect on a model can be measured.

- nipple: 5-8 mm soft round densities over the lower zones, often bilateral and symmetric,
  fainter and less sharply marginated than a nodule -> mimics Mass;
- end_on_vessel: a vessel seen along its length near the hilum: a small dot denser than a
  nodule of its size, next to a branching vessel -> mimics Mass;
- skin_fold: a long, gently curving edge over the lateral lung (density fading medially, an
  abrupt lateral edge that may run beyond the lung), with lung markings continuing lateral
  to it, which is how it is told from a pneumothorax -> mimics Pneumothorax;
- scapula: the medial scapular border projected over the lateral upper lung (routine on AP
  films, on PA films when the shoulders are not rotated forward) -> mimics Pneumothorax;
- breast: broad soft-tissue density over both lower zones with a curved lower edge running
  beyond the lung; an asymmetric one (one side absent after mastectomy, or larger) makes the
  other lower zone look opaque -> mimics Lung Opacity;
- scar: a thin (1-2 mm), very sharp, often oblique linear scar with no volume loss ->
  mimics plate atelectasis.

Every drawer adds attenuation into `dens` (the generator's attenuation units) inside its own
window and returns (mask, meta); random numbers come only from the generator it is given.
"""

from __future__ import annotations

import numpy as np

from cfviewer.phantoms.anatomy import Anatomy, Patient, lung_lateral
from cfviewer.phantoms.findings import _lung_point, soft_mask
from cfviewer.phantoms.raster import Frame, ellipse_r2, ramp, segment_distance, sub, window

F32 = np.float32
MIMIC_KINDS: tuple[str, ...] = ("nipple", "end_on_vessel", "skin_fold", "breast", "scar", "scapula")
MIMIC_OF: dict[str, str] = {"nipple": "Mass", "end_on_vessel": "Mass", "skin_fold": "Pneumothorax",
                            "scapula": "Pneumothorax", "breast": "Lung Opacity", "scar": "Atelectasis"}


def mask_name(kind: str) -> str:
    return f"mimic_{kind}"


def _empty(f: Frame) -> np.ndarray:
    return np.zeros((f.size, f.size), bool)


def _put_mask(f: Frame, win, local: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    m = _empty(f) if out is None else out
    m[win] |= local
    return m


def nipple(f: Frame, p: Patient, a: Anatomy, dens: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Soft round 5-8 mm densities at the mid-clavicular line just above the domes."""
    bilateral = rng.random() < 0.65
    sides = (-1, 1) if bilateral else (int(rng.choice((-1, 1))),)
    diam_mm = rng.uniform(5.0, 8.0)
    c0 = rng.uniform(0.13, 0.2)
    frac = rng.uniform(0.56, 0.72)
    y0 = rng.uniform(0.02, 0.16)
    mask = _empty(f)
    spots = []
    for k, s in enumerate(sides):
        R = diam_mm * 0.0025 * (rng.uniform(0.85, 1.15) if k else 1.0)
        cx = s * (p.W * frac + (rng.normal(0, 0.02) if k else 0.0))
        cy = p.dome(s) - y0 + (rng.normal(0, 0.02) if k else 0.0)
        c = c0 * (rng.uniform(0.6, 1.0) if k else 1.0)
        win = window(f, [cx], [cy], 2.0 * R)
        if not win:
            continue
        r2 = ellipse_r2(sub(f, win), cx, cy, R, R * rng.uniform(0.85, 1.0), rng.uniform(0, np.pi))
        dens[win] += F32(c) * np.clip(1.0 - r2 / F32(2.2), 0.0, 1.0) ** 1.5   # soft, no sharp margin
        _put_mask(f, win, soft_mask(1.0 - r2, 0.0), mask)
        spots.append({"side": s, "center": (float(cx), float(cy)), "diameter_mm": float(R / 0.0025),
                      "contrast": float(c)})
    return mask, {"spots": spots}


def end_on_vessel(f: Frame, p: Patient, a: Anatomy, dens: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A small very dense dot beside a perihilar vessel (placed on a strong vessel pixel)."""
    side = int(rng.choice((-1, 1)))
    hx, hy = side * 0.19, -0.06
    R = rng.uniform(0.009, 0.015)
    c = rng.uniform(0.3, 0.45)
    u = rng.random()
    ang = rng.uniform(-2.2, 1.2)
    dist = rng.uniform(0.1, 0.2)
    cx, cy = hx + side * dist * np.cos(ang), hy + dist * np.sin(ang)
    win = window(f, [hx], [hy], 0.27)
    if win:
        sf = sub(f, win)
        r = np.hypot(sf.x - F32(hx), sf.y - F32(hy))
        lung = a.lung[side][win]
        free = (lung > 0.5) & (a.extra["heart_soft"][win] < 0.05) & (sf.x * F32(side) > 0.16)
        v = np.where((r > 0.08) & (r < 0.22) & free, a.vessels[win], -np.inf)
        flat = v.ravel()
        ok = np.isfinite(flat)
        if ok.sum() >= 4:
            cut = np.quantile(flat[ok], 0.97)
            cand = np.flatnonzero(flat >= cut)
            i = cand[min(int(u * len(cand)), len(cand) - 1)]
            cx, cy = float(sf.x.ravel()[i]), float(sf.y.ravel()[i])
            cx += side * 0.6 * R   # beside, not on top of, the vessel
    w2 = window(f, [cx], [cy], 1.5 * R)
    mask = _empty(f)
    if w2:
        r2 = ellipse_r2(sub(f, w2), cx, cy, R, R)
        dens[w2] += F32(c) * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)) ** 0.5 * ramp(1.0 - r2, 0.15)
        _put_mask(f, w2, soft_mask(1.0 - r2, 0.0), mask)
    return mask, {"side": side, "center": (float(cx), float(cy)), "diameter_mm": float(2 * R * 200),
                  "contrast": float(c)}


def skin_fold(f: Frame, p: Patient, a: Anatomy, dens: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A curved edge roughly parallel to the lateral chest wall. Density rises towards the
    edge from the medial side and stops abruptly; the vessels are untouched (markings continue
    lateral to it) and the edge may run on below the costophrenic angle."""
    side = int(rng.choice((-1, 1)))
    y0 = rng.uniform(-0.55, -0.25)
    y1 = rng.uniform(0.05, p.dome(side) + 0.08)
    i0, i1 = rng.uniform(0.05, 0.14), rng.uniform(0.04, 0.2)
    bulge = rng.uniform(-0.05, 0.05)
    c = rng.uniform(0.1, 0.17)
    width = rng.uniform(0.04, 0.08)
    win = window(f, [side * (p.W - 0.45), side * (p.W + 0.05)] * 2, [y0, y0, y1, y1], 0.03)
    mask = _empty(f)
    if win:
        sf = sub(f, win)
        t = np.clip((sf.y - F32(y0)) / F32(y1 - y0), 0.0, 1.0)
        dc = lung_lateral(p, np.clip(sf.y, F32(-1.0), F32(0.15))) - (F32(i0) + F32(i1 - i0) * t) \
            - F32(bulge) * np.sin(t * F32(np.pi))
        h = sf.x * F32(side) - dc                         # > 0 lateral of the fold
        extent = ramp(sf.y - F32(y0), 0.06) * ramp(F32(y1) - sf.y, 0.04)
        prof = ramp(-h, 1.0 * f.px) * np.clip(1.0 + h / F32(width), 0.0, 1.0)
        dens[win] += F32(c) * prof * extent
        band = (np.abs(h) < max(0.012, 1.5 * f.px)) & (extent > 0.5)
        inlung = band & (a.lung[side][win] > 0.5)
        _put_mask(f, win, inlung if inlung.any() else band, mask)
    return mask, {"side": side, "y_range": (float(y0), float(y1)), "contrast": float(c)}


def scapula(f: Frame, p: Patient, a: Anatomy, dens: np.ndarray, rng: np.random.Generator,
            sides: tuple[int, ...] | None = None, strength: float | None = None) -> tuple[np.ndarray, dict]:
    """The scapular body over the lateral upper lung, bounded medially by a sharp cortical
    border running from the superior angle down and out to the inferior angle."""
    if sides is None:
        sides = (-1, 1) if rng.random() < 0.6 else (int(rng.choice((-1, 1))),)
    if strength is None:
        strength = rng.uniform(0.75, 1.0)
    mask = _empty(f)
    info = []
    for s in sides:
        top = (rng.uniform(0.46, 0.58), p.apex + rng.uniform(0.04, 0.12))
        bot = (p.W - rng.uniform(0.04, 0.12), rng.uniform(-0.15, 0.02))
        bow = rng.uniform(0.0, 0.04)
        body = strength * rng.uniform(0.1, 0.15)
        win = window(f, [s * (top[0] - 0.05), s * (p.W + 0.2)] * 2, [top[1], top[1], bot[1], bot[1]], 0.04)
        if not win:
            continue
        sf = sub(f, win)
        t = np.clip((sf.y - F32(top[1])) / F32(bot[1] - top[1]), 0.0, 1.0)
        db = F32(top[0]) + F32(bot[0] - top[0]) * t - F32(bow) * np.sin(t * F32(np.pi))
        h = sf.x * F32(s) - db
        # lateral border: from the inferior angle up and out towards the glenoid
        lat = F32(bot[0]) + (F32(bot[1]) - sf.y) * F32(0.5)
        vert = ramp(sf.y - F32(top[1]), 0.03) * ramp(F32(bot[1]) - sf.y, 0.02)
        plate = ramp(h, 1.2 * f.px) * ramp(lat - sf.x * F32(s), 0.02) * vert
        cortex = np.exp(-((h / F32(max(0.006, 0.8 * f.px))) ** 2)) * vert
        dens[win] += F32(body) * plate + F32(0.6 * body) * cortex
        band = (np.abs(h) < max(0.012, 1.5 * f.px)) & (vert > 0.5)
        inlung = band & (a.lung[s][win] > 0.5)
        _put_mask(f, win, inlung if inlung.any() else band, mask)
        info.append({"side": s, "superior": top, "inferior": bot, "density": float(body)})
    return mask, {"sides": info}


def breast(f: Frame, p: Patient, a: Anatomy, dens: np.ndarray, rng: np.random.Generator,
           asymmetric: bool = True) -> tuple[np.ndarray, dict]:
    """Breast shadows over the lower zones: thickest just above the curved inframammary edge,
    fading upwards. asymmetric=True draws the convincing mimic (one side absent or denser)."""
    kind = "symmetric"
    scale = {-1: 1.0, 1: 1.0}
    if asymmetric:
        if rng.random() < 0.6:
            kind = "mastectomy"
            scale[int(rng.choice((-1, 1)))] = 0.0
        else:
            kind = "asymmetric"
            scale[int(rng.choice((-1, 1)))] = rng.uniform(1.5, 2.0)
    c0 = rng.uniform(0.11, 0.2)
    bw, bh = rng.uniform(0.28, 0.4), rng.uniform(0.2, 0.3)
    frac = rng.uniform(0.5, 0.66)
    low = rng.uniform(-0.02, 0.12)
    mask = _empty(f)
    layer = np.zeros((f.size, f.size), F32)
    for s in (-1, 1):
        cx = s * (p.W * frac + rng.normal(0, 0.02))
        cy = p.dome(s) + low + rng.normal(0, 0.02) - bh
        c = c0 * scale[s] * rng.uniform(0.9, 1.1)
        if c <= 0:
            continue
        win = window(f, [cx - bw, cx + bw, cx - bw, cx + bw], [cy - bh, cy - bh, cy + bh, cy + bh], 0.02)
        if not win:
            continue
        sf = sub(f, win)
        r2 = ellipse_r2(sf, cx, cy, bw, bh)
        up = np.clip((sf.y - F32(cy - bh)) / F32(2 * bh), 0.0, 1.0) ** 0.8    # hangs: thickest low
        t = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)) ** 0.3 * ramp(1.0 - r2, 0.02) * up
        layer[win] += F32(c) * t * a.body[win]
    peak = float(layer.max())
    if peak > 0:
        dens += layer
        region = layer > 0.3 * peak
        lung = (a.lung[-1] + a.lung[1]) > 0.5
        mask = region & lung if (region & lung).any() else region
    return mask, {"kind": kind, "contrast": float(c0), "sides": [s for s in (-1, 1) if scale[s] > 0]}


def scar(f: Frame, p: Patient, a: Anatomy, dens: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A thin, sharp, slightly kinked linear scar in the mid or lower zone; no volume loss."""
    side = int(rng.choice((-1, 1)))
    cx, cy = _lung_point(rng, p, side, 0.04, (p.apex + 0.35, p.dome(side) - 0.06))
    L = rng.uniform(0.08, 0.22)
    ang = rng.uniform(-0.9, 0.9)
    t = rng.uniform(0.004, 0.009)                   # 1-2 mm
    c = rng.uniform(0.45, 0.65)
    n = 3
    kinks = ang + np.cumsum(rng.uniform(-0.25, 0.25, n))
    pts = [(cx - 0.5 * L * np.cos(ang), cy - 0.5 * L * np.sin(ang))]
    for k in kinks:
        x0, y0 = pts[-1]
        pts.append((x0 + L / n * np.cos(k), y0 + L / n * np.sin(k)))
    xs, ys = [q[0] for q in pts], [q[1] for q in pts]
    win = window(f, xs, ys, 0.02)
    mask = _empty(f)
    if win:
        sf = sub(f, win)
        dist = np.minimum.reduce([segment_distance(sf, pts[i], pts[i + 1]) for i in range(n)])
        half = max(t / 2, 0.5 * f.px)
        prof = ramp(F32(half) - dist, 0.5 * f.px) * F32(min(1.0, t / (2 * half)))
        dens[win] += F32(c) * prof * np.minimum(a.lung[side][win] * 4.0, 1.0)
        _put_mask(f, win, soft_mask(prof, 0.3), mask)
    return mask, {"side": side, "center": (float(cx), float(cy)), "length": float(L), "thickness": float(t)}


DRAW = {
    "nipple": nipple,
    "end_on_vessel": end_on_vessel,
    "skin_fold": skin_fold,
    "breast": breast,
    "scar": scar,
    "scapula": scapula,
}
