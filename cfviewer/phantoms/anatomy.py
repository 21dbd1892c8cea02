"""Normal frontal (PA) chest anatomy, drawn as an attenuation map in the body frame.

Attenuation is in rough "cm of water" units; `generator.py` turns it into a radiograph.
Image left = patient's right (side -1), image right = patient's left (side +1).

`draw_anatomy(f, p)` is the plain phantom (elliptical heart, smooth hila). `AnatomyOptions`
adds what makes real films harder to read, all off unless the generator asks for it:
- detail: a heart silhouette made of a right-atrial and a left-ventricular lobe with a
  prominent aortic knob (so heart size must be judged from a shape, not an ellipse), dense
  branching hilar arteries (a normal hilum is the commonest "mass" a novice sees), and an
  abdomen with liver density, a gastric bubble with an air-fluid level and colonic gas;
- AP/rotation: clavicles projected higher, clavicle heads off-centre from the spine;
- low inspiration: crowded basal vessels and slightly denser bases (under-aerated lung
  mimics basal opacity/atelectasis); the higher domes themselves come with the Patient.
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


@dataclass(frozen=True)
class AnatomyOptions:
    """Optional anatomy (see module docstring); the defaults draw exactly the plain phantom."""

    detail: bool = False
    heart_lv: float = 0.85                                  # LV lobe width / heart width
    heart_ra: tuple[float, float, float] = (0.2, 0.1, 0.62)  # RA half-width / heart width, drop (x b), height (x b)
    knob: tuple[float, float, float, float] = (0.085, -0.31, 0.075, 0.065)   # aortic knob cx, cy, a, b
    knob_density: float = 0.05
    hila: tuple[float, ...] = ()                            # hilar artery density then 6 position jitters
    liver: float = 0.0                                      # extra density under the right dome
    gastric: tuple[float, float, float] = ()                # detailed bubble: cx, half-width, fluid-level drop
    fluid_level: bool = True                                # erect film: gastric air-fluid level
    colon_gas: tuple[tuple[float, float, float], ...] = ()  # (x, y below left dome, radius) per gas pocket
    clavicle_dy: float = 0.0                                # AP: clavicles project higher (negative)
    clavicle_dx: float = 0.0                                # rotation: clavicle heads off-centre
    spine_dx: float = 0.0                                   # rotation: spine off-centre from the mediastinum
    vessel_squash: float = 1.0                              # low inspiration: lower-zone vessels crowded
    basal_density: float = 0.0                              # low inspiration: under-aerated bases


def heart_lobes(p: Patient, o: AnatomyOptions) -> list[tuple[float, float, float, float, float]]:
    """The detailed cardiac silhouette as two ellipses (cx, cy, a, b, theta): a tilted
    left-ventricular lobe forming the left border and a right-atrial lobe forming the lower
    right border (above it the mediastinum continues as the SVC line). The union spans exactly
    the plain heart's horizontal extent, so the CTR is unchanged."""
    e = p.heart_width
    x_left = 0.7 * e - 0.01       # patient's left heart border (image right), as the plain ellipse
    x_right = -0.3 * e - 0.01
    _, cy, _, b, th = p.heart_axes
    c, s = np.cos(th), np.sin(th)
    k = p.heart_aspect
    hw_lv = 0.5 * o.heart_lv * e
    a_lv = hw_lv / np.sqrt(c * c + k * k * s * s)
    lv = (x_left - hw_lv, cy, float(a_lv), float(k * a_lv), th)
    hw_ra, drop, height = o.heart_ra
    ra = (x_right + hw_ra * e, cy + drop * b, hw_ra * e, height * b, 0.0)
    return [lv, ra]


def _lobes_box(lobes) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for cx, cy, a, b, _ in lobes:
        r = max(a, b)
        xs += [cx - r, cx + r]
        ys += [cy - r, cy + r]
    return xs, ys


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


