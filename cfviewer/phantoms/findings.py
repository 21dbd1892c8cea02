"""The six pathologies as edits of a normal chest, each with its pixel mask.

Every finding adds attenuation (`dens`), may scale lung air (`air_scale`) and vessel
markings (`vessel_keep`), and returns a boolean mask of where it is plus a little metadata.
`severity` in [0, 1] sets how conspicuous it is (0 = subtle, 1 = obvious).
Cardiomegaly is drawn by anatomy (heart size from the CTR); its mask is the heart silhouette.

GRADED_DRAWERS (PhantomConfig.subtle_findings) reach down to what is genuinely missed on real
films: the lowest third of the severity range is a "subtle" tier (a 1-1.5 cm low-contrast
nodule, fluid that only blunts the costophrenic angle, a thin plate of atelectasis or a
retrocardiac lower-lobe collapse, a few-millimetre apical pneumothorax rim, a faint
ground-glass patch with vessels still seen through it, a CTR just over 0.5); the middle third
is what a resident reports, the top third is obvious. On supine (AP) films a graded effusion
may layer posteriorly as a veil without a meniscus, as it does in real supine patients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter, zoom

from cfviewer.phantoms.anatomy import Anatomy, Patient, diaphragm_y, lung_lateral
from cfviewer.phantoms.raster import Frame, ellipse_r2, ramp, segment_distance

F32 = np.float32

CTR_NORMAL = (0.38, 0.48)
CTR_ENLARGED = (0.53, 0.66)


@dataclass
class Edits:
    """Accumulated changes to a normal chest."""

    dens: np.ndarray
    air_scale: np.ndarray
    vessel_keep: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def empty(cls, size: int) -> Edits:
        return cls(np.zeros((size, size), F32), np.ones((size, size), F32), np.ones((size, size), F32))


def soft_mask(soft: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels where a soft finding map exceeds `threshold`; at tiny image sizes, where a thin
    finding covers no pixel centre, the pixels of its maximum (so a positive is never empty)."""
    m = soft > threshold
    if not m.any() and soft.max() > 0:
        m = soft >= soft.max() * 0.999
    return m


def sample_ctr(rng: np.random.Generator, positive: bool, severity: float) -> float:
    if positive:
        lo, hi = CTR_ENLARGED
        return float(lo + (hi - lo) * (0.15 + 0.85 * severity) * rng.uniform(0.8, 1.0))
    return float(rng.uniform(*CTR_NORMAL))


def lung_margin(p: Patient, x: float, y: float) -> float:
    """Approximate distance (body units) of the point (x, y) inside its lung field, negative
    outside; the heart silhouette counts as outside (same geometry as anatomy.draw_anatomy)."""
    side = 1 if x > 0 else -1
    d = abs(x)
    lat = float(lung_lateral(p, np.float32(y)))
    apex_y = p.apex + 2.2 * (d - 0.3) ** 2
    med = (0.125 if side < 0 else 0.11) + 0.03 * min(max((y + 0.5) / 0.2, 0.0), 1.0)
    m = min(lat - d, y - apex_y, d - med, float(diaphragm_y(p, side, np.float32(d))) - y)
    hx, hy, ha, hb, ht = p.heart_axes
    c, s = np.cos(ht), np.sin(ht)
    u, v = (c * (x - hx) + s * (y - hy)) / ha, (c * (y - hy) - s * (x - hx)) / hb
    return min(m, (np.sqrt(u * u + v * v) - 1.0) * hb)


