"""Registry + protocol for every explainer, and the captum baselines against captum itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

from cfviewer.errors import BundleError, CfviewerError, UnknownExplainerError
from cfviewer.explain import Explanation, ExplainerParameterError, get_explainer, list_explainers
from cfviewer.models import random_bundle

RES = 64


@pytest.fixture(scope="module")
def rb():
    return random_bundle(resolution=RES, seed=1)


@pytest.fixture(scope="module")
def rb_sagen():
    """The same kind of bundle with (untrained, random) SAGen generators attached, for the
    explainers that need them (``sagen``, ``sagen-single``)."""
    from cfviewer.models.sagen import random_sagen

    b = random_bundle(resolution=RES, seed=1)
    random_sagen(b, seed=0)
    return b


@pytest.fixture(scope="module")
def rb_inpainting():
    """The same kind of bundle with a random inpainter and mask network attached, for
    ``inpainting`` and ``inpainting-iterative``."""
    from cfviewer.models.inpainter import attach_inpainter, random_inpainter
    from cfviewer.models.masknet import random_masknet

    b = random_bundle(resolution=RES, seed=1)
    attach_inpainter(b, random_inpainter(RES, seed=0))
    random_masknet(b, seed=0)
    return b


def smooth_image(seed: int, size: int = 80) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    img = np.zeros((size, size), np.float32)
    for _ in range(5):
        cy, cx, s, a = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.3), rng.uniform(-800, 800)
        img += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return np.clip(img, -1024, 1024).astype(np.float32)


def test_registry_lists_the_required_names():
    names = set(list_explainers())
    required = {
        "gradient", "guided_backprop", "integrated_gradients", "gradcam", "latentshift",
        "latentshift-max", "latentshift-mean", "latentshift-minmax", "latentshift-int",
        "adversarial_fi", "adversarial_diff", "adversarial_diff_x", "augmented", "sagen", "sagen-single",
        "inpainting", "inpainting-iterative",
    }
    assert required <= names


FAST = {"integrated_gradients": {"n_steps": 8}, "augmented": {"n": 2}, "sagen": {"n_augment": 2},
        "inpainting-iterative": {"max_steps": 10}}


@pytest.mark.parametrize("name", list_explainers())
def test_every_explainer_returns_a_finite_map_of_the_bundle_resolution(rb, rb_sagen, rb_inpainting, name):
    if name.startswith("attrinet"):  # Attri-Net's own maps: an Attri-Net bundle (tests/test_attrinet.py)
        from cfviewer.models.attrinet import random_attrinet_bundle

        bundle = random_attrinet_bundle(resolution=RES, seed=0)
    else:
        bundle = rb_sagen if name.startswith("sagen") else (rb_inpainting if name.startswith("inpainting") else rb)
    e = get_explainer(name, bundle, **FAST.get(name, {})).explain(smooth_image(0), "Cardiomegaly")
    assert isinstance(e, Explanation)
    assert e.map.shape == (RES, RES) and e.map.dtype == np.float32
    assert np.isfinite(e.map).all() and (e.map.min() >= 0.0 or name == "attrinet-signed")
    # Grad-CAM's ReLU may legitimately zero a random model's map; the iterative inpainting search
    # has nothing to remove where the classifier already calls the image negative (empty mask)
    if name != "gradcam" and not (name == "inpainting-iterative" and e.pred_original < rb_inpainting.thresholds["Cardiomegaly"]):
        assert e.map.max() > 0.0
    assert e.image.shape == (RES, RES) and e.target == "Cardiomegaly"
    assert 0.0 <= e.pred_original <= 1.0
    assert e.timings["total"] > 0 and e.evaluations["classifier"] >= 1
    json.dumps(e.summary())  # JSON-serialisable
    if e.frames is not None:
        assert e.frames.shape[1:] == (RES, RES) and len(e.lambdas) == len(e.frames) == len(e.frame_preds)


def _x(rb, img):
    return rb.preprocess(img).detach().clone().requires_grad_(True)


def test_gradient_equals_captum_saliency(rb):
    img = smooth_image(1)
    t = rb.target_index("Mass")
    ref = Saliency(rb.classifier).attribute(_x(rb, img), target=t, abs=True)[0, 0].detach().numpy()
    e = get_explainer("gradient", rb).explain(img, "Mass")
    np.testing.assert_allclose(e.map, ref, rtol=1e-5, atol=1e-12)


def test_guided_backprop_equals_captum(rb):
    img = smooth_image(2)
    t = rb.target_index("Effusion")
    ref = GuidedBackprop(rb.classifier).attribute(_x(rb, img), target=t)[0, 0].detach().numpy()
    e = get_explainer("guided_backprop", rb).explain(img, "Effusion")
    np.testing.assert_allclose(e.map, np.abs(ref), rtol=1e-5, atol=1e-12)
    signed = get_explainer("guided_backprop", rb, abs=False).explain(img, "Effusion")
    np.testing.assert_allclose(signed.map, ref, rtol=1e-5, atol=1e-12)


def test_integrated_gradients_equals_captum_with_zero_baseline(rb):
    img = smooth_image(3)
    t = rb.target_index("Pneumothorax")
    x = _x(rb, img)
    ref = IntegratedGradients(rb.classifier).attribute(
        x, baselines=torch.zeros_like(x), target=t, n_steps=20
    )[0, 0].detach().numpy()
    e = get_explainer("integrated_gradients", rb, n_steps=20).explain(img, "Pneumothorax")
    np.testing.assert_allclose(e.map, np.abs(ref), rtol=1e-4, atol=1e-9)
    black = IntegratedGradients(rb.classifier).attribute(
        x, baselines=torch.full_like(x, -1024.0), target=t, n_steps=20
    )[0, 0].detach().numpy()
    e2 = get_explainer("integrated_gradients", rb, n_steps=20, baseline="min", abs=False).explain(
        img, "Pneumothorax"
    )
    np.testing.assert_allclose(e2.map, black, rtol=1e-4, atol=1e-9)
    assert e2.evaluations["classifier"] == 21 and e2.evaluations["backward"] == 20


def test_gradcam_equals_captum_upsampled(rb):
    img = smooth_image(4)
    t = rb.target_index("Atelectasis")
    x = _x(rb, img)
    cam = LayerGradCam(rb.classifier, rb.classifier.target_layer).attribute(x, target=t, relu_attributions=True)
    ref = LayerAttribution.interpolate(cam, (RES, RES), interpolate_mode="bilinear")[0, 0].detach().numpy()
    e = get_explainer("gradcam", rb).explain(img, "Atelectasis")
    np.testing.assert_allclose(e.map, np.maximum(ref, 0), rtol=1e-5, atol=1e-12)
    assert cam.shape[-1] < RES  # really a coarse map upsampled


@pytest.mark.parametrize("name", ["gradient", "guided_backprop", "integrated_gradients", "gradcam"])
def test_batch_equals_single(rb, name):
    imgs = [smooth_image(5), smooth_image(6), smooth_image(7)]
    targets = ["Mass", "Cardiomegaly", "Mass"]
    ex = get_explainer(name, rb, **FAST.get(name, {}))
    batch = ex.explain_batch(imgs, targets)
    for img, t, eb in zip(imgs, targets, batch):
        es = ex.explain(img, t)
        np.testing.assert_allclose(eb.map, es.map, rtol=1e-4, atol=1e-10)
        assert eb.target == t and eb.pred_original == pytest.approx(es.pred_original, abs=1e-6)


def test_explain_batch_accepts_one_target_for_all(rb):
    out = get_explainer("gradient", rb).explain_batch(np.stack([smooth_image(1), smooth_image(2)]), "Mass")
    assert [e.target for e in out] == ["Mass", "Mass"]
    with pytest.raises(ExplainerParameterError, match="2 images but 3 targets"):
        get_explainer("gradient", rb).explain_batch([smooth_image(1), smooth_image(2)], ["Mass"] * 3)


def test_errors(rb):
    with pytest.raises(UnknownExplainerError) as info:
        get_explainer("grad-cam", rb)
    assert "gradcam" in str(info.value) and isinstance(info.value, CfviewerError)
    with pytest.raises(ExplainerParameterError, match="n_steps"):
        get_explainer("integrated_gradients", rb, n_step=3)
    with pytest.raises(ExplainerParameterError, match="baseline"):
        get_explainer("integrated_gradients", rb, baseline="noise")
    with pytest.raises(ExplainerParameterError, match="n_steps='many'"):
        get_explainer("integrated_gradients", rb, n_steps="many")
    no_ae = random_bundle(resolution=RES, seed=0, autoencoder=False)
    for name in ("latentshift", "latentshift-max"):
        with pytest.raises(BundleError, match="autoencoder"):
            get_explainer(name, no_ae)
    with pytest.raises(BundleError, match="autoencoder"):
        get_explainer("adversarial_fi", no_ae).explain(smooth_image(0), "Mass")
    # baselines work without an autoencoder
    assert get_explainer("gradient", no_ae).explain(smooth_image(0), "Mass").map.shape == (RES, RES)