def draw_anatomy(f: Frame, p: Patient, o: AnatomyOptions | None = None) -> Anatomy:
    x, y = f.x, f.y
    detail = o is not None and o.detail
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
    if detail:
        lobes = heart_lobes(p, o)
        bx, by = _lobes_box(lobes)
        heart_win = window(f, bx, by, 0.2)
    else:
        heart_win = window(f, [hx - hr, hx + hr, hx - hr, hx + hr], [hy - hr, hy - hr, hy + hr, hy + hr], 0.0)
    heart_r2 = np.full_like(x, 4.0)
    if heart_win:
        if detail:   # union of the lobes: the smallest normalised radius
            hs = sub(f, heart_win)
            heart_r2[heart_win] = np.minimum.reduce([ellipse_r2(hs, *lobe) for lobe in lobes])
        else:
            heart_r2[heart_win] = ellipse_r2(sub(f, heart_win), hx, hy, ha, hb, ht)
    heart_soft = ramp(1.0 - heart_r2, 0.12)
    kx, ky, ka, kb = o.knob if o is not None else (0.085, -0.31, 0.075, 0.065)
    knob_win = window(f, [kx], [ky], 0.2)
    knob_r2 = ellipse_r2(sub(f, knob_win), kx, ky, ka, kb) if knob_win else None
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
        kd = 0.05 if o is None else o.knob_density
        base[knob_win] += F32(kd) * ramp(1.0 - knob_r2, 0.3)
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
    sdx = o.spine_dx if o is not None else 0.0
    spw = window(f, [sdx - 0.075, sdx + 0.075, sdx - 0.075, sdx + 0.075], [-1.3, -1.3, 1.3, 1.3], 0.0)
    if spw:
        xs, ys = x[spw], y[spw]
        if sdx:
            xs = xs - F32(sdx)
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
        if o is not None and (o.clavicle_dy or o.clavicle_dx):
            # AP: the clavicles run more horizontally and project higher over the apices; the
            # lateral end stays at the shoulder (acromioclavicular joint)
            cdy, cdx = o.clavicle_dy, o.clavicle_dx
            c0, c1, c2 = (s * 0.06 + cdx, -0.66 + cdy), (s * 0.42 + 0.5 * cdx, -0.74 + 0.8 * cdy), (s * 0.72, -0.7)
        else:
            c0, c1, c2 = (s * 0.06, -0.66), (s * 0.42, -0.74), (s * 0.72, -0.7)
        cw = window(f, [c0[0], c1[0], c2[0]], [c0[1], c1[1], c2[1]], 0.04)
        if cw:
            sf = sub(f, cw)
            cl = np.minimum(segment_distance(sf, c0, c1), segment_distance(sf, c1, c2))
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
    if detail:
        draw_abdomen(f, p, o, base, below, body_t)
    elif p.gastric_bubble:
        gw = window(f, [0.42], [p.dome_left + 0.1], 0.13)
        if gw:
            gb = ellipse_r2(sub(f, gw), 0.42, p.dome_left + 0.1, 0.11, 0.06)
            base[gw] -= F32(0.2) * ramp(1.0 - gb, 0.3) * below[gw]

    # --- hila and branching vessels ----------------------------------------------------------
    vessels = draw_vessels(f, p, squash=o.vessel_squash if o is not None else 1.0)
    for s in SIDES:
        hw_ = window(f, [s * 0.2], [-0.06], 0.3)
        if hw_:
            h2 = ellipse_r2(sub(f, hw_), s * 0.2, -0.06, 0.08, 0.11)
            vessels[hw_] += F32(0.12) * np.exp(-1.5 * h2)
    if o is not None and o.hila:
        draw_hila(f, o.hila, vessels)
    if o is not None and o.basal_density:
        # under-aerated bases: less air in the lower third of each lung
        for s in SIDES:
            lo = ramp(y - F32(p.dome(s) - 0.35), 0.3) * lung[s]
            air -= F32(o.basal_density) * lo * air

    heart = (heart_r2 < 1.0) & (below < 0.5)
    return Anatomy(base=base, air=air, vessels=vessels, lung=lung, lung_outer=outer,
                   lung_depth=depth, heart=heart, body=body, below_diaphragm=below,
                   extra={"heart_soft": heart_soft})


