"""Training: config validation, losses fall on tiny phantoms, resume continues exactly, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cfviewer.cli import main as cli_main
from cfviewer.errors import CfviewerError
from cfviewer.models import Bundle
from cfviewer.models.data import augment, phantom_data
from cfviewer.models.evaluation import roc_auc, sensitivity_specificity, youden_threshold
from cfviewer.models.train import (
    CHECKPOINT,
    TrainConfig,
    TrainConfigError,
    TrainingStopped,
    run_training,
)

TINY = dict(
    resolution=32,
    seed=3,
    n_train=64,
    n_val=32,
    classifier=dict(widths=[8, 16, 16, 16], stem_width=8, dropout=0.1),
    autoencoder=dict(widths=[8, 16, 16], latent_channels=8),
    classifier_training=dict(epochs=2, batch_size=16, lr=0.003),
    autoencoder_training=dict(epochs=2, batch_size=16, lr=0.003),
    checkpoint_every=3,
    num_threads=1,
)


@pytest.fixture(scope="module")
def tiny_data():
    train = phantom_data(64, 11, 32, progress=False)
    val = phantom_data(32, 12, 32, progress=False)
    return train, val


def test_phantom_data_is_float16_and_deterministic(tiny_data, tmp_path):
    train, _ = tiny_data
    assert train.images.dtype == torch.float16 and train.images.shape == (64, 32, 32)
    assert train.labels.shape == (64, 6) and set(np.unique(train.labels.numpy())) <= {0.0, 1.0}
    assert float(train.images.min()) >= -1024 and float(train.images.max()) <= 1024
    again = phantom_data(8, 11, 32, progress=False, cache_dir=tmp_path)
    torch.testing.assert_close(again.images, train.images[:8])  # prefix-stable seeds
    cached = phantom_data(8, 11, 32, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    torch.testing.assert_close(cached.images, again.images)
    np.testing.assert_array_equal(cached.seeds, again.seeds)


def test_render_scale_renders_large_and_resizes_as_model_input(tmp_path):
    from cfviewer.models.bundle import resize_to_resolution
    from cfviewer.phantoms import generate, image_seeds

    data = phantom_data(3, 5, 32, progress=False, render_scale=2, cache_dir=tmp_path)
    assert data.images.shape == (3, 32, 32)
    big = generate(int(image_seeds(3, 5)[1]), 64).image
    want = resize_to_resolution(torch.from_numpy(big)[None, None], 32)[0, 0]
    torch.testing.assert_close(data.images[1].float(), want, atol=1.0, rtol=0)  # float16 storage
    native = phantom_data(3, 5, 32, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # the scale is part of the cache key
    assert not torch.equal(native.images, data.images)
    np.testing.assert_array_equal(native.labels.numpy(), data.labels.numpy())  # same patients
    with pytest.raises(ValueError, match="render_scale 0"):
        phantom_data(2, 5, 32, progress=False, render_scale=0)
    with pytest.raises(TrainConfigError, match="render_scale"):
        TrainConfig.from_dict({"render_scale": 9})
    with pytest.raises(TrainConfigError, match="phantoms: .*prevalence"):
        TrainConfig.from_dict({"phantoms": {"prevalence": {"Pneumonia": 0.2}}})


def test_augment_is_deterministic_and_in_range():
    x = torch.linspace(-1024, 1024, 2 * 32 * 32).reshape(2, 1, 32, 32)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == x.shape and a.abs().max() <= 1024


def test_config_validation(tmp_path):
    with pytest.raises(TrainConfigError, match="unknown key"):
        TrainConfig.from_dict({"resolutoin": 64})
    with pytest.raises(TrainConfigError, match="divisible by 32"):
        TrainConfig.from_dict({"resolution": 100})
    with pytest.raises(TrainConfigError, match="not found"):
        TrainConfig.from_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TrainConfigError, match="not valid JSON"):
        TrainConfig.from_json(tmp_path / "bad.json")
    assert issubclass(TrainConfigError, CfviewerError)


def test_demo_config_parses():
    from cfviewer.paths import demo_dir

    cfg = TrainConfig.from_json(demo_dir() / "train_config.json")
    assert cfg.resolution in (128, 224)
    assert cfg.n_val >= 500


def _losses(bundle: Bundle, stage: str) -> list[float]:
    return [h["train_loss"] for h in bundle.meta["training"][f"{stage}_history"]]


def test_training_lowers_losses_and_writes_bundle(tiny_data, tmp_path):
    cfg = TrainConfig.from_dict({**TINY, "classifier_training": dict(epochs=4, batch_size=16, lr=0.003)})
    bundle = run_training(cfg, tmp_path / "out", work_dir=tmp_path / "work", progress=False,
                          data=tiny_data, device="cpu", log=lambda s: None)
    clf_losses, ae_losses = _losses(bundle, "classifier"), _losses(bundle, "autoencoder")
    assert clf_losses[-1] < clf_losses[0]
    assert ae_losses[-1] < ae_losses[0]
    loaded = Bundle.load(tmp_path / "out", device="cpu")
    x = tiny_data[1].images[:4].float().numpy()
    np.testing.assert_array_equal(loaded.predict(x), bundle.predict(x))
    assert set(loaded.thresholds) == set(loaded.pathologies)
    assert all(0.0 < t < 1.0 for t in loaded.thresholds.values())
    meta = loaded.meta["training"]
    assert meta["n_train"] == 64 and meta["parameters"]["classifier"] > 0
    assert meta["config"]["resolution"] == 32


def test_resume_continues_from_checkpoint_and_matches_uninterrupted(tiny_data, tmp_path):
    cfg = TrainConfig.from_dict(TINY)
    full = run_training(cfg, tmp_path / "full", work_dir=tmp_path / "w_full", progress=False,
                        data=tiny_data, device="cpu", log=lambda s: None)

    work = tmp_path / "w_cut"
    with pytest.raises(TrainingStopped):  # stop in the middle of the classifier's 2nd epoch
        run_training(cfg, tmp_path / "cut", work_dir=work, progress=False, data=tiny_data,
                     device="cpu", stop_after_steps=6, log=lambda s: None)
    state = torch.load(work / CHECKPOINT, weights_only=True)
    assert (state["stage"], state["epoch"], state["step_in_epoch"]) == ("classifier", 1, 2)
    with pytest.raises(TrainingStopped):  # then in the autoencoder stage, resuming
        run_training(cfg, tmp_path / "cut", work_dir=work, progress=False, data=tiny_data,
                     device="cpu", stop_after_steps=8 + 5, resume=True, log=lambda s: None)
    state = torch.load(work / CHECKPOINT, weights_only=True)
    assert state["stage"] == "autoencoder" and "classifier" in state["finished"]
    assert len(state["history"]) == 1 and state["step_in_epoch"] == 1
    logs: list[str] = []
    resumed = run_training(cfg, tmp_path / "cut", work_dir=work, progress=False, data=tiny_data,
                           device="cpu", resume=True, log=logs.append)
    assert not any("starting from the beginning" in s for s in logs)
    # continuing (not restarting) gives exactly the weights of the uninterrupted run
    for a, b in ((full.classifier, resumed.classifier), (full.autoencoder, resumed.autoencoder)):
        for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
            torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    assert _losses(full, "classifier") == _losses(resumed, "classifier")


def test_resume_refuses_checkpoint_of_another_config(tiny_data, tmp_path):
    cfg = TrainConfig.from_dict(TINY)
    with pytest.raises(TrainingStopped):
        run_training(cfg, tmp_path / "o", work_dir=tmp_path / "w", progress=False, data=tiny_data,
                     device="cpu", stop_after_steps=2, log=lambda s: None)
    other = TrainConfig.from_dict({**TINY, "seed": 4})
    with pytest.raises(TrainConfigError, match="another training config"):
        run_training(other, tmp_path / "o", work_dir=tmp_path / "w", progress=False,
                     data=tiny_data, device="cpu", resume=True, log=lambda s: None)


def test_cli_train_end_to_end_on_phantoms(tmp_path, capsys):
    cfg = {**TINY, "n_train": 32, "n_val": 16,
           "classifier_training": dict(epochs=1, batch_size=16),
           "autoencoder_training": dict(epochs=1, batch_size=16)}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    rc = cli_main(["train", "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "b"),
                   "--work-dir", str(tmp_path / "w"), "--device", "cpu", "--no-progress"])
    assert rc == 0
    assert (tmp_path / "b" / "bundle.json").is_file()
    assert Bundle.load(tmp_path / "b", device="cpu").resolution == 32
    rc = cli_main(["train", "--config", str(tmp_path / "nope.json"), "--out", str(tmp_path / "b")])
    assert rc == 2
    assert "nope.json not found" in capsys.readouterr().err


def test_roc_auc_matches_definition():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    # count pairs (pos > neg) + 0.5 ties over 9 pairs
    pairs = [(p, q) for p in s[y == 1] for q in s[y == 0]]
    expected = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in pairs) / len(pairs)
    assert roc_auc(y, s) == pytest.approx(expected)
    assert roc_auc(np.ones(3), np.arange(3)) != roc_auc(np.ones(3), np.arange(3))  # NaN


def test_youden_threshold_separates_perfectly():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    t = youden_threshold(y, s)
    assert 0.3 < t <= 0.7
    assert sensitivity_specificity(y, s, t) == (1.0, 1.0)
    sens, spec = sensitivity_specificity(y, s, 0.8)
    assert sens == 0.5 and spec == 1.0


# ---------------------------------------------------------------------- model card
@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("card")
    cfg = TrainConfig.from_dict({**TINY, "n_train": 48, "n_val": 16})
    run_training(cfg, tmp / "bundle", work_dir=tmp / "work", progress=False, device="cpu",
                 log=lambda s: None)
    return tmp / "bundle", cfg


def test_model_card_reports_every_section(tiny_bundle, tmp_path):
    from cfviewer.models import model_card

    bundle_dir, cfg = tiny_bundle
    bundle = Bundle.load(bundle_dir, device="cpu")
    report = model_card.evaluate_bundle(bundle, n=40, seed=99, progress=False, tube_n=12, counterfactuals=1)
    per = report["per_pathology"]
    assert list(per) == bundle.pathologies
    # The AUCs recomputed here from the same 40 held-out phantoms (Mann-Whitney by brute force
    # over all positive/negative pairs). The sample holds both classes of every pathology, so
    # a NaN AUC is a failure, not an allowed value.
    from cfviewer.models.data import phantom_data

    ph_opts = dict(bundle.meta.get("training", {}).get("config", {}).get("phantoms", {}))
    data = phantom_data(40, 99, bundle.resolution, ph_opts, progress=False)
    probs = bundle.predict(data.images.float().numpy())
    labels = data.labels.numpy().astype(bool)
    for i, (p, v) in enumerate(per.items()):
        assert v["n_pos"] + v["n_neg"] == 40
        assert v["n_pos"] == int(labels[:, i].sum()) and 0 < v["n_pos"] < 40, p
        assert np.isfinite(v["auc"]) and 0.0 <= v["auc"] <= 1.0, (p, v["auc"])
        pos, neg = probs[labels[:, i], i], probs[~labels[:, i], i]
        diff = pos[:, None] - neg[None, :]
        want = float(((diff > 0) + 0.5 * (diff == 0)).mean())
        assert v["auc"] == pytest.approx(want, abs=1e-12), p
        assert 0.0 <= v["mean_pred_pos_recon"] <= 1.0
    assert report["autoencoder"]["mae"] > 0
    short = report["pneumothorax_shortcut"]
    assert short["targeted_tube_only_negatives"]["n"] == 12
    n_neg = per["Pneumothorax"]["n_neg"]
    assert short["held_out_tube_negatives"]["n"] + short["held_out_no_tube_negatives"]["n"] == n_neg
    text = model_card.render_model_card(bundle, report, bundle_dir=bundle_dir)
    for heading in ("## Data and training", "Appendix-K", "chest-tube shortcut", "| Pneumothorax |",
                    "### Calibration", "false positives", "## Counterfactuals"):
        assert heading in text
    for v in per.values():  # the confusion counts add up to the held-out set
        assert v["false_positives"] <= v["n_neg"] and v["false_negatives"] <= v["n_pos"]
        assert 0.0 <= v["ece"] <= 1.0
    cf = report["counterfactual"]["summary"]
    assert cf["all"]["n"] == sum(cf[p]["n"] for p in bundle.pathologies) <= len(bundle.pathologies)
    assert f"{per['Mass']['auc']:.3f}" in text


def test_model_card_refuses_training_seed(tiny_bundle):
    from cfviewer.models import model_card

    bundle_dir, cfg = tiny_bundle
    bundle = Bundle.load(bundle_dir, device="cpu")
    with pytest.raises(model_card.HeldOutSeedError, match="train split"):
        model_card.evaluate_bundle(bundle, n=20, seed=cfg.data_seeds()["train"], progress=False)


def test_cli_model_card_writes_markdown(tiny_bundle, tmp_path):
    bundle_dir, _ = tiny_bundle
    out = tmp_path / "CARD.md"
    rc = cli_main(["model-card", "--bundle", str(bundle_dir), "--n", "20", "--seed", "5", "--tube-n", "10",
                   "--out", str(out), "--json", str(tmp_path / "card.json"), "--device", "cpu",
                   "--no-progress"])
    assert rc == 0 and out.read_text().startswith("# Model card")
    assert json.loads((tmp_path / "card.json").read_text())["n"] == 20
    assert cli_main(["model-card", "--bundle", str(tmp_path / "missing")]) == 2


def test_gaussian_blur_matches_scipy_inside_and_keeps_sigma_zero():
    from scipy.ndimage import gaussian_filter

    from cfviewer.models.data import gaussian_blur

    x = torch.randn(3, 1, 40, 40, generator=torch.Generator().manual_seed(0)) * 300
    y = gaussian_blur(x, torch.tensor([0.0, 1.0, 1.5]))
    torch.testing.assert_close(y[0], x[0])
    for i, s in ((1, 1.0), (2, 1.5)):
        ref = gaussian_filter(x[i, 0].numpy().astype(np.float64), s, truncate=5.0)
        inner = (slice(8, -8), slice(8, -8))
        assert np.abs(ref[inner] - y[i, 0].numpy()[inner]).max() < 0.02 * 300
    assert y[2].std() < x[2].std()


def test_resume_after_autoencoder_change_reuses_classifier(tiny_data, tmp_path):
    cfg = TrainConfig.from_dict(TINY)
    first = run_training(cfg, tmp_path / "a", work_dir=tmp_path / "w", progress=False,
                         data=tiny_data, device="cpu", log=lambda s: None)
    changed = TrainConfig.from_dict({**TINY, "ae_classifier_weight": 0.5,
                                     "autoencoder": dict(widths=[8, 16, 16], latent_channels=4)})
    assert changed.classifier_fingerprint() == cfg.classifier_fingerprint()
    assert changed.fingerprint() != cfg.fingerprint()
    logs: list[str] = []
    second = run_training(changed, tmp_path / "b", work_dir=tmp_path / "w", progress=False,
                          data=tiny_data, device="cpu", resume=True, log=logs.append)
    assert any("reusing" in s for s in logs)
    for (k, v), (_, w) in zip(first.classifier.state_dict().items(), second.classifier.state_dict().items()):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    assert second.autoencoder.config()["latent_channels"] == 4
    losses = _losses(second, "autoencoder")
    assert losses[-1] < losses[0]
    # a classifier change is not silently accepted
    other = TrainConfig.from_dict({**TINY, "classifier_training": dict(epochs=3, batch_size=16)})
    with pytest.raises(TrainConfigError, match="another training config"):
        run_training(other, tmp_path / "c", work_dir=tmp_path / "w", progress=False,
                     data=tiny_data, device="cpu", resume=True, log=lambda s: None)


def test_one_affine_for_training_and_explanation_augmentation():
    import math

    from cfviewer.explain.augment import random_affines, warp as explain_warp
    from cfviewer.models.data import affine_matrices, warp

    assert explain_warp is warp
    angle, scale = torch.tensor([0.0, math.pi / 2]), torch.tensor([1.0, 2.0])
    shift = torch.tensor([0.1, -0.2])
    th = affine_matrices(angle, scale, shift, -shift, flip=torch.tensor([False, True]))
    torch.testing.assert_close(th[0], torch.tensor([[1.0, 0.0, 0.1], [0.0, 1.0, -0.1]]))
    torch.testing.assert_close(th[1], torch.tensor([[0.0, -0.5, -0.2], [-0.5, 0.0, 0.2]]), atol=1e-7, rtol=0)
    # random_affines draws its own (seeded) values and builds them with affine_matrices
    rng = np.random.default_rng(np.random.SeedSequence(3))
    a = math.radians(rng.uniform(-5, 5))
    z = rng.uniform(0.9, 1.0)
    tx, ty = rng.uniform(-10 * 64 / 224, 10 * 64 / 224, size=2) * 2.0 / 64
    expect = affine_matrices(torch.tensor([a], dtype=torch.float64), torch.tensor([1 / z], dtype=torch.float64),
                             torch.tensor([tx], dtype=torch.float64), torch.tensor([ty], dtype=torch.float64))
    torch.testing.assert_close(random_affines(1, seed=3, resolution=64), expect.float())
    # the identity affine leaves an image as it is
    x = torch.linspace(-1024, 1024, 16 * 16).reshape(1, 1, 16, 16)
    same = affine_matrices(torch.zeros(1), torch.ones(1), torch.zeros(1), torch.zeros(1))
    torch.testing.assert_close(warp(x, same), x, atol=1e-3, rtol=0)


def test_init_from_trains_the_parent_once_and_continues_from_its_weights(tmp_path):
    parent_cfg = {**TINY, "n_train": 32, "n_val": 16,
                  "classifier_training": dict(epochs=1, batch_size=16),
                  "autoencoder_training": dict(epochs=1, batch_size=16)}
    parent_file = tmp_path / "stage1.json"
    parent_file.write_text(json.dumps(parent_cfg))
    child = TrainConfig.from_dict({**parent_cfg, "seed": 4, "init_from": str(parent_file),
                                   "autoencoder_training": dict(epochs=0, batch_size=16)})
    assert child.classifier_fingerprint() != TrainConfig.from_dict(parent_cfg).classifier_fingerprint()
    logs: list[str] = []
    first = run_training(child, tmp_path / "b1", work_dir=tmp_path / "w", progress=False,
                         device="cpu", log=logs.append)
    assert any("training the bundle of" in s for s in logs)
    parent = Bundle.load(next((tmp_path / "w" / "init_from").iterdir()), device="cpu")
    # autoencoder_training.epochs = 0: the parent's autoencoder, unchanged
    for (k, v), (_, w) in zip(parent.autoencoder.state_dict().items(), first.autoencoder.state_dict().items()):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    # the classifier continued from the parent's weights: it moved, but stayed close to them
    moved = [float((v.float() - w.float()).abs().max()) for (k, v), (_, w)
             in zip(parent.classifier.state_dict().items(), first.classifier.state_dict().items())
             if v.is_floating_point()]
    assert max(moved) > 0
    meta = first.meta["training"]["init_from"]
    assert meta["config_file"] == str(parent_file)
    assert meta["training"]["classifier_history"] == parent.meta["training"]["classifier_history"]
    from cfviewer.models.model_card import _stage_lines

    lines = _stage_lines(first.meta["training"])
    assert lines[0].startswith("- Trained in 2 stages") and "stage 1 (`" in lines[1]
    assert "kept as trained in the earlier stage" in lines[2]
    # a second run reuses the parent bundle from the work directory, and ends where the first did
    logs.clear()
    second = run_training(child, tmp_path / "b2", work_dir=tmp_path / "w", progress=False,
                          device="cpu", log=logs.append)
    assert any("reusing the bundle of" in s for s in logs)
    x = parent.autoencoder.decode(parent.autoencoder.encode(torch.zeros(1, 1, 32, 32))).detach()
    np.testing.assert_array_equal(second.predict(x[0, 0].numpy()), first.predict(x[0, 0].numpy()))
    # a classifier that does not fit the parent's weights is refused by name
    wider = TrainConfig.from_dict({**child.to_dict(), "classifier_training": dict(epochs=1, batch_size=16),
                                   "autoencoder_training": dict(epochs=0, batch_size=16),
                                   "classifier": dict(widths=[8, 16, 16, 32], stem_width=8)})
    with pytest.raises(TrainConfigError, match="its classifier does not fit"):
        run_training(wider, tmp_path / "b3", work_dir=tmp_path / "w3", progress=False,
                     device="cpu", log=lambda s: None)
    with pytest.raises(TrainConfigError, match="no such training config file"):
        TrainConfig.from_dict({**parent_cfg, "init_from": str(tmp_path / "missing.json")})


def test_reconstruction_fraction_shows_the_classifier_its_autoencoders_images():
    from cfviewer.models.train import robust_classifier_loss

    torch.manual_seed(0)
    from cfviewer.models.classifier import Classifier

    clf = Classifier(widths=[8, 8, 8, 8], stem_width=8).eval()
    x = torch.rand(4, 1, 32, 32) * 2048 - 1024
    y = torch.zeros(4, 6)
    seen: list[torch.Tensor] = []

    def reconstruct(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.clone())
        return torch.zeros_like(batch)

    mixed = robust_classifier_loss(0.0, None, reconstruct, 0.5)(clf, x, y)
    assert len(seen) == 1 and seen[0].shape[0] == 2          # half the batch, the first half
    by_hand = torch.nn.functional.binary_cross_entropy_with_logits(
        clf.logits(torch.cat([torch.zeros_like(x[:2]), x[2:]])), y)
    torch.testing.assert_close(mixed, by_hand)
    torch.testing.assert_close(robust_classifier_loss(0.0)(clf, x, y),
                               torch.nn.functional.binary_cross_entropy_with_logits(clf.logits(x), y))
    with pytest.raises(TrainConfigError, match="reconstruction_fraction needs a trained autoencoder"):
        TrainConfig.from_dict({**TINY, "reconstruction_fraction": 0.5})


def test_options_added_later_keep_old_fingerprints_while_unused():
    cfg = TrainConfig.from_dict(TINY)
    doc = {k: v for k, v in cfg.to_dict().items() if k not in TrainConfig.LATER_KEYS}
    import hashlib

    assert cfg.fingerprint() == hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def test_training_splits_walk_the_init_from_chain():
    from cfviewer.models.model_card import HeldOutSeedError, _check_disjoint
    from cfviewer.models.train import training_splits

    parent = {"data_seeds": {"train": 11, "val": 12}, "n_train": 500, "n_val": 50}
    child = {"data_seeds": {"train": 21, "val": 22}, "n_train": 400, "n_val": 40,
             "init_from": {"config_file": "s1.json", "training": parent}}
    assert training_splits(parent) == [("train", 11, 500), ("val", 12, 50)]
    assert training_splits(child) == [("stage 1 train", 11, 500), ("stage 1 val", 12, 50),
                                      ("stage 2 train", 21, 400), ("stage 2 val", 22, 40)]
    assert training_splits(None) == []
    # three stages as run_training records them: the grandparent beside the parent's training
    grandchild = {"data_seeds": {"train": 31, "val": 32}, "n_train": 300, "n_val": 30,
                  "init_from": {"config_file": "s2.json", "training": {k: v for k, v in child.items() if k != "init_from"},
                                "init_from": child["init_from"]}}
    assert [s for s, _, _ in training_splits(grandchild)] == [
        "stage 1 train", "stage 1 val", "stage 2 train", "stage 2 val", "stage 3 train", "stage 3 val"]

    class Fake:
        meta = {"training": child}

    with pytest.raises(HeldOutSeedError, match="stage 1 train split"):
        _check_disjoint(Fake(), 20, 11)       # held-out seed 11 = the parent's training set
    _check_disjoint(Fake(), 20, 2026)
