"""Augmentation averaging (Charachon et al. eq. 11)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cfviewer.explain import ExplainerParameterError, get_explainer
from cfviewer.explain.augment import invert_affines, random_affines, realign, warp
from cfviewer.models import random_bundle

RES = 64


@pytest.fixture(scope="module")
def rb():
    return random_bundle(resolution=RES, seed=3)


def blob_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:RES, :RES] / RES
    img = 700 * np.exp(-((yy - 0.45) ** 2 + (xx - 0.55) ** 2) / 0.02) - 300
    return (img + rng.normal(0, 30, img.shape)).astype(np.float32)


def test_n0_equals_the_base_map(rb):
    img = blob_image()
    base = get_explainer("gradient", rb).explain(img, "Mass")
    aug = get_explainer("gradient", rb, augment=None).explain(img, "Mass")
    wrapped = get_explainer("augmented", rb, base="gradient", n=0).explain(img, "Mass")
    np.testing.assert_array_equal(base.map, aug.map)
    np.testing.assert_array_equal(base.map, wrapped.map)


def test_transforms_stay_in_the_configured_ranges():
    th = random_affines(200, seed=0, resolution=224).numpy()
    zoom = np.sqrt(np.linalg.det(th[:, :, :2]))
    angle = np.degrees(np.arctan2(th[:, 1, 0], th[:, 0, 0]))
    shift_px = th[:, :, 2] * 224 / 2
    assert zoom.min() >= 0.9 - 1e-6 and zoom.max() <= 1.0 + 1e-6
    assert np.abs(angle).max() <= 5.0 + 1e-6 and np.abs(angle).max() > 3.0
    assert np.abs(shift_px).max() <= 10.0 + 1e-4 and np.abs(shift_px).max() > 7.0
    assert (np.linalg.det(th[:, :, :2]) > 0).all()  # no flips by default
    th64 = random_affines(200, seed=0, resolution=64).numpy()
    np.testing.assert_allclose(th64[:, :, 2] * 64 / 2, shift_px * 64 / 224, rtol=1e-5)  # scaled shift
    flipped = random_affines(50, seed=0, resolution=64, flip=True).numpy()
    assert (np.linalg.det(flipped[:, :, :2]) < 0).any()


def test_inverse_transform_realigns_a_shifted_map_exactly():
    m = torch.zeros(1, 1, RES, RES)
    m[0, 0, 20:30, 25:40] = torch.linspace(1, 2, 15)
    theta = torch.tensor([[[1.0, 0.0, 2 * 3 / RES], [0.0, 1.0, -2 * 5 / RES]]])  # 3 px, -5 px
    moved = warp(m, theta)
    assert not torch.allclose(moved, m)
    back, cover = realign(moved, theta)
    inner = (slice(8, RES - 8), slice(8, RES - 8))
    torch.testing.assert_close(back[0, 0][inner], m[0, 0][inner], atol=1e-5, rtol=0)
    assert cover[0, 0][inner].min() > 0.999


def test_inverse_transform_realigns_rotation_and_zoom():
    yy, xx = torch.meshgrid(torch.arange(RES), torch.arange(RES), indexing="ij")
    m = torch.exp(-((yy - 30.0) ** 2 + (xx - 36.0) ** 2) / 40.0)[None, None]
    theta = random_affines(1, seed=5, resolution=RES, max_rotation=5, max_shift=10)
    back, cover = realign(warp(m, theta), theta)
    assert float((back - m).abs().max()) < 0.05  # two bilinear resamplings of a smooth blob
    np.testing.assert_allclose(invert_affines(invert_affines(theta)), theta, atol=1e-5)


def test_average_is_eq_11_with_coverage(rb):
    img = blob_image(1)
    ex = get_explainer("augmented", rb, base="gradient", n=3, seed=7)
    e = ex.explain(img, "Effusion")
    thetas = ex.transforms()
    base = get_explainer("gradient", rb)
    m0 = base.explain(img, "Effusion").map
    x = rb.preprocess(img)
    xt = warp(x.expand(3, -1, -1, -1), thetas, padding_mode="border")
    maps = torch.as_tensor(np.stack([b.map for b in base.explain_batch(list(xt[:, 0].numpy()), "Effusion")]))[:, None]
    back, cover = realign(maps, thetas)
    expected = (m0 + back.sum(0)[0].numpy()) / (1 + cover.sum(0)[0].numpy())
    np.testing.assert_allclose(e.map, expected, rtol=1e-4, atol=1e-12)
    assert e.method == "gradient+aug3"
    assert e.evaluations["backward"] == 4  # identity + 3 transforms


def test_seeded_and_wrapper_forms_agree(rb):
    img = blob_image(2)
    a = get_explainer("gradient", rb, augment=4, augment_seed=11).explain(img, "Mass")
    b = get_explainer("augmented", rb, base="gradient", n=4, seed=11).explain(img, "Mass")
    c = get_explainer("augmented", rb, base="gradient", n=4, seed=12).explain(img, "Mass")
    np.testing.assert_array_equal(a.map, b.map)
    assert not np.allclose(a.map, c.map)


def test_wraps_latentshift_and_keeps_its_frames(rb):
    img = blob_image(3)
    e = get_explainer("latentshift-max", rb, augment=2).explain(img, "Mass")
    plain = get_explainer("latentshift-max", rb).explain(img, "Mass")
    np.testing.assert_array_equal(e.lambdas, plain.lambdas)
    assert e.params["base_params"]["map"] == "max" and e.method == "latentshift-max+aug2"
    assert np.isfinite(e.map).all() and e.map.shape == (RES, RES)


def test_bad_parameters(rb):
    with pytest.raises(ExplainerParameterError, match="zoom_min"):
        get_explainer("augmented", rb, zoom_min=1.2)
    with pytest.raises(ExplainerParameterError, match="n="):
        get_explainer("augmented", rb, n=-1)
    with pytest.raises(ExplainerParameterError, match="base"):
        get_explainer("augmented", rb, base="augmented")
    assert math.isfinite(get_explainer("augmented", rb, n=1).explain(blob_image(), "Mass").map.sum())
