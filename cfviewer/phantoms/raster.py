"""Small vectorised drawing helpers shared by the phantom modules.

Everything is drawn in the *body frame*: a per-patient affine copy of the pixel grid in which
the thorax midline is x = 0, the image top is about y = -1 and the bottom about y = +1
(x grows to the image right = the patient's left, y grows downwards).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def _base_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in [-1, 1] (x = columns, y = rows); cached per size, read-only."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    x = np.broadcast_to(c[None, :], (size, size))
    y = np.broadcast_to(c[:, None], (size, size))
    return x, y


@dataclass
class Frame:
    """The per-patient body frame: coordinates of every pixel plus the affine that made them."""

    size: int
    x: np.ndarray          # float32 HxW body-frame x of each pixel
    y: np.ndarray          # float32 HxW body-frame y of each pixel
    tx: float
    ty: float
    scale: float
    angle: float           # radians, image rotation of the patient

    @property
    def px(self) -> float:
        """One pixel expressed in body-frame units."""
        return 2.0 / self.size / self.scale

    def to_pixels(self, xb: np.ndarray, yb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame points -> (column, row) pixel coordinates (floats)."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        gx = self.tx + self.scale * (c * xb - s * yb)
        gy = self.ty + self.scale * (s * xb + c * yb)
        return (gx + 1.0) * 0.5 * self.size - 0.5, (gy + 1.0) * 0.5 * self.size - 0.5


def make_frame(size: int, tx: float, ty: float, scale: float, angle: float) -> Frame:
    gx, gy = _base_grid(size)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    dx = gx - np.float32(tx)
    dy = gy - np.float32(ty)
    inv = np.float32(1.0 / scale)
    x = (c * dx + s * dy) * inv
    y = (c * dy - s * dx) * inv
    return Frame(size, x, y, tx, ty, scale, angle)


def ramp(v: np.ndarray, width: float) -> np.ndarray:
    """Soft step: 0 for v <= 0, 1 for v >= width, linear between (v is a signed distance)."""
    return np.clip(v * np.float32(1.0 / max(width, 1e-6)), 0.0, 1.0)


def ellipse_r2(f: Frame, cx: float, cy: float, a: float, b: float, theta: float = 0.0) -> np.ndarray:
    """Squared normalised radius of a rotated ellipse (1 on the outline)."""
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    dx = f.x - np.float32(cx)
    dy = f.y - np.float32(cy)
    u = (c * dx + s * dy) * np.float32(1.0 / a)
    v = (c * dy - s * dx) * np.float32(1.0 / b)
    return u * u + v * v


def segment_distance(f: Frame, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    """Distance of every pixel to the segment p0-p1 (body-frame units)."""
    ax, ay = p0
    bx, by = p1
    vx, vy = bx - ax, by - ay
    L2 = vx * vx + vy * vy
    dx = f.x - np.float32(ax)
    dy = f.y - np.float32(ay)
    t = np.clip((dx * np.float32(vx) + dy * np.float32(vy)) * np.float32(1.0 / L2), 0.0, 1.0)
    ex = dx - t * np.float32(vx)
    ey = dy - t * np.float32(vy)
    return np.sqrt(ex * ex + ey * ey)


def splat(f: Frame, xb: np.ndarray, yb: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Accumulate weighted body-frame points into an image (bilinear splatting).

    Used to draw many thin curves (vessels, tubes) at once: sample points densely along the
    curves, splat, then blur once.
    """
    n = f.size
    cx, cy = f.to_pixels(np.asarray(xb, np.float64), np.asarray(yb, np.float64))
    x0 = np.floor(cx).astype(np.int64)
    y0 = np.floor(cy).astype(np.int64)
    fx = cx - x0
    fy = cy - y0
    w = np.asarray(w, np.float64)
    xi = np.concatenate([x0, x0 + 1, x0, x0 + 1])
    yi = np.concatenate([y0, y0, y0 + 1, y0 + 1])
    ww = np.concatenate([w * (1 - fx) * (1 - fy), w * fx * (1 - fy), w * (1 - fx) * fy, w * fx * fy])
    ok = (xi >= 0) & (xi < n) & (yi >= 0) & (yi < n)
    out = np.bincount(yi[ok] * n + xi[ok], weights=ww[ok], minlength=n * n)
    return out.reshape(n, n).astype(np.float32)


def polyline_points(xs: np.ndarray, ys: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Densely resample a polyline; returns (x, y, arclength) with spacing about `step`."""
    seg = np.hypot(np.diff(xs), np.diff(ys))
    s = np.concatenate([[0.0], np.cumsum(seg)])
    m = max(int(s[-1] / step) + 1, 2)
    t = np.linspace(0.0, s[-1], m)
    return np.interp(t, s, xs), np.interp(t, s, ys), t


def window(f: Frame, xs, ys, pad: float) -> tuple[slice, slice] | None:
    """Pixel slices covering the body-frame points (xs, ys) plus `pad` body units, or None
    when that box is outside the image. Local shapes are drawn only inside their window."""
    cx, cy = f.to_pixels(np.asarray(xs, np.float64), np.asarray(ys, np.float64))
    r = pad / f.px + 2.0
    c0, c1 = int(max(np.floor(cx.min() - r), 0)), int(min(np.ceil(cx.max() + r) + 1, f.size))
    r0, r1 = int(max(np.floor(cy.min() - r), 0)), int(min(np.ceil(cy.max() + r) + 1, f.size))
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0, r1), slice(c0, c1)


def sub(f: Frame, win: tuple[slice, slice]) -> Frame:
    """The part of a frame inside a window (views, no copies)."""
    return Frame(f.size, f.x[win], f.y[win], f.tx, f.ty, f.scale, f.angle)
