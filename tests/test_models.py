"""Classifier, ResNetAE and Bundle: shapes, ranges, persistence and error messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cfviewer import PATHOLOGIES
from cfviewer.errors import BundleError, CfviewerError, UnknownPathologyError
from cfviewer.models import Bundle, Classifier, ResNetAE, elastic_loss, random_bundle


def _images(n: int, r: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, r, r, generator=g) * 2048 - 1024


def test_classifier_outputs_probabilities_and_logits():
    torch.manual_seed(0)
    clf = Classifier(widths=(8, 16, 16, 32), stem_width=8).eval()
    x = _images(3, 64)
    p = clf(x)
    assert p.shape == (3, len(PATHOLOGIES))
    assert torch.all((p >= 0) & (p <= 1))
    torch.testing.assert_close(p, torch.sigmoid(clf.logits(x)))
    assert clf.pathologies == list(PATHOLOGIES)
    assert clf.target_layer is clf.stages[-1]


def test_lse_pooled_classifier_sends_the_gradient_to_the_evidence(tmp_path):
    torch.manual_seed(0)
    clf = Classifier(pool="lse", lse_r=10.0, last_stride=1).eval()
    x = torch.randn(2, 1, 128, 128) * 200
    maps = clf.logit_maps(x)
    assert maps.shape == (2, len(PATHOLOGIES), 8, 8)
    z = clf.logits(x)
    # LSE lies between the mean and the max of the logit map
    flat = maps.flatten(2)
    assert torch.all(z >= flat.mean(2) - 1e-5) and torch.all(z <= flat.amax(2) + 1e-5)
    # the gradient of the pooled logit wrt the map is softmax(r * map): mostly on the top cells
    m = maps.detach().clone().requires_grad_(True)
    pooled = (torch.logsumexp(10.0 * m.flatten(2), 2) - np.log(64)) / 10.0
    (g,) = torch.autograd.grad(pooled[0, 0], m)
    torch.testing.assert_close(g[0, 0].flatten(), torch.softmax(10.0 * m[0, 0].flatten(), 0))
    # Platt calibration inside the module: a * logit + b, kept through save and load
    clf.calibrate(2, 1.7, -0.4)
    torch.testing.assert_close(clf.logits(x)[:, 2], 1.7 * z[:, 2] - 0.4)
    torch.testing.assert_close(clf.logits(x)[:, 0], z[:, 0])
    b = Bundle(clf, resolution=128, device="cpu")
    b.save(tmp_path / "b")
    again = Bundle.load(tmp_path / "b", device="cpu")
    torch.testing.assert_close(again.classifier.logits(x), clf.logits(x))
    with pytest.raises(ValueError, match="pool 'max'"):
        Classifier(pool="max")
    with pytest.raises(ValueError, match="no logit maps"):
        Classifier().logit_maps(x)
    assert "pool" not in Classifier().config()  # average-pooled configs unchanged


def test_classifier_target_layer_is_last_feature_map_at_224():
    clf = Classifier().eval()
    feats = {}
    clf.target_layer.register_forward_hook(lambda m, i, o: feats.setdefault("o", o))
    clf(_images(1, 224))
    assert feats["o"].shape[-2:] == (7, 7)


def test_classifier_relus_are_distinct_non_inplace_modules():
    clf = Classifier()
    relus = [m for m in clf.modules() if isinstance(m, torch.nn.ReLU)]
    assert relus and all(not r.inplace for r in relus)
    assert len({id(r) for r in relus}) == len(relus)
    # each ReLU module runs exactly once per forward (captum GuidedBackprop requirement)
    calls: dict[int, int] = {}
    for r in relus:
        r.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
    clf(_images(1, 64))
    assert set(calls.values()) == {1} and len(calls) == len(relus)


def test_classifier_params_in_budget():
    n = sum(p.numel() for p in Classifier().parameters())
    assert 0.5e6 <= n <= 3e6


def test_autoencoder_shapes_and_range():
    torch.manual_seed(0)
    ae = ResNetAE(widths=(8, 16, 16, 16, 16), latent_channels=8).eval()
    x = _images(2, 224)
    z = ae.encode(x)
    assert z.shape == (2, 8, 7, 7)
    assert ae.latent_shape(224) == (8, 7, 7)
    y = ae.decode(z * 100)  # even a far-away latent decodes into the valid range
    assert y.shape == x.shape
    assert y.abs().max() <= 1024
    torch.testing.assert_close(ae(x), ae.decode(ae.encode(x)))


def test_autoencoder_rejects_indivisible_size():
    ae = ResNetAE(widths=(8, 8), latent_channels=4)
    with pytest.raises(ValueError, match="divisible by 4"):
        ae.encode(torch.zeros(1, 1, 30, 30))


def test_elastic_loss_is_l1_plus_l2_on_normalised_images():
    a = torch.zeros(1, 1, 4, 4)
    b = torch.full((1, 1, 4, 4), 512.0)
    # |0.5| + 0.5^2
    assert elastic_loss(a, b).item() == pytest.approx(0.75)
    assert elastic_loss(b, b).item() == 0.0


def test_latent_gradient_flows_through_decoder_and_classifier():
    b = random_bundle(resolution=64, seed=1)
    x = b.preprocess(np.zeros((64, 64), np.float32))
    z = b.autoencoder.encode(x).detach().requires_grad_(True)
    p = b.classifier(b.autoencoder.decode(z))[:, b.target_index("Mass")]
    (g,) = torch.autograd.grad(p.sum(), z)
    assert g.shape == z.shape and torch.isfinite(g).all() and g.abs().sum() > 0


def test_bundle_preprocess_shapes_resize_and_clip():
    b = random_bundle(resolution=32)
    assert b.preprocess(np.zeros((50, 40), np.float32)).shape == (1, 1, 32, 32)
    assert b.preprocess(np.zeros((3, 32, 32), np.float32)).shape == (3, 1, 32, 32)
    x = b.preprocess(np.full((32, 32), 5000.0, np.float32))
    assert x.max().item() == 1024.0
    with pytest.raises(BundleError, match="single-channel"):
        b.preprocess(np.zeros((2, 3, 32, 32), np.float32))


def test_bundle_predict_is_probabilities_and_batches_consistently():
    b = random_bundle(resolution=32, seed=3)
    imgs = _images(5, 32, seed=5)[:, 0].numpy()
    p = b.predict(imgs)
    assert p.shape == (5, 6) and p.dtype == np.float32
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(b.predict(imgs, batch_size=2), p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.predict(imgs[0]), p[:1], rtol=1e-5, atol=1e-6)


def test_target_index_and_unknown_pathology():
    b = random_bundle(resolution=32)
    assert b.target_index("Pneumothorax") == 5
    with pytest.raises(UnknownPathologyError, match="Pneumothorax") as info:
        b.target_index("Pneumonia")
    assert isinstance(info.value, CfviewerError)
    assert "Pneumonia" in str(info.value)


def test_positive_uses_per_pathology_thresholds():
    clf = Classifier(widths=(8, 8, 8, 8), stem_width=4)
    b = Bundle(clf, None, resolution=32, thresholds={"Mass": 0.2}, device="cpu")
    assert b.thresholds["Mass"] == 0.2 and b.thresholds["Effusion"] == 0.5
    probs = np.array([[0.3] * 6, [0.6] * 6])
    pos = b.positive(probs)
    assert pos[0].tolist() == [False, False, False, False, True, False]
    assert pos[1].all()
    with pytest.raises(BundleError, match="6 probabilities"):
        b.positive(np.zeros((2, 5)))
    with pytest.raises(BundleError, match="Pneumonia"):
        Bundle(clf, None, resolution=32, thresholds={"Pneumonia": 0.3}, device="cpu")


def test_bundle_rejects_autoencoder_without_encode_decode():
    with pytest.raises(BundleError, match="encode"):
        Bundle(Classifier(widths=(8,), blocks=(1,)), torch.nn.Identity(), device="cpu")


def test_save_load_round_trip_identical_predictions(tmp_path):
    b = random_bundle(resolution=32, seed=7)
    b.thresholds["Mass"] = 0.31
    b.meta["note"] = "round trip"
    # make BN running stats non-trivial so they must be saved too
    b.classifier.train()
    with torch.no_grad():
        b.classifier(_images(8, 32, seed=9))
    b.classifier.eval()
    imgs = _images(4, 32, seed=11)[:, 0].numpy()
    expected = b.predict(imgs)
    recon = b.reconstruct(imgs)
    b.save(tmp_path / "bundle")
    loaded = Bundle.load(tmp_path / "bundle", device="cpu")
    np.testing.assert_array_equal(loaded.predict(imgs), expected)
    np.testing.assert_array_equal(loaded.reconstruct(imgs), recon)
    assert loaded.thresholds == b.thresholds
    assert loaded.meta["note"] == "round trip"
    assert loaded.resolution == 32 and loaded.pathologies == list(PATHOLOGIES)
    assert not loaded.classifier.training


def test_save_load_without_autoencoder(tmp_path):
    b = random_bundle(resolution=32, autoencoder=False)
    b.save(tmp_path)
    loaded = Bundle.load(tmp_path, device="cpu")
    assert loaded.autoencoder is None
    with pytest.raises(BundleError, match="no autoencoder"):
        loaded.reconstruct(np.zeros((32, 32), np.float32))


def test_load_missing_directory_and_json(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.load(tmp_path / "nope")
    with pytest.raises(BundleError, match="bundle.json is missing"):
        Bundle.load(tmp_path)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(BundleError, match="not a cfviewer model bundle"):
        Bundle.load(tmp_path)


def test_load_missing_and_corrupt_weights(tmp_path):
    random_bundle(resolution=32).save(tmp_path)
    (tmp_path / "autoencoder.pt").unlink()
    with pytest.raises(BundleError, match="autoencoder.pt is missing"):
        Bundle.load(tmp_path)
    (tmp_path / "classifier.pt").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="classifier.pt is corrupt"):
        Bundle.load(tmp_path)


def test_load_shape_mismatch_names_file_and_expectation(tmp_path):
    b = random_bundle(resolution=32)
    b.save(tmp_path)
    doc = json.loads((tmp_path / "bundle.json").read_text())
    doc["classifier"]["config"]["widths"] = [8, 16, 24, 48]
    (tmp_path / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"classifier.pt: tensor .* has shape .* expected"):
        Bundle.load(tmp_path)


def test_load_wrong_model_file(tmp_path):
    b = random_bundle(resolution=32)
    b.save(tmp_path)
    # the autoencoder's weights where the classifier's belong
    (tmp_path / "classifier.pt").write_bytes((tmp_path / "autoencoder.pt").read_bytes())
    with pytest.raises(BundleError, match="does not fit .*Classifier"):
        Bundle.load(tmp_path)


def test_load_refuses_foreign_class(tmp_path):
    random_bundle(resolution=32).save(tmp_path)
    doc = json.loads((tmp_path / "bundle.json").read_text())
    doc["classifier"]["class"] = "os:system"
    (tmp_path / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="not a cfviewer model class"):
        Bundle.load(tmp_path)


def test_random_bundle_is_deterministic_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = random_bundle(resolution=32, seed=4)
    after = torch.rand(1)
    assert before == after
    b = random_bundle(resolution=32, seed=4)
    x = np.linspace(-1000, 1000, 32 * 32, dtype=np.float32).reshape(32, 32)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


def test_captum_gradcam_and_guided_backprop_work_on_the_classifier():
    from captum.attr import GuidedBackprop, LayerGradCam

    b = random_bundle(resolution=64, seed=2)
    x = b.preprocess(np.linspace(-1000, 1000, 64 * 64, dtype=np.float32).reshape(64, 64))
    target = b.target_index("Effusion")
    cam = LayerGradCam(b.classifier, b.classifier.target_layer).attribute(x, target=target)
    assert cam.shape[-2:] == (2, 2) and torch.isfinite(cam).all()  # R / 32
    gbp = GuidedBackprop(b.classifier).attribute(x.clone().requires_grad_(True), target=target)
    assert gbp.shape == x.shape and torch.isfinite(gbp).all() and gbp.abs().sum() > 0
