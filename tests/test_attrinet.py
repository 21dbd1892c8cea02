"""Attri-Net (Sun et al., MIDL 2023): the model's contract (eq. 3, the output layer of Table 4),
the loss terms (eq. 1, 2, 4, 5 and Appendix B.1), training / resume / step selection, the
bundle and CLI, and its own explainer with the errors between it and the post-hoc methods."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cfviewer.errors import BundleError
from cfviewer.explain import get_explainer
from cfviewer.models import random_bundle
from cfviewer.models.attrinet import AttriCritic, AttriNet, random_attrinet_bundle, to_unit
from cfviewer.models.attrinet_train import (
    AttriNetConfig,
    AttriNetError,
    AttriNetStopped,
    critic_loss,
    generator_loss,
    paired_batch,
    class_pools,
    train_attrinet,
)
from cfviewer.models.bundle import Bundle
from cfviewer.models.data import TrainingData, phantom_data

RES = 32
NAMES = ["Atelectasis", "Cardiomegaly", "Effusion", "Lung Opacity", "Mass", "Pneumothorax"]
TINY = dict(width=4, n_res=1, n_fc=2, n_ones=4, critic_width=4, critic_layers=2, per_class=1, critic_steps=1,
            critic_warmup=1, warmup_steps=1, cls_steps=1, val_every=2, val_subset=12, checkpoint_every=1)


@pytest.fixture(scope="module")
def data():
    return phantom_data(40, 5, RES, progress=False)


def image(seed: int = 0, res: int = RES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-900, 900, (res, res)).astype(np.float32)


# ---------------------------------------------------------------- the model
def test_the_prediction_is_a_logistic_regression_on_the_pooled_class_map():
    b = random_attrinet_bundle(resolution=RES, seed=3)
    m = b.classifier
    x = torch.from_numpy(np.stack([image(0), image(1)]))[:, None]
    probs = m(x)
    assert probs.shape == (2, len(NAMES)) and bool(((probs > 0) & (probs < 1)).all())
    for c in range(len(NAMES)):
        maps = m.class_maps(x, c)
        pooled = F.avg_pool2d(maps, m.pool).flatten(1)  # S_gamma (eq. 3)
        z = pooled @ m.head.weight[c] + m.head.bias[c]
        z = z * m.head.calib_scale[c] + m.head.calib_bias[c]
        torch.testing.assert_close(probs[:, c], torch.sigmoid(z))
    # the maps differ per class (task switching through AdaIN), and x + M is an image in [-1, 1]
    assert float((m.class_maps(x, 0) - m.class_maps(x, 4)).abs().max().detach()) > 1e-4
    cf = to_unit(x) + m.class_maps(x, 2)
    assert float(cf.abs().max()) <= 1.0 + 1e-6
    torch.testing.assert_close(cf, torch.tanh(to_unit(x) + m.generator.out(_features(m, to_unit(x), 2))))


def _features(m: AttriNet, x01: torch.Tensor, c: int) -> torch.Tensor:
    g = m.generator
    w = g.mapping(m.task_codes[[c] * len(x01)])
    h = x01
    for layer in list(g.down):
        h = layer(h, w)
    for block in g.res:
        h = block(h, w)
    for layer in g.up:
        h = layer(h, w)
    return h


def test_pool_gives_an_eight_by_eight_grid_and_bad_sizes_are_refused():
    assert AttriNet(NAMES, 128, width=4, n_res=1).head.grid == 8
    assert AttriNet(NAMES, 224, width=4, n_res=1).head.grid == 8
    with pytest.raises(ValueError, match="divisible"):
        AttriNet(NAMES, 130, width=4, n_res=1)


def test_calibration_composes_and_keeps_the_model_linear():
    b = random_attrinet_bundle(resolution=RES, seed=1)
    x = torch.from_numpy(image(2))[None, None]
    z0 = b.classifier.logits(x)[0, 1]
    b.classifier.calibrate(1, 2.0, -0.5)
    b.classifier.calibrate(1, 0.5, 1.0)
    torch.testing.assert_close(b.classifier.logits(x)[0, 1], 0.5 * (2.0 * z0 - 0.5) + 1.0)


def test_an_attrinet_bundle_saves_and_loads(tmp_path):
    b = random_attrinet_bundle(resolution=RES, seed=2)
    b.thresholds["Mass"] = 0.3
    b.save(tmp_path / "a")
    again = Bundle.load(tmp_path / "a", device="cpu")
    assert isinstance(again.classifier, AttriNet) and again.autoencoder is None
    assert again.thresholds["Mass"] == pytest.approx(0.3)
    x = np.stack([image(4), image(5)])
    np.testing.assert_allclose(again.predict(x), b.predict(x), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the losses
def test_generator_loss_is_eq_5_with_the_papers_weights(data):
    torch.manual_seed(0)
    m = AttriNet(NAMES, RES, width=4, n_res=1, n_fc=2, n_ones=4)
    d = AttriCritic(m.code_dim, 4, 2, 2)
    cfg = AttriNetConfig(**TINY)
    assert (cfg.lambda_adv, cfg.l1_pos, cfg.l1_neg, cfg.lambda_cls, cfg.lambda_ctr) == (1.0, 100.0, 200.0, 100.0, 0.01)
    g = torch.Generator().manual_seed(0)
    x, k, y = paired_batch(data, class_pools(data.labels), 1, g, torch.device("cpu"))
    assert k.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5] and y.tolist() == [1.0, 0.0] * 6
    assert all(float(data.labels[i, c]) == l for i, c, l in zip(_rows(data, x), k.tolist(), y.tolist()))
    centers = torch.randn(len(NAMES), 2, RES * RES)
    loss, terms = generator_loss(m, d, centers, x, k, y, cfg)
    mm = m.maps01(x, k)
    pos, neg = y > 0.5, y < 0.5
    want = (-d(x[pos] + mm[pos], m.task_codes[k[pos]]).mean() + 100 * mm[pos].abs().mean()
            + 200 * mm[neg].abs().mean()
            + 100 * F.binary_cross_entropy_with_logits(m.head(mm, k, calibrated=False), y)
            + 0.01 * ((mm.flatten(1) - centers[k, y.long()]) ** 2).sum(1).mean())
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-5)
    assert set(terms) >= {"adv", "l1_pos", "l1_neg", "cls", "center"}


def _rows(data: TrainingData, x: torch.Tensor) -> list[int]:
    imgs = to_unit(data.images.float()[:, None])
    return [int(torch.nonzero(((imgs - xi) ** 2).flatten(1).sum(1) < 1e-9)[0]) for xi in x]


def test_critic_loss_is_appendix_b1_with_a_gradient_penalty(data):
    torch.manual_seed(1)
    m = AttriNet(NAMES, RES, width=4, n_res=1, n_fc=2, n_ones=4)
    d = AttriCritic(m.code_dim, 4, 2, 2)
    g = torch.Generator().manual_seed(1)
    x, k, y = paired_batch(data, class_pools(data.labels), 1, g, torch.device("cpu"))
    loss, w = critic_loss(m, d, x, k, y, torch.Generator().manual_seed(2))
    pos, neg = y > 0.5, y < 0.5
    with torch.no_grad():
        fake = x[pos] + m.maps01(x[pos], k[pos])
        d_real, d_fake = d(x[neg], m.task_codes[k[neg]]), d(fake, m.task_codes[k[pos]])
    assert w == pytest.approx(float(d_real.mean() - d_fake.mean()), rel=1e-4)
    assert float(loss) >= float(-d_real.mean() + d_fake.mean()) - 1e-5  # + 10 x a penalty >= 0
    loss.backward()
    assert all(p.grad is not None for p in d.parameters() if p.requires_grad)


# ---------------------------------------------------------------- training
def test_training_resumes_to_the_same_model_and_keeps_the_best_step(data, tmp_path):
    val = phantom_data(24, 6, RES, progress=False)
    cfg = AttriNetConfig(**TINY, steps=4)
    full = train_attrinet(data, val, NAMES, cfg, work_dir=tmp_path / "a", progress=False, log=lambda s: None)
    with pytest.raises(AttriNetStopped):
        train_attrinet(data, val, NAMES, cfg, work_dir=tmp_path / "b", progress=False, stop_after_steps=3,
                       log=lambda s: None)
    again = train_attrinet(data, val, NAMES, cfg, work_dir=tmp_path / "b", resume=True, progress=False,
                           log=lambda s: None)
    for (k1, v1), (k2, v2) in zip(full.model.state_dict().items(), again.model.state_dict().items()):
        assert k1 == k2
        torch.testing.assert_close(v1, v2, msg=k1)
    doc = full.doc
    assert doc["steps_done"] == 4 and [h["step"] for h in doc["history"]] == [2, 4]
    best = max(doc["history"], key=lambda h: h["val_mean_auc"])
    assert doc["best_step"] == best["step"]
    assert set(doc["thresholds"]) == set(NAMES) and all(0 <= t <= 1 for t in doc["thresholds"].values())
    assert set(doc["calibration"]["per_pathology"]) == set(NAMES)
    # a changed configuration refuses the checkpoint instead of mixing two runs
    with pytest.raises(AttriNetError, match="another Attri-Net configuration"):
        train_attrinet(data, val, NAMES, AttriNetConfig(**{**TINY, "width": 8}, steps=4), work_dir=tmp_path / "b",
                       resume=True, progress=False, log=lambda s: None)


def test_a_class_without_positives_is_a_clear_error(tmp_path):
    d = TrainingData(torch.zeros(4, RES, RES, dtype=torch.float16), torch.zeros(4, len(NAMES)))
    with pytest.raises(AttriNetError, match="no positives or no negatives for Atelectasis"):
        train_attrinet(d, d, NAMES, AttriNetConfig(**TINY, steps=1), work_dir=tmp_path, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(reference bundle dir, Attri-Net bundle dir): `cfviewer train-attrinet` on a tiny task."""
    from cfviewer.cli import main

    tmp = tmp_path_factory.mktemp("attri")
    ref = random_bundle(resolution=RES, seed=0)
    ref.meta["training"] = {"config": {"resolution": RES, "phantoms": {}, "render_scale": 1},
                            "data_seeds": {"train": 21, "val": 22}, "n_train": 100, "n_val": 50}
    ref.save(tmp / "ref")
    rc = main(["train-attrinet", "--like", str(tmp / "ref"), "--out", str(tmp / "attri"), "--steps", "2",
               "--n-train", "30", "--n-val", "24", "--width", "4", "--critic-steps", "1", "--no-progress"])
    assert rc == 0
    return tmp / "ref", tmp / "attri"


