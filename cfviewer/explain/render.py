"""Rendering of explanations: heat-map overlay, side-by-side panel PNG, the counterfactual
animation as a looping GIF (and optionally MP4).

Everything takes an :class:`~cfviewer.explain.base.Explanation` (or its arrays) and returns
or writes uint8 images; nothing here runs a model, and importing it does not import torch.
The overlay and its helpers live in the torch-free :mod:`cfviewer.explain.draw` (what the
reader's viewer uses) and are re-exported here.

The animation follows the reference (ieee8023/latentshift ``video_utils``): the frames are
played from lambda = 0 to the counterfactual and back (``reversed(frames) + frames`` of the
frames ordered counterfactual -> 0), every frame on one shared grey window. Above each frame
(:func:`frame_captions`): the target and the *original* image's probability, then on the
lambda = 0 frame (the autoencoder's reconstruction, where the loop starts) the
reconstruction's probability and on the others "lambda = ..., p = ...", over a bar
proportional to the frame's probability (full width = 1). GIFs stay at most 1460 px wide
(Streamlit re-encodes wider images to a single frame) and at most ``max_bytes`` (2 MB): the
grey levels are quantised (256, 128, 64, ... levels) until the file fits.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# The torch-free drawing functions live in cfviewer.explain.draw (the reader's viewer uses
# them without importing torch); re-exported here so `render.overlay` etc. keep working.
from cfviewer.explain.draw import (  # noqa: F401
    RenderError,
    _resize,
    colormap,
    display_window,
    map_image,
    normalise_map,
    overlay,
    to_grey,
)
from cfviewer.explain.frames import START_FRAMES
from cfviewer.formatting import number

if TYPE_CHECKING:  # annotations only: importing this module must not import torch
    from cfviewer.explain.base import Explanation

MAX_GIF_WIDTH = 1460
MAX_GIF_BYTES = 2_000_000


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
def _fmt_lambda(lam: float) -> str:
    return "0" if lam == 0 else f"{lam:.3g}"


def frame_captions(explanation: Explanation) -> list[list[str]]:
    """The header lines of each animation frame, in animation order (as
    :func:`animation_frames`). Every frame names the target and the probability on the
    *original* image (what the reader is told); the lambda = 0 frame -- the autoencoder's
    reconstruction, where the loop starts and turns -- adds the reconstruction's probability
    (named by :attr:`Explanation.start_kind`: "similar image g_s(x) p = ..." for SAGen, "the
    image, p = ..." for a method without an autoencoder, whose lambda = 0 frame is the image
    itself), the other frames their lambda and probability:

        Mass · original p = 0.38        Mass · original p = 0.38
        reconstruction p = 0.10         lambda = -34, p = 0.05
    """
    e = explanation
    order = _animation_order(e)
    preds = _frame_preds(e)
    lambdas = np.asarray(e.lambdas, dtype=np.float64) if e.lambdas is not None else None
    i0 = int(np.argmin(np.abs(lambdas))) if lambdas is not None else None
    head = f"{e.target} · original p = {number(e.pred_original, 2)}"
    out = []
    for k in order:
        if i0 is not None and k == i0:
            kind = e.start_kind
            if kind == "image":  # no autoencoder (Attri-Net, inpainting): the lambda = 0 frame is the image
                line = f"the image, p = {number(preds[k], 2)}"
            else:  # the reconstruction D(E(x)), or SAGen's similar image g_s(x)
                line = f"{START_FRAMES[kind]['short']} p = {number(e.pred_reconstruction, 2)}"
        elif lambdas is not None:
            line = f"lambda = {_fmt_lambda(float(lambdas[k]))}, p = {number(preds[k], 2)}"
        else:
            line = f"frame {k}, p = {number(preds[k], 2)}"
        out.append([head, line])
    return out


def _frame_preds(e: Explanation) -> list[float]:
    n = len(e.frames)
    return [float(v) for v in e.frame_preds] if e.frame_preds is not None else [float("nan")] * n


def _animation_order(e: Explanation) -> list[int]:
    """Frame indices of the loop: lambda = 0 -> counterfactual -> lambda = 0. Frames are sorted
    by increasing lambda (counterfactual first); the lowering direction (lambda <= 0) is
    animated like the reference, upward frames are not part of the loop."""
    n = len(e.frames)
    neg = np.asarray(e.lambdas) <= 0 if e.lambdas is not None else np.ones(n, bool)
    cf_to_0 = [int(i) for i in np.flatnonzero(neg)]
    return cf_to_0[::-1] + cf_to_0


def _fit_font(lines: Sequence[str], width: int, px: int) -> tuple[ImageFont.ImageFont, int]:
    """The largest font <= ``px`` whose longest line fits ``width`` (down to 8 px)."""
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    while True:
        font = _font(px)
        if px <= 8 or max(probe.textlength(t, font=font) for t in lines) <= width:
            return font, px
        px -= 1


def animation_frames(
    explanation: Explanation,
    size: int = 512,
    show_pred: bool = True,
    levels: int = 256,
) -> tuple[list[np.ndarray], list[float]]:
    """The animation as grey uint8 frames (H x W, header strip included) and their
    predictions: lambda = 0 -> counterfactual -> lambda = 0 (the reference's
    ``reversed(frames) + frames``). The header holds :func:`frame_captions` and a bar
    proportional to the frame's probability (full width = 1), with a tick at the bundle's
    decision threshold when the explanation records it (``params["decision"]``)."""
    e = explanation
    if e.frames is None or len(e.frames) == 0:
        raise RenderError(
            f"explanation {e.method!r} has no frames to animate; use a Latent Shift method "
            "(latentshift, latentshift-max, ...) or render the map with overlay()"
        )
    frames = np.asarray(e.frames, dtype=np.float32)
    preds = _frame_preds(e)
    order = _animation_order(e)
    seq = [frames[i] for i in order]
    pseq = [preds[i] for i in order]
    captions = frame_captions(e)
    lo, hi = float(np.min(frames)), float(np.max(frames))
    if not hi > lo:
        lo, hi = -1024.0, 1024.0
    # the GIF is shown about as large as it is (cfviewer.ui.components.TILE_HEIGHT): the text
    # must stay readable there, so it is sized for ~14 lines per frame height, not 22
    px = max(11, size // 14)
    margin = px // 2
    font, px = _fit_font([t for c in captions for t in c], size - 2 * margin, px)
    line_h = int(round(px * 1.25))
    bar_top = int(px * 0.3) + 2 * line_h + int(px * 0.15)
    bar_h = max(3, int(px * 0.45))
    header = bar_top + bar_h + int(px * 0.3) if show_pred else 0
    threshold = ((e.params or {}).get("decision") or {}).get("threshold")
    step = 256 // levels
    out = []
    for img, p, lines in zip(seq, pseq, captions):
        grey = to_grey(img, (lo, hi))
        grey = _resize(grey, size, Image.BILINEAR)
        if step > 1:
            grey = ((grey // step) * step + step // 2).astype(np.uint8)
        canvas = Image.new("L", (size, size + header), 0)
        canvas.paste(Image.fromarray(grey), (0, header))
        if show_pred:
            draw = ImageDraw.Draw(canvas)
            for j, text in enumerate(lines):
                draw.text((margin, int(px * 0.3) + j * line_h), text, fill=255, font=font)
            full = size - 2 * margin
            bar = int(full * min(max(p, 0.0), 1.0)) if np.isfinite(p) else 0
            draw.rectangle([margin, bar_top, margin + max(bar, 1), bar_top + bar_h], fill=200)
            if threshold is not None and 0.0 <= float(threshold) <= 1.0:
                xt = margin + int(full * float(threshold))
                draw.line([xt, bar_top - 2, xt, bar_top + bar_h + 2], fill=255, width=1)
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
    a header with the captions (:func:`frame_captions`). Quantises grey levels until the file is
    <= ``max_bytes``."""
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
