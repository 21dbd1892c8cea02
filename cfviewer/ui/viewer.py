"""Image rendering for the case viewer: window/level, zoom, overlays, frames, GIFs -> PNG bytes.

Everything reads precomputed files only (no model runs) and is cached per process, keyed by
the file's path, size and modification time plus the display settings, so a page rerun or the
next reader asking for the same case costs a dictionary look-up.

Image values follow the project convention (float32 in [-1024, 1024], bright = dense).
Window presets are percentile-based because the values of a PNG or DICOM mapped to
[-1024, 1024] are not Hounsfield units.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cfviewer import imaging
from cfviewer.errors import CfviewerError

VIEW_SIZE = 1024  # px cap of the rendered viewer image (shown at the column width, >= 512 px)
TILE_SIZE = 512  # px cap of each explanation tile
MAX_ZOOM = 8.0

WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    # name: (low, high) percentiles of the image's own values (cfviewer.imaging.display_window)
    "Auto": imaging.AUTO_PERCENTILES,
    "Lungs": (1.0, 65.0),
    "Mediastinum / bone": (35.0, 99.9),
    "Full range": (-1.0, -1.0),  # special: [-1024, 1024]
}


class ViewerError(CfviewerError):
    """A precomputed file is missing or unreadable; the message names it."""


# --------------------------------------------------------------------------- file reads
def _stamp(path: str | Path) -> tuple[str, int, int]:
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError:
        raise ViewerError(
            f"the file {p} is missing; the study's precomputed files are incomplete "
            "(ask the researcher to run Precompute again)") from None
    return str(p), st.st_size, st.st_mtime_ns


@lru_cache(maxsize=64)
def _load_pixels(path: str, size: int, mtime: int) -> np.ndarray:
    arr = imaging.load(path)
    arr.setflags(write=False)
    return arr


def load_pixels(path: str | Path) -> np.ndarray:
    """The radiograph as float32 H x W in [-1024, 1024] (cached, read-only)."""
    return _load_pixels(*_stamp(path))


@lru_cache(maxsize=64)
def _load_npy(path: str, size: int, mtime: int) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ViewerError(f"cannot read the map {path} ({exc})") from exc
    arr = np.asarray(arr, dtype=np.float32)
    arr.setflags(write=False)
    return arr


def load_map(path: str | Path) -> np.ndarray:
    return _load_npy(*_stamp(path))


@lru_cache(maxsize=32)
def _load_frames(path: str, size: int, mtime: int) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: np.asarray(z[k]) for k in z.files}
    except Exception as exc:
        raise ViewerError(f"cannot read the counterfactual frames {path} ({exc})") from exc
    if "frames" not in data:
        stacks = [k for k, v in data.items() if v.ndim == 3]
        if not stacks:
            raise ViewerError(f"{path} holds no frame stack (arrays: {sorted(data)})")
        data["frames"] = data[stacks[0]]
    for v in data.values():
        v.setflags(write=False)
    return data


def load_frames(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a frames .npz: ``frames`` (k x R x R, increasing lambda: the
    counterfactual first) and, when stored, ``lambdas``, ``frame_preds``, ``image``."""
    return _load_frames(*_stamp(path))


@lru_cache(maxsize=64)
def _read_bytes(path: str, size: int, mtime: int) -> bytes:
    return Path(path).read_bytes()


def read_bytes(path: str | Path) -> bytes:
    return _read_bytes(*_stamp(path))


@lru_cache(maxsize=128)
def _read_json(path: str, size: int, mtime: int) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ViewerError(f"cannot read {path} ({exc})") from exc
    return data if isinstance(data, dict) else {}


def read_json(path: str | Path) -> dict[str, Any]:
    return _read_json(*_stamp(path))


def gif_frame_count(data: bytes) -> int:
    """Number of frames of a GIF (1 for a still image)."""
    with Image.open(io.BytesIO(data)) as im:
        return int(getattr(im, "n_frames", 1))


# --------------------------------------------------------------------------- window / zoom
@dataclass(frozen=True)
class Window:
    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        return self.center + self.width / 2


def preset_window(img: np.ndarray, preset: str) -> Window:
    """The window of a named preset for this image (see WINDOW_PRESETS)."""
    if preset not in WINDOW_PRESETS:
        raise ViewerError(f"unknown window preset {preset!r}; choose one of {', '.join(WINDOW_PRESETS)}")
    lo_p, hi_p = WINDOW_PRESETS[preset]
    if lo_p < 0:
        return Window(0.0, 2048.0)
    lo, hi = imaging.display_window(img, (lo_p, hi_p))
    return Window(round((lo + hi) / 2), max(1.0, round(hi - lo)))  # whole units: the sliders'


