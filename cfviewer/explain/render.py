"""Rendering of explanations: heat-map overlay, side-by-side panel PNG, the counterfactual
animation as a looping GIF (and optionally MP4).

Everything takes an :class:`~cfviewer.explain.base.Explanation` (or its arrays) and returns
or writes uint8 images; nothing here runs a model.

The animation follows the reference (ieee8023/latentshift ``video_utils``): the frames are
played from lambda = 0 to the counterfactual and back (``reversed(frames) + frames`` of the
frames ordered counterfactual -> 0), every frame on one shared grey window, the prediction
printed above each frame with a bar proportional to it (full width = probability 1). GIFs stay at most 1460 px wide
(Streamlit re-encodes wider images to a single frame) and at most ``max_bytes`` (2 MB): the
grey levels are quantised (256, 128, 64, ... levels) until the file fits.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cfviewer.errors import CfviewerError
from cfviewer.explain.base import Explanation

MAX_GIF_WIDTH = 1460
MAX_GIF_BYTES = 2_000_000


class RenderError(CfviewerError):
    """An explanation cannot be rendered with the requested options."""


# ---------------------------------------------------------------------- basics
def display_window(image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """Grey window (lo, hi) from the image's own percentiles (full range if flat)."""
    lo, hi = np.percentile(np.asarray(image, dtype=np.float64), percentiles)
    if not hi > lo:
        lo, hi = float(np.min(image)), float(np.max(image))
        if not hi > lo:
            lo, hi = -1024.0, 1024.0
    return float(lo), float(hi)