def test_cli_trains_a_bundle_like_the_reference_and_refuses_one_without_a_training_record(trained, tmp_path,
                                                                                          capsys):
    from cfviewer.cli import main

    ref_dir, attri_dir = trained
    ref = Bundle.load(ref_dir, device="cpu")
    b = Bundle.load(attri_dir, device="cpu")
    assert isinstance(b.classifier, AttriNet) and b.pathologies == ref.pathologies
    tr = b.meta["training"]
    assert tr["data_seeds"] == {"train": 21, "val": 22} and tr["n_train"] == 30
    assert tr["config"]["phantoms"] == {} and b.meta["like"]["bundle"] == "ref"
    assert tr["attrinet"]["steps_done"] == 2 and set(tr["val_auc"]) == set(NAMES)
    assert json.loads((attri_dir / "bundle.json").read_text())["autoencoder"] is None
    random_bundle(resolution=RES, seed=1).save(tmp_path / "bare")
    capsys.readouterr()
    rc = main(["train-attrinet", "--like", str(tmp_path / "bare"), "--out", str(tmp_path / "x"), "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "records no phantom training set" in err and "--like" in err
    rc = main(["train-attrinet", "--like", str(ref_dir), "--out", str(ref_dir), "--steps", "1"])
    assert rc == 2 and "is the reference bundle itself" in capsys.readouterr().err


def test_init_from_warm_starts_from_an_attrinet_bundle_and_refuses_other_models(trained, tmp_path, capsys):
    from cfviewer.cli import main

    ref_dir, attri_dir = trained
    src = Bundle.load(attri_dir, device="cpu").classifier
    logs: list[str] = []
    data = phantom_data(30, 21, RES, progress=False)
    val = phantom_data(24, 22, RES, progress=False)
    arch = dict(width=4, n_res=AttriNetConfig.n_res, n_fc=AttriNetConfig.n_fc, n_ones=AttriNetConfig.n_ones)
    cfg = AttriNetConfig(**{**TINY, **arch}, steps=0, init_from=str(attri_dir))
    out = train_attrinet(data, val, NAMES, cfg, work_dir=tmp_path / "w", progress=False, log=logs.append)
    # zero steps from the warm start: the generator, regressions and centres are the source's
    for key, v in src.state_dict().items():
        if not key.startswith("head.calib"):
            torch.testing.assert_close(out.model.state_dict()[key], v, msg=key)
    assert any("warm start" in line for line in logs) and out.doc["config"]["init_from"] == str(attri_dir)
    # the fingerprint differs from a cold start: a cold checkpoint is not resumed as a warm one
    assert cfg.fingerprint("d") != AttriNetConfig(**{**TINY, **arch}, steps=0).fingerprint("d")
    with pytest.raises(AttriNetError, match="not Attri-Net"):
        train_attrinet(data, val, NAMES, AttriNetConfig(**TINY, steps=1, init_from=str(ref_dir)),
                       work_dir=tmp_path / "x", progress=False, log=lambda s: None)
    with pytest.raises(AttriNetError, match="architecture differs"):
        train_attrinet(data, val, NAMES, AttriNetConfig(**{**TINY, **arch, "width": 8}, steps=1,
                                                                init_from=str(attri_dir)),
                       work_dir=tmp_path / "y", progress=False, log=lambda s: None)
    rc = main(["train-attrinet", "--like", str(ref_dir), "--out", str(tmp_path / "z"), "--steps", "1",
               "--init-from", str(tmp_path / "missing"), "--no-progress"])
    assert rc == 2 and "init_from" in capsys.readouterr().err
    # the CLI records what the warm start continued, and the card says so
    rc = main(["train-attrinet", "--like", str(ref_dir), "--out", str(tmp_path / "warm"), "--steps", "1",
               "--n-train", "30", "--n-val", "24", "--width", "4", "--init-from", str(attri_dir), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    warm = Bundle.load(tmp_path / "warm", device="cpu")
    ws = warm.meta["training"]["warm_start"]
    assert ws["steps_done"] == 2 and ws["bundle"] == str(attri_dir) and ws["identity"].startswith("attri@")
    rc = main(["model-card", "--bundle", str(tmp_path / "warm"), "--n", "12", "--seed", "5", "--tube-n", "4",
               "--counterfactuals", "0", "--out", str(tmp_path / "warm.md"), "--device", "cpu", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    line = next(x for x in (tmp_path / "warm.md").read_text().splitlines() if x.startswith("- Warm start"))
    assert f"`{attri_dir.name}`" in line and "2 steps" in line and "fresh critic" in line


def test_model_card_of_an_attrinet_bundle_compares_it_with_the_classifier(trained, tmp_path, capsys):
    from cfviewer.cli import main

    ref_dir, attri_dir = trained
    out = tmp_path / "card.md"
    rc = main(["model-card", "--bundle", str(attri_dir), "--compare", str(ref_dir), "--n", "20", "--seed", "5",
               "--tube-n", "8", "--counterfactuals", "1", "--out", str(out), "--json", str(tmp_path / "card.json"),
               "--device", "cpu", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    text = out.read_text()
    for heading in ("# Model card: Attri-Net", "## Data and training", "### Calibration",
                    "### Next to the post-hoc classifier on the same 20 held-out phantoms", "chest-tube shortcut",
                    "## Counterfactuals: does x + M_c(x) remove the finding?", "## Training curve"):
        assert heading in text, heading
    report = json.loads((tmp_path / "card.json").read_text())
    assert report["counterfactual"]["explainer"] == "attrinet"
    assert set(report["reference"]["per_pathology"]) == set(NAMES)
    assert f"{report['reference']['per_pathology']['Mass']['auc']:.3f}" in text
    rc = main(["model-card", "--bundle", str(ref_dir), "--compare", str(attri_dir), "--n", "20", "--seed", "5"])
    assert rc == 2 and "--compare is for Attri-Net bundles" in capsys.readouterr().err


# ---------------------------------------------------------------- the explainer
def test_attrinet_explanation_is_the_class_map_and_its_counterfactual():
    b = random_attrinet_bundle(resolution=RES, seed=4)
    imgs = [image(7), image(8)]
    ex = get_explainer("attrinet", b, n_frames=5).explain_batch(imgs, ["Mass", "Effusion"])
    x = torch.from_numpy(np.stack(imgs))[:, None]
    for e, c, xi in zip(ex, [4, 2], x):
        m = 1024.0 * b.classifier.class_maps(xi[None], c)[0, 0].detach().numpy()
        np.testing.assert_allclose(e.map, np.abs(m), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(e.counterfactual, np.clip(xi[0].numpy() + m, -1024, 1024), rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(e.frames[-1], xi[0].numpy(), atol=1e-3)
        np.testing.assert_allclose(e.frames[0], e.counterfactual)
        assert list(e.lambdas) == pytest.approx([-1, -0.75, -0.5, -0.25, 0])
        assert e.frame_preds[-1] == pytest.approx(e.pred_original, abs=1e-5)
        assert e.pred_original == pytest.approx(float(b.predict(xi[0].numpy())[0, c]), abs=1e-5)
        assert e.frame_preds[0] == pytest.approx(float(b.predict(e.counterfactual)[0, c]), abs=1e-4)
        assert e.pred_reconstruction is None
        lt = e.params["logit_terms"]
        z = np.sum(np.array(lt["pooled_map"]) * np.array(lt["weights"])) + lt["bias"]
        z = z * lt["calibration"][0] + lt["calibration"][1]
        assert z == pytest.approx(lt["logit"], abs=1e-3)
    signed = get_explainer("attrinet-signed", b).explain(imgs[0], "Mass")
    np.testing.assert_allclose(np.abs(signed.map), ex[0].map, rtol=1e-4, atol=1e-3)
    assert (signed.map < 0).any() and (signed.map > 0).any()


def test_attrinet_and_post_hoc_methods_say_which_bundle_they_need():
    demo_like = random_bundle(resolution=RES, seed=0)
    with pytest.raises(BundleError, match="Attri-Net's own class maps.*Classifier.*train-attrinet"):
        get_explainer("attrinet", demo_like)
    a = random_attrinet_bundle(resolution=RES, seed=0)
    with pytest.raises(BundleError, match="needs an autoencoder.*attrinet \\(its own class maps\\)"):
        get_explainer("latentshift", a)
    with pytest.raises(BundleError, match="gradcam needs.*Attri-Net bundle.*`attrinet`"):
        get_explainer("gradcam", a)
    for name in ("gradient", "guided_backprop", "integrated_gradients"):  # these explain any model
        e = get_explainer(name, a).explain(image(1), "Mass")
        assert e.map.shape == (RES, RES) and np.isfinite(e.map).all() and e.map.max() > 0


# ---------------------------------------------------------------- in a study
def test_a_study_on_an_attrinet_bundle_precomputes_its_maps_and_refuses_post_hoc_only_arms(tmp_path, capsys,
                                                                                         monkeypatch):
    from test_study_support import write_cases

    from cfviewer.cli import main

    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    b = random_attrinet_bundle(resolution=RES, seed=5)
    b.thresholds = {p: 0.0 for p in b.pathologies}  # every prediction positive: TP / FP = the labels
    b.save(tmp_path / "attri")
    write_cases(tmp_path / "incoming", 12)
    study = str(tmp_path / "s")
    assert main(["study", "create", study, "--bundle", str(tmp_path / "attri"), "--arm", "Plain=gradient",
                 "--arm", "Attri-Net=attrinet"]) == 0
    assert main(["study", "import", study, str(tmp_path / "incoming"), "--labels", "labels.csv", "--quiet"]) == 0
    assert main(["study", "sample", study, "--per-pathology", "1", "--quiet"]) == 0
    assert main(["study", "precompute", study, "--quiet", "--device", "cpu"]) == 0
    capsys.readouterr()
    frames = sorted((tmp_path / "s").rglob("*attrinet*"))
    assert frames, sorted(p.name for p in (tmp_path / "s").rglob("*") if p.is_file())[:20]
    assert main(["study", "status", study]) == 0
    assert "0 problem(s)" in capsys.readouterr().out

    bad = str(tmp_path / "bad")
    assert main(["study", "create", bad, "--bundle", str(tmp_path / "attri"), "--arm", "LS=latentshift"]) == 0
    assert main(["study", "import", bad, str(tmp_path / "incoming"), "--labels", "labels.csv", "--quiet"]) == 0
    assert main(["study", "sample", bad, "--per-pathology", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["study", "precompute", bad, "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "needs an autoencoder" in err and "attrinet" in err


def test_bench_runs_attrinet_beside_post_hoc_methods_in_its_own_section(trained, tmp_path, capsys):
    from cfviewer.cli import main
    from cfviewer.evaluation.report import read_section

    _, attri_dir = trained
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n<!-- section:explainers -->\nthe demo bundle's run\n<!-- /section:explainers -->\n")
    rc = main(["bench", "--quick", "--bundle", str(attri_dir), "--out", str(out), "--no-progress",
               "--section", "explainers-attrinet", "--methods", "attrinet", "gradient", "latentshift", "gradcam"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "latentshift: cannot be built" in err and "gradcam: cannot be built" in err
    assert read_section(out, "explainers") == "the demo bundle's run"
    section = read_section(out, "explainers-attrinet")
    assert "--section explainers-attrinet" in section
    assert "| `attrinet` |" in section and "| `gradient` |" in section
    cf_part = section.split("### 7. Counterfactuals")[1].split("### Claims")[0]
    assert "| `gradient` |" not in cf_part


def test_post_hoc_maps_of_attrinet_evaluate_only_the_target_class_and_equal_the_full_model():
    from captum.attr import IntegratedGradients, Saliency

    b = random_attrinet_bundle(resolution=RES, seed=6)
    imgs = [image(9), image(10)]
    targets = ["Mass", "Pneumothorax"]
    x = torch.from_numpy(np.stack(imgs))[:, None]
    idx = [b.target_index(t) for t in targets]
    want = Saliency(b.classifier).attribute(x.clone().requires_grad_(True), target=idx, abs=True)[:, 0]
    got = get_explainer("gradient", b).explain_batch(imgs, targets)
    for e, w in zip(got, want):
        np.testing.assert_allclose(e.map, w.numpy(), rtol=1e-4, atol=1e-9)
    ig_want = IntegratedGradients(b.classifier).attribute(
        x.clone().requires_grad_(True), baselines=torch.zeros_like(x), target=idx, n_steps=8,
        method="gausslegendre", internal_batch_size=5)[:, 0].abs()
    ig = get_explainer("integrated_gradients", b, n_steps=8, internal_batch_size=5).explain_batch(imgs, targets)
    for e, w in zip(ig, ig_want):
        np.testing.assert_allclose(e.map, w.detach().numpy(), rtol=1e-3, atol=1e-7)
        assert e.pred_original == pytest.approx(float(b.predict(e.image)[0, b.target_index(e.target)]), abs=1e-5)


@pytest.mark.parametrize("kind", ["classifier", "attrinet"])
def test_deletion_curves_per_target_equal_the_all_outputs_curves(kind):
    """The benchmark asks the model for each case's target only (Attri-Net: one map instead of
    six); the curves are those of the whole-output prediction, tie-breaking seeds included."""
    from cfviewer.evaluation import questions as Q
    from cfviewer.evaluation.cases import Case
    from cfviewer.metrics.faithfulness import deletion_curves

    b = random_bundle(resolution=RES, seed=0) if kind == "classifier" else random_attrinet_bundle(resolution=RES)
    rng = np.random.default_rng(0)
    cases = [Case(uid=str(i), seed=i, target=b.pathologies[i % 3], image=image(i), mask=np.zeros((RES, RES), bool))
             for i in range(7)]
    maps = rng.random((7, RES, RES)).astype(np.float32)
    got = Q.faithfulness(b, cases, maps, 5)
    t = np.array([b.target_index(c.target) for c in cases])
    want = deletion_curves(b.predict, np.stack([c.image for c in cases]), maps, t, np.linspace(0, 1, 6),
                           baseline="blur")
    np.testing.assert_allclose(got.aopc, want.aopc, atol=1e-6)
    np.testing.assert_allclose(got.mean_curve, want.scores.mean(axis=0), atol=1e-6)
    for i in (0, 4):
        k = b.target_index(cases[i].target)
        np.testing.assert_allclose(b.predict_class(cases[i].image, k), b.predict(cases[i].image)[:, k], atol=1e-6)