def crop_box(height: int, width: int, zoom: float, pan_x: float, pan_y: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the visible part at ``zoom`` (1 = whole image) centred at
    (pan_x, pan_y) in [0, 1] of the width / height, kept inside the image."""
    zoom = float(min(max(zoom, 1.0), MAX_ZOOM))
    ch = max(1, int(round(height / zoom)))
    cw = max(1, int(round(width / zoom)))
    cy = float(min(max(pan_y, 0.0), 1.0)) * height
    cx = float(min(max(pan_x, 0.0), 1.0)) * width
    y0 = int(round(min(max(cy - ch / 2, 0), height - ch)))
    x0 = int(round(min(max(cx - cw / 2, 0), width - cw)))
    return y0, y0 + ch, x0, x0 + cw


def windowed(img: np.ndarray, window: Window) -> np.ndarray:
    """float image -> uint8 grey with the window (clipped; :func:`cfviewer.imaging.window`,
    which raises imaging.WindowError for a width <= 0)."""
    return imaging.window(img, window.center, window.width)


def _fit(arr: np.ndarray, size: int) -> Image.Image:
    """uint8 H x W (x 3) -> PIL image whose longer side is at most `size` (aspect kept).

    Never enlarged: the browser scales the image to the column (smoothly), so sending more
    pixels than the file has would only cost encoding time and bandwidth."""
    im = Image.fromarray(arr)
    h, w = arr.shape[:2]
    scale = size / max(h, w)
    if scale < 1:
        im = im.resize((max(1, int(round(w * scale))), max(1, int(round(h * scale)))), Image.LANCZOS)
    return im


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


FOV_COLOUR = (255, 200, 0)
"""The outline of the model's field of view on the film (amber, visible on any window)."""

Fov = tuple[float, float, float, float]


def fov_box(height: int, width: int, fov: Fov) -> tuple[int, int, int, int]:
    """Fractions (y0, y1, x0, x1) of the film -> pixel box of an H x W image of it."""
    y0, y1, x0, x1 = fov
    return (int(round(y0 * height)), int(round(y1 * height)),
            int(round(x0 * width)), int(round(x1 * width)))


def outline_fov(grey: np.ndarray, fov: Fov | None) -> np.ndarray:
    """uint8 H x W -> H x W x 3 with the field of view drawn as a thin amber frame (a
    non-square film shows the reader the square the model saw); unchanged grey when None."""
    if fov is None:
        return grey
    h, w = grey.shape
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    y0, y1, x0, x1 = fov_box(h, w, fov)
    t = max(1, int(round(max(h, w) / 300)))
    col = np.array(FOV_COLOUR, np.uint8)
    y1, x1 = min(max(y1, y0 + 1), h), min(max(x1, x0 + 1), w)
    rgb[y0:min(y0 + t, y1), x0:x1] = col
    rgb[max(y1 - t, y0):y1, x0:x1] = col
    rgb[y0:y1, x0:min(x0 + t, x1)] = col
    rgb[y0:y1, max(x1 - t, x0):x1] = col
    return rgb


def render_array(img: np.ndarray, window: Window, zoom: float = 1.0, pan_x: float = 0.5,
                 pan_y: float = 0.5, size: int = VIEW_SIZE, fov: Fov | None = None) -> bytes:
    """Window, outline the field of view (if given), crop (zoom / pan) and scale an image to
    PNG bytes (longer side at most `size`)."""
    y0, y1, x0, x1 = crop_box(img.shape[0], img.shape[1], zoom, pan_x, pan_y)
    shown = outline_fov(windowed(img, window), fov) if fov is not None else windowed(img[y0:y1, x0:x1], window)
    if fov is not None:
        shown = shown[y0:y1, x0:x1]
    return png_bytes(_fit(shown, size))


@lru_cache(maxsize=256)
def _render_file(path: str, fsize: int, mtime: int, center: float, width: float, zoom: float,
                 pan_x: float, pan_y: float, size: int, fov: Fov | None) -> bytes:
    return render_array(_load_pixels(path, fsize, mtime), Window(center, width), zoom, pan_x, pan_y, size,
                        fov)


def render_image(path: str | Path, window: Window, zoom: float = 1.0, pan_x: float = 0.5,
                 pan_y: float = 0.5, size: int = VIEW_SIZE, fov: Fov | None = None) -> bytes:
    """The radiograph at `path` rendered for the viewer (cached); `fov` (fractions of the
    film, `ReadView.field_of_view`) outlines the part the model saw."""
    return _render_file(*_stamp(path), float(window.center), float(window.width), float(zoom),
                        float(pan_x), float(pan_y), int(size),
                        None if fov is None else tuple(float(v) for v in fov))


@lru_cache(maxsize=256)
def _render_frame(path: str, fsize: int, mtime: int, index: int, center: float, width: float,
                  zoom: float, pan_x: float, pan_y: float, size: int) -> bytes:
    frames = _load_frames(path, fsize, mtime)["frames"]
    if not 0 <= index < len(frames):
        raise ViewerError(f"frame {index} does not exist ({len(frames)} frames in {path})")
    return render_array(frames[index], Window(center, width), zoom, pan_x, pan_y, size)


def render_frame(path: str | Path, index: int, window: Window, zoom: float = 1.0,
                 pan_x: float = 0.5, pan_y: float = 0.5, size: int = VIEW_SIZE) -> bytes:
    """Frame `index` of a frames .npz rendered like the radiograph (cached)."""
    return _render_frame(*_stamp(path), int(index), float(window.center), float(window.width),
                         float(zoom), float(pan_x), float(pan_y), int(size))


# --------------------------------------------------------------------------- overlays
def model_space(img: np.ndarray, shape: tuple[int, int], fov: Fov | None = None) -> np.ndarray:
    """The film as the explainer saw it: cropped to the field of view the model saw (`fov`,
    fractions of the film, as `Bundle.model_input` crops; None = the whole film) and resized
    (PIL, antialiased) to the map's shape, so map and image line up pixel for pixel."""
    th, tw = shape
    if fov is not None:
        y0, y1, x0, x1 = fov_box(img.shape[0], img.shape[1], fov)
        img = img[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    if img.shape == (th, tw):
        return np.asarray(img, dtype=np.float32)
    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
    return np.asarray(im.resize((tw, th), Image.BILINEAR), dtype=np.float32)


@lru_cache(maxsize=256)
def _render_overlay(image_path: str, isize: int, imtime: int, map_path: str, msize: int,
                    mmtime: int, opacity: float, center: float, width: float, size: int,
                    fov: Fov | None) -> bytes:
    from cfviewer.explain.draw import overlay  # torch-free: readers never load torch

    heat = _load_npy(map_path, msize, mmtime)
    if heat.ndim != 2:
        raise ViewerError(f"the map {map_path} has shape {heat.shape}; expected a 2-D array")
    img = model_space(_load_pixels(image_path, isize, imtime), heat.shape, fov)
    rgb = overlay(img, heat, opacity=float(opacity), window=(center - width / 2, center + width / 2))
    return png_bytes(_fit(rgb, size))


def render_overlay(image_path: str | Path, map_path: str | Path, opacity: float, window: Window,
                   size: int = TILE_SIZE, fov: Fov | None = None) -> bytes:
    """The explanation map over the part of the radiograph the model saw (`fov`;
    cfviewer.explain.draw.overlay), PNG bytes."""
    return _render_overlay(*_stamp(image_path), *_stamp(map_path), round(float(opacity), 3),
                           float(window.center), float(window.width), int(size),
                           None if fov is None else tuple(float(v) for v in fov))


def clear_caches() -> None:
    for fn in (_load_pixels, _load_npy, _load_frames, _read_bytes, _read_json, _render_file,
               _render_frame, _render_overlay):
        fn.cache_clear()


def render_defaults(image_path: Path | None, media, opacity: float = 0.6, fov: Fov | None = None) -> int:
    """Render what the case page shows at its default settings (Auto window, no zoom) for a
    read with `media` (reading.ExplanationMedia); returns the bytes produced. Used to warm
    the caches for the reader's next case, and by the benchmark."""
    if image_path is None:
        return 0
    n = 0
    img = load_pixels(image_path)
    window = preset_window(img, "Auto")
    n += len(render_image(image_path, window, fov=fov))
    for m in media:
        if m.map_path is not None:
            n += len(render_overlay(image_path, m.map_path, opacity, window, fov=fov))
        elif m.overlay_path is not None:
            n += len(read_bytes(m.overlay_path))
        if m.gif_path is not None:
            n += len(read_bytes(m.gif_path))
        if m.frames_path is not None:
            load_frames(m.frames_path)
        if m.json_path is not None:
            read_json(m.json_path)
    return n
