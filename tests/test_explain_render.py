"""Rendering: overlay, panel PNG, looping GIF within Streamlit's width and a size budget."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from cfviewer.explain import Explanation
from cfviewer.explain import render
from cfviewer.explain.render import RenderError


def make_explanation(k: int = 10, res: int = 224, noise: float = 0.0, seed: int = 0) -> Explanation:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:res, :res] / res
    base = (800 * np.exp(-((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.08) - 400).astype(np.float32)
    lambdas = np.linspace(-100, 0, k)
    frames = np.stack([base * (1 + l / 400) for l in lambdas]).astype(np.float32)
    if noise:
        frames += rng.normal(0, noise, frames.shape).astype(np.float32)
    heat = np.abs(frames[0] - frames[-1])
    return Explanation(
        method="latentshift-max", target="Mass", map=heat, image=base, pred_original=0.8,
        frames=frames, lambdas=lambdas, frame_preds=np.linspace(0.3, 0.75, k),
        counterfactual=frames[0], pred_reconstruction=0.75,
    )


def test_overlay_blends_only_where_the_map_is_high():
    e = make_explanation()
    heat = np.zeros_like(e.map)
    heat[100:120, 100:120] = 1.0
    rgb = render.overlay(e.image, heat, opacity=0.7)
    assert rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8
    grey = render.to_grey(e.image)
    np.testing.assert_array_equal(rgb[:50, :50, 0], grey[:50, :50])  # map 0: untouched
    np.testing.assert_array_equal(rgb[:50, :50, 1], grey[:50, :50])
    inside = rgb[105:115, 105:115].astype(int)
    assert np.abs(inside[..., 0] - inside[..., 2]).mean() > 20  # coloured, not grey
    np.testing.assert_array_equal(render.overlay(e.image, heat, opacity=0.0)[..., 0], grey)
    assert render.overlay(e.image, heat, size=100).shape == (100, 100, 3)
    with pytest.raises(RenderError, match="opacity"):
        render.overlay(e.image, heat, opacity=2)
    with pytest.raises(RenderError, match="shape"):
        render.overlay(e.image, heat[:10])


def test_percentile_clipping_saturates_outliers():
    m = np.zeros((50, 50), np.float32)
    m[:25] = 1.0
    m[0, 0] = 1e6  # one outlier must not wash out the rest
    n = render.normalise_map(m, percentile=99.0)
    assert n[10, 10] == 1.0 and n[40, 40] == 0.0
    sparse = np.zeros((100, 100), np.float32)
    sparse[5, 5] = 2.0  # fewer hot pixels than 1 %: scaled by the maximum, not blanked
    assert render.normalise_map(sparse, 99.0)[5, 5] == 1.0


def test_gif_loops_plays_there_and_back_and_fits(tmp_path):
    e = make_explanation(k=10)
    path = render.write_gif(e, tmp_path / "a.gif", size=512)
    im = Image.open(path)
    assert im.format == "GIF" and im.info.get("loop") == 0
    assert im.size[0] == 512 and im.size[0] <= render.MAX_GIF_WIDTH
    n = im.n_frames
    assert 2 * 10 - 2 <= n <= 2 * 10  # identical neighbours at the turn may be merged
    assert path.stat().st_size <= 2_000_000
    frames, preds = render.animation_frames(e, size=128)
    assert len(frames) == 20
    assert preds[:10] == list(e.frame_preds[::-1]) and preds[10:] == list(e.frame_preds)
    # 0 -> counterfactual -> 0: first/last frames are the reconstruction
    np.testing.assert_array_equal(frames[0], frames[-1])
    np.testing.assert_array_equal(frames[9], frames[10])
    assert not np.array_equal(frames[0], frames[9])


def test_gif_prediction_text_is_drawn(tmp_path):
    e = make_explanation(k=4)
    with_text, _ = render.animation_frames(e, size=256, show_pred=True)
    without, _ = render.animation_frames(e, size=256, show_pred=False)
    assert with_text[0].shape[0] > without[0].shape[0]  # header strip
    header = with_text[0][: with_text[0].shape[0] - 256]
    assert header.max() == 255 and (header == 0).mean() > 0.5  # white text on black


def test_gif_size_budget_quantises_noisy_frames(tmp_path):
    e = make_explanation(k=4, res=128, noise=150.0)
    big = render.write_gif(e, tmp_path / "noisy.gif", size=256, max_bytes=None)
    small = render.write_gif(e, tmp_path / "budget.gif", size=256, max_bytes=big.stat().st_size // 2)
    assert small.stat().st_size <= big.stat().st_size // 2
    with pytest.raises(RenderError, match="16 grey levels"):
        render.write_gif(e, tmp_path / "never.gif", size=256, max_bytes=1000)
    with pytest.raises(RenderError, match="1460"):
        render.write_gif(e, tmp_path / "wide.gif", size=1600)


def test_gif_needs_frames(tmp_path):
    e = make_explanation()
    e.frames = None
    with pytest.raises(RenderError, match="no frames"):
        render.write_gif(e, tmp_path / "x.gif")


def test_panel_png_side_by_side(tmp_path):
    e1, e2 = make_explanation(seed=1), make_explanation(seed=2)
    e2.method = "gradient"
    path = render.panel_png([e1, e2], tmp_path / "panel.png", size=128)
    im = Image.open(path)
    assert im.size[0] == 3 * 128 + 2 * 4 and im.size[1] > 128
    arr = np.asarray(im.convert("RGB"))
    assert arr[: im.size[1] - 128].min() < 100  # titles drawn in the header
    with pytest.raises(RenderError, match="titles"):
        render.panel_png([e1], tmp_path / "p.png", titles=["a", "b"])


@pytest.mark.skipif(
    importlib.util.find_spec("imageio_ffmpeg") is not None or importlib.util.find_spec("av") is not None,
    reason="an MP4 backend is installed",
)
def test_mp4_without_backend_says_what_to_install(tmp_path):
    with pytest.raises(RenderError, match="imageio-ffmpeg"):
        render.write_mp4(make_explanation(), tmp_path / "a.mp4")


def test_captions_name_the_original_and_the_reconstruction(tmp_path):
    """Issue 8: the first caption was the reconstruction's probability alone, while the reader
    was told the original's. Frame 0 (lambda = 0) shows both, named; the others lambda and p."""
    e = make_explanation(k=4)  # pred_original 0.8, reconstruction 0.75, lambdas -100 .. 0
    caps = render.frame_captions(e)
    assert len(caps) == 8
    first = " · ".join(caps[0])
    assert "original p = 0.80" in first and "reconstruction p = 0.75" in first
    assert caps[0] == caps[-1]  # the loop starts and ends on the reconstruction
    assert caps[3] == ["Mass · original p = 0.80", "lambda = -100, p = 0.30"]
    assert caps[1] == ["Mass · original p = 0.80", "lambda = -33.3, p = 0.60"]
    assert all(c[0] == "Mass · original p = 0.80" for c in caps)
    # drawn: frames with different captions differ in their header only where text is
    frames, _ = render.animation_frames(e, size=384)
    header = frames[0].shape[0] - 384
    assert header > 0 and not np.array_equal(frames[0][:header], frames[1][:header])
    # the threshold tick is drawn when the explanation records the decision
    e.params = {"decision": {"threshold": 0.5}}
    ticked, _ = render.animation_frames(e, size=384)
    assert not np.array_equal(ticked[0][:header], frames[0][:header])
    np.testing.assert_array_equal(ticked[0][header:], frames[0][header:])
    # captions fit the GIF's width: the font shrinks for a small GIF
    from PIL import ImageDraw, Image as _I

    font, px = render._fit_font([t for c in caps for t in c], 128 - 10, 10)
    probe = ImageDraw.Draw(_I.new("L", (1, 1)))
    widest = max(probe.textlength(t, font=font) for c in caps for t in c)
    assert px <= 10 and (widest <= 118 or px == 8)


def test_captions_without_an_autoencoder_name_the_image_not_a_reconstruction():
    e = make_explanation(k=4)
    e.pred_reconstruction = None  # Attri-Net: the lambda = 0 frame is the image itself
    caps = render.frame_captions(e)
    assert caps[0][1].startswith("the image, p = ") and not any("reconstruction" in " ".join(c) for c in caps)


def test_captions_of_a_generator_pair_name_the_similar_image():
    """SAGen (and adversarial_fi on its pair): the lambda = 0 frame is g_s(x), the similar
    generator's image, and its probability is f(g_s(x)); no frame is called a reconstruction."""
    e = make_explanation(k=4)
    e.start_frame = "similar"
    caps = render.frame_captions(e)
    assert caps[0] == ["Mass · original p = 0.80", "similar image g_s(x) p = 0.75"]
    assert not any("reconstruction" in " ".join(c) for c in caps)
    assert e.summary()["start_frame"] == "similar"
    assert make_explanation().summary()["start_frame"] == "reconstruction"
    with pytest.raises(ValueError, match="start frame 'twin'"):
        type(e)(method="m", target="Mass", map=e.map, image=e.image, pred_original=0.5, start_frame="twin")