def to_grey(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Image in [-1024, 1024] -> uint8 grey with the given (lo, hi) window (default: the
    image's 0.5-99.5 percentiles)."""
    lo, hi = window if window is not None else display_window(image)
    y = (np.asarray(image, dtype=np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


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


def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=max(8, int(px)))
    except TypeError:  # Pillow < 10.1: bitmap default font, fixed size
        return ImageFont.load_default()


def _title_strip(width: int, lines: Sequence[str], px: int, mode: str = "RGB") -> Image.Image:
    h = int(px * 1.25 * len(lines) + px * 0.5)
    strip = Image.new(mode, (width, h), 255 if mode == "L" else (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    font = _font(px)
    for i, line in enumerate(lines):
        draw.text((px // 3, int(px * 0.25 + i * px * 1.25)), line, fill=0 if mode == "L" else (0, 0, 0), font=font)
    return strip


# ---------------------------------------------------------------------- panel
def panel_png(
    explanations: Sequence[Explanation],
    path: str | Path,
    titles: Sequence[str] | None = None,
    size: int = 256,
    include_image: bool = True,
    cmap: str = "inferno",
    opacity: float = 0.6,
    percentile: float = 99.0,
) -> Path:
    """Side-by-side PNG: the input image (optional) then one overlay per explanation, each
    under a title (method and prediction by default). Returns the path."""
    if not explanations:
        raise RenderError("panel_png: no explanations given")
    if titles is not None and len(titles) != len(explanations):
        raise RenderError(f"panel_png: {len(explanations)} explanations but {len(titles)} titles")
    first = explanations[0]
    window = display_window(first.image)
    tiles: list[tuple[list[str], np.ndarray]] = []
    if include_image:
        grey = to_grey(first.image, window)
        tiles.append(([f"input: {first.target}", f"p = {first.pred_original:.2f}"],
                      _resize(np.stack([grey] * 3, -1), size)))
    for i, e in enumerate(explanations):
        lines = [titles[i]] if titles is not None else [e.method]
        extra = f"p = {e.pred_original:.2f}"
        if e.frame_preds is not None:
            extra += f" -> {float(e.frame_preds[0]):.2f}"
        lines.append(extra)
        tiles.append((lines, overlay(e.image, e.map, cmap, opacity, percentile, window=window, size=size)))
    px = max(10, size // 16)
    n_lines = max(len(t[0]) for t in tiles)
    strips = [_title_strip(size, t[0] + [""] * (n_lines - len(t[0])), px) for t in tiles]
    head = strips[0].height
    gap = 4
    canvas = Image.new("RGB", (len(tiles) * size + (len(tiles) - 1) * gap, head + size), (255, 255, 255))
    for i, ((_, img), strip) in enumerate(zip(tiles, strips)):
        x = i * (size + gap)
        canvas.paste(strip, (x, 0))
        canvas.paste(Image.fromarray(img), (x, head))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG", compress_level=6)
    return path


# ---------------------------------------------------------------------- animation
def animation_frames(
    explanation: Explanation,
    size: int = 512,
    show_pred: bool = True,
    levels: int = 256,
) -> tuple[list[np.ndarray], list[float]]:
    """The animation as grey uint8 frames (H x W, header strip included) and their
    predictions: lambda = 0 -> counterfactual -> lambda = 0 (the reference's
    ``reversed(frames) + frames``)."""
    e = explanation
    if e.frames is None or len(e.frames) == 0:
        raise RenderError(
            f"explanation {e.method!r} has no frames to animate; use a Latent Shift method "
            "(latentshift, latentshift-max, ...) or render the map with overlay()"
        )
    frames = np.asarray(e.frames, dtype=np.float32)
    preds = (
        [float(v) for v in e.frame_preds] if e.frame_preds is not None else [float("nan")] * len(frames)
    )
    neg = np.asarray(e.lambdas) <= 0 if e.lambdas is not None else np.ones(len(frames), bool)
    # frames are sorted by increasing lambda: counterfactual first. Animate the lowering
    # direction (lambda <= 0) like the reference; upward frames are not part of the loop.
    cf_to_0 = [frames[i] for i in np.flatnonzero(neg)]
    p_cf_to_0 = [preds[i] for i in np.flatnonzero(neg)]
    seq = cf_to_0[::-1] + cf_to_0
    pseq = p_cf_to_0[::-1] + p_cf_to_0
    lo, hi = float(np.min(frames)), float(np.max(frames))
    if not hi > lo:
        lo, hi = -1024.0, 1024.0
    px = max(10, size // 22)
    header = int(px * 1.8) if show_pred else 0
    font = _font(px)
    step = 256 // levels
    out = []
    for img, p in zip(seq, pseq):
        grey = to_grey(img, (lo, hi))
        grey = _resize(grey, size, Image.BILINEAR)
        if step > 1:
            grey = ((grey // step) * step + step // 2).astype(np.uint8)
        canvas = Image.new("L", (size, size + header), 0)
        canvas.paste(Image.fromarray(grey), (0, header))
        if show_pred:
            draw = ImageDraw.Draw(canvas)
            text = f"{e.target}: {p:.2f}" if np.isfinite(p) else e.target
            draw.text((px // 2, int(px * 0.35)), text, fill=255, font=font)
            x0 = size // 2
            bar = int((size - x0 - px) * min(max(p, 0.0), 1.0)) if np.isfinite(p) else 0
            draw.rectangle([x0, int(px * 0.45), x0 + max(bar, 1), int(px * 1.35)], fill=200)
        out.append(np.asarray(canvas))
    return out, pseq


def _encode_gif(frames: list[np.ndarray], duration_ms: int) -> bytes:
    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, np.stack(frames), extension=".gif", plugin="pillow",
                duration=duration_ms, loop=0)
    return buf.getvalue()


def write_gif(
    explanation: Explanation,
    path: str | Path,
    size: int = 512,
    fps: float = 8.0,
    show_pred: bool = True,
    max_bytes: int | None = MAX_GIF_BYTES,
) -> Path:
    """Looping GIF of the counterfactual animation (imageio + Pillow), ``size`` px square plus
    a header with the prediction. Quantises grey levels until the file is <= ``max_bytes``."""
    if size > MAX_GIF_WIDTH:
        raise RenderError(
            f"GIF size {size} px is wider than {MAX_GIF_WIDTH} px, which Streamlit shows as a "
            "single still frame; choose size <= 1460"
        )
    if size < 16 or fps <= 0:
        raise RenderError(f"GIF size must be >= 16 px and fps > 0 (got size={size}, fps={fps})")
    duration = max(20, int(round(1000.0 / fps)))
    data = b""
    for levels in (256, 128, 64, 32, 16):
        frames, _ = animation_frames(explanation, size, show_pred, levels)
        data = _encode_gif(frames, duration)
        if max_bytes is None or len(data) <= max_bytes:
            break
    else:
        raise RenderError(
            f"the GIF stays above {max_bytes} bytes ({len(data)}) even with 16 grey levels; "
            "choose a smaller size or fewer frames (n_frames)"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_mp4(explanation: Explanation, path: str | Path, size: int = 512, fps: float = 8.0,
              show_pred: bool = True) -> Path:
    """MP4 (H.264) of the same animation. Needs ``imageio-ffmpeg`` (or PyAV)."""
    plugin = None
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        plugin = "FFMPEG"
    elif importlib.util.find_spec("av") is not None:
        plugin = "pyav"
    if plugin is None:
        raise RenderError(
            "writing MP4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg) or PyAV "
            "(pip install av); the GIF (write_gif) works without them"
        )
    import imageio.v3 as iio

    frames, _ = animation_frames(explanation, size, show_pred)
    h = frames[0].shape[0]
    rgb = np.stack([np.stack([f] * 3, -1)[: h - h % 2] for f in frames])  # even height for yuv420p
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if plugin == "pyav":
        iio.imwrite(path, rgb, plugin="pyav", codec="libx264", fps=fps)
    else:
        iio.imwrite(path, rgb, plugin="FFMPEG", fps=fps, codec="libx264", macro_block_size=2)
    return path


def save_png(rgb_or_grey: np.ndarray, path: str | Path, compress_level: int = 6) -> Path:
    """Write a uint8 grey (H x W) or RGB (H x W x 3) array as PNG (zlib level 6: Pillow's
    ``optimize=True`` costs ~20x the time for a few percent)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(rgb_or_grey)).save(path, format="PNG", compress_level=compress_level)
    return path
