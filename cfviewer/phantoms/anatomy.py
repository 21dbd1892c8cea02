"""Normal frontal (PA) chest anatomy, drawn as an attenuation map in the body frame.

Attenuation is in rough "cm of water" units; `generator.py` turns it into a radiograph.
Image left = patient's right (side -1), image right = patient's left (side +1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scipy.ndimage import gaussian_filter

from cfviewer.phantoms.raster import Frame, ellipse_r2, ramp, segment_distance, splat, sub, window

F32 = np.float32
SIDES = (-1, 1)


@dataclass
class Patient:
    """Per-patient shape parameters (body-frame units; the image spans about [-1, 1])."""

    W: float                 # lateral lung half-width at its widest (inner thorax)
    apex: float              # lung apex y
    dome_right: float        # right hemidiaphragm dome y (the higher one)
    dome_left: float
    ctr: float               # cardiothoracic ratio
    heart_aspect: float
    heart_tilt: float
    neck: float              # neck half-width
    shoulder: float          # body half-width below the shoulders
    rib_spacing: float
    rib_phase: float
    vessel_seed: int
    gastric_bubble: bool

    @property
    def heart_width(self) -> float:
        return self.ctr * 2.0 * self.W

    @property
    def heart_axes(self) -> tuple[float, float, float, float, float]:
        """(cx, cy, a, b, theta) of the heart ellipse, sized so its horizontal extent = CTR * 2W."""
        e = self.heart_width
        c, s = np.cos(self.heart_tilt), np.sin(self.heart_tilt)
        k = self.heart_aspect
        a = (e / 2.0) / np.sqrt(c * c + k * k * s * s)
        b = k * a
        cx = 0.2 * e - 0.01
        cy = self.dome_left - 0.06 - 0.12 * b
        return cx, cy, a, b, self.heart_tilt

    def dome(self, side: int) -> float:
        return self.dome_right if side < 0 else self.dome_left


def sample_patient(rng: np.random.Generator, ctr: float) -> Patient:
    dome_r = rng.uniform(0.24, 0.40)
    return Patient(
        W=rng.uniform(0.72, 0.82),
        apex=rng.uniform(-0.76, -0.68),
        dome_right=dome_r,
        dome_left=dome_r + rng.uniform(0.03, 0.07),
        ctr=ctr,
        heart_aspect=rng.uniform(0.74, 0.86),
        heart_tilt=rng.uniform(0.3, 0.5),
        neck=rng.uniform(0.18, 0.24),
        shoulder=rng.uniform(1.0, 1.12),
        rib_spacing=rng.uniform(0.105, 0.122),
        rib_phase=rng.uniform(-0.02, 0.02),
        vessel_seed=int(rng.integers(0, 2**31)),
        gastric_bubble=bool(rng.random() < 0.7),
    )


@dataclass
class Anatomy:
    """Layers of one normal chest, plus geometry the findings need."""

    base: np.ndarray                         # soft tissue + bone + mediastinum attenuation
    air: np.ndarray                          # lung air thickness (subtracted from base)
    vessels: np.ndarray                      # vessel markings (added inside lungs only)
    lung: dict[int, np.ndarray]              # soft lung field per side (0..1)
    lung_outer: dict[int, np.ndarray]        # distance inward from chest wall / apex per side
    lung_depth: dict[int, np.ndarray]        # signed distance inside the lung per side
    heart: np.ndarray                        # bool heart silhouette above the diaphragm
    body: np.ndarray                         # bool body outline
    below_diaphragm: np.ndarray              # float 0..1
    extra: dict = field(default_factory=dict)


def diaphragm_y(p: Patient, side: int, d: np.ndarray) -> np.ndarray:
    """Diaphragm height at distance d from the midline: a dome, lowest in the costophrenic angle."""
    e = d - F32(0.42)
    return F32(p.dome(side)) + np.where(e > 0, F32(0.95), F32(0.35)) * e * e


def lung_lateral(p: Patient, y: np.ndarray) -> np.ndarray:
    """Inner chest wall: widest at y = 0.15, narrowing towards the apex."""
    top = np.clip(F32(0.15) - y, 0.0, None)
    return F32(p.W) - F32(0.42) * top * top


def draw_anatomy(f: Frame, p: Patient) -> Anatomy:
    x, y = f.x, f.y
    ax = np.abs(x)
    edge = 1.2 * f.px

    # --- body outline: neck, shoulders, chest wall; cylindrical soft-tissue thickness ---------
    # shoulders slope down from the neck; the trunk is a cylinder of half-width `shoulder`
    over = np.clip(ax - F32(p.neck), 0.0, None)
    y_sh = F32(-0.84) + F32(0.34) * over ** 1.5
    sh = ramp(y - y_sh, 0.04)
    rel = ax / F32(p.shoulder)
    body_t = np.sqrt(np.clip(1.0 - rel * rel, 0.0, 1.0))
    relneck = ax / F32(p.neck)
    neck_t = np.sqrt(np.clip(1.0 - relneck * relneck, 0.0, 1.0))
    body_soft = np.maximum(sh * ramp(1.0 - rel, 0.02), ramp(1.0 - relneck, 0.05))
    base = (F32(0.75) * np.maximum(body_t * sh, F32(0.8) * neck_t) + F32(0.3)) * body_soft
    body = body_soft > 0.5

    # --- abdomen below the diaphragm ------------------------------------------------------
    dia = np.where(x < 0, diaphragm_y(p, -1, ax), diaphragm_y(p, 1, ax))
    below = ramp(y - dia, 1.5 * f.px)
    base += F32(0.2) * below * body_t

    # --- lungs (each drawn inside its own window; defaults outside) -------------------------
    lung, outer, depth = {}, {}, {}
    air = np.zeros_like(x)
    hx, hy, ha, hb, ht = p.heart_axes
    hr = max(ha, hb) + 0.2
    heart_win = window(f, [hx - hr, hx + hr, hx - hr, hx + hr], [hy - hr, hy - hr, hy + hr, hy + hr], 0.0)
    heart_r2 = np.full_like(x, 4.0)
    if heart_win:
        heart_r2[heart_win] = ellipse_r2(sub(f, heart_win), hx, hy, ha, hb, ht)
    heart_soft = ramp(1.0 - heart_r2, 0.12)
    knob_win = window(f, [0.085], [-0.31], 0.2)
    knob_r2 = ellipse_r2(sub(f, knob_win), 0.085, -0.31, 0.075, 0.065) if knob_win else None
    for s in SIDES:
        y0, y1 = p.apex - 0.05, p.dome(s) + 0.3
        lw = window(f, [s * 0.05, s * (p.W + 0.05)] * 2, [y0, y0, y1, y1], 0.02)
        lung[s] = np.zeros_like(x)
        outer[s] = np.ones_like(x)
        depth[s] = np.full_like(x, -1.0)
        if lw is None:
            continue
        xs, ys = x[lw], y[lw]
        d = xs * F32(s)
        apex_y = F32(p.apex) + F32(2.2) * (d - F32(0.3)) ** 2
        # superior mediastinum: widest at the aortic arch, narrower towards the thoracic inlet
        med = F32(0.125 if s < 0 else 0.11) + F32(0.03) * ramp(ys + F32(0.5), 0.2)
        m_outer = np.minimum(lung_lateral(p, ys) - d, ys - apex_y)
        m = np.minimum(np.minimum(m_outer, d - med), diaphragm_y(p, s, d) - ys)
        if s > 0 and knob_win:
            km = np.full_like(x, 9.0)
            km[knob_win] = np.sqrt(knob_r2) - 1.0
            m = np.minimum(m, km[lw])
        soft = ramp(m, edge)
        lung[s][lw] = soft
        outer[s][lw] = m_outer
        depth[s][lw] = m
        t = np.clip((ys - F32(p.apex)) / F32(0.9), 0.0, 1.0)
        thick = ramp(m, 0.12) ** 0.5 * (F32(0.8) + F32(0.3) * t)
        air[lw] += soft * thick
    if heart_win:
        air[heart_win] *= 1.0 - F32(0.85) * heart_soft[heart_win]
    air *= F32(0.78)

    # --- mediastinum, heart, aortic knob, trachea -------------------------------------------
    if heart_win:
        base[heart_win] += F32(0.25) * ramp(1.0 - heart_r2[heart_win], 0.2) * (1.0 - below[heart_win])
    # superior mediastinum (great vessels): a soft-tissue column joining the heart to the neck
    med_w = F32(0.115) + F32(0.035) * ramp(y + F32(0.5), 0.2)
    col = ramp(med_w - np.abs(x - F32(0.012)), 0.04) * ramp(F32(hy) - y, 0.1) * ramp(y + F32(0.9), 0.1)
    base += F32(0.16) * col
    if knob_win:
        base[knob_win] += F32(0.05) * ramp(1.0 - knob_r2, 0.3)
    tw = window(f, [0.0, 0.0], [-1.1, -0.24], 0.05)
    if tw:
        trachea = segment_distance(sub(f, tw), (0.0, -1.1), (0.0, -0.24))
        base[tw] -= F32(0.22) * ramp(F32(0.032) - trachea, 0.012)
    bw = window(f, [-0.17, 0.16, 0.0], [-0.1, -0.08, -0.24], 0.03)
    if bw:
        sf = sub(f, bw)
        bronchus = np.minimum(segment_distance(sf, (0.0, -0.24), (-0.17, -0.1)),
                              segment_distance(sf, (0.0, -0.24), (0.16, -0.08)))
        base[bw] -= F32(0.12) * ramp(F32(0.02) - bronchus, 0.01)

    # --- spine: vertebral bodies with end plates and pedicles --------------------------------
    spw = window(f, [-0.075, 0.075, -0.075, 0.075], [-1.3, -1.3, 1.3, 1.3], 0.0)
    if spw:
        xs, ys = x[spw], y[spw]
        spine_prof = np.sqrt(np.clip(1.0 - (xs / F32(0.07)) ** 2, 0.0, 1.0))
        phase = (ys - F32(p.rib_phase)) / F32(p.rib_spacing * 0.82)
        frac = phase - np.floor(phase)
        plate = np.abs(frac - F32(0.5)) * 2.0
        vert = F32(0.16) + F32(0.09) * plate ** 6
        ped = (np.abs(np.abs(xs) - F32(0.045)) < F32(0.014)) & (np.abs(frac - F32(0.3)) < F32(0.12))
        base[spw] += spine_prof * vert + F32(0.08) * ped
    # --- posterior ribs: every rib from one vectorised arch, spacing growing downwards ------
    rx, ry0, ry1 = p.W + 0.1, p.apex - 0.12, p.dome_left + 0.5
    rw = window(f, [-rx, rx, -rx, rx], [ry0, ry0, ry1, ry1], 0.0) or (slice(0, f.size), slice(0, f.size))
    y = y[rw]
    d = ax[rw]
    below_r = below[rw]
    g = F32(-0.22) * d + F32(0.6) * d * d + F32(0.15) * d * d * d
    yy = y - g - F32(p.apex - 0.07 + p.rib_phase)
    sp, acc = F32(p.rib_spacing), F32(0.0035)
    k = (-sp + np.sqrt(np.clip(sp * sp + 4 * acc * yy, 0.0, None))) / (2 * acc)
    kf = k - np.floor(k)
    wf = F32(0.36)
    q = kf / wf
    on = (kf < wf) & (k >= 0) & (k < 10) & (yy > 0)
    rib_lat = lung_lateral(p, y) + F32(0.06)
    prof = F32(0.55) + F32(0.45) * np.abs(2 * q - 1) ** 4
    rib = np.where(on, prof, 0.0) * ramp(rib_lat - d, 0.02) * ramp(d - F32(0.05), 0.05)
    rib *= 1.0 - F32(0.75) * below_r
    base[rw] += F32(0.2) * rib
    # anterior ribs: faint, running down towards the sternum
    ga = F32(-0.38) * d
    ka = (y - ga - F32(p.apex + 0.05)) / F32(p.rib_spacing * 1.25)
    kaf = ka - np.floor(ka)
    on_a = (kaf < 0.33) & (ka >= 0) & (ka < 6)
    base[rw] += F32(0.06) * on_a * ramp(rib_lat - d, 0.03) * ramp(d - F32(0.22), 0.08)
    y = f.y

    # --- clavicles and humeral heads -----------------------------------------------------
    for s in SIDES:
        cw = window(f, [s * 0.06, s * 0.42, s * 0.72], [-0.66, -0.74, -0.7], 0.04)
        if cw:
            sf = sub(f, cw)
            cl = np.minimum(segment_distance(sf, (s * 0.06, -0.66), (s * 0.42, -0.74)),
                            segment_distance(sf, (s * 0.42, -0.74), (s * 0.72, -0.7)))
            base[cw] += F32(0.3) * np.sqrt(np.clip(1.0 - (cl / F32(0.032)) ** 2, 0.0, 1.0))
        hw_ = window(f, [s * (p.W + 0.2)], [-0.52], 0.16)
        if hw_:
            hr2 = ellipse_r2(sub(f, hw_), s * (p.W + 0.2), -0.52, 0.14, 0.13)
            base[hw_] += F32(0.4) * np.sqrt(np.clip(1.0 - hr2, 0.0, 1.0))
        # scapula edge over the lateral lung
        sw = window(f, [s * 0.72, s * 0.6], [-0.66, -0.1], 0.06)
        if sw:
            sc = segment_distance(sub(f, sw), (s * 0.72, -0.66), (s * 0.6, -0.1))
            base[sw] += F32(0.06) * ramp(F32(0.03) - sc, 0.02)

    # --- gastric bubble under the left dome -------------------------------------------------
    if p.gastric_bubble:
        gw = window(f, [0.42], [p.dome_left + 0.1], 0.13)
        if gw:
            gb = ellipse_r2(sub(f, gw), 0.42, p.dome_left + 0.1, 0.11, 0.06)
            base[gw] -= F32(0.2) * ramp(1.0 - gb, 0.3) * below[gw]

    # --- hila and branching vessels ----------------------------------------------------------
    vessels = draw_vessels(f, p)
    for s in SIDES:
        hw_ = window(f, [s * 0.2], [-0.06], 0.3)
        if hw_:
            h2 = ellipse_r2(sub(f, hw_), s * 0.2, -0.06, 0.08, 0.11)
            vessels[hw_] += F32(0.12) * np.exp(-1.5 * h2)

    heart = (heart_r2 < 1.0) & (below < 0.5)
    return Anatomy(base=base, air=air, vessels=vessels, lung=lung, lung_outer=outer,
                   lung_depth=depth, heart=heart, body=body, below_diaphragm=below,
                   extra={"heart_soft": heart_soft})


def draw_vessels(f: Frame, p: Patient) -> np.ndarray:
    """Branching pulmonary vessel trees from each hilum, thick centrally, fading outwards,
    over a faint band-pass parenchymal texture (both vanish where the lung has collapsed)."""
    rng = np.random.default_rng(p.vessel_seed)
    roots = np.array([-2.1, -1.6, -1.1, -0.6, -0.15, 0.3, 0.75, 1.15])   # up .. out .. down
    side = np.repeat(np.array(SIDES, float), len(roots))
    ang = np.tile(roots, 2) + rng.normal(0, 0.1, side.size)
    x = side * (0.19 + rng.normal(0, 0.015, side.size))
    y = -0.06 + rng.normal(0, 0.03, side.size)
    L = np.full(side.size, 0.165)
    w = np.ones(side.size)
    levels = []
    for depth in range(7):   # level by level: every branch of a level at once
        x1 = x + side * L * np.cos(ang)
        y1 = y + L * np.sin(ang)
        levels.append(np.stack([x, y, x1, y1, w], axis=1))
        m = x.size
        turn = rng.choice((-1.0, 1.0), m)
        # main branch carries on almost straight, the side branch splits off
        a_main = ang + turn * rng.uniform(0.05, 0.3, m)
        a_side = ang - turn * rng.uniform(0.45, 0.9, m)
        x, y = np.concatenate([x1, x1]), np.concatenate([y1, y1])
        ang = np.concatenate([a_main, a_side])
        L = np.concatenate([L * rng.uniform(0.8, 0.92, m), L * rng.uniform(0.6, 0.78, m)])
        w = np.concatenate([w * 0.8, w * 0.6])
        side = np.concatenate([side, side])
    seg = np.concatenate(levels)
    step = 0.9 * f.px
    lens = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    counts = np.maximum((lens / step).astype(int), 2)
    idx = np.repeat(np.arange(len(seg)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    t = (np.arange(idx.size) - starts) / np.repeat(counts, counts)
    xs = seg[idx, 0] + t * (seg[idx, 2] - seg[idx, 0])
    ys = seg[idx, 1] + t * (seg[idx, 3] - seg[idx, 1])
    w = seg[idx, 4] * (step / f.px)
    k = f.size / 224
    thick = idx < 2 * len(roots) * 7          # the first three levels: wide central vessels
    img = gaussian_filter(splat(f, xs[thick], ys[thick], w[thick]), 1.3 * k) * F32(0.5)
    img += gaussian_filter(splat(f, xs[~thick], ys[~thick], w[~thick]), 0.6 * k) * F32(0.32)
    # parenchymal texture: band-pass noise at 1-3 px (224-px scale)
    n = rng.standard_normal((f.size, f.size)).astype(F32)
    tex = gaussian_filter(n, 1.0 * k ** 0.5)
    tex -= gaussian_filter(tex, 2.5 * k ** 0.5)
    return img + F32(0.09 * k ** 0.5) * tex