def _lung_point(rng: np.random.Generator, p: Patient, side: int, margin: float,
                y_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """A random point inside the lung field of `side`, at least `margin` from its borders."""
    y0, y1 = y_range or (p.apex + 0.15, p.dome(side) - 0.05)
    best, best_m = (side * 0.5, 0.0), -np.inf
    for _ in range(200):
        y = rng.uniform(y0, y1)
        d = rng.uniform(0.12, float(lung_lateral(p, np.float32(y))))
        m = lung_margin(p, side * d, y)
        if m > margin:
            return side * d, y
        if m > best_m:
            best, best_m = (side * d, y), m
    return best


def atelectasis(f: Frame, p: Patient, a: Anatomy, e: Edits, rng: np.random.Generator, sev: float) -> None:
    """Plate-like (discoid) band in a lower zone, or upper-lobe collapse: a dense wedge
    against the mediastinum bounded below by the elevated fissure."""
    side = int(rng.choice((-1, 1)))
    lung = a.lung[side]
    if rng.random() < 0.55:
        kind = "plate"
        t = rng.uniform(0.022, 0.04) * (0.8 + 0.5 * sev)
        for _ in range(50):   # both ends of the band inside the lung, clear of the heart
            cx, cy = _lung_point(rng, p, side, 0.05, (p.dome(side) - 0.4, p.dome(side) - 0.08))
            L = rng.uniform(0.2, 0.34)
            ang = rng.uniform(-0.3, 0.3)
            dx, dy = 0.5 * L * np.cos(ang), 0.5 * L * np.sin(ang)
            if min(lung_margin(p, cx - dx, cy - dy), lung_margin(p, cx + dx, cy + dy)) > 0.02:
                break
        dist = segment_distance(f, (cx - dx, cy - dy), (cx + dx, cy + dy))
        t = max(t, 1.5 * f.px)   # at least one pixel wide at tiny sizes
        band = ramp(F32(t / 2) - dist, 0.012) * lung * (1.0 - F32(0.85) * a.extra["heart_soft"])
        e.dens += F32(0.3 + 0.25 * sev) * band
        mask = soft_mask(band, 0.3)
        info = {"kind": kind, "side": side, "center": (cx, cy), "length": L, "thickness": t}
    else:
        kind = "lobar"
        d = f.x * F32(side)
        hil = (0.13, rng.uniform(-0.14, -0.06))
        lat_y = rng.uniform(-0.52, -0.3)
        lat_d = float(lung_lateral(p, np.float32(lat_y)))
        slope = (lat_y - hil[1]) / (lat_d - hil[0])
        fissure = F32(hil[1]) + F32(slope) * (d - F32(hil[0]))
        # concave fissure: bowed upwards in its middle (volume loss)
        bow = F32(0.05 + 0.05 * sev) * np.sin(np.clip((d - F32(hil[0])) / F32(lat_d - hil[0]), 0, 1) * np.pi)
        below_edge = fissure - bow - f.y
        wedge = ramp(below_edge, 0.008) * lung
        grad = F32(0.7) + F32(0.3) * ramp(F32(0.45) - d, 0.3)
        e.dens += F32(0.22 + 0.25 * sev) * wedge * grad
        e.air_scale *= 1.0 - F32(0.4) * wedge
        mask = soft_mask(wedge, 0.3)
        info = {"kind": kind, "side": side, "fissure": (hil, (lat_d, lat_y))}
    e.masks["Atelectasis"] = mask
    e.meta["Atelectasis"] = info


def effusion(f: Frame, p: Patient, a: Anatomy, e: Edits, rng: np.random.Generator, sev: float) -> None:
    """Basal fluid with a meniscus rising laterally; blunts the costophrenic angle and hides
    the hemidiaphragm. Uni- or bilateral."""
    sides = [int(rng.choice((-1, 1)))] if rng.random() < 0.7 else [-1, 1]
    mask = np.zeros((f.size, f.size), bool)
    heights = {}
    for side in sides:
        d = f.x * F32(side)
        cp_y = float(diaphragm_y(p, side, np.float32(p.W)))
        h = rng.uniform(0.08, 0.16) + 0.2 * sev * rng.uniform(0.5, 1.0)
        rel = np.clip((d - F32(0.1)) / F32(p.W - 0.1), 0.0, 1.0)
        top = F32(cp_y - h) - F32(0.2) * rel ** 2
        fluid = ramp(f.y - top, 0.09) * a.lung[side] * (1.0 - F32(0.85) * a.extra["heart_soft"])
        e.dens += F32(0.45 + 0.25 * sev) * fluid
        e.air_scale *= 1.0 - F32(0.7) * fluid
        e.vessel_keep *= 1.0 - fluid
        mask |= soft_mask(fluid, 0.35)
        heights[side] = h
    e.masks["Effusion"] = mask
    e.meta["Effusion"] = {"sides": sides, "heights": heights}


def _patchy_opacity(f: Frame, a: Anatomy, side: int, cx: float, cy: float, R: float,
                    rng: np.random.Generator) -> np.ndarray:
    """A soft elliptical blob of radius about R modulated by smooth noise, inside the lung of
    ``side``: the shape of airspace shadowing (draws the aspect, angle and noise from rng)."""
    r2 = ellipse_r2(f, cx, cy, R, R * rng.uniform(0.7, 1.3), rng.uniform(0, np.pi))
    n = max(f.size // 8, 8)
    noise = gaussian_filter(rng.standard_normal((n, n)).astype(F32), 1.0)
    noise = zoom(noise, f.size / n, order=1)[: f.size, : f.size]
    noise = noise / (np.abs(noise).max() + 1e-6)
    blob = np.exp(-r2 * F32(1.3))
    return np.clip(blob * (F32(1.0) + F32(0.55) * noise) - F32(0.25), 0.0, 1.0) * a.lung[side]


def lung_opacity(f: Frame, p: Patient, a: Anatomy, e: Edits, rng: np.random.Generator, sev: float) -> None:
    """Patchy, ill-defined airspace consolidation (smooth noise inside a soft blob)."""
    side = int(rng.choice((-1, 1)))
    R = rng.uniform(0.12, 0.2) * (0.8 + 0.4 * sev)
    cx, cy = _lung_point(rng, p, side, 0.04)
    op = _patchy_opacity(f, a, side, cx, cy, R, rng)
    e.dens += F32(0.4 + 0.3 * sev) * op
    e.air_scale *= 1.0 - F32(0.4) * op
    e.masks["Lung Opacity"] = soft_mask(op, 0.12)
    e.meta["Lung Opacity"] = {"side": side, "center": (cx, cy), "radius": R}


def mass(f: Frame, p: Patient, a: Anatomy, e: Edits, rng: np.random.Generator, sev: float) -> None:
    """Round, well-defined opacity 1.5-5 cm across (the image spans about 40 cm = 2 units)."""
    side = int(rng.choice((-1, 1)))
    diam_cm = 1.5 + 3.5 * (0.15 + 0.85 * sev) * rng.uniform(0.6, 1.0)
    R = diam_cm * 0.05 / 2.0
    cx, cy = _lung_point(rng, p, side, R + 0.03)
    r2 = ellipse_r2(f, cx, cy, R, R * rng.uniform(0.88, 1.0), rng.uniform(0, np.pi))
    ball = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    e.dens += F32(0.35 + 0.25 * sev) * (ball ** 0.5) * ramp(1.0 - r2, 0.08)
    e.masks["Mass"] = soft_mask(1.0 - r2, 0.0)
    e.meta["Mass"] = {"side": side, "center": (cx, cy), "diameter_cm": diam_cm}


def _pleural_air(f: Frame, p: Patient, a: Anatomy, e: Edits, side: int, gap: float, y_end: float,
                 air_drop: float, line_gain: float) -> None:
    """The pneumothorax edit: an air rim ``gap`` wide at the apex, tapering to nothing at
    ``y_end``, with no vessel markings in it (attenuation lowered by ``air_drop``), the
    visceral pleural line at its inner edge (``line_gain``) and a slightly denser collapsed
    lung edge; sets the "Pneumothorax" mask."""
    taper = np.clip((F32(y_end) - f.y) / F32(y_end - p.apex), 0.0, 1.0) ** 0.4
    g = F32(gap) * taper
    outer = a.lung_outer[side]
    lung = a.lung[side]
    rim = ramp(g - outer, 1.5 * f.px) * lung
    e.vessel_keep *= 1.0 - rim
    e.air_scale *= 1.0 + F32(0.2) * rim
    e.dens -= F32(air_drop) * rim
    w = F32(0.9 * f.px)
    line = np.exp(-(((outer - g) / w) ** 2)) * (g > 1.5 * f.px) * ramp(a.lung_depth[side], 2 * f.px)
    e.dens += F32(line_gain) * line
    # the collapsed lung edge is a little denser
    e.dens += F32(0.05) * ramp(outer - g, 0.005) * ramp(g + 0.08 - outer, 0.05) * (g > 0) * lung
    e.masks["Pneumothorax"] = soft_mask(rim, 0.5)


def pneumothorax(f: Frame, p: Patient, a: Anatomy, e: Edits, rng: np.random.Generator, sev: float) -> None:
    """Apical/lateral air rim: a thin visceral pleural line, no vessel markings beyond it."""
    side = int(rng.choice((-1, 1)))
    gap = rng.uniform(0.05, 0.07) + 0.08 * sev * rng.uniform(0.5, 1.0)
    y_end = rng.uniform(-0.05, 0.3)
    _pleural_air(f, p, a, e, side, gap, y_end, 0.12 + 0.08 * sev, 0.16 + 0.08 * sev)
    e.meta["Pneumothorax"] = {"side": side, "gap": gap, "y_end": y_end}


# --- graded findings (PhantomConfig.subtle_findings) -----------------------------------------
CTR_GRADED = (0.505, 0.54, 0.66)     # subtle from .. moderate from .. up to
CTR_GRADED_NORMAL = (0.38, 0.497)


def tier(sev: float) -> tuple[int, float]:
    """(0 subtle / 1 moderate / 2 obvious, position 0..1 inside the tier) of a severity."""
    t = min(int(sev * 3.0), 2)
    return t, float(min(max(sev * 3.0 - t, 0.0), 1.0))


def _lerp(r: tuple[float, float], w: float) -> float:
    return r[0] + (r[1] - r[0]) * w


def _by_tier(sev: float, ranges: tuple[tuple[float, float], ...], rng: np.random.Generator,
             jitter: float = 0.3) -> float:
    """A value from the tier's range: mostly by the position in the tier, partly random."""
    t, w = tier(sev)
    w = (1.0 - jitter) * w + jitter * rng.random()
    return _lerp(ranges[t], w)


def graded_ctr(rng: np.random.Generator, positive: bool, severity: float) -> float:
    """True (PA-equivalent) CTR: normals fill 0.38-0.50 up to the threshold; a subtle
    cardiomegaly is 0.505-0.54 (borderline), then up to 0.66."""
    if not positive:
        return float(rng.uniform(*CTR_GRADED_NORMAL))
    lo, mid, hi = CTR_GRADED
    return _by_tier(severity, ((lo, mid), (mid, 0.5 * (mid + hi)), (0.5 * (mid + hi), hi)), rng, 0.5)


def atelectasis_plan(rng: np.random.Generator, sev: float) -> tuple[int, int, str]:
    """(side, tier, kind) of a graded atelectasis: the first draws of its own stream, so the
    generator can read them before the anatomy is drawn (volume loss) and the drawer after."""
    side = int(rng.choice((-1, 1)))
    t_, _ = tier(sev)
    u_kind = rng.random()
    kind = "plate" if t_ == 0 or u_kind < 0.5 else ("lobar" if u_kind < 0.78 else "lower_lobe")
    return side, t_, kind


# Elevation of the ipsilateral hemidiaphragm (body-frame units, 0.05 = 1 cm) by kind and tier
# (subtle, moderate, obvious). Lower-lobe collapse pulls the dome up most; a plate comes with
# the small-volume, poorly expanded base it forms in (post-operative, splinting); the subtle
# tier stays a plate alone. Upper-lobe collapse is left as it was (its fissure already shows it).
ELEVATION = {
    "plate": ((0.0, 0.0), (0.07, 0.1), (0.09, 0.13)),
    "lower_lobe": ((0.0, 0.0), (0.09, 0.13), (0.12, 0.17)),
}


def volume_loss_elevation(kind: str, t_: int, rng: np.random.Generator) -> float:
    """How far the hemidiaphragm on the collapsed side rises (0 = no volume-loss sign)."""
    lo, hi = ELEVATION.get(kind, ((0.0, 0.0),) * 3)[t_]
    return float(rng.uniform(lo, hi)) if hi > 0 else 0.0


def volume_loss_mask(f: Frame, p: Patient, side: int, elevation: float) -> np.ndarray:
    """Where the raised hemidiaphragm changed the film: between its dome and where it was
    (elevation lower), from beside the spine to the chest wall, with a small margin."""
    d = f.x * F32(side)
    y_new = diaphragm_y(p, side, d)
    m = F32(0.015)
    band = (f.y >= y_new - m) & (f.y <= y_new + F32(elevation) + m)
    return band & (d > F32(0.08)) & (d < lung_lateral(p, f.y) + m)


def atelectasis_graded(f: Frame, p: Patient, a: Anatomy, e: Edits, rng: np.random.Generator, sev: float,
                       ctx: dict) -> None:
    """Subtle: a thin (3-4 mm) plate in a lower zone. Moderate/obvious: thicker plates, an
    upper-lobe wedge, or a lower-lobe collapse (a triangle behind the heart / against the spine
    that hides the medial hemidiaphragm). With PhantomConfig.volume_loss the moderate and obvious
    plates and lower-lobe collapses also raise their hemidiaphragm (ctx["volume_loss"], set by the
    generator before the anatomy is drawn), and the mask takes in the band the dome moved through."""
    side, t_, kind = atelectasis_plan(rng, sev)
    lung = a.lung[side]
    heart = a.extra["heart_soft"]
    if kind == "plate":
        t = _by_tier(sev, ((0.014, 0.022), (0.022, 0.034), (0.032, 0.046)), rng)
        L = _by_tier(sev, ((0.15, 0.24), (0.2, 0.3), (0.24, 0.36)), rng)
        for _ in range(50):
            cx, cy = _lung_point(rng, p, side, 0.05, (p.dome(side) - 0.4, p.dome(side) - 0.07))
            ang = rng.uniform(-0.3, 0.3)
            dx, dy = 0.5 * L * np.cos(ang), 0.5 * L * np.sin(ang)
            if min(lung_margin(p, cx - dx, cy - dy), lung_margin(p, cx + dx, cy + dy)) > 0.02:
                break
        dist = segment_distance(f, (cx - dx, cy - dy), (cx + dx, cy + dy))
        t = max(t, 1.5 * f.px)
        band = ramp(F32(t / 2) - dist, 0.01) * lung * (1.0 - F32(0.85) * heart)
        c = _by_tier(sev, ((0.26, 0.34), (0.34, 0.44), (0.42, 0.55)), rng)
        e.dens += F32(c) * band
        e.air_scale *= 1.0 - F32(0.3) * band
        mask = soft_mask(band, 0.3)
        info = {"kind": kind, "side": side, "center": (cx, cy), "length": L, "thickness": t}
    elif kind == "lobar":
        d = f.x * F32(side)
        hil = (0.13, rng.uniform(-0.14, -0.06))
        lat_y = rng.uniform(-0.5, -0.36) if t_ == 1 else rng.uniform(-0.4, -0.28)
        lat_d = float(lung_lateral(p, np.float32(lat_y)))
        slope = (lat_y - hil[1]) / (lat_d - hil[0])
        fissure = F32(hil[1]) + F32(slope) * (d - F32(hil[0]))
        bow = F32(0.04 + 0.04 * sev) * np.sin(np.clip((d - F32(hil[0])) / F32(lat_d - hil[0]), 0, 1) * np.pi)
        wedge = ramp(fissure - bow - f.y, 0.008) * lung
        grad = F32(0.7) + F32(0.3) * ramp(F32(0.45) - d, 0.3)
        c = _by_tier(sev, ((0.16, 0.2), (0.18, 0.28), (0.28, 0.45)), rng)
        e.dens += F32(c) * wedge * grad
        e.air_scale *= 1.0 - F32(0.35) * wedge
        mask = soft_mask(wedge, 0.3)
        info = {"kind": kind, "side": side, "fissure": (hil, (lat_d, lat_y))}
    else:
        d = f.x * F32(side)
        hy = rng.uniform(-0.1, 0.0)
        ld = _by_tier(sev, ((0.24, 0.3), (0.28, 0.36), (0.34, 0.44)), rng)
        dy = float(diaphragm_y(p, side, np.float32(ld)))
        xb = F32(0.13) + F32(ld - 0.13) * np.clip((f.y - F32(hy)) / F32(dy - hy), 0.0, 1.0)
        wedge = ramp(xb - d, 0.012) * ramp(f.y - F32(hy), 0.06) * lung
        c = _by_tier(sev, ((0.14, 0.18), (0.18, 0.26), (0.26, 0.36)), rng)
        e.dens += F32(c) * wedge
        e.air_scale *= 1.0 - F32(0.3) * wedge
        e.vessel_keep *= 1.0 - F32(0.6) * wedge
        mask = soft_mask(wedge, 0.3)
        info = {"kind": kind, "side": side, "lateral_edge": ld}
    info["tier"] = t_
    vl = ctx.get("volume_loss")
    if vl:   # the hemidiaphragm was raised before the anatomy was drawn (PhantomConfig.volume_loss)
        mask = mask | volume_loss_mask(f, p, side, vl["elevation"])
        info["elevation"] = vl["elevation"]
    e.masks["Atelectasis"] = mask
    e.meta["Atelectasis"] = info


def effusion_graded(f: Frame, p: Patient, a: Anatomy, e: Edits, rng: np.random.Generator, sev: float,
                    ctx: dict) -> None:
    """Subtle: fluid only in the costophrenic angle (a blunted angle). Moderate: a meniscus
    over the lower zone. Large: up to mid-thorax. Supine (AP) films: in about half the cases
    the fluid layers posteriorly as a basal veil without a meniscus (vessels still visible)."""
    sides = [int(rng.choice((-1, 1)))] if rng.random() < 0.7 else [-1, 1]
    t_, _ = tier(sev)
    layering = ctx.get("projection") == "AP" and t_ > 0 and rng.random() < 0.5
    mask = np.zeros((f.size, f.size), bool)
    heights = {}
    heart = a.extra["heart_soft"]
    for k, side in enumerate(sides):
        d = f.x * F32(side)
        cp_y = float(diaphragm_y(p, side, np.float32(p.W)))
        scale = 1.0 if k == 0 else rng.uniform(0.5, 1.0)
        if layering:
            c = _by_tier(sev, ((0.1, 0.14), (0.12, 0.2), (0.18, 0.28)), rng) * scale
            y_top = p.apex + _by_tier(sev, ((0.6, 0.7), (0.55, 0.65), (0.3, 0.5)), rng)
            w = np.clip((f.y - F32(y_top)) / F32(max(cp_y - y_top, 0.1)), 0.0, 1.0) ** 1.3
            fluid = w * a.lung[side] * (1.0 - F32(0.85) * heart)
            # a thin meniscus in the angle as well
            rel = np.clip((d - F32(0.1)) / F32(p.W - 0.1), 0.0, 1.0)
            angle = ramp(f.y - (F32(cp_y - 0.01) - F32(0.05) * rel ** 4), 0.05) * a.lung[side]
            e.dens += F32(c) * fluid + F32(0.35) * angle
            e.air_scale *= (1.0 - F32(0.35) * fluid) * (1.0 - F32(0.6) * angle)
            e.vessel_keep *= (1.0 - F32(0.35) * fluid) * (1.0 - angle)
            mask |= soft_mask(np.maximum(fluid, angle), 0.35)
            heights[side] = float(cp_y - y_top)
            continue
        h = _by_tier(sev, ((0.01, 0.045), (0.045, 0.14), (0.14, 0.36)), rng) * scale
        rise = _by_tier(sev, ((0.06, 0.11), (0.1, 0.18), (0.16, 0.22)), rng)
        power = (4.0, 2.5, 2.0)[t_]
        rel = np.clip((d - F32(0.1)) / F32(p.W - 0.1), 0.0, 1.0)
        top = F32(cp_y - h) - F32(rise) * rel ** power
        fluid = ramp(f.y - top, (0.04, 0.07, 0.09)[t_]) * a.lung[side] * (1.0 - F32(0.85) * heart)
        c = _by_tier(sev, ((0.42, 0.5), (0.45, 0.6), (0.55, 0.7)), rng)
        e.dens += F32(c) * fluid
        e.air_scale *= 1.0 - F32(0.7) * fluid
        e.vessel_keep *= 1.0 - fluid
        mask |= soft_mask(fluid, 0.35)
        heights[side] = h
    e.masks["Effusion"] = mask
    e.meta["Effusion"] = {"sides": sides, "heights": heights, "layering": layering, "tier": t_}


def lung_opacity_graded(f: Frame, p: Patient, a: Anatomy, e: Edits, rng: np.random.Generator, sev: float,
                        ctx: dict) -> None:
    """Subtle: a faint ground-glass patch (vessels still visible through it). Moderate:
    patchy airspace shadowing. Obvious: dense consolidation that hides the vessels."""
    side = int(rng.choice((-1, 1)))
    t_, _ = tier(sev)
    R = _by_tier(sev, ((0.09, 0.13), (0.12, 0.19), (0.16, 0.24)), rng)
    cx, cy = _lung_point(rng, p, side, 0.04)
    op = _patchy_opacity(f, a, side, cx, cy, R, rng)
    c = _by_tier(sev, ((0.16, 0.24), (0.24, 0.4), (0.4, 0.65)), rng)
    e.dens += F32(c) * op
    e.air_scale *= 1.0 - F32((0.15, 0.3, 0.45)[t_]) * op
    e.vessel_keep *= 1.0 - F32((0.0, 0.3, 0.7)[t_]) * op
    e.masks["Lung Opacity"] = soft_mask(op, 0.12)
    e.meta["Lung Opacity"] = {"side": side, "center": (cx, cy), "radius": R, "tier": t_}


def mass_graded(f: Frame, p: Patient, a: Anatomy, e: Edits, rng: np.random.Generator, sev: float,
                ctx: dict) -> None:
    """Subtle: a 1-1.5 cm nodule of low contrast. Moderate 1.5-3 cm. Obvious 3-5.5 cm,
    sometimes lobulated. Always well defined (sharper and denser than a nipple shadow)."""
    side = int(rng.choice((-1, 1)))
    t_, _ = tier(sev)
    diam_cm = _by_tier(sev, ((1.0, 1.5), (1.5, 3.0), (3.0, 5.5)), rng)
    R = diam_cm * 0.05 / 2.0
    cx, cy = _lung_point(rng, p, side, R + 0.03)
    r2 = ellipse_r2(f, cx, cy, R, R * rng.uniform(0.85, 1.0), rng.uniform(0, np.pi))
    if t_ == 2 and rng.random() < 0.5:   # lobulated: a second overlapping lobe
        ang = rng.uniform(0, 2 * np.pi)
        r2 = np.minimum(r2, ellipse_r2(f, cx + 0.6 * R * np.cos(ang), cy + 0.6 * R * np.sin(ang),
                                       0.65 * R, 0.6 * R, ang))
    ball = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    c = _by_tier(sev, ((0.28, 0.36), (0.34, 0.46), (0.45, 0.6)), rng)
    e.dens += F32(c) * (ball ** 0.5) * ramp(1.0 - r2, 0.08)
    e.masks["Mass"] = soft_mask(1.0 - r2, 0.0)
    e.meta["Mass"] = {"side": side, "center": (cx, cy), "diameter_cm": diam_cm, "tier": t_}


def pneumothorax_graded(f: Frame, p: Patient, a: Anatomy, e: Edits, rng: np.random.Generator, sev: float,
                        ctx: dict) -> None:
    """Subtle: a 4-7 mm apical rim with a faint pleural line. Moderate: an apicolateral rim.
    Large: a rim down the whole lateral chest wall."""
    side = int(rng.choice((-1, 1)))
    t_, _ = tier(sev)
    gap = _by_tier(sev, ((0.022, 0.036), (0.04, 0.085), (0.085, 0.16)), rng)
    y_end = _by_tier(sev, ((-0.48, -0.28), (-0.3, 0.1), (0.0, 0.3)), rng, 0.8)
    air_drop = _by_tier(sev, ((0.05, 0.08), (0.08, 0.14), (0.14, 0.2)), rng)
    line_gain = _by_tier(sev, ((0.1, 0.14), (0.14, 0.2), (0.2, 0.24)), rng)
    _pleural_air(f, p, a, e, side, gap, y_end, air_drop, line_gain)
    e.meta["Pneumothorax"] = {"side": side, "gap": gap, "y_end": y_end, "tier": t_}


GRADED_DRAWERS = {
    "Atelectasis": atelectasis_graded,
    "Effusion": effusion_graded,
    "Lung Opacity": lung_opacity_graded,
    "Mass": mass_graded,
    "Pneumothorax": pneumothorax_graded,
}

DRAWERS = {
    "Atelectasis": atelectasis,
    "Effusion": effusion,
    "Lung Opacity": lung_opacity,
    "Mass": mass,
    "Pneumothorax": pneumothorax,
}
