"""Adversarial-path feature importance: Riemann sum vs a direct loop, smoothing, pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cfviewer.explain import get_explainer
from cfviewer.explain.adversarial import gaussian_smooth, smoothing_geometry
from cfviewer.models import random_bundle

RES = 64


@pytest.fixture(scope="module")
def rb():
    return random_bundle(resolution=RES, seed=2)


def pair(seed: int):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:RES, :RES] / RES
    base = (600 * np.exp(-((yy - 0.5) ** 2 + (xx - 0.4) ** 2) / 0.05) - 300).astype(np.float32)
    x_s = base + rng.normal(0, 20, base.shape).astype(np.float32)
    x_a = x_s.copy()
    x_a[20:40, 30:50] -= 400.0  # the adversary removes a blob
    return base, x_s, x_a


def direct_loop(bundle, x_s, x_a, target, m=50):
    """One image at a time: the M-step right Riemann sum of the gradient."""
    t = bundle.target_index(target)
    xs = torch.as_tensor(x_s)[None, None]
    xa = torch.as_tensor(x_a)[None, None]
    g_sum = torch.zeros_like(xs)
    a_sum = torch.zeros_like(xs)
    for k in range(1, m + 1):
        pt = (xs + (k / m) * (xa - xs)).requires_grad_(True)
        p = bundle.classifier(pt)[0, t]
        (g,) = torch.autograd.grad(p, pt)
        g_sum += g
        a_sum += g.abs()
    return (g_sum / m)[0, 0].numpy(), (a_sum / m)[0, 0].numpy()


def test_riemann_sum_matches_a_direct_loop(rb):
    x, x_s, x_a = pair(0)
    g, g_abs = direct_loop(rb, x_s, x_a, "Mass")
    d = x_s - x_a
    v1 = get_explainer("adversarial_fi", rb, variant="v1").explain(x, "Mass", x_s=x_s, x_a=x_a)
    v2 = get_explainer("adversarial_fi-v2", rb).explain(x, "Mass", x_s=x_s, x_a=x_a)
    np.testing.assert_allclose(v1.map, np.abs(d * g), rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(v2.map, d**2 * g_abs, rtol=1e-4, atol=1e-12)
    assert v2.evaluations["path_images"] == 50 and v2.evaluations["passes"] == 2  # batches of 25
    # outside the changed block x_s == x_a, so both maps vanish there
    assert v2.map[:20].max() == 0.0 and v2.map[20:40, 30:50].min() > 0


def test_v2_smooth_is_the_gaussian_smoothed_v2(rb):
    x, x_s, x_a = pair(1)
    v2 = get_explainer("adversarial_fi", rb, variant="v2").explain(x, "Effusion", x_s=x_s, x_a=x_a)
    sm = get_explainer("adversarial_fi", rb).explain(x, "Effusion", x_s=x_s, x_a=x_a)
    assert sm.params["variant"] == "v2_smooth"
    k, sigma = smoothing_geometry(RES, 11, 5.0)
    assert k == 3 and sigma == pytest.approx(5.0 * RES / 224)
    assert sm.params["smooth_kernel_effective"] == k
    # an independent check: explicit normalised 2D Gaussian kernel, reflect padding
    r = k // 2
    ax = np.arange(-r, r + 1)
    w1 = np.exp(-(ax**2) / (2 * sigma**2))
    w1 /= w1.sum()
    padded = np.pad(v2.map.astype(np.float64), r, mode="symmetric")
    expected = np.zeros_like(v2.map, dtype=np.float64)
    for i, wi in enumerate(w1):
        for j, wj in enumerate(w1):
            expected += wi * wj * padded[i : i + RES, j : j + RES]
    np.testing.assert_allclose(sm.map, expected, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(gaussian_smooth(v2.map, k, sigma), expected, rtol=1e-4, atol=1e-12)


def test_plain_difference_maps(rb):
    x, x_s, x_a = pair(2)
    diff = get_explainer("adversarial_diff", rb).explain(x, "Mass", x_s=x_s, x_a=x_a)
    diff_x = get_explainer("adversarial_diff_x", rb).explain(x, "Mass", x_s=x_s, x_a=x_a)
    np.testing.assert_allclose(diff.map, np.abs(x_s - x_a), rtol=1e-6)
    np.testing.assert_allclose(diff_x.map, np.abs(x - x_a), rtol=1e-6)
    np.testing.assert_array_equal(diff.counterfactual, x_a)


def test_default_pair_is_reconstruction_and_latentshift_counterfactual(rb):
    rng = np.random.default_rng(3)
    x = rng.uniform(-500, 500, (RES, RES)).astype(np.float32)
    ls = get_explainer("latentshift", rb).explain(x, "Mass")
    e = get_explainer("adversarial_diff", rb).explain(x, "Mass")
    recon = rb.reconstruct(x)[0]
    np.testing.assert_allclose(e.map, np.abs(recon - ls.counterfactual), rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(e.counterfactual, ls.counterfactual, atol=1e-3)
    assert e.params["pair"] == "latentshift" and e.frames is not None
    fi = get_explainer("adversarial_fi", rb).explain(x, "Mass")
    assert fi.evaluations["decoder"] == ls.evaluations["decoder"]
    assert fi.evaluations["classifier"] == ls.evaluations["classifier"] + 50


def test_pair_must_be_complete(rb):
    x, x_s, _ = pair(0)
    from cfviewer.explain import ExplainerParameterError

    with pytest.raises(ExplainerParameterError, match="both x_s"):
        get_explainer("adversarial_fi", rb).explain(x, "Mass", x_s=x_s)


def test_given_pair_works_without_an_autoencoder():
    no_ae = random_bundle(resolution=RES, seed=2, autoencoder=False)
    x, x_s, x_a = pair(0)
    e = get_explainer("adversarial_fi", no_ae).explain(x, "Mass", x_s=x_s, x_a=x_a)
    assert np.isfinite(e.map).all() and e.params["pair"] == "given"


def test_batch_equals_single(rb):
    rng = np.random.default_rng(4)
    imgs = [rng.uniform(-500, 500, (RES, RES)).astype(np.float32) for _ in range(2)]
    ex = get_explainer("adversarial_fi-v2", rb)
    batch = ex.explain_batch(imgs, ["Mass", "Effusion"])
    for img, t, eb in zip(imgs, ["Mass", "Effusion"], batch):
        es = ex.explain(img, t)
        np.testing.assert_array_equal(eb.lambdas, es.lambdas)
        np.testing.assert_allclose(eb.map, es.map, rtol=1e-3, atol=1e-9)
        assert eb.timings["total"] >= eb.timings["latentshift_search"]
