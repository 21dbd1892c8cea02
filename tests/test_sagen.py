"""SAGen (Charachon et al. 2020): the loss terms of eq. 6-9, the piecewise-linear threshold map,
training / resume / budget, the files beside the bundle, the explainers (eq. 3, eq. 11) and
adversarial_fi's SAGen pair."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cfviewer.errors import CfviewerError
from cfviewer.explain import ExplainerParameterError, get_explainer
from cfviewer.explain.augment import random_affines, realign, warp
from cfviewer.models import random_bundle
from cfviewer.models.bundle import Bundle
from cfviewer.models.data import phantom_data
from cfviewer.models.sagen import (
    SAGEN_JSON,
    SAGEN_PT,
    SAGen,
    SAGenConfig,
    SAGenError,
    SAGenMissingError,
    SAGenStaleError,
    SAGenStopped,
    classification_loss,
    classifier_identity,
    detach_sagen,
    evaluate_sagen,
    get_preset,
    load_sagen,
    random_sagen,
    sagen_loss,
    similarity_loss,
    threshold_log_map,
    threshold_map,
    total_variation,
    train_sagen,
    weight_distance,
)

RES = 32
NAMES = ["Atelectasis", "Cardiomegaly", "Effusion", "Lung Opacity", "Mass", "Pneumothorax"]
TINY = dict(widths=[8, 16], batch_size=8, n_val=0, lr=3e-3, lr_patience=1000)


class Patch(nn.Module):
    """logit_k = 200 (mean of (x + 1024) / 2048 over a band k - offset): output k is read off
    one known band, so a generator can change it; saturated (p = 1.000) when the offset is low."""

    def __init__(self, offset: float = 0.6):
        super().__init__()
        self.pathologies = list(NAMES)
        m = torch.zeros(len(NAMES), RES, RES)
        for k in range(len(NAMES)):
            m[k, 4 + 4 * k:12 + 4 * k, 8:24] = 1
        self.register_buffer("masks", m / m.sum((1, 2), keepdim=True))
        self.register_buffer("offset", torch.full((len(NAMES),), float(offset)))

    def logits(self, x):
        return 200.0 * (torch.einsum("nhw,khw->nk", (x[:, 0] + 1024) / 2048, self.masks) - self.offset)

    def forward(self, x):
        return torch.sigmoid(self.logits(x))


@pytest.fixture(scope="module")
def data():
    return phantom_data(16, 11, RES, progress=False)


@pytest.fixture(scope="module")
def rb():
    b = random_bundle(resolution=RES, seed=1)
    random_sagen(b, seed=0)
    return b


def image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:RES, :RES] / RES
    img = 700 * np.exp(-((yy - 0.45) ** 2 + (xx - 0.55) ** 2) / 0.03) - 300
    return (img + rng.normal(0, 30, img.shape)).astype(np.float32)


# ---------------------------------------------------------------- eq. 6-9 on hand-made tensors
def test_threshold_map_sends_the_threshold_to_one_half():
    p = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.9, 1.0], dtype=torch.float64)
    q = threshold_map(p, 0.3)
    np.testing.assert_allclose(q.numpy(), [0.0, 0.1 / 0.6, 0.5, 0.5 + 0.2 / 1.4, 0.5 + 0.6 / 1.4, 1.0], rtol=1e-12)
    assert float(threshold_map(torch.tensor(0.7), 0.7)) == pytest.approx(0.5)
    # the log form (from logits) is the same map, and finite where the probability saturates
    z = torch.linspace(-8, 8, 33, dtype=torch.float64)
    for t in (0.2, 0.5, 0.8):
        lq, l1q = threshold_log_map(z, t)
        q = threshold_map(torch.sigmoid(z), t)
        np.testing.assert_allclose(lq.exp().numpy(), q.numpy(), rtol=1e-9)
        np.testing.assert_allclose(l1q.exp().numpy(), (1 - q).numpy(), rtol=1e-9, atol=1e-15)
    z = torch.tensor([40.0, -40.0], requires_grad=True)  # sigmoid = 1.0 / 0.0 in float32
    lq, l1q = threshold_log_map(z, 0.3)
    (l1q[0] + lq[1]).backward()
    assert torch.isfinite(z.grad).all() and (z.grad.abs() > 0.5).all()


def test_similarity_loss_is_eq_6():
    g = torch.Generator().manual_seed(0)
    x, gs, ga = (torch.rand(3, 1, 8, 8, generator=g) for _ in range(3))
    a = (3.0, 1.0, 0.5, 0.2)
    want = (a[0] * ((x - gs) ** 2).mean((1, 2, 3)) + a[1] * ((x - ga) ** 2).mean((1, 2, 3))
            + a[2] * ((gs - ga) ** 2).mean((1, 2, 3)) + a[3] * (gs - ga).abs().mean((1, 2, 3)))
    torch.testing.assert_close(similarity_loss(x, gs, ga, a), want)
    assert float(similarity_loss(x, x, x, a).abs().max()) == 0.0


def test_classification_loss_is_eq_7_with_the_threshold_map():
    zx, zs, za = torch.tensor([2.0, -1.0]), torch.tensor([1.5, -0.5]), torch.tensor([-2.0, 0.3])
    t = torch.tensor([0.3, 0.6])
    qx = threshold_map(torch.sigmoid(zx), t)
    want = (0.001 * F.binary_cross_entropy(threshold_map(torch.sigmoid(zs), t), qx, reduction="none")
            + 0.002 * F.binary_cross_entropy(threshold_map(torch.sigmoid(za), t), 1 - qx, reduction="none"))
    torch.testing.assert_close(classification_loss(zx, zs, za, t, (0.001, 0.002)), want)


def test_weight_distance_is_eq_8_and_zero_for_identical_heads():
    gen = SAGen(NAMES, widths=[8, 16], head_layers=2)
    assert all(float(gen.head_distance(k).detach()) == 0.0 for k in range(len(NAMES)))  # a-head = copy of s-head
    with torch.no_grad():
        gen.adversarial[2][0].weight[0, 0, 0, 0] += 3.0
        gen.adversarial[2][-1].bias[0] -= 4.0
    assert float(gen.head_distance(2).detach()) == pytest.approx(25.0)  # squared L2 over the pair: 9 + 16
    assert float(gen.head_distance(1).detach()) == 0.0
    a, b = torch.zeros(2, 2), torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    assert float(weight_distance([(a, b)])) == pytest.approx(25.0)


def test_total_variation_is_eq_9():
    d = torch.zeros(1, 1, 9, 9)
    assert float(total_variation(d)) == pytest.approx(0.0, abs=1e-5)
    d[..., 4:] = 0.5  # a vertical step: |grad| = 0.5 on one of the 8 columns of differences
    assert float(total_variation(d)) == pytest.approx(0.25 / 8, rel=1e-4)   # squared: 0.5^2
    d = torch.zeros(1, 1, 9, 9)
    d[..., 4:, 4:] = 1.0  # the corner pixel has both differences
    dx = d[..., :-1, 1:] - d[..., :-1, :-1]
    dy = d[..., 1:, :-1] - d[..., :-1, :-1]
    expected = float((dx ** 2 + dy ** 2).mean())
    assert float(total_variation(d)) == pytest.approx(expected, rel=1e-4)


def test_batch_loss_is_the_mean_of_the_terms_with_the_preset_weights(data):
    b = Bundle(Patch(0.7), None, resolution=RES, device="cpu")
    gen = random_sagen(b, seed=3, widths=[8, 16])
    x = data.images[:6].float()[:, None]
    k = torch.tensor([0, 1, 1, 4, 5, 5])
    pre = get_preset("Single AE1 (W,TV)")
    thr = torch.as_tensor(b.threshold_array())
    total, terms = sagen_loss(gen, b.classifier, x, k, thr, pre)
    assert float(total) == pytest.approx(float((terms["L_d"] + terms["L_fc"] + terms["L_reg"] + terms["L_sa"]).mean()))
    torch.testing.assert_close(terms["L_sa"], 0.1 * torch.stack([gen.head_distance(int(i)) for i in k]))
    gs, ga = gen.forward01((x + 1024) / 2048, k)
    torch.testing.assert_close(terms["L_reg"], 0.2 * total_variation(gs - ga))
    torch.testing.assert_close(terms["L_d"], similarity_loss((x + 1024) / 2048, gs, ga, (1, 1, 1, 0.2)))
    # beta overrides b1 = b2
    _, t2 = sagen_loss(gen, b.classifier, x, k, thr, pre, beta=0.01)
    torch.testing.assert_close(t2["L_fc"], 10 * terms["L_fc"])


def test_presets_are_table_I():
    p = get_preset("Single AE1 (W,TV)")
    assert (p.head_layers, p.alpha, p.beta, p.gamma, p.lam) == (1, (1, 1, 1, 0.2), (0.001, 0.001), 0.1, 0.2)
    assert get_preset("ae1-w-tv") == p and get_preset("single ae1 (w, tv)") == p
    assert get_preset("ae2-w").alpha == (3, 1, 1, 0.2) and get_preset("ae2-w").lam == 0.0
    assert get_preset("Single AE2 (W,TV)").gamma == 0.2
    assert get_preset("ae1-tv").gamma == 0.0 and get_preset("ae1-tv").alpha[3] == 0.0
    with pytest.raises(SAGenError, match="not implemented: use a Single AE preset"):
        get_preset("Duo AE (W,TV)")
    with pytest.raises(SAGenError, match="unknown SAGen preset"):
        get_preset("ae3")


def test_a_fresh_generator_returns_the_input(data):
    gen = SAGen(NAMES, widths=[8, 16], head_layers=2)
    x = data.images[:3].float()[:, None]
    gs, ga = gen(x, [0, 3, 5])
    torch.testing.assert_close(gs, x, atol=1e-3, rtol=0)
    torch.testing.assert_close(ga, x, atol=1e-3, rtol=0)


# ---------------------------------------------------------------- training
def test_a_few_training_steps_lower_the_loss(data, tmp_path):
    # every band bright: every output saturated positive, so every adversarial head has the same job
    b = Bundle(Patch(0.6), None, resolution=RES, device="cpu")
    x = data.images[:8].float()[:, None]
    thr = torch.as_tensor(b.threshold_array())
    pre = get_preset("Single AE1 (W,TV)")

    def loss(gen):
        return np.mean([float(sagen_loss(gen, b.classifier, x, torch.full((8,), k), thr, pre)[0].detach())
                        for k in range(len(NAMES))])

    before = loss(SAGen(NAMES, widths=[8, 16]))  # any fresh AE1 generator: g_s = g_a = x
    cfg = SAGenConfig(**{**TINY, "n_train": 8, "epochs": 10, "augment": False})
    res = train_sagen(b, cfg, data=phantom_data(8, 11, RES, progress=False), work_dir=tmp_path, save=False,
                      progress=False, log=lambda s: None)
    after = loss(res.generator)
    assert after < 0.95 * before, (before, after)
    hist = res.doc["training"]["history"]
    assert len(hist) == 10 and all(np.isfinite(h["loss"]) for h in hist)
    assert res.doc["training"]["steps"] == 10 and load_sagen(b) is res.generator


def test_resume_after_interruption_gives_the_same_weights(data, tmp_path):
    b = random_bundle(resolution=RES, seed=2)
    cfg = SAGenConfig(**{**TINY, "n_train": 16, "epochs": 2})
    kw = dict(data=data, save=False, progress=False, log=lambda s: None)
    full = train_sagen(b, cfg, work_dir=tmp_path / "full", **kw)
    with pytest.raises(SAGenStopped):  # in the middle of the 2nd epoch (2 steps per epoch)
        train_sagen(b, cfg, work_dir=tmp_path / "cut", stop_after_steps=3, **kw)
    with pytest.raises(SAGenError, match="another SAGen configuration"):
        train_sagen(b, SAGenConfig(**{**TINY, "n_train": 16, "epochs": 2, "lr": 1e-3}),
                    work_dir=tmp_path / "cut", resume=True, **kw)
    resumed = train_sagen(b, cfg, work_dir=tmp_path / "cut", resume=True, **kw)
    a, c = full.generator.state_dict(), resumed.generator.state_dict()
    assert a.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], c[key]), key
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(full.doc["training"]["history"]) == strip(resumed.doc["training"]["history"])


def test_max_minutes_stops_cleanly_and_resume_finishes(data, tmp_path):
    rb_ = random_bundle(resolution=RES, seed=2)
    d = rb_.save(tmp_path / "bundle")
    b = Bundle.load(d, device="cpu")
    cfg = SAGenConfig(**{**TINY, "n_train": 16, "epochs": 2, "max_minutes": 1e-9})
    res = train_sagen(b, cfg, data=data, work_dir=tmp_path / "w", progress=False, log=lambda s: None)
    tr = res.doc["training"]
    assert tr["stopped"] == "max_minutes" and tr["steps"] == 0
    assert (d / SAGEN_PT).is_file() and json.loads((d / SAGEN_JSON).read_text())["training"]["stopped"] == "max_minutes"
    cfg.max_minutes = None
    res = train_sagen(b, cfg, data=data, work_dir=tmp_path / "w", resume=True, progress=False, log=lambda s: None)
    assert res.doc["training"]["stopped"] is None and res.doc["training"]["steps"] == 4


# ---------------------------------------------------------------- files
@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("sagen")
    d = random_bundle(resolution=RES, seed=2).save(root / "bundle")
    b = Bundle.load(d, device="cpu")
    cfg = SAGenConfig(**{**TINY, "n_train": 16, "epochs": 1, "n_val": 4})
    res = train_sagen(b, cfg, data=data, work_dir=root / "work", progress=False, log=lambda s: None)
    return d, res


def test_save_load_round_trip(trained_dir, data):
    d, res = trained_dir
    assert (d / SAGEN_PT).stat().st_size < 3_000_000
    doc = json.loads((d / SAGEN_JSON).read_text())
    assert doc["preset"]["name"] == "Single AE1 (W,TV)" and doc["preset"]["beta_used"] == [0.001, 0.001]
    assert doc["classifier"]["bundle"] == "bundle" and doc["classifier"]["identity"].startswith("clf-")
    assert doc["training"]["steps"] == 2 and doc["training"]["history"][0]["epoch"] == 1
    v = doc["validation"]
    assert v["n_images"] == 4 and "adversarial_success" in v and "median_abs_similar_change" in v
    loaded = Bundle.load(d, device="cpu")
    gen = load_sagen(loaded)
    assert gen is load_sagen(loaded)  # cached on the bundle
    x = data.images[:4].float()[:, None]
    for k in (0, 5):
        for u, w in zip(gen(x, k), res.generator(x, k)):
            torch.testing.assert_close(u, w, rtol=0, atol=0)
    q = evaluate_sagen(loaded, n=4, seed=0)
    assert q["median_abs_similar_change"] == pytest.approx(v["median_abs_similar_change"], abs=1e-6)


def test_generators_of_another_classifier_are_refused(trained_dir, tmp_path):
    d, _ = trained_dir
    other = random_bundle(resolution=RES, seed=5).save(tmp_path / "other")
    for f in (SAGEN_PT, SAGEN_JSON):
        shutil.copy(d / f, other / f)
    with pytest.raises(SAGenStaleError, match=f"cfviewer train-explainer sagen --bundle {other}"):
        load_sagen(Bundle.load(other, device="cpu"))
    b = Bundle.load(d, device="cpu")  # other thresholds: also stale
    b.thresholds["Mass"] = 0.9
    with pytest.raises(SAGenStaleError, match="another classifier or other"):
        get_explainer("sagen", b)
    # adversarial_fi's 'auto' passes stale generators over (with a warning); 'sagen' refuses them
    e = get_explainer("adversarial_diff", b).explain(image(0), "Mass")
    assert e.params["pair"] == "latentshift" and "unusable" in e.params["warnings"][0]
    with pytest.raises(SAGenStaleError):
        get_explainer("adversarial_diff", b, pair="sagen")


def test_missing_generators_error_names_the_fix(tmp_path):
    d = random_bundle(resolution=RES, seed=2).save(tmp_path / "nogen")
    b = Bundle.load(d, device="cpu")
    for name in ("sagen", "sagen-single"):
        with pytest.raises(SAGenMissingError) as info:
            get_explainer(name, b)
        assert f"cfviewer train-explainer sagen --bundle {d}" in str(info.value) and str(d) in str(info.value)
        assert isinstance(info.value, CfviewerError)
    with pytest.raises(SAGenMissingError, match="train-explainer sagen"):
        get_explainer("adversarial_fi", b, pair="sagen")
    with pytest.raises(SAGenMissingError, match="in memory"):
        get_explainer("sagen", random_bundle(resolution=RES, seed=2))


# ---------------------------------------------------------------- explainers
def test_sagen_single_is_eq_3_with_the_path_frames(rb):
    img = image(1)
    e = get_explainer("sagen-single", rb, n_frames=7).explain(img, "Mass")
    x = rb.model_input(img)
    gs, ga = load_sagen(rb)(x, rb.target_index("Mass"))
    gs, ga = gs[0, 0].numpy(), ga[0, 0].numpy()
    np.testing.assert_allclose(e.map, np.abs(gs - ga), rtol=1e-5, atol=1e-4)
    assert e.map.shape == (RES, RES) and e.frames.shape == (7, RES, RES)
    np.testing.assert_allclose(e.lambdas, np.linspace(-1, 0, 7))
    np.testing.assert_allclose(e.counterfactual, ga, atol=1e-3)
    np.testing.assert_array_equal(e.frames[0], e.counterfactual)
    np.testing.assert_allclose(e.frames[-1], gs, atol=1e-3)
    np.testing.assert_allclose(e.frames[3], (gs + ga) / 2, atol=1e-3)
    t = rb.target_index("Mass")
    preds = rb.classifier(torch.as_tensor(e.frames)[:, None])[:, t].detach().numpy()
    np.testing.assert_allclose(e.frame_preds, preds, rtol=1e-5, atol=1e-6)
    assert e.pred_reconstruction == pytest.approx(e.frame_preds[-1])
    assert e.start_kind == "similar" and e.summary()["start_frame"] == "similar"  # named g_s(x), not "reconstruction"
    assert e.params["pred_x_a"] == pytest.approx(e.frame_preds[0])
    assert e.summary()["pred_counterfactual"] == pytest.approx(e.frame_preds[0])
    assert e.evaluations["generator"] == 1 and e.params["n_augment"] == 0
    json.dumps(e.summary())
    from cfviewer.metrics.counterfactual import score_explanation

    mask = np.zeros((RES, RES), bool)
    mask[8:20, 8:20] = True
    s = score_explanation(e, mask)  # scores frames[0] (g_a) against the lambda = 0 frame (g_s)
    assert s is not None and s.drop == pytest.approx(e.frame_preds[-1] - e.frame_preds[0], abs=1e-6)


def test_augmented_map_is_eq_11_differs_from_single_and_is_finite(rb):
    img = image(2)
    single = get_explainer("sagen-single", rb).explain(img, "Effusion")
    ex = get_explainer("sagen", rb, n_augment=4, seed=3)
    aug = ex.explain(img, "Effusion")
    assert aug.map.shape == (RES, RES) and np.isfinite(aug.map).all() and aug.map.min() >= 0
    assert not np.allclose(aug.map, single.map)
    np.testing.assert_array_equal(aug.counterfactual, single.counterfactual)  # of the untransformed image
    np.testing.assert_array_equal(aug.frame_preds, single.frame_preds)
    assert aug.evaluations["generator"] == 5
    # eq. 11 by hand, with augment.py's transforms and inverse
    thetas = ex.transforms()
    x = rb.model_input(img)
    t = rb.target_index("Effusion")
    gen = load_sagen(rb)
    gs, ga = gen(warp(x.expand(4, -1, -1, -1), thetas, padding_mode="border"), t)
    back, cover = realign((gs - ga).abs(), thetas)
    want = (torch.as_tensor(single.map) + back.sum(0)[0]) / (1 + cover.sum(0)[0])
    np.testing.assert_allclose(aug.map, want.numpy(), rtol=1e-4, atol=1e-4)
    # Table II defaults: 10 transforms with horizontal and vertical flips
    assert get_explainer("sagen", rb).params["n_augment"] == 10
    dets = np.linalg.det(get_explainer("sagen", rb, n_augment=40).transforms().numpy()[:, :, :2])
    assert (dets < 0).any() and (dets > 0).any()


def test_vertical_flip_transforms_realign():
    th = random_affines(60, seed=1, resolution=RES, vflip=True)
    assert (np.linalg.det(th.numpy()[:, :, :2]) < 0).any()
    np.testing.assert_array_equal(random_affines(8, 2, RES).numpy(), random_affines(8, 2, RES, vflip=False).numpy())
    vf = torch.tensor([[[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]])  # a pure vertical flip
    m = torch.zeros(1, 1, RES, RES)
    m[0, 0, 3:9, 10:20] = 1.0
    moved = warp(m, vf)
    torch.testing.assert_close(moved[0, 0], m[0, 0].flip(0))
    back, cover = realign(moved, vf)
    torch.testing.assert_close(back, m, atol=1e-5, rtol=0)


def test_explain_batch_equals_single(rb):
    imgs = [image(3), image(4), image(5)]
    targets = ["Mass", "Cardiomegaly", "Mass"]
    ex = get_explainer("sagen", rb, n_augment=3, max_batch=4)  # passes shared across images
    batch = ex.explain_batch(imgs, targets)
    for img, t, eb in zip(imgs, targets, batch):
        es = ex.explain(img, t)
        assert eb.target == t
        np.testing.assert_allclose(eb.map, es.map, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(eb.frame_preds, es.frame_preds, rtol=1e-5, atol=1e-6)
    with pytest.raises(ExplainerParameterError, match="n_frames"):
        get_explainer("sagen", rb, n_frames=1)


# ---------------------------------------------------------------- adversarial_fi's pair
def test_adversarial_fi_pair_sagen_uses_g_s_and_g_a(rb):
    img = image(6)
    x = rb.model_input(img)
    t = rb.target_index("Mass")
    gs, ga = (v[0, 0].numpy() for v in load_sagen(rb)(x, t))
    for pair in ("sagen", "auto"):
        e = get_explainer("adversarial_fi-v2", rb, pair=pair).explain(img, "Mass")
        assert e.params["pair"] == "sagen" and e.params["pair_requested"] == pair
        np.testing.assert_allclose(e.counterfactual, ga, atol=1e-3)
        with torch.no_grad():
            p_s = float(rb.classifier(torch.as_tensor(gs)[None, None])[0, t])
        assert e.params["pred_x_s"] == pytest.approx(p_s, abs=1e-5)
        assert "search" not in e.params and e.params["generator"]["classifier_identity"].startswith("clf-")
        given = get_explainer("adversarial_fi-v2", rb).explain(img, "Mass", x_s=gs, x_a=ga)
        np.testing.assert_allclose(e.map, given.map, rtol=1e-3, atol=1e-9)
        assert e.frames is not None and e.frames.shape[0] == 10 and e.timings["total"] >= e.timings["sagen_generate"]
        assert e.start_kind == "similar"  # its frames are the g_s -> g_a path
    d = get_explainer("adversarial_diff", rb, pair="sagen").explain(img, "Mass")
    np.testing.assert_allclose(d.map, np.abs(gs - ga), rtol=1e-5, atol=1e-3)
    ls = get_explainer("adversarial_diff", rb, pair="latentshift").explain(img, "Mass")
    assert ls.params["pair"] == "latentshift" and "search" in ls.params and ls.start_kind == "reconstruction"
    # a bundle without generators: 'auto' is Latent Shift's pair
    plain = random_bundle(resolution=RES, seed=1)
    assert get_explainer("adversarial_diff", plain).explain(img, "Mass").params["pair"] == "latentshift"


def test_detach_forgets_attached_generators():
    b = random_bundle(resolution=RES, seed=1)
    random_sagen(b)
    assert get_explainer("sagen-single", b).generator is load_sagen(b)
    detach_sagen(b)
    with pytest.raises(SAGenMissingError):
        load_sagen(b)


# ---------------------------------------------------------------- CLI
def test_cli_end_to_end_on_a_tiny_bundle(tmp_path, capsys):
    from cfviewer.cli import main

    d = random_bundle(resolution=RES, seed=2).save(tmp_path / "b")
    args = ["train-explainer", "sagen", "--bundle", str(d), "--epochs", "1", "--n-train", "8", "--n-val", "4",
            "--batch-size", "4", "--widths", "8,16", "--work-dir", str(tmp_path / "w"), "--device", "cpu",
            "--no-progress", "--preset", "ae2-w-tv"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "adversarial success" in out and "median |f(g_s(x)) - f(x)|" in out and "Single AE2 (W,TV)" in out
    doc = json.loads((d / SAGEN_JSON).read_text())
    assert doc["model"]["config"]["head_layers"] == 2 and doc["training"]["steps"] == 2
    e = get_explainer("sagen", Bundle.load(d, device="cpu"), n_augment=1).explain(image(0), "Mass")
    assert e.map.shape == (RES, RES)
    assert main(args + ["--resume"]) == 0  # a finished run: re-evaluated and saved again
    assert main(["train-explainer", "sagen", "--bundle", str(d), "--preset", "Duo AE (TV)"]) == 2
    err = capsys.readouterr().err
    assert "not implemented: use a Single AE preset" in err
    assert main(["train-explainer", "sagen", "--bundle", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_continue_starts_from_the_bundles_generators_and_records_them(tmp_path, capsys):
    from cfviewer.cli import main
    from cfviewer.files import sha256_file

    d = random_bundle(resolution=RES, seed=2).save(tmp_path / "b")
    base = ["train-explainer", "sagen", "--bundle", str(d), "--n-train", "8", "--n-val", "4", "--batch-size", "4",
            "--widths", "8,16", "--work-dir", str(tmp_path / "w"), "--device", "cpu", "--no-progress"]
    assert main(["train-explainer", "sagen", "--bundle", str(d), "--continue", "--device", "cpu"]) == 2
    assert "--continue needs trained generators" in capsys.readouterr().err
    assert main(base + ["--epochs", "1"]) == 0
    first = {k: v.clone() for k, v in torch.load(d / SAGEN_PT, weights_only=True).items()}
    first_sha = sha256_file(d / SAGEN_PT)
    # zero more epochs: the continued run saves exactly the generators it started from
    assert main(base + ["--epochs", "0", "--continue", "--lr", "1e-3"]) == 0
    same = torch.load(d / SAGEN_PT, weights_only=True)
    assert all(torch.equal(first[k], same[k]) for k in first)
    prev = json.loads((d / SAGEN_JSON).read_text())["training"]["continued_from"]
    assert prev["sagen_pt_sha256"] == first_sha and prev["steps"] == 2 and prev["config"]["epochs"] == 1
    # one more epoch from there: other weights, and the chain of runs is kept
    assert main(base + ["--epochs", "1", "--continue", "--lr", "1e-3"]) == 0
    doc = json.loads((d / SAGEN_JSON).read_text())
    assert doc["training"]["steps"] == 2 and doc["training"]["continued_from"]["continued_from"]["steps"] == 2
    after = torch.load(d / SAGEN_PT, weights_only=True)
    assert any(not torch.equal(first[k], after[k]) for k in first)
    assert doc["training"]["continued_from"]["classifier_changed"] is False
    # the classifier is retrained: its stale generators refuse to load, --continue warm-starts from them
    b = Bundle.load(d, device="cpu")
    with torch.no_grad():
        next(b.classifier.parameters()).add_(0.05)
    torch.save(b.classifier.state_dict(), d / "classifier.pt")
    with pytest.raises(SAGenStaleError, match="another classifier"):
        load_sagen(Bundle.load(d, device="cpu"))
    stale = torch.load(d / SAGEN_PT, weights_only=True)
    assert main(base + ["--epochs", "0", "--continue"]) == 0
    warm = json.loads((d / SAGEN_JSON).read_text())
    assert warm["training"]["continued_from"]["classifier_changed"] is True
    assert warm["classifier"]["identity"] == classifier_identity(Bundle.load(d, device="cpu"))
    now = torch.load(d / SAGEN_PT, weights_only=True)
    assert all(torch.equal(stale[k], now[k]) for k in stale)
    load_sagen(Bundle.load(d, device="cpu"))   # no longer stale
    fresh = json.loads((d / SAGEN_JSON).read_text())
    assert main(base + ["--epochs", "1", "--widths", "8,16,32", "--continue"]) == 2
    assert "another architecture" in capsys.readouterr().err
    assert json.loads((d / SAGEN_JSON).read_text()) == fresh  # a refused run changes nothing
    # --continue without --widths / --preset trains the architecture the bundle's generators have
    no_widths = [a for i, a in enumerate(base) if a != "--widths" and base[i - 1] != "--widths"]
    assert main(no_widths + ["--epochs", "0", "--continue"]) == 0
    cont = json.loads((d / SAGEN_JSON).read_text())
    assert cont["model"]["config"]["widths"] == [8, 16]
    assert cont["training"]["config"]["widths"] == [8, 16] and cont["preset"]["name"] == fresh["preset"]["name"]


def test_one_layer_heads_continue_as_two_layer_heads_exactly(tmp_path, capsys):
    """Single AE1 -> Single AE2 (Table I): the deepened generators compute what the old ones
    did (identity first layer on the U-Net's non-negative features), and --continue with a
    Single AE2 preset starts from them."""
    from cfviewer.cli import main
    from cfviewer.models.sagen import SAGen, deepened_heads

    torch.manual_seed(0)
    old = SAGen(["Mass", "Effusion"], widths=(8, 16), head_layers=1)
    with torch.no_grad():  # trained-looking heads: non-zero residuals, the pair apart
        for h in list(old.similar) + list(old.adversarial):
            h[-1].weight.normal_(0, 0.05)
            h[-1].bias.normal_(0, 0.01)
    new = SAGen(["Mass", "Effusion"], widths=(8, 16), head_layers=2)
    assert deepened_heads(old, new)
    x = torch.rand(3, 1, RES, RES) * 2048 - 1024
    for k in (0, 1):
        for a, b in zip(old(x, k), new(x, k)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-3)
        torch.testing.assert_close(old.head_distance(k), new.head_distance(k))
    assert not deepened_heads(new, old)  # only 1 -> 2
    assert not deepened_heads(old, SAGen(["Mass", "Effusion"], widths=(8, 32), head_layers=2))
    # through the CLI: continue a trained AE1 bundle as AE2
    d = random_bundle(resolution=RES, seed=2).save(tmp_path / "b")
    base = ["train-explainer", "sagen", "--bundle", str(d), "--n-train", "8", "--n-val", "4", "--batch-size", "4",
            "--widths", "8,16", "--work-dir", str(tmp_path / "w"), "--device", "cpu", "--no-progress"]
    assert main(base + ["--epochs", "1"]) == 0
    b = Bundle.load(d, device="cpu")
    img = b.model_input(image(3))
    before = [v.clone() for v in load_sagen(b)(img, 0)]
    assert main(base + ["--epochs", "0", "--continue", "--preset", "Single AE2 (W,TV)"]) == 0
    doc = json.loads((d / SAGEN_JSON).read_text())
    assert doc["model"]["config"]["head_layers"] == 2 and doc["preset"]["name"] == "Single AE2 (W,TV)"
    assert doc["training"]["continued_from"]["deepened_heads"].startswith("1 -> 2")
    after = load_sagen(Bundle.load(d, device="cpu"))(img, 0)
    for a, c in zip(before, after):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-3)
    capsys.readouterr()


def test_alpha_l1_overrides_the_sparsity_weight_and_is_recorded(data, tmp_path):
    from cfviewer.models.sagen import effective_preset

    base = SAGenConfig(**TINY)
    assert effective_preset(base) == get_preset(base.preset)
    sparse = SAGenConfig(**{**TINY, "alpha_l1": 5.0})
    assert effective_preset(sparse).alpha == (*get_preset(base.preset).alpha[:3], 5.0)
    assert sparse.fingerprint("clf") != base.fingerprint("clf")  # a checkpoint of one is not the other's
    with pytest.raises(SAGenError, match="alpha_l1"):
        SAGenConfig(**{**TINY, "alpha_l1": -1.0}).validate()
    b = random_bundle(resolution=RES, seed=2)
    res = train_sagen(b, SAGenConfig(**{**TINY, "n_train": 8, "epochs": 1, "alpha_l1": 5.0}), data=data,
                      work_dir=tmp_path, save=False, progress=False, log=lambda s: None)
    pr = res.doc["preset"]
    assert pr["alpha"][3] == 5.0 and pr["alpha_l1_override"] == 5.0
    # the L1 term of L_d carries the new weight
    x = data.images[:4].float()[:, None]
    k = torch.zeros(4, dtype=torch.long)
    t = torch.as_tensor(b.threshold_array(), dtype=torch.float32)
    _, t5 = sagen_loss(res.generator, b.classifier, x, k, t, effective_preset(sparse))
    _, t0 = sagen_loss(res.generator, b.classifier, x, k, t, effective_preset(SAGenConfig(**{**TINY, "alpha_l1": 0.0})))
    assert (t5["L_d"] > t0["L_d"]).all()