def draw_hila(f: Frame, hila: tuple[float, ...], vessels: np.ndarray) -> None:
    """Hilar pulmonary arteries as tapered dense tubes: on the right the interlobar artery
    running down lateral to the right heart border and the truncus to the upper lobe; on the
    left the main pulmonary artery arching over the left main bronchus and descending.
    `hila` = (density, six jitters). Added to the vessel layer (so they vanish with the lung)."""
    dens, j = hila[0], hila[1:]
    trees = (
        [((-0.13, -0.13 + j[0]), (-0.2 + j[1], -0.03), 0.024),
         ((-0.2 + j[1], -0.03), (-0.23 + j[1], 0.1 + j[2]), 0.017),
         ((-0.13, -0.13 + j[0]), (-0.22, -0.25 + j[0]), 0.014)],
        [((0.1, -0.21 + j[3]), (0.19 + j[4], -0.2 + j[3]), 0.026),
         ((0.19 + j[4], -0.2 + j[3]), (0.23 + j[4], -0.08), 0.022),
         ((0.23 + j[4], -0.08), (0.25 + j[4], 0.08 + j[5]), 0.016)],
    )
    for segs in trees:
        xs = [q[0] for a, b, _ in segs for q in (a, b)]
        ys = [q[1] for a, b, _ in segs for q in (a, b)]
        win = window(f, xs, ys, 0.04)
        if not win:
            continue
        sf = sub(f, win)
        prof = np.zeros_like(sf.x)
        for a, b, r in segs:
            d = segment_distance(sf, a, b)
            prof = np.maximum(prof, np.sqrt(np.clip(1.0 - (d / F32(r)) ** 2, 0.0, 1.0)))
        vessels[win] += F32(dens) * prof


def draw_abdomen(f: Frame, p: Patient, o: AnatomyOptions, base: np.ndarray, below: np.ndarray,
                 body_t: np.ndarray) -> None:
    """Below the diaphragm: liver density under the right dome, the gastric bubble under the
    left dome (its roof follows the diaphragm; erect films show a flat air-fluid level) and a
    few colonic gas pockets at the splenic flexure."""
    x, y = f.x, f.y
    if o.liver:
        base += F32(o.liver) * below * body_t * ramp(F32(0.1) - x, 0.3)
    if p.gastric_bubble and o.gastric:
        gx, hw, drop = o.gastric
        gw = window(f, [gx - hw, gx + hw], [p.dome_left - 0.02, p.dome_left + drop + 0.08], 0.03)
        if gw:
            sf = sub(f, gw)
            d = np.abs(sf.x)
            u = (sf.x - F32(gx)) / F32(hw)
            # the fundus: a dome of gas under the diaphragm and the gastric wall, its roof meeting
            # the fluid level at the sides
            roof = diaphragm_y(p, 1, d) + F32(0.014) + F32(0.8 * drop) * u * u
            sides = ramp(1.0 - u * u, 0.1)
            inside = ramp(sf.y - roof, 0.012)
            if o.fluid_level:
                level = F32(p.dome_left + drop)
                bottom = ramp(level - sf.y, 1.2 * f.px)
            else:   # supine: gas rises anteriorly, a rounded pocket with no level
                bottom = ramp(F32(p.dome_left + drop + 0.03) - sf.y, 0.04)
            base[gw] -= F32(0.24) * sides * inside * bottom * below[gw]
    for cx, dy, r in o.colon_gas:
        cy = p.dome_left + dy
        cw = window(f, [cx], [cy], r + 0.02)
        if cw:
            r2 = ellipse_r2(sub(f, cw), cx, cy, r, 0.75 * r)
            base[cw] -= F32(0.12) * ramp(1.0 - r2, 0.4) * below[cw]


def draw_vessels(f: Frame, p: Patient, squash: float = 1.0) -> np.ndarray:
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
    if squash != 1.0:   # low inspiration: the lower-zone branches crowd together
        ys = np.where(ys > -0.06, -0.06 + (ys + 0.06) * squash, ys)
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
