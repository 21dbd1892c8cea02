"""Confounders: things in the image that are not findings but may correlate with them.

- chest tube: a dense tube entering laterally through the chest wall and running towards the
  apex, with side holes near its tip; correlated with Pneumothorax (a classifier can learn the
  tube as a shortcut, which is what the reference study's radiologists suspected).
- laterality marker: a small bright "L" or "R" in a corner.

Opt-in acquisition artefacts (PhantomConfig.collimation_probability / annotation_probability),
not in CONFOUNDERS and never labels, each with its mask:
- collimation: the field edges of a collimated exposure, 1-4 sides, as electronic shutters
  (black) or unexposed detector (blank, bright), slightly tilted;
- annotation: burned-in text ("AP", "PORTABLE", "SUPINE", "ERECT", ...). Its wording follows the
  projection, as on real films, so it is a second shortcut for the AP look.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from cfviewer.phantoms.anatomy import Patient
from cfviewer.phantoms.raster import Frame, splat

F32 = np.float32
CONFOUNDERS: tuple[str, ...] = ("chest_tube", "marker")

_GLYPHS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}
_TEXT_GLYPHS = {
    **_GLYPHS,
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
    "O": ("01110", "10001", "10001", "10001", "10001", "10001", "01110"),
    "T": ("11111", "00100", "00100", "00100", "00100", "00100", "00100"),
    "B": ("11110", "10001", "10001", "11110", "10001", "10001", "11110"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
    "S": ("01111", "10000", "10000", "01110", "00001", "00001", "11110"),
    "U": ("10001", "10001", "10001", "10001", "10001", "10001", "01110"),
    "I": ("01110", "00100", "00100", "00100", "00100", "00100", "01110"),
    "N": ("10001", "11001", "10101", "10011", "10001", "10001", "10001"),
    "C": ("01111", "10000", "10000", "10000", "10000", "10000", "01111"),
    " ": ("00000",) * 7,
}
ANNOTATIONS = {
    "AP": ("AP", "PORTABLE", "AP SUPINE", "SUPINE", "PORTABLE AP", "R", "L"),
    "PA": ("PA", "ERECT", "PA ERECT", "L", "R"),
}


def chest_tube(f: Frame, p: Patient, side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Returns (attenuation to add, mask, meta). The tube enters at the lateral chest wall in a
    lower zone and curves up along the lateral lung towards the apex."""
    y_in = rng.uniform(0.0, 0.25)
    pts = np.array([
        (side * 1.25, y_in + 0.12),                        # tubing outside the patient
        (side * (p.W + 0.14), y_in),                       # skin entry
        (side * (p.W - 0.08), y_in - 0.1),
        (side * (p.W - 0.16), -0.25 + rng.uniform(-0.05, 0.05)),
        (side * rng.uniform(0.32, 0.48), p.apex + rng.uniform(0.1, 0.2)),   # tip
    ])
    # Catmull-Rom style smoothing: sample a quadratic spline through the points
    t = np.linspace(0, 1, len(pts))
    tt = np.linspace(0, 1, 400)
    xs = np.interp(tt, t, pts[:, 0])
    ys = np.interp(tt, t, pts[:, 1])
    k = 25
    ker = np.ones(k) / k
    xs = np.convolve(np.pad(xs, k // 2, mode="edge"), ker, mode="valid")[: len(tt)]
    ys = np.convolve(np.pad(ys, k // 2, mode="edge"), ker, mode="valid")[: len(tt)]
    seg = np.hypot(np.diff(xs), np.diff(ys))
    s = np.concatenate([[0.0], np.cumsum(seg)])
    step = 0.5 * f.px
    m = int(s[-1] / step) + 1
    arc = np.linspace(0, s[-1], m)
    px = np.interp(arc, s, xs)
    py = np.interp(arc, s, ys)
    wall = splat(f, px, py, np.full(m, step / f.px))
    # radiopaque stripe with side holes near the tip
    from_tip = s[-1] - arc
    holes = np.zeros(m, bool)
    for h in range(3):
        c = 0.03 + h * rng.uniform(0.05, 0.07)
        holes |= np.abs(from_tip - c) < 0.012
    stripe = splat(f, px, py, np.where(holes, 0.0, step / f.px))
    sig = max(0.9 * f.size / 224, 0.6)
    wall = gaussian_filter(wall, sig * 1.3)
    stripe = gaussian_filter(stripe, sig * 0.6)
    att = F32(0.55) * wall / max(wall.max(), 1e-6) + F32(0.5) * stripe / max(stripe.max(), 1e-6)
    mask = wall > 0.15 * wall.max()
    return att.astype(F32), mask, {"side": side, "entry_y": float(y_in)}


def marker(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """A bright letter in a corner: (intensity 0..1 to max into the image, block mask, meta)."""
    letter = "L" if rng.random() < 0.5 else "R"
    glyph = np.array([[c == "1" for c in row] for row in _GLYPHS[letter]], dtype=F32)
    cell = max(int(round(size * rng.uniform(0.006, 0.009))), 1)
    g = np.kron(glyph, np.ones((cell, cell), F32))
    pad = cell
    gh, gw = g.shape[0] + 2 * pad, g.shape[1] + 2 * pad
    block = np.zeros((gh, gw), F32)
    block[pad:pad + g.shape[0], pad:pad + g.shape[1]] = g
    margin = int(size * rng.uniform(0.02, 0.06))
    corner = rng.choice(["tl", "tr", "tl", "tr", "bl", "br"])
    r0 = margin if corner[0] == "t" else size - margin - gh
    c0 = margin if corner[1] == "l" else size - margin - gw
    img = np.zeros((size, size), F32)
    img[r0:r0 + gh, c0:c0 + gw] = block
    img = gaussian_filter(img, 0.4)
    mask = np.zeros((size, size), bool)
    mask[r0:r0 + gh, c0:c0 + gw] = True
    return img, mask, {"letter": letter, "corner": str(corner), "box": (r0, c0, gh, gw)}


def collimation(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Returns (coverage 0..1, fill image, mask, meta): img * (1 - cov) + fill * cov."""
    n = int(rng.integers(1, 5))
    names = ("top", "bottom", "left", "right")
    chosen = sorted(int(i) for i in rng.choice(4, n, replace=False))
    widths = {"top": (0.03, 0.1), "bottom": (0.03, 0.12), "left": (0.012, 0.05), "right": (0.012, 0.05)}
    blank = rng.random() < 0.3
    r = np.arange(size, dtype=F32)[:, None] + F32(0.5)
    c = np.arange(size, dtype=F32)[None, :] + F32(0.5)
    cov = np.zeros((size, size), F32)
    sides = {}
    for i in chosen:
        name = names[i]
        w = max(float(rng.uniform(*widths[name]) * size), 1.0)
        tilt = float(rng.uniform(-0.02, 0.02))
        if name == "top":
            edge = w + tilt * (c - size / 2) - r
        elif name == "bottom":
            edge = r - (size - w) + tilt * (c - size / 2)
        elif name == "left":
            edge = w + tilt * (r - size / 2) - c
        else:
            edge = c - (size - w) + tilt * (r - size / 2)
        cov = np.maximum(cov, np.clip(edge + F32(0.5), 0.0, 1.0))
        sides[name] = round(w / size, 4)
    if blank:   # unexposed detector: bright, a little uneven
        level = F32(rng.uniform(0.82, 0.95))
        fill = level - F32(0.04) * (r / F32(size)) + np.zeros((1, size), F32)
    else:
        fill = np.zeros((size, size), F32)
    mask = cov > 0.5
    return cov, fill.astype(F32), mask, {"sides": sides, "style": "blank" if blank else "shutter"}


def annotation(size: int, rng: np.random.Generator, projection: str, avoid: str | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """Burned-in block-letter text in a corner: (intensity 0..1, box mask, meta), or None when
    the image is too small for any text."""
    choices = ANNOTATIONS["AP" if projection == "AP" else "PA"]
    text = choices[int(rng.integers(0, len(choices)))]
    cell = max(int(round(size * rng.uniform(0.005, 0.008))), 1)
    margin = max(int(size * rng.uniform(0.02, 0.05)), 1)
    corners = [c for c in ("tl", "tr", "bl", "br") if c != avoid]
    corner = corners[int(rng.integers(0, len(corners)))]
    level = F32(rng.uniform(0.9, 1.0))

    def width(t: str, k: int) -> int:
        return (6 * len(t) - 1) * k + 2 * k

    while width(text, cell) > size - 2 * margin and cell > 1:
        cell -= 1
    if width(text, cell) > size - 2 * margin:
        text = projection if projection in ("AP", "PA") else "PA"
        if width(text, cell) > size - 2 * margin:
            return None
    cols = []
    for ch in text:
        g = np.array([[v == "1" for v in row] for row in _TEXT_GLYPHS[ch]], dtype=F32)
        cols.append(g)
        cols.append(np.zeros((7, 1), F32))
    glyph = np.concatenate(cols[:-1], axis=1)
    g = np.kron(glyph, np.ones((cell, cell), F32))
    gh, gw = g.shape[0] + 2 * cell, g.shape[1] + 2 * cell
    if gh > size - 2 * margin:
        return None
    block = np.zeros((gh, gw), F32)
    block[cell:cell + g.shape[0], cell:cell + g.shape[1]] = g
    r0 = margin if corner[0] == "t" else size - margin - gh
    c0 = margin if corner[1] == "l" else size - margin - gw
    img = np.zeros((size, size), F32)
    img[r0:r0 + gh, c0:c0 + gw] = block * level
    img = gaussian_filter(img, 0.35)
    mask = np.zeros((size, size), bool)
    mask[r0:r0 + gh, c0:c0 + gw] = True
    return img, mask, {"text": text, "corner": corner, "box": (r0, c0, gh, gw)}
