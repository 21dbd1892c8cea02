"""Torch-free drawing of explanation maps: grey image, map normalisation, colour map,
heat-map overlay (numpy, Pillow and matplotlib only). The grey window itself is
:mod:`cfviewer.imaging`'s (``display_window``, ``to_display_uint8``; re-exported here).

The reader side of the web app (`cfviewer.ui.viewer`) draws overlays from precomputed maps
with these functions, so a reader's process never imports torch: this module must not import
`cfviewer.explain.base` or anything else that does (tests/test_reader_torch_free.py).
`cfviewer.explain.render` re-exports everything here for the writers of panels and GIFs.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cfviewer.errors import CfviewerError
from cfviewer.imaging import display_window, to_display_uint8

__all__ = ["RenderError", "display_window", "to_grey", "normalise_map", "colormap", "overlay", "map_image"]


class RenderError(CfviewerError):
    """An explanation cannot be rendered with the requested options."""


def to_grey(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Image in [-1024, 1024] -> uint8 grey with the given (lo, hi) window (default: the
    image's "Auto" window, :func:`cfviewer.imaging.display_window`)."""
    lo, hi = window if window is not None else display_window(image)
    return to_display_uint8(image, lo, hi)


def normalise_map(heat: np.ndarray, percentile: float = 99.0, low_percentile: float = 0.0) -> np.ndarray:
    """Map -> [0, 1]: values at/above the ``percentile``-th percentile become 1, at/below the
    ``low_percentile``-th become 0 (robust to a few extreme pixels)."""
    m = np.nan_to_num(np.asarray(heat, dtype=np.float64))
    hi = np.percentile(m, percentile)
    lo = np.percentile(m, low_percentile)
    if not hi > lo:  # fewer non-background pixels than 100 - percentile %: use the maximum
        hi = m.max()
    if not hi > lo:
        return np.zeros(m.shape, np.float32)
    return np.clip((m - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def colormap(values: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """[0, 1] array -> H x W x 3 float RGB in [0, 1] with a matplotlib colormap."""
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise RenderError(f"unknown colormap {cmap!r}; use a matplotlib name such as inferno, jet, viridis") from None
    return cm(np.asarray(values, dtype=np.float64))[..., :3]


def _resize(arr: np.ndarray, size: int, resample: int = Image.BILINEAR) -> np.ndarray:
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr
    return np.asarray(Image.fromarray(arr).resize((size, size), resample))


def overlay(
    image: np.ndarray,
    heat: np.ndarray,
    cmap: str = "inferno",
    opacity: float = 0.6,
    percentile: float = 99.0,
    low_percentile: float = 0.0,
    window: tuple[float, float] | None = None,
    size: int | None = None,
) -> np.ndarray:
    """Heat map over the grey image -> H x W x 3 uint8.

    The map is clipped at its ``low_percentile`` / ``percentile`` percentiles and scaled to
    [0, 1]; each pixel blends the colormap colour with alpha = ``opacity`` x the scaled value,
    so unimportant pixels show the radiograph untouched. ``size`` resizes the result."""
    if not 0.0 <= opacity <= 1.0:
        raise RenderError(f"overlay opacity {opacity} must lie in [0, 1]")
    image = np.asarray(image, dtype=np.float32)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != image.shape:
        raise RenderError(f"overlay: map shape {heat.shape} differs from image shape {image.shape}")
    grey = to_grey(image, window).astype(np.float32) / 255.0
    n = normalise_map(heat, percentile, low_percentile)
    alpha = (opacity * n)[..., None]
    rgb = (1.0 - alpha) * grey[..., None] + alpha * colormap(n, cmap)
    out = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return _resize(out, size) if size else out


def map_image(heat: np.ndarray, cmap: str = "inferno", percentile: float = 99.0) -> np.ndarray:
    """The map alone, colour-mapped -> H x W x 3 uint8."""
    rgb = colormap(normalise_map(heat, percentile), cmap)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
