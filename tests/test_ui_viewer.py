"""cfviewer.ui.viewer: window/level, zoom crop, rendering, overlays and caching."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cfviewer import imaging
from cfviewer.ui import viewer


def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


@pytest.fixture()
def ramp(tmp_path):
    img = np.tile(np.linspace(-1024, 1024, 200, dtype=np.float32), (100, 1))  # 100 x 200, dark -> bright
    path = imaging.write_png16(tmp_path / "ramp.png", img)
    viewer.clear_caches()
    return path, img


def test_window_maps_level_and_width_to_grey(ramp):
    _, img = ramp
    g = viewer.windowed(img, viewer.Window(0, 1024))
    assert g[0, 0] == 0 and g[0, -1] == 255  # outside the window: clipped
    mid = g[0, np.argmin(np.abs(img[0]))]
    assert 120 <= mid <= 135
    with pytest.raises(imaging.WindowError, match="width"):  # the one windowing: imaging's
        viewer.windowed(img, viewer.Window(0, 0))


def test_presets_follow_the_image_percentiles(ramp):
    _, img = ramp
    full = viewer.preset_window(img, "Full range")
    assert (full.center, full.width) == (0.0, 2048.0)
    lungs = viewer.preset_window(img, "Lungs")
    bone = viewer.preset_window(img, "Mediastinum / bone")
    assert lungs.center < bone.center  # lungs are dark, bone bright
    with pytest.raises(viewer.ViewerError, match="unknown window preset"):
        viewer.preset_window(img, "nope")


@pytest.mark.parametrize("zoom,pan,expect", [
    (1.0, (0.5, 0.5), (0, 100, 0, 200)),
    (2.0, (0.5, 0.5), (25, 75, 50, 150)),
    (2.0, (0.0, 0.0), (0, 50, 0, 100)),      # clamped at the top-left corner
    (2.0, (1.0, 1.0), (50, 100, 100, 200)),  # clamped at the bottom-right corner
    (100.0, (0.5, 0.5), (44, 56, 88, 113)),  # zoom capped at MAX_ZOOM: 12 x 25 px
])
def test_crop_box_zooms_and_stays_inside(zoom, pan, expect):
    assert viewer.crop_box(100, 200, zoom, *pan) == expect


def test_render_image_keeps_aspect_and_zoom_shows_the_panned_part(ramp):
    path, _ = ramp
    w = viewer.Window(0, 2048)
    assert _png(viewer.render_image(path, w, size=400)).shape == (100, 200)  # never enlarged
    full = _png(viewer.render_image(path, w, size=100))
    assert full.shape == (50, 100)  # shrunk to the cap, aspect kept
    left = _png(viewer.render_image(path, w, zoom=2.0, pan_x=0.0, pan_y=0.5, size=100))
    right = _png(viewer.render_image(path, w, zoom=2.0, pan_x=1.0, pan_y=0.5, size=100))
    assert left.mean() < full.mean() < right.mean()  # the ramp: left half dark, right half bright


def test_rendering_is_cached_and_sees_changed_files(ramp):
    path, img = ramp
    w = viewer.Window(0, 2048)
    a = viewer.render_image(path, w)
    assert viewer.render_image(path, w) is a  # second call: the cache
    import os
    import time

    imaging.write_png16(path, -img)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    b = viewer.render_image(path, w)
    assert b != a


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(viewer.ViewerError, match="missing"):
        viewer.load_pixels(tmp_path / "nope.png")


def test_overlay_blends_the_map_with_opacity(ramp, tmp_path):
    path, _ = ramp
    heat = np.zeros((32, 32), np.float32)
    heat[8:16, 8:16] = 1.0
    mpath = tmp_path / "m.npy"
    np.save(mpath, heat)
    w = viewer.Window(0, 2048)
    none = _png(viewer.render_overlay(path, mpath, 0.0, w, size=64)).astype(int)
    full = _png(viewer.render_overlay(path, mpath, 1.0, w, size=64)).astype(int)
    assert none.shape == (32, 32, 3)  # the map's resolution
    # opacity 0 = the grey image (R = G = B); opacity 1 colours the hot square only
    assert np.abs(none[..., 0] - none[..., 2]).max() <= 1
    hot = np.abs(full - none).sum(axis=2)
    assert hot[10:14, 10:14].mean() > 50 and hot[24:, 24:].max() <= 3


def test_model_space_resizes_like_the_bundle(ramp):
    _, img = ramp
    out = viewer.model_space(img, (32, 32))
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert out[:, 0].mean() < -800 and out[:, -1].mean() > 800  # whole width kept (no crop)


def test_frames_and_gif_helpers(tmp_path):
    frames = np.stack([np.full((8, 8), v, np.float32) for v in (-500, 0, 500)])
    p = tmp_path / "f.npz"
    np.savez_compressed(p, frames=frames, lambdas=np.array([-20, -10, 0.0]))
    data = viewer.load_frames(p)
    assert data["frames"].shape == (3, 8, 8)
    a = _png(viewer.render_frame(p, 0, viewer.Window(0, 2048), size=16))
    b = _png(viewer.render_frame(p, 2, viewer.Window(0, 2048), size=16))
    assert a.mean() < b.mean()
    with pytest.raises(viewer.ViewerError):
        viewer.render_frame(p, 5, viewer.Window(0, 2048))
    gif = io.BytesIO()
    Image.new("L", (4, 4)).save(gif, format="GIF", save_all=True,
                                append_images=[Image.new("L", (4, 4), 255)], loop=0)
    assert viewer.gif_frame_count(gif.getvalue()) == 2
