"""The partial-convolution inpainter of issue 12 (Liu et al. 2018 as the marginalisation of the
inpainting-attribution paper): the partial convolution's rule, the composite, the masks, the
loss, training / resume, the files beside the bundle, the CLI and the marginalisation check."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cfviewer.errors import CfviewerError
from cfviewer.models import random_bundle
from cfviewer.models.bundle import Bundle
from cfviewer.models.inpainter import (
    FIX_COMMAND,
    INPAINTER_JSON,
    INPAINTER_PT,
    LOSS_WEIGHTS,
    InpainterConfig,
    InpainterError,
    InpainterMissingError,
    InpainterResolutionError,
    InpainterStopped,
    PartialConv2d,
    PCInpainter,
    attach_inpainter,
    detach_inpainter,
    feature_extractor,
    gram,
    has_inpainter,
    healthy_phantoms,
    inpainting_loss,
    load_inpainter,
    marginalisation_check,
    random_hole,
    random_inpainter,
    random_keep_mask,
    to_unit,
    train_inpainter,
    training_seed,
    tv_loss,
    validation_seed,
)

RES = 32
TINY = dict(widths=[4, 8, 8], n_train=10, n_val=4, n_check=0, epochs_phase1=1, epochs_phase2=1,
            checkpoint_every=0, lr_phase1=3e-3, lr_phase2=1e-3)


def images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, RES), torch.linspace(-1, 1, RES), indexing="ij")
    base = 600 * torch.exp(-(xx ** 2 + yy ** 2) * 2) - 500
    return (base + 60 * torch.randn(n, 1, RES, RES, generator=g)).clamp(-1024, 1024)


def naive_partial_conv(pc: PartialConv2d, x: torch.Tensor, mask: torch.Tensor):
    """Liu et al. eq. 1-2 window by window (binary mask, one mask per input channel)."""
    k, s, p = pc.kernel_size, pc.stride, pc.padding
    groups = pc.mask_groups
    full_mask = torch.cat([mask[:, g:g + 1].expand(-1, c, -1, -1) for g, c in enumerate(groups)], 1)
    xp, mp = F.pad(x, (p, p, p, p)), F.pad(full_mask, (p, p, p, p))
    n, _, h, w = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = torch.zeros(n, pc.out_channels, ho, wo, dtype=torch.float64)
    new = torch.zeros(n, 1, ho, wo, dtype=torch.float64)
    W = pc.conv.weight.double()
    b = pc.bias.double() if pc.bias is not None else torch.zeros(pc.out_channels, dtype=torch.float64)
    for i in range(ho):
        for j in range(wo):
            X = xp[:, :, i * s:i * s + k, j * s:j * s + k].double()
            M = mp[:, :, i * s:i * s + k, j * s:j * s + k].double()
            sm = M.sum((1, 2, 3))
            for q in range(n):
                if sm[q] > 0:
                    out[q, :, i, j] = (W * (X[q] * M[q])).sum((1, 2, 3)) * (M[q].numel() / sm[q]) + b
                    new[q, 0, i, j] = 1.0
    return out, new


# ---------------------------------------------------------------- partial convolution
@pytest.mark.parametrize("stride,groups", [(1, None), (2, None), (1, (2, 3))])
def test_partial_conv_is_liu_et_al_eq_1_and_2(stride, groups):
    torch.manual_seed(0)
    c_in = 5
    pc = PartialConv2d(c_in, 3, 3, stride=stride, bias=True, mask_groups=groups)
    with torch.no_grad():
        pc.bias.normal_()
    x = torch.randn(2, c_in, 9, 9)
    g = len(groups) if groups else 1
    mask = (torch.rand(2, g, 9, 9) > 0.6).float()
    mask[:, :, 2:7, 2:7] = 0  # windows with no valid input at all
    out, new = pc(x, mask)
    ref_out, ref_new = naive_partial_conv(pc, x, mask)
    assert torch.allclose(out.double(), ref_out, atol=1e-5)
    assert torch.equal(new.double(), ref_new)
    assert ((new == 0) | (new == 1)).all() and (new == 0).any()
    assert (out[new.expand_as(out) == 0] == 0).all()  # no bias where the window is all holes


def test_renormalisation_makes_a_partial_window_see_the_full_constant():
    pc = PartialConv2d(1, 1, 3, bias=False)
    with torch.no_grad():
        pc.conv.weight.fill_(1.0)
    x = torch.full((1, 1, 6, 6), 2.0)
    mask = torch.ones(1, 1, 6, 6)
    mask[..., :, :3] = 0
    out, new = pc(x, mask)
    # every window with one or more valid pixels gives 9 * 2 (sum(1)/sum(M) rescales), the others 0
    assert torch.allclose(out[new > 0], torch.full_like(out[new > 0], 18.0))
    assert (new[..., :, :2] == 0).all() and (new[..., :, 2:] == 1).all()


def test_hole_pixels_never_reach_the_output_and_the_composite_keeps_the_rest():
    net = random_inpainter(RES, seed=1)
    net.train()  # batch statistics too
    x = images(3)
    keep = random_keep_mask(3, RES, 5)
    other = x.clone()
    other[keep == 0] = torch.randn(int((keep == 0).sum())) * 900
    with torch.no_grad():
        assert torch.equal(net.raw(x, keep), net.raw(other, keep))
        comp = net(x, keep)
        raw = net.raw(x, keep).clamp(-1024, 1024)
    assert torch.equal(comp[keep == 1], x[keep == 1])
    assert torch.allclose(comp[keep == 0], raw[keep == 0])


def test_soft_keep_values_below_the_threshold_are_holes_for_the_network():
    net = random_inpainter(RES, seed=2)
    x = images(2)
    keep = random_keep_mask(2, RES, 3)
    soft = torch.where(keep > 0, torch.full_like(keep, 0.9), torch.full_like(keep, 0.05))
    with torch.no_grad():
        assert torch.equal(net.raw(x, soft), net.raw(x, keep))
    soft.requires_grad_(True)
    xg = x.clone().requires_grad_(True)
    net(xg, soft).sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    # mask_threshold None: keep is the partial-convolution mask itself (the same for binary masks)
    hard = PCInpainter(RES, [4, 8]).eval()
    exact = PCInpainter(RES, [4, 8], mask_threshold=None).eval()
    exact.load_state_dict(hard.state_dict())
    with torch.no_grad():
        assert torch.allclose(exact.raw(x, keep), hard.raw(x, keep))
        assert not torch.allclose(exact.raw(x, soft), hard.raw(x, soft))


def test_architecture_follows_the_paper():
    net = PCInpainter(128)
    assert net.kernels == [7, 5, 5, 3, 3] and len(net.encoder) == len(net.decoder) == 5
    assert all(b.pconv.stride == 2 for b in net.encoder)
    assert all(b.pconv.kernel_size == 3 and b.pconv.stride == 1 for b in net.decoder)
    assert net.decoder[-1].bn is None and net.decoder[-1].pconv.out_channels == 1
    assert net.decoder[-1].pconv.mask_groups == (net.widths[0], 1)  # the image and its mask are the last skip
    with pytest.raises(InpainterError, match="multiple of 32"):
        PCInpainter(48)


def test_phase_two_freezes_the_encoder_batch_norm_only():
    net = random_inpainter(RES, seed=3)
    net.set_phase(2)
    net.train()
    enc = [b.bn for b in net.encoder]
    dec = [b.bn for b in net.decoder if b.bn is not None]
    assert all(not b.training and not b.weight.requires_grad for b in enc)
    assert all(b.training and b.weight.requires_grad for b in dec)
    before = [b.running_mean.clone() for b in enc + dec]
    net(images(4), random_keep_mask(4, RES, 0))
    after = [b.running_mean for b in enc + dec]
    assert all(torch.equal(a, b) for a, b in zip(before[:len(enc)], after[:len(enc)]))
    assert any(not torch.equal(a, b) for a, b in zip(before[len(enc):], after[len(enc):]))


# ---------------------------------------------------------------- masks and loss
def test_irregular_masks_are_seeded_and_cover_five_to_fifty_percent():
    a, b = random_keep_mask(40, 64, 7), random_keep_mask(40, 64, 7)
    assert torch.equal(a, b) and not torch.equal(a, random_keep_mask(40, 64, 8))
    assert set(torch.unique(a).tolist()) == {0.0, 1.0}
    cover = 1 - a.mean((1, 2, 3))
    assert cover.max() <= 0.5 + 1e-6 and cover.min() > 0.02 and cover.std() > 0.05
    rng = np.random.default_rng(0)
    assert random_hole(64, rng, 0.3, 0.3).mean() == pytest.approx(0.3, abs=0.12)


def test_loss_terms_follow_liu_et_al():
    b = random_bundle(RES)
    feats = feature_extractor(b)
    gt = to_unit(images(2))
    keep = random_keep_mask(2, RES, 1)
    out = gt.clone()
    total, t = inpainting_loss(out, gt, keep, feats)
    for key in ("L_valid", "L_hole", "L_perc", "L_style"):  # L_tv is a smoothness prior: not 0 at gt
        assert float(t[key].abs().max()) == pytest.approx(0.0, abs=1e-6)
    assert float(total) == pytest.approx(float(LOSS_WEIGHTS["tv"] * t["L_tv"].mean()), rel=1e-5)
    out = gt + 0.1 * (1 - keep)  # wrong only in the holes, by 0.1
    total, t = inpainting_loss(out, gt, keep, feats)
    hole = 1 - keep
    assert torch.allclose(t["L_hole"], 0.1 * hole.mean((1, 2, 3)), atol=1e-6)
    assert torch.allclose(t["L_valid"], torch.zeros(2), atol=1e-7)
    assert (t["L_perc"] > 0).all() and (t["L_style"] > 0).all()
    expected = sum(LOSS_WEIGHTS[k[2:].lower()] * v for k, v in t.items()).mean()
    assert float(total) == pytest.approx(float(expected), rel=1e-6)
    f = torch.ones(1, 2, 3, 4)
    assert torch.allclose(gram(f), torch.full((1, 2, 2), 1 / 2))  # psi^T psi / (C H W) = 12 / 24
    comp = torch.zeros(1, 1, 4, 4)
    comp[..., :, 2:] = 1.0
    region = torch.ones(1, 1, 4, 4)
    assert float(tv_loss(comp, region)) == pytest.approx(4 / 16)  # 4 horizontal jumps of 1
    region[..., :, 2:] = 0
    assert float(tv_loss(comp, region)) == 0.0


def test_features_are_the_autoencoders_three_first_scales_and_frozen():
    b = random_bundle(RES)
    f = feature_extractor(b)
    maps = f(to_unit(images(1)))
    assert [m.shape[-1] for m in maps] == [RES // 2, RES // 4, RES // 8]
    assert not any(p.requires_grad for p in f.parameters())
    nb = random_bundle(RES, autoencoder=False)
    with pytest.raises(InpainterError, match="features='random'"):
        feature_extractor(nb)
    assert len(feature_extractor(nb, "random")(to_unit(images(1)))) == 3


def test_a_few_training_steps_reduce_the_hole_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    b = random_bundle(RES)
    feats = feature_extractor(b)
    net = PCInpainter(RES, [4, 8, 8]).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x = images(5)
    keep = random_keep_mask(5, RES, 2)
    gt = to_unit(x)
    first = None
    for _ in range(40):
        loss, t = inpainting_loss(to_unit(net.raw(x, keep)), gt, keep, feats)
        first = float(t["L_hole"].detach().mean()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        _, t = inpainting_loss(to_unit(net.raw(x, keep)), gt, keep, feats)
    assert float(t["L_hole"].mean()) < 0.5 * first


# ---------------------------------------------------------------- data
def test_training_data_is_healthy_and_validation_is_disjoint():
    from cfviewer import PATHOLOGIES
    from cfviewer.evaluation.cases import PhantomSource
    from cfviewer.phantoms import generate
    from cfviewer.models.data import phantom_config

    b = random_bundle(RES)
    tr = healthy_phantoms(b, 6, training_seed(0))
    va = healthy_phantoms(b, 6, validation_seed(0), exclude=tr.seeds)
    assert tr.images.shape == (6, RES, RES) and tr.images.dtype == torch.float16
    assert not np.isin(va.seeds, tr.seeds).any() and training_seed(0) != validation_seed(0)
    src = PhantomSource.for_bundle(b)
    ph = generate(int(tr.seeds[0]), size=RES, config=phantom_config(RES, src.options),
                  labels={p: 0 for p in PATHOLOGIES})
    assert not any(ph.labels.values())
    assert np.allclose(ph.image.astype(np.float16), tr.images[0].numpy())


def test_finding_holes_lie_where_the_same_patients_finding_lies_and_replace_a_share_of_the_masks():
    from cfviewer import PATHOLOGIES
    from cfviewer.models.inpainter import finding_hole, phantom_source, render_phantom, training_keep_mask

    b = random_bundle(RES)
    tr = healthy_phantoms(b, 8, training_seed(0), finding_holes=True)
    assert tr.holes is not None and tr.holes.shape == (8, RES, RES) and tr.holes.dtype == torch.bool
    assert sum(bool(h.any()) for h in tr.holes) >= 6
    src = phantom_source(b)
    seed = int(tr.seeds[0])
    hole = finding_hole(src, seed, PATHOLOGIES)
    assert np.array_equal(hole, tr.holes[0].numpy())
    # the hole is one finding's mask on that very patient, and the healthy image is the same render
    found = [p for p in PATHOLOGIES
             if np.array_equal(render_phantom(src, seed, {q: int(q == p) for q in PATHOLOGIES})[1].get(
                 p, np.zeros_like(hole)), hole)]
    assert found and np.allclose(render_phantom(src, seed, {q: 0 for q in PATHOLOGIES})[0].astype(np.float16),
                                 tr.images[0].numpy())
    idx = torch.arange(8)
    always = training_keep_mask(tr, idx, np.random.default_rng(1), InpainterConfig(finding_holes=1.0))
    for i in range(8):
        h = tr.holes[i].numpy()
        if h.any():  # dilated by at most 3 px: covers the finding and stays near it
            hole_i = always[i, 0].numpy() < 0.5
            assert hole_i[h].all() and hole_i.sum() <= (torch.nn.functional.max_pool2d(
                torch.from_numpy(h.astype(np.float32))[None, None], 7, 1, 3) > 0).sum()
    never = training_keep_mask(tr, idx, np.random.default_rng(1), InpainterConfig(finding_holes=0.0))
    assert torch.equal(never, random_keep_mask(8, RES, np.random.default_rng(1)))
    # a run without finding holes keeps the fingerprint it had before the option existed
    assert InpainterConfig(finding_holes=0.5).fingerprint(RES, {}) != InpainterConfig().fingerprint(RES, {})
    old = {k: v for k, v in InpainterConfig().to_dict().items() if k not in InpainterConfig.RESUMABLE_KEYS
           and k != "finding_holes"}
    import hashlib
    from cfviewer.models.inpainter import _jsonable
    old.update(resolution=RES, domain={})
    assert InpainterConfig().fingerprint(RES, {}) == hashlib.sha256(
        json.dumps(_jsonable(old), sort_keys=True).encode()).hexdigest()[:16]
    with pytest.raises(InpainterError, match="finding_holes"):
        InpainterConfig(finding_holes=1.5).validate()


# ---------------------------------------------------------------- files
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("inpainter")
    d = random_bundle(RES, seed=1).save(root / "b")
    b = Bundle.load(d, device="cpu")
    result = train_inpainter(b, InpainterConfig(**TINY), work_dir=root / "w", progress=False, log=lambda s: None)
    return d, b, result


def test_save_load_round_trip(trained):
    d, b, result = trained
    assert (d / INPAINTER_PT).is_file() and (d / INPAINTER_JSON).is_file()
    doc = json.loads((d / INPAINTER_JSON).read_text())
    assert doc["format"] == "cfviewer-inpainter" and doc["version"] == 1
    assert doc["model"]["config"]["resolution"] == RES and doc["training"]["steps"] == 4
    assert [h["phase"] for h in doc["training"]["history"]] == [1, 2]
    assert doc["validation"]["healthy_holes"]["seed_overlap_with_training"] == 0
    fresh = Bundle.load(d, device="cpu")
    assert has_inpainter(fresh)
    net = load_inpainter(fresh)
    assert load_inpainter(fresh) is net and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    x, keep = images(2), random_keep_mask(2, RES, 0)
    with torch.no_grad():
        assert torch.allclose(net(x, keep), result.inpainter(x, keep))
    detach_inpainter(fresh)
    assert load_inpainter(fresh) is not net


def test_missing_and_wrong_resolution_errors_name_the_fix(trained, tmp_path):
    d, _, _ = trained
    empty = random_bundle(RES, seed=4).save(tmp_path / "empty")
    with pytest.raises(InpainterMissingError) as e:
        load_inpainter(Bundle.load(empty, device="cpu"))
    assert str(empty) in str(e.value) and FIX_COMMAND.format(dir=empty) in str(e.value)
    assert isinstance(e.value, CfviewerError)
    with pytest.raises(InpainterMissingError, match="train-explainer inpainter"):
        load_inpainter(random_bundle(RES))
    other = random_bundle(64, seed=4).save(tmp_path / "other")
    for name in (INPAINTER_PT, INPAINTER_JSON):
        shutil.copy(d / name, other / name)
    with pytest.raises(InpainterResolutionError) as e:
        load_inpainter(Bundle.load(other, device="cpu"))
    assert "32 px" in str(e.value) and "64 px" in str(e.value) and FIX_COMMAND.format(dir=other) in str(e.value)
    with pytest.raises(InpainterResolutionError):
        attach_inpainter(random_bundle(64), random_inpainter(RES))
    bad = random_bundle(RES, seed=4).save(tmp_path / "bad")
    shutil.copy(d / INPAINTER_JSON, bad / INPAINTER_JSON)
    torch.save({"nope": torch.zeros(1)}, bad / INPAINTER_PT)
    with pytest.raises(InpainterError, match="does not fit"):
        load_inpainter(Bundle.load(bad, device="cpu"))


def test_attach_caches_on_the_bundle_in_eval_mode():
    b = random_bundle(RES)
    net = random_inpainter(RES, seed=0).train()
    assert attach_inpainter(b, net) is net and load_inpainter(b) is net
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    a, c = random_inpainter(RES, 5), random_inpainter(RES, 5)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


# ---------------------------------------------------------------- training
def test_resume_after_interruption_gives_the_same_weights(tmp_path):
    b = random_bundle(RES, seed=2)
    data = healthy_phantoms(b, 10, training_seed(0))
    cfg = InpainterConfig(**{**TINY, "n_val": 0, "checkpoint_every": 1})
    full = train_inpainter(b, cfg, out_dir=tmp_path / "a", work_dir=tmp_path / "wa", progress=False, data=data,
                           log=lambda s: None)
    with pytest.raises(InpainterStopped):
        train_inpainter(b, cfg, out_dir=tmp_path / "b", work_dir=tmp_path / "wb", progress=False, data=data,
                        stop_after_steps=3, log=lambda s: None)  # inside phase 2
    resumed = train_inpainter(b, cfg, out_dir=tmp_path / "b", work_dir=tmp_path / "wb", progress=False, data=data,
                              resume=True, log=lambda s: None)
    sa, sb = full.inpainter.state_dict(), resumed.inpainter.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(InpainterError, match="another inpainter configuration"):
        train_inpainter(b, InpainterConfig(**{**TINY, "n_val": 0, "lr_phase1": 1e-4}), out_dir=tmp_path / "b",
                        work_dir=tmp_path / "wb", progress=False, data=data, resume=True, log=lambda s: None)


def test_max_minutes_stops_and_saves(tmp_path):
    b = random_bundle(RES, seed=2)
    data = healthy_phantoms(b, 10, training_seed(0))
    cfg = InpainterConfig(**{**TINY, "n_val": 0, "max_minutes": 1e-9})
    r = train_inpainter(b, cfg, out_dir=tmp_path, work_dir=tmp_path / "w", progress=False, data=data,
                        log=lambda s: None)
    assert r.doc["training"]["stopped"] == "max_minutes" and r.doc["training"]["steps"] == 0
    assert (tmp_path / INPAINTER_PT).is_file()


def test_config_is_validated():
    with pytest.raises(InpainterError, match="unknown key"):
        InpainterConfig.from_dict({"nope": 1})
    with pytest.raises(InpainterError, match="min_cover"):
        InpainterConfig(min_cover=0.6, max_cover=0.5).validate()
    with pytest.raises(InpainterError, match="features"):
        InpainterConfig(features="vgg").validate()
    cfg = InpainterConfig()
    assert (cfg.batch_size, cfg.lr_phase1, cfg.lr_phase2) == (5, 2e-4, 1e-5)


# ---------------------------------------------------------------- marginalisation check
def test_marginalisation_check_returns_sane_numbers():
    b = random_bundle(RES, seed=3)
    net = attach_inpainter(b, random_inpainter(RES, seed=3))
    healthy = healthy_phantoms(b, 4, validation_seed(0))
    m = marginalisation_check(b, net, n=12, seed=0, healthy=healthy)
    assert m["n_images"] == 12 and set(m["per_pathology"]) == set(b.pathologies)
    for v in m["per_pathology"].values():
        assert v["positives"] + v["negatives"] == 12 and v["positives"] >= 1
        for key in ("auc_original", "auc_healthy_inpainted"):
            assert v[key] is None or 0.0 <= v[key] <= 1.0
        assert v["share_below_threshold"] is None or 0.0 <= v["share_below_threshold"] <= 1.0
    assert 0.0 < m["healthy_hole_share"] < 0.5
    assert m["hole_error_healthy"]["hole_mae"] >= 0 and m["hole_error_healthy"]["n_images"] == 4
    json.dumps(m, allow_nan=False)


def test_revalidate_rewrites_the_check_with_the_hole_size_sweep_and_keeps_the_weights(tmp_path, capsys):
    from cfviewer.cli import main
    from cfviewer.files import sha256_file
    from cfviewer.models.inpainter import HOLE_SIZES, marginalisation_by_size
    from cfviewer.models.model_card import inpainting_section

    d = random_bundle(RES, seed=6).save(tmp_path / "b")
    b = Bundle.load(d, device="cpu")
    train_inpainter(b, InpainterConfig(**{**TINY, "n_check": 0}), work_dir=tmp_path / "w", progress=False,
                    log=lambda s: None)
    assert "marginalisation" not in json.loads((d / INPAINTER_JSON).read_text())["validation"]
    before = sha256_file(d / INPAINTER_PT)
    rc = main(["train-explainer", "inpainter", "--bundle", str(d), "--revalidate", "--n-check", "12",
               "--device", "cpu", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "holes 1-5 %" in capsys.readouterr().out
    assert sha256_file(d / INPAINTER_PT) == before
    v = json.loads((d / INPAINTER_JSON).read_text())["validation"]
    assert v["marginalisation"]["n_images"] == 12 and v["revalidated"]["classifier_sha256"]
    sweep = v["marginalisation_by_size"]
    assert [(r["min_cover"], r["max_cover"]) for r in sweep] == [tuple(x) for x in HOLE_SIZES]
    shares = [r["healthy_hole_share"] for r in sweep]
    assert shares == sorted(shares) and shares[0] < 0.06 < shares[-1]  # larger holes cover more of the film
    assert set(sweep[0]["auc_delta_healthy"]) == set(b.pathologies)
    # the sweep at the default size is the check's own healthy half (same seed, same holes)
    b2 = Bundle.load(d, device="cpu")
    again = marginalisation_by_size(b2, n=12, seed=0, sizes=[(0.05, 0.5)])[0]
    assert again["mean_auc_healthy_inpainted"] == pytest.approx(v["marginalisation"]["mean_auc_healthy_inpainted"])
    text = "\n".join(inpainting_section(d))
    assert "| 1-5 % |" in text and "| 5-50 % |" in text and "--revalidate" in text


# ---------------------------------------------------------------- CLI
def test_cli_trains_a_tiny_bundle_and_prints_the_quality(tmp_path, capsys):
    from cfviewer.cli import main

    d = random_bundle(RES, seed=5).save(tmp_path / "b")
    args = ["train-explainer", "inpainter", "--bundle", str(d), "--epochs", "1", "--epochs-phase2", "0",
            "--n-train", "5", "--n-val", "3", "--n-check", "6", "--widths", "4,8", "--work-dir", str(tmp_path / "w"),
            "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "held-out healthy holes" in out and "marginalisation (6 images)" in out
    doc = json.loads((d / INPAINTER_JSON).read_text())
    assert doc["training"]["steps"] == 1 and doc["validation"]["marginalisation"]["n_images"] == 6
    assert main(args[:4] + ["--widths", "4,x"]) == 2
    assert "comma-separated" in capsys.readouterr().err
