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
    """One image at a time: the M-step midpoint Riemann sum of eq. 6 (gamma_m at (m - 1/2)/M)."""
    t = bundle.target_index(target)
    xs = torch.as_tensor(x_s)[None, None]
    xa = torch.as_tensor(x_a)[None, None]
    g_sum = torch.zeros_like(xs)
    a_sum = torch.zeros_like(xs)
    for k in range(1, m + 1):
        pt = (xs + ((k - 0.5) / m) * (xa - xs)).requires_grad_(True)
        p = bundle.classifier(pt)[0, t]
        (g,) = torch.autograd.grad(p, pt)
        g_sum += g
        a_sum += g.abs()
    return (g_sum / m)[0, 0].numpy(), (a_sum / m)[0, 0].numpy()


def test_riemann_sum_matches_a_direct_loop(rb):
    x, x_s, x_a = pair(0)
    g, g_abs = direct_loop(rb, x_s, x_a, "Mass")
    d = x_a - x_s
    v1 = get_explainer("adversarial_fi", rb, variant="v1").explain(x, "Mass", x_s=x_s, x_a=x_a)
    v2 = get_explainer("adversarial_fi-v2", rb).explain(x, "Mass", x_s=x_s, x_a=x_a)
    np.testing.assert_allclose(v1.map, d**2 * np.abs(g), rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(v2.map, d**2 * g_abs, rtol=1e-4, atol=1e-12)
    assert v2.evaluations["path_images"] == 50 and v2.evaluations["passes"] == 2  # batches of 25
    # outside the changed block x_s == x_a, so both maps vanish there
    assert v2.map[:20].max() == 0.0 and v2.map[20:40, 30:50].min() > 0


# ---------------------------------------------------------------- eqs. 4-6 computed directly
TINY = 16


class TinyQuadratic(torch.nn.Module):
    """f = sigmoid(L), L = w.x / 1024 + a/2 (u.x / 1024)^2 + b: dL/dx = (w + a (u.x/1024) u)/1024,
    so the gradient is known in closed form and changes sign along a path where u.x does."""

    def __init__(self, seed: int = 0):
        super().__init__()
        from cfviewer import PATHOLOGIES

        self.pathologies = list(PATHOLOGIES)
        g = np.random.default_rng(seed)
        self.w = g.normal(0, 0.02, (TINY, TINY))
        self.u = g.normal(0, 1.0, (TINY, TINY)) / TINY
        self.a, self.b = 6.0, -0.5
        self.register_buffer("wt", torch.as_tensor(self.w, dtype=torch.float32))
        self.register_buffer("ut", torch.as_tensor(self.u, dtype=torch.float32))

    def forward(self, x):
        xs = x[:, 0] / 1024.0
        s = (xs * self.ut).sum((1, 2))
        logit = (xs * self.wt).sum((1, 2)) + 0.5 * self.a * s**2 + self.b
        return torch.sigmoid(logit)[:, None].expand(-1, len(self.pathologies))

    def grad_np(self, x: np.ndarray) -> np.ndarray:
        """df/dx in float64, by hand."""
        xs = x / 1024.0
        s = float((xs * self.u).sum())
        f = 1.0 / (1.0 + np.exp(-((xs * self.w).sum() + 0.5 * self.a * s**2 + self.b)))
        return f * (1 - f) * (self.w + self.a * s * self.u) / 1024.0


def tiny_case(seed: int = 1):
    from cfviewer.models import Bundle

    clf = TinyQuadratic()
    g = np.random.default_rng(seed)
    x_s = g.uniform(-600, 600, (TINY, TINY))
    # the adversary flips the sign of u.x, so df/dx changes sign along the path
    x_a = x_s - 2.2 * (x_s * clf.u).sum() * clf.u / (clf.u**2).sum() + g.normal(0, 40, x_s.shape)
    x_a = np.clip(x_a, -1024, 1024)
    return Bundle(clf, None, resolution=TINY, device="cpu"), clf, x_s.astype(np.float32), x_a.astype(np.float32)


def eq6_sums(clf, x_s, x_a, m=50):
    """1/M sum df/dx(gamma_m) and 1/M sum |df/dx(gamma_m)|, gamma_m = x_s + (m - 1/2)/M (x_a - x_s)."""
    xs, xa = x_s.astype(np.float64), x_a.astype(np.float64)
    grads = [clf.grad_np(xs + (k - 0.5) / m * (xa - xs)) for k in range(1, m + 1)]
    return np.mean(grads, 0), np.mean(np.abs(grads), 0)


def test_v1_and_v2_are_eqs_4_and_6_on_a_tiny_model():
    b, clf, x_s, x_a = tiny_case()
    G, G_abs = eq6_sums(clf, x_s, x_a)
    d2 = (x_a.astype(np.float64) - x_s) ** 2
    # the gradient changes sign along the path, so |mean| and mean |.| differ: v1 != v2
    assert (np.abs(G) < 0.9 * G_abs).mean() > 0.5
    v1 = get_explainer("adversarial_fi-v1", b).explain(x_s, "Mass", x_s=x_s, x_a=x_a)
    v2 = get_explainer("adversarial_fi-v2", b).explain(x_s, "Mass", x_s=x_s, x_a=x_a)
    np.testing.assert_allclose(v1.map, d2 * np.abs(G), rtol=2e-4, atol=1e-9 * (d2 * G_abs).max())
    np.testing.assert_allclose(v2.map, d2 * G_abs, rtol=2e-4, atol=1e-9 * (d2 * G_abs).max())
    # not the right Riemann sum (alpha = m / M) and not |(x_a - x_s) G|
    right = np.mean([np.abs(clf.grad_np(x_s + k / 50 * (x_a.astype(np.float64) - x_s))) for k in range(1, 51)], 0)
    assert np.abs(v2.map - d2 * right).max() > 1e-3 * (d2 * G_abs).max()
    ig = np.abs((x_a - x_s) * G)
    assert np.abs(v1.map - ig).max() > 0.1 * ig.max()


def paper_kernel_smooth(m: np.ndarray, side: int, sigma: float) -> np.ndarray:
    """The explicit normalised 2D Gaussian of the given odd side, reflected border."""
    r = side // 2
    ax = np.arange(-r, r + 1)
    w1 = np.exp(-(ax**2) / (2 * sigma**2))
    w1 /= w1.sum()
    padded = np.pad(m.astype(np.float64), r, mode="symmetric")
    h, w = m.shape
    out = np.zeros((h, w))
    for i, wi in enumerate(w1):
        for j, wj in enumerate(w1):
            out += wi * wj * padded[i : i + h, j : j + w]
    return out


def test_v2_k_sigma_is_eq_5_with_the_papers_kernel():
    """Section 4.2: Gaussian filtering of kernel 28 x 28, sigma = 2 at 224 px; scaled with R."""
    assert smoothing_geometry(224, 28, 2.0) == (29, 2.0)  # 28 centred on the pixel: radius 14
    assert smoothing_geometry(112, 28, 2.0) == (15, 1.0)
    k128, s128 = smoothing_geometry(128, 28, 2.0)
    assert k128 == 17 and s128 == pytest.approx(2.0 * 128 / 224)
    from cfviewer.explain.adversarial import AdversarialExplainer

    assert AdversarialExplainer.defaults["smooth_kernel"] == 28
    assert AdversarialExplainer.defaults["smooth_sigma"] == 2.0
    # at 224 px an impulse spreads as the sigma = 2 Gaussian; the 28-wide support keeps all of it
    imp = np.zeros((224, 224), np.float32)
    imp[112, 112] = 1.0
    sm = gaussian_smooth(imp, 29, 2.0)
    yy, xx = np.mgrid[:224, :224]
    g = np.exp(-((yy - 112) ** 2 + (xx - 112) ** 2) / (2 * 2.0**2))
    np.testing.assert_allclose(sm, g / g.sum(), atol=1e-7)
    # eq. 5 = k_sigma * (eq. 4 v2 map), the smoothing of the explainer output at R = 16
    b, clf, x_s, x_a = tiny_case(2)
    _, G_abs = eq6_sums(clf, x_s, x_a)
    v2 = (x_a.astype(np.float64) - x_s) ** 2 * G_abs
    e = get_explainer("adversarial_fi", b).explain(x_s, "Mass", x_s=x_s, x_a=x_a)
    k, s = smoothing_geometry(TINY, 28, 2.0)
    assert (e.params["smooth_kernel_effective"], e.params["smooth_sigma_effective"]) == (k, s) == (3, 2.0 * TINY / 224)
    np.testing.assert_allclose(e.map, paper_kernel_smooth(v2, k, s), rtol=2e-4, atol=1e-9 * v2.max())


def test_v2_smooth_is_the_gaussian_smoothed_v2(rb):
    x, x_s, x_a = pair(1)
    v2 = get_explainer("adversarial_fi", rb, variant="v2").explain(x, "Effusion", x_s=x_s, x_a=x_a)
    sm = get_explainer("adversarial_fi", rb).explain(x, "Effusion", x_s=x_s, x_a=x_a)
    assert sm.params["variant"] == "v2_smooth"
    k, sigma = smoothing_geometry(RES, 28, 2.0)
    assert k == 9 and sigma == pytest.approx(2.0 * RES / 224)
    assert sm.params["smooth_kernel_effective"] == k
    expected = paper_kernel_smooth(v2.map, k, sigma)
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
