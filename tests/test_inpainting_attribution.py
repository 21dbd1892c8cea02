"""Inpainting attribution (issue 12, shared/papers/inpainting-attribution.txt): the objective's
parts (generalised logistic, S, barrier, weighted TV, the reading of phi / psi), the iterative
search on a toy classifier that reads a known square, the mask network (shape, range, a loss that
falls, files, stale classifier) and the two explainers (counterfactual + frames, errors)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import cfviewer.explain.inpainting  # noqa: F401  (registers the explainers)
from cfviewer.errors import BundleError, CfviewerError, UnknownPathologyError
from cfviewer.explain import get_explainer, list_explainers
from cfviewer.explain.inpainting import binary_mask
from cfviewer.models import random_bundle
from cfviewer.models.bundle import Bundle
from cfviewer.models.data import phantom_data
from cfviewer.models.inpainter import InpainterMissingError, attach_inpainter, random_inpainter
from cfviewer.models.masknet import (
    MASKNET_JSON,
    MASKNET_PT,
    MaskNetConfig,
    MaskNetMissingError,
    MaskNetStaleError,
    MaskNetStopped,
    Objective,
    PairData,
    batch_loss,
    classifier_scales,
    compact,
    detach_masknet,
    generalized_logistic,
    iterative_search,
    load_masknet,
    log_barrier,
    new_masknet,
    objective_terms,
    random_masknet,
    smooth_max,
    train_masknet,
    weighted_tv,
)

RES = 64
NAMES = ["Atelectasis", "Cardiomegaly", "Effusion", "Lung Opacity", "Mass", "Pneumothorax"]
SQUARE = (slice(20, 36), slice(28, 44))  # rows, columns of the toy finding
BACKGROUND = -600.0


class SquareScore(nn.Module):
    """Every output reads the mean brightness of SQUARE: logit = 40 ((x + 1024) / 2048 - 0.5)."""

    def __init__(self):
        super().__init__()
        self.pathologies = list(NAMES)
        m = torch.zeros(RES, RES)
        m[SQUARE] = 1.0
        self.register_buffer("m", m / m.sum())

    def logits(self, x):
        v = torch.einsum("nhw,hw->n", (x[:, 0] + 1024) / 2048, self.m)
        return (40.0 * (v - 0.5)).view(-1, 1).expand(-1, len(NAMES))

    def forward(self, x):
        return torch.sigmoid(self.logits(x))


class FillInpainter(nn.Module):
    """Fills holes with healthy background: raw = BACKGROUND; composite keep x + (1 - keep) raw."""

    def __init__(self, resolution: int = RES):
        super().__init__()
        self.resolution = resolution
        self.dummy = nn.Parameter(torch.zeros(1))

    def config(self):
        return {"resolution": self.resolution}

    def raw(self, x, keep):
        return torch.full_like(x, BACKGROUND)

    def composite(self, x, keep, raw):
        return keep * x + (1.0 - keep) * raw

    def forward(self, x, keep):
        return self.composite(x, keep, self.raw(x, keep))


def square_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((RES, RES), BACKGROUND, np.float32) + rng.normal(0, 20, (RES, RES)).astype(np.float32)
    img[SQUARE] = 600.0
    return img


@pytest.fixture(scope="module")
def toy():
    b = Bundle(SquareScore(), None, resolution=RES, device="cpu")
    attach_inpainter(b, FillInpainter(), {"format": "test"})
    return b


@pytest.fixture(scope="module")
def rb():
    b = random_bundle(resolution=RES, seed=1)
    attach_inpainter(b, random_inpainter(RES, seed=0))
    random_masknet(b, seed=0)
    return b


@pytest.fixture(scope="module")
def data():
    return phantom_data(8, 5, RES, progress=False)


# ---------------------------------------------------------------- the objective's parts
def test_generalized_logistic_is_richards_curve():
    t = torch.linspace(-6, 6, 25, dtype=torch.float64)
    y = generalized_logistic(t, A=-1.0, K=2.0, B=0.7, M=1.0, nu=0.5)
    want = -1.0 + 3.0 / (1.0 + torch.exp(-0.7 * (t - 1.0))) ** (1 / 0.5)
    torch.testing.assert_close(y, want)
    y = generalized_logistic(t, B=2.0, M=0.5)  # A = 0, K = 1, nu = 1: a logistic
    torch.testing.assert_close(y, torch.sigmoid(2.0 * (t - 0.5)))
    assert float(generalized_logistic(torch.tensor(0.3), B=5.0, M=0.3)) == pytest.approx(0.5)
    big = generalized_logistic(torch.tensor([-1e4, 1e4]), B=1.0)  # bounded, finite
    assert torch.isfinite(big).all() and float(big[0]) == pytest.approx(0.0) and float(big[1]) == pytest.approx(1.0)
    # the TV normalisation (A = -1, K = 1, M = 0) is tanh(B t / 2): 0 at 0, below 1
    torch.testing.assert_close(generalized_logistic(t.abs(), A=-1.0, K=1.0, B=0.2), torch.tanh(0.1 * t.abs()))


def test_smooth_max_makes_a_single_cell_a_blob_in_0_1():
    m = torch.zeros(1, 1, 32, 32)
    m[0, 0, 16, 16] = 1.0
    s = smooth_max(m, sigma=1.6, temperature=30.0)
    assert float(s.min()) >= 0.0 and float(s.max()) <= 1.0 + 1e-6
    assert float(s[0, 0, 16, 16]) == pytest.approx(1.0, abs=1e-3)
    blob = (s[0, 0] >= 0.55).numpy()
    assert 5 <= blob.sum() <= 25 and blob[15:18, 15:18].all()  # more than the cell, compact around it
    from scipy.ndimage import label

    assert label(blob)[1] == 1
    sym = s[0, 0].numpy()
    np.testing.assert_allclose(sym[16, 10:23], sym[10:23, 16], atol=1e-6)  # isotropic
    np.testing.assert_allclose(sym[16, 12], sym[16, 20], atol=1e-6)
    assert float(smooth_max(torch.zeros(1, 1, 8, 8), 1.6, 30.0).abs().max()) == 0.0
    assert float(smooth_max(torch.ones(1, 1, 16, 16), 1.6, 30.0)[0, 0, 8, 8]) > 0.95
    # the full S: grid -> input resolution, values in [0, 1]
    noise = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    full = compact(noise, RES, Objective())
    assert full.shape == (2, 1, RES, RES) and float(full.min()) >= 0.0 and float(full.max()) <= 1.0


def test_log_barrier_extension_and_weighted_tv():
    t = 5.0
    z = torch.tensor([-0.5, -1 / t ** 2 - 1e-6, -1 / t ** 2 + 1e-6, 0.3])
    b = log_barrier(z, t)
    assert float(b[0]) == pytest.approx(-np.log(0.5) / t)
    assert float(b[1]) == pytest.approx(float(b[2]), abs=1e-4)  # continuous at -1/t^2
    assert float(b[3]) == pytest.approx(t * 0.3 - np.log(1 / t ** 2) / t + 1 / t)
    # TV: a square of side 16 in a 64 image has perimeter 64 px: R = 64 * (32 + 32) / (64 * 63)
    mask = torch.zeros(1, 1, RES, RES)
    mask[0, 0][SQUARE] = 1.0
    tv = float(weighted_tv(mask, None, edge_weighted=False))
    assert tv == pytest.approx(RES * 2 * 32 / (RES * (RES - 1)), rel=1e-5)
    # along the image's own edges a border is cheaper
    img = torch.as_tensor(square_image())[None, None]
    assert float(weighted_tv(mask, img)) < 0.5 * tv


def test_phi_and_psi_are_read_so_that_removing_the_finding_lowers_the_loss(toy):
    x = toy.model_input(square_image())
    k = torch.tensor([4])
    z0 = toy.classifier.logits(x)[:, 4]
    thr = torch.tensor([0.5])
    obj = Objective(tv_weight=0.0, area_weight=0.0)
    empty = torch.zeros(1, 1, RES, RES)
    square = torch.zeros(1, 1, RES, RES)
    square[0, 0][SQUARE] = 1.0
    _, te = objective_terms(toy.classifier, toy._inpainter, x, empty, k, z0, thr, obj, t=5.0)
    _, ts = objective_terms(toy.classifier, toy._inpainter, x, square, k, z0, thr, obj, t=5.0)
    assert float(te["p"]) > 0.99 and float(ts["p"]) < 0.01
    assert float(ts["phi"]) < float(te["phi"]) and float(ts["psi"]) < float(te["psi"])
    assert float(te["psi"]) == pytest.approx(0.5)  # psi = 0 (no change) is the logistic's centre


# ---------------------------------------------------------------- the iterative search
def test_iterative_search_lowers_the_prediction_and_finds_the_square(toy):
    x = toy.model_input(square_image(1))
    res = iterative_search(toy.classifier, toy._inpainter, x, 4, 0.5, Objective(), max_steps=200)
    rec = res["record"]
    assert rec["feasible"] and rec["p"] <= 0.5 and rec["steps"] <= 200 and rec["seconds"] > 0
    mask = res["hard"][0, 0].numpy() > 0.5
    sq = np.zeros((RES, RES), bool)
    sq[SQUARE] = True
    from scipy.ndimage import binary_dilation

    assert mask.sum() > 0
    assert (mask & binary_dilation(sq, iterations=3)).sum() / mask.sum() > 0.8   # inside the square
    assert mask.mean() <= 0.2
    p = float(toy.classifier(toy._inpainter(x, 1 - res["hard"]))[0, 4])
    assert p == pytest.approx(rec["p"], abs=1e-5) and p <= 0.5


def test_iterative_explainer_gives_counterfactual_frames_and_mask(toy):
    e = get_explainer("inpainting-iterative", toy, max_steps=150, n_frames=5).explain(square_image(2), "Mass")
    assert e.map.shape == (RES, RES) and 0.0 <= e.map.min() and e.map.max() <= 1.0
    mask = binary_mask(e)
    np.testing.assert_array_equal(mask, e.map >= 0.55)
    assert e.params["mask"]["area"] == pytest.approx(mask.mean())
    assert e.frames.shape == (5, RES, RES)
    np.testing.assert_allclose(e.lambdas, np.linspace(-1, 0, 5))
    np.testing.assert_array_equal(e.frames[0], e.counterfactual)
    np.testing.assert_allclose(e.frames[-1], e.image, atol=1e-4)
    np.testing.assert_allclose(e.counterfactual[~mask], e.image[~mask], atol=1e-4)  # only the mask is inpainted
    np.testing.assert_allclose(e.counterfactual[mask], BACKGROUND, atol=1e-3)
    preds = toy.classifier(torch.as_tensor(e.frames)[:, None])[:, 4].detach().numpy()
    np.testing.assert_allclose(e.frame_preds, preds, rtol=1e-5, atol=1e-6)
    assert e.frame_preds[0] <= 0.5 < e.pred_original and e.pred_reconstruction is None
    s = e.params["search"]
    assert s["feasible"] and s["steps"] >= 1 and s["best_step"] is not None and e.params["warnings"] == []
    json.dumps(e.summary())
    # a prediction already below the threshold: the empty mask, at once
    neg = np.full((RES, RES), BACKGROUND, np.float32)
    en = get_explainer("inpainting-iterative", toy).explain(neg, "Mass")
    assert en.params["search"]["stopped"] == "already_below_threshold" and binary_mask(en).sum() == 0
    assert "already below the threshold" in en.params["warnings"][0]


# ---------------------------------------------------------------- the mask network
def test_encoder_scales_and_network_output(rb):
    x = torch.randn(3, 1, RES, RES) * 300
    clf = rb.classifier
    keys = list(clf.state_dict())
    before = clf(x).detach()
    feats = [f.detach() for f in classifier_scales(clf, x)]
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 16), (8, 8), (4, 4), (2, 2)]  # last four scales
    assert [f.shape[1] for f in feats] == [8, 16, 24, 32] and all(float(f.min()) >= 0 for f in feats)  # post-ReLU
    torch.testing.assert_close(classifier_scales(clf, x)[-1], clf.features(x))  # the last one = features()
    torch.testing.assert_close(clf(x).detach(), before)
    assert list(clf.state_dict()) == keys and not clf._forward_hooks
    net = new_masknet(rb, seed=3)
    m = net(feats, [0, 4, 5], RES).detach()
    assert m.shape == (3, 1, RES, RES) and float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    m2 = net(feats, [1, 4, 5], RES).detach()
    assert not torch.allclose(m[0], m2[0]) and torch.allclose(m[1:], m2[1:])  # one output pair per pathology
    assert float(m.mean()) < 0.1  # the initial maps are empty
    with pytest.raises(CfviewerError, match="out of range"):
        net(feats, [0, 6, 1], RES)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(rb, data):
    net = new_masknet(rb, seed=4)
    imgs = data.images[:4]
    target = torch.zeros(4, RES, RES, dtype=torch.bool)
    target[:, 16:40, 20:44] = True
    pairs = PairData(imgs, torch.tensor([[0, 1], [1, 2], [2, 4], [3, 5]]), torch.zeros(4), target,
                     torch.ones(4, dtype=torch.bool))
    rows = torch.arange(4)
    thr = torch.full((6,), 0.5)
    obj = Objective()
    inp = rb._inpainter
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def loss():
        return float(batch_loss(net, rb.classifier, inp, pairs, rows, thr, obj, 5.0, "cpu",
                                distill_weight=1.0)[0].detach())

    before = loss()
    for _ in range(12):
        value, _ = batch_loss(net, rb.classifier, inp, pairs, rows, thr, obj, 5.0, "cpu", distill_weight=1.0)
        opt.zero_grad()
        value.backward()
        opt.step()
    after = loss()
    assert after < 0.9 * before, (before, after)


TINY = dict(epochs=2, batch_size=2, n_val=0, distill_pairs=4, target_steps=4, target_patience=2,
            checkpoint_every=1, lr_min=1e-3, lr_max=3e-3, cycle_steps=2, eval_every=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("masknet")
    d = random_bundle(resolution=RES, seed=2).save(root / "bundle")
    b = Bundle.load(d, device="cpu")
    attach_inpainter(b, random_inpainter(RES, seed=1))
    res = train_masknet(b, MaskNetConfig(**TINY), data=data, work_dir=root / "work", progress=False,
                        log=lambda s: None)
    return d, b, res


def test_training_saves_and_loads_the_network(trained, data):
    d, b, res = trained
    doc = json.loads((d / MASKNET_JSON).read_text())
    assert doc["classifier"]["identity"].startswith("clf-") and doc["objective"]["mask_threshold"] == 0.55
    tr = doc["training"]
    assert tr["steps"] == 2 * tr["steps_per_epoch"] and tr["distillation"]["pairs"] == 4
    assert len(tr["history"]) == 2 and doc["model"]["config"]["resolution"] == RES
    loaded = Bundle.load(d, device="cpu")
    net = load_masknet(loaded)
    assert net is load_masknet(loaded)  # cached on the bundle
    x = data.images[:2].float()[:, None]
    feats = classifier_scales(loaded.classifier, x)
    torch.testing.assert_close(net(feats, [0, 3], RES), res.net(feats, [0, 3], RES), rtol=0, atol=0)


def test_resume_after_interruption_gives_the_same_weights(data, tmp_path):
    b = random_bundle(resolution=RES, seed=2)
    attach_inpainter(b, random_inpainter(RES, seed=1))
    kw = dict(data=data, save=False, progress=False, log=lambda s: None)
    full = train_masknet(b, MaskNetConfig(**TINY), work_dir=tmp_path / "full", **kw)
    with pytest.raises(MaskNetStopped):
        train_masknet(b, MaskNetConfig(**TINY), work_dir=tmp_path / "cut", stop_after_steps=3, **kw)
    resumed = train_masknet(b, MaskNetConfig(**TINY), work_dir=tmp_path / "cut", resume=True, **kw)
    a, c = full.net.state_dict(), resumed.net.state_dict()
    for key in a:
        assert torch.equal(a[key], c[key]), key


def test_a_network_of_another_classifier_is_refused(trained, tmp_path):
    d, _, _ = trained
    other = random_bundle(resolution=RES, seed=5).save(tmp_path / "other")
    for f in (MASKNET_PT, MASKNET_JSON):
        shutil.copy(d / f, other / f)
    b = Bundle.load(other, device="cpu")
    attach_inpainter(b, random_inpainter(RES))
    with pytest.raises(MaskNetStaleError, match=f"cfviewer train-explainer masknet --bundle {other}"):
        get_explainer("inpainting", b)


def test_a_network_trained_through_another_inpainter_is_refused(trained, tmp_path):
    from cfviewer.files import sha256_file
    from cfviewer.models.inpainter import INPAINTER_PT, save_inpainter

    d, _, _ = trained
    other = tmp_path / "b"
    shutil.copytree(d, other)
    save_inpainter(random_inpainter(RES, seed=3), other, {"format": "test"})
    doc = json.loads((other / MASKNET_JSON).read_text())
    doc["inpainter"] = {"file": INPAINTER_PT, "sha256": "0" * 64}
    (other / MASKNET_JSON).write_text(json.dumps(doc))
    with pytest.raises(MaskNetStaleError, match=f"another inpainter.*cfviewer train-explainer masknet --bundle {other}"):
        load_masknet(Bundle.load(other, device="cpu"))
    doc["inpainter"]["sha256"] = sha256_file(other / INPAINTER_PT)
    (other / MASKNET_JSON).write_text(json.dumps(doc))
    load_masknet(Bundle.load(other, device="cpu"))   # the inpainter it was trained through: loads


# ---------------------------------------------------------------- the explainers
def test_both_explainers_are_registered_and_the_network_one_is_one_pass(rb, data):
    assert {"inpainting", "inpainting-iterative"} <= set(list_explainers())
    ex = get_explainer("inpainting", rb, n_frames=4)
    imgs = [data.images[i].float().numpy() for i in range(3)]
    batch = ex.explain_batch(imgs, ["Mass", "Effusion", "Mass"])
    for img, t, eb in zip(imgs, ["Mass", "Effusion", "Mass"], batch):
        es = ex.explain(img, t)
        np.testing.assert_allclose(eb.map, es.map, atol=1e-5)
        assert eb.frames.shape == (4, RES, RES) and eb.counterfactual.shape == (RES, RES)
        np.testing.assert_array_equal(eb.frames[0], eb.counterfactual)
        np.testing.assert_allclose(eb.frames[-1], eb.image, atol=1e-3)
        np.testing.assert_array_equal(binary_mask(eb), eb.map >= 0.55)
        assert eb.evaluations["masknet"] == 1 and eb.params["masknet"]["classifier_identity"].startswith("clf-")
        json.dumps(eb.summary())
    # a mask the network did make: only its pixels change in the counterfactual
    net = rb._masknet
    with torch.no_grad():
        net.head.bias[1::2] = 0.0
        net.head.bias[0::2] = 1.0
    try:
        e = ex.explain(imgs[0], "Mass")
        mask = binary_mask(e)
        assert mask.mean() > 0.5
        np.testing.assert_allclose(e.counterfactual[~mask], e.image[~mask], atol=1e-3)
        x = rb.model_input(imgs[0])
        cf = rb._inpainter(x, 1 - torch.as_tensor(mask, dtype=torch.float32)[None, None])
        np.testing.assert_allclose(e.counterfactual, cf[0, 0].numpy(), atol=1e-3)
    finally:
        with torch.no_grad():
            net.head.bias[0::2] = 0.0
            net.head.bias[1::2] = 1.0


def test_errors_name_the_fix(tmp_path, rb):
    d = random_bundle(resolution=RES, seed=2).save(tmp_path / "bare")
    b = Bundle.load(d, device="cpu")
    for name in ("inpainting", "inpainting-iterative"):
        with pytest.raises(InpainterMissingError, match=f"cfviewer train-explainer inpainter --bundle {d}"):
            get_explainer(name, b)
    # a bundle without an autoencoder (Attri-Net) is told to train with the random features
    from cfviewer.models.attrinet import random_attrinet_bundle

    a = random_attrinet_bundle(resolution=RES, seed=2).save(tmp_path / "attri")
    with pytest.raises(InpainterMissingError) as info:
        get_explainer("inpainting-iterative", Bundle.load(a, device="cpu"))
    assert f"cfviewer train-explainer inpainter --bundle {a} --features random" in str(info.value)
    attach_inpainter(b, random_inpainter(RES))
    with pytest.raises(MaskNetMissingError) as info:
        get_explainer("inpainting", b)
    assert f"cfviewer train-explainer masknet --bundle {d}" in str(info.value)
    mem = random_bundle(resolution=RES, seed=2)
    attach_inpainter(mem, random_inpainter(RES))
    with pytest.raises(MaskNetMissingError, match="in memory"):
        get_explainer("inpainting", mem)
    with pytest.raises(UnknownPathologyError):
        get_explainer("inpainting", rb).explain(square_image(), "Fracture")
    detach_masknet(mem)


def test_attrinet_bundles(tmp_path):
    from cfviewer.models.attrinet import random_attrinet_bundle

    b = random_attrinet_bundle(resolution=32)
    attach_inpainter(b, FillInpainter(32), {"format": "test"})
    with pytest.raises(BundleError, match="Attri-Net bundle: its own explanation is `attrinet`"):
        get_explainer("inpainting", b)
    # the iterative search uses the classifier as a black box (logits_of), so it explains one
    e = get_explainer("inpainting-iterative", b, max_steps=3, threshold=0.0001).explain(
        np.zeros((32, 32), np.float32), "Mass")
    assert e.frames.shape == (10, 32, 32) and e.params["search"]["steps"] == 3


def test_cli_has_a_masknet_subcommand():
    import argparse

    from cfviewer.cli.train_explainer import masknet_config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-explainer", "masknet", "--bundle", "B", "--max-minutes", "30",
                              "--distill-pairs", "12", "--max-area", "0.1", "--threads", "1"])
    cfg = masknet_config_from_args(args)
    assert args.func.__name__ == "run_masknet" and cfg.max_minutes == 30 and cfg.distill_pairs == 12
    assert cfg.objective_obj().max_area == 0.1
