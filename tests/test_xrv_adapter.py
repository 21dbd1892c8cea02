"""torchxrayvision adapter (cfviewer/models/xrv.py).

The tests that need torchxrayvision skip when it is absent (the main venv must not get it:
it needs torchvision, which here exists only for torch 2.14.1); `bash .ci/xrv.sh` runs this
file in the separate .venv-xrv. The pickle refusal (trust_pickle) is tested without it. Weights are random-initialised xrv models saved to tmp files,
since pretrained weights cannot be downloaded here.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from cfviewer import PATHOLOGIES
from cfviewer.errors import BundleError, CfviewerError, UnknownPathologyError
from cfviewer.models import xrv as xrv_adapter
from cfviewer.models.xrv import PickleTrustWarning, XrvNotInstalledError, load_xrv_bundle

R = 224


# ---------------------------------------------------------------------- always runs
def test_missing_extra_raises_clear_error(monkeypatch, tmp_path):
    weights = tmp_path / "w.pt"
    torch.save({"classifier.weight": torch.zeros(6, 4)}, weights)
    monkeypatch.setitem(sys.modules, "torchxrayvision", None)  # import now raises ImportError
    with pytest.raises(XrvNotInstalledError) as info:
        load_xrv_bundle(weights)
    assert isinstance(info.value, CfviewerError)
    msg = str(info.value)
    assert "pip install torch==2.14.1 torchvision==0.29.1 -e '.[xrv]'" in msg
    assert "torchxrayvision" in msg


class _RunsCodeWhenUnpickled:
    """Unpickling this creates the folder `path` (as any code in a pickle could run)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return (os.makedirs, (self.path,))


def _no_xrv_needed(monkeypatch):
    # The refusal happens while reading the file, before any torchxrayvision class is used:
    # stand in for the package so this runs in the main venv (no torchvision there).
    monkeypatch.setattr(xrv_adapter, "import_xrv", lambda: object())


def test_trust_pickle_defaults_to_false():
    import inspect

    assert inspect.signature(load_xrv_bundle).parameters["trust_pickle"].default is False


def test_pickles_are_refused_by_default_and_nothing_in_them_runs(monkeypatch, tmp_path):
    _no_xrv_needed(monkeypatch)
    sentinel = tmp_path / "code-ran"
    evil = tmp_path / "densenet121-res224-all.pt"
    torch.save({"state_dict": {"classifier.weight": torch.zeros(18, 4)}, "x": _RunsCodeWhenUnpickled(sentinel)}, evil)
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(4, 18), module)  # a whole pickled module, like xrv's releases
    for path in (evil, module):
        with pytest.raises(BundleError) as info:
            load_xrv_bundle(path, device="cpu")  # the default: trust_pickle=False
        msg = str(info.value)
        assert str(path) in msg and "pickled objects" in msg and "trust_pickle=True" in msg
        assert "state_dict()" in msg  # how to convert the file instead
    assert not sentinel.exists()  # nothing stored in the files ran


def test_trusting_a_pickle_warns_naming_the_file(monkeypatch, tmp_path):
    import hashlib

    _no_xrv_needed(monkeypatch)
    sentinel = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"x": _RunsCodeWhenUnpickled(sentinel)}, evil)
    with pytest.warns(PickleTrustWarning, match=str(evil)) as record, pytest.raises(BundleError):
        load_xrv_bundle(evil, trust_pickle=True, device="cpu")  # runs, then is no state dict
    assert sentinel.exists()  # what trust_pickle=True means, and why it warns first
    assert hashlib.sha256(evil.read_bytes()).hexdigest() in str(record[0].message)
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(4, 18), module)
    with pytest.warns(PickleTrustWarning, match=str(module)):
        loaded = xrv_adapter._read_weights(module, "classifier (densenet121)", trust_pickle=True)
    assert loaded.pickled and set(loaded.state) == {"weight", "bias"}


def test_a_plain_state_dict_loads_without_trust_or_warning(tmp_path):
    import warnings

    path = tmp_path / "plain.pt"
    torch.save({"classifier.weight": torch.zeros(18, 4)}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PickleTrustWarning)
        loaded = xrv_adapter._read_weights(path, "classifier (densenet121)", trust_pickle=False)
    assert not loaded.pickled and list(loaded.state) == ["classifier.weight"]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a torch file")
    with pytest.raises(BundleError, match=r"junk\.pt is corrupt"):
        xrv_adapter._read_weights(junk, "classifier (densenet121)", trust_pickle=False)


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def xrv():
    return pytest.importorskip("torchxrayvision")


@pytest.fixture(scope="module")
def densenet(xrv):
    """A random-init xrv DenseNet (18 default outputs, no op_threshs) in eval mode."""
    torch.manual_seed(0)
    model = xrv.models.DenseNet(weights=None).eval()
    # Non-trivial BN statistics so outputs vary with the input.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(4.0)
    return model


@pytest.fixture(scope="module")
def densenet_file(densenet, tmp_path_factory):
    path = tmp_path_factory.mktemp("xrv") / "densenet_state.pt"
    torch.save(densenet.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def ae_file(xrv, tmp_path_factory):
    torch.manual_seed(1)
    ae = xrv.autoencoders.ResNetAE(weights=None).eval()
    path = tmp_path_factory.mktemp("xrv") / "ae_state.pt"
    torch.save(ae.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def images():
    g = np.random.default_rng(0)
    return g.uniform(-1024, 1024, size=(2, R, R)).astype(np.float32)


def _raw_logits(model, images):
    with torch.no_grad():
        x = torch.as_tensor(images)[:, None]
        return model.classifier(model.features2(x))


# ---------------------------------------------------------------------- loading
def test_densenet_state_dict_probabilities_and_mapping(xrv, densenet, densenet_file, images):
    bundle = load_xrv_bundle(densenet_file, device="cpu")
    assert bundle.pathologies == list(PATHOLOGIES)  # all six are among xrv's 18 targets
    assert bundle.resolution == R and bundle.autoencoder is None
    assert bundle.meta["xrv"]["calibrated"] is False
    assert bundle.meta["xrv"]["missing_pathologies"] == []
    assert bundle.thresholds == {p: 0.5 for p in PATHOLOGIES}
    probs = bundle.predict(images)
    assert probs.shape == (2, 6) and probs.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))
    # Column j is xrv's output for the same pathology name (sigmoid of its logit: no op_threshs).
    cols = [xrv.datasets.default_pathologies.index(p) for p in PATHOLOGIES]
    expected = torch.sigmoid(_raw_logits(densenet, images))[:, cols].numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5)
    assert np.ptp(probs) > 1e-3  # not a constant output
    # logits() is the pre-sigmoid score of the same columns; .target_layer is a module.
    x = bundle.preprocess(images)
    with torch.no_grad():
        np.testing.assert_allclose(
            torch.sigmoid(bundle.classifier.logits(x)).numpy(), probs, rtol=1e-4, atol=1e-5
        )
    # target_layer: the last feature map (7 x 7 at 224 px, DenseNet-121's 1024 channels).
    seen = []
    handle = bundle.classifier.target_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        bundle.classifier(x)
    handle.remove()
    assert len(seen) == 1 and tuple(seen[0].shape) == (2, 1024, 7, 7)
    assert bundle.classifier.pathologies == list(PATHOLOGIES)


def test_checkpoint_formats_labels_and_aliases(xrv, tmp_path, images):
    torch.manual_seed(2)
    labels = ["Mass", "Consolidation", "Pleural Effusion", "Cardiomegaly"]
    model = xrv.models.DenseNet(weights=None, num_classes=4, apply_sigmoid=True).eval()
    sd = model.state_dict()
    with torch.no_grad():
        ref = model(torch.as_tensor(images)[:, None]).numpy()

    ckpt = tmp_path / "ckpt.pth"
    torch.save({"state_dict": sd, "labels": labels, "epoch": 7}, ckpt)
    b = load_xrv_bundle(ckpt, device="cpu")
    # default = cfviewer pathologies the model predicts, in cfviewer order; alias mapped.
    assert b.pathologies == ["Cardiomegaly", "Effusion", "Mass"]
    assert sorted(b.meta["xrv"]["missing_pathologies"]) == ["Atelectasis", "Lung Opacity", "Pneumothorax"]
    np.testing.assert_allclose(b.predict(images), ref[:, [3, 2, 0]], rtol=1e-4, atol=1e-5)

    # {"model": state dict} with DataParallel prefixes; labels given by the caller; any order.
    dp = tmp_path / "dp.pt"
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, dp)
    b2 = load_xrv_bundle(dp, labels=labels, pathologies=["consolidation", "MASS"], device="cpu")
    assert b2.pathologies == ["Consolidation", "Mass"]
    np.testing.assert_allclose(b2.predict(images), ref[:, [1, 0]], rtol=1e-4, atol=1e-5)

    # 4 outputs and no names anywhere: say what to pass.
    bare = tmp_path / "bare.pt"
    torch.save(sd, bare)
    with pytest.raises(BundleError, match=r"4 outputs.*labels="):
        load_xrv_bundle(bare, device="cpu")
    with pytest.raises(BundleError, match="exactly 4 names"):
        load_xrv_bundle(bare, labels=["Mass"], device="cpu")


def test_op_threshs_calibrated_convention(xrv, tmp_path, images):
    """With operating points, outputs are xrv's op_norm probabilities: 0.5 = operating point."""
    torch.manual_seed(3)
    th = torch.full((18,), float("nan"))
    names = list(xrv.datasets.default_pathologies)
    for p, t in zip(PATHOLOGIES, (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)):
        th[names.index(p)] = t
    model = xrv.models.DenseNet(weights=None, op_threshs=th).eval()
    path = tmp_path / "calibrated.pt"
    torch.save(model.state_dict(), path)  # op_threshs is a registered buffer: it is in here
    assert "op_threshs" in model.state_dict()

    b = load_xrv_bundle(path, device="cpu")
    assert b.meta["xrv"]["calibrated"] is True
    probs = b.predict(images)
    cols = [names.index(p) for p in PATHOLOGIES]
    with torch.no_grad():
        ref = model(torch.as_tensor(images)[:, None])[:, cols].numpy()
        raw = torch.sigmoid(_raw_logits(model, images))[:, cols].numpy()
    np.testing.assert_allclose(probs, ref, rtol=1e-4, atol=1e-5)
    thr = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert np.array_equal(probs >= 0.5, raw >= thr)  # the operating point maps to 0.5
    # Outputs without an operating point (NaN) are not "predicted": asking for one fails.
    with pytest.raises(UnknownPathologyError, match="Consolidation"):
        load_xrv_bundle(path, pathologies=["Consolidation"], device="cpu")
    # An explicit op_threshs argument overrides the stored one.
    b_plain = load_xrv_bundle(path, op_threshs=[0.5] * 18, device="cpu")
    np.testing.assert_allclose(b_plain.predict(images), raw, rtol=1e-4, atol=1e-5)


def test_release_metadata_by_file_name(xrv, densenet, tmp_path):
    """A file named like an xrv release gets that release's labels and operating points
    (read from xrv's metadata table; nothing is downloaded)."""
    import os

    url = xrv.models.model_urls["densenet121-res224-nih"]["weights_url"]
    path = tmp_path / os.path.basename(url)
    torch.save(densenet.state_dict(), path)
    b = load_xrv_bundle(path, device="cpu")
    assert b.meta["xrv"]["calibrated"] is True
    assert b.meta["xrv"]["missing_pathologies"] == ["Lung Opacity"]  # NIH has no Lung Opacity
    assert b.pathologies == [p for p in PATHOLOGIES if p != "Lung Opacity"]
    with pytest.raises(UnknownPathologyError) as info:
        load_xrv_bundle(path, pathologies=["Lung Opacity"], device="cpu")
    assert "Lung Opacity" in str(info.value) and "Effusion" in str(info.value)
    # Named explicitly, the same metadata applies to any file name.
    other = tmp_path / "renamed.pt"
    other.write_bytes(path.read_bytes())
    b2 = load_xrv_bundle(other, xrv_weights="densenet121-res224-nih", device="cpu")
    assert b2.pathologies == b.pathologies
    with pytest.raises(BundleError, match="unknown torchxrayvision release"):
        load_xrv_bundle(other, xrv_weights="densenet121-res224-nope", device="cpu")


def test_pickled_module_needs_trust(xrv, densenet, tmp_path, images):
    """xrv's released .pt files are whole pickled modules."""
    path = tmp_path / "module.pt"
    torch.save(densenet, path)
    with pytest.raises(BundleError, match="trust_pickle=True"):
        load_xrv_bundle(path, device="cpu")  # refused by default
    with pytest.raises(BundleError, match="trust_pickle=True"):
        load_xrv_bundle(path, trust_pickle=False, device="cpu")
    with pytest.warns(PickleTrustWarning, match=str(path)):
        b = load_xrv_bundle(path, trust_pickle=True, device="cpu")
    assert b.meta["xrv"]["weights_pickled"] is True
    cols = [xrv.datasets.default_pathologies.index(p) for p in PATHOLOGIES]
    expected = torch.sigmoid(_raw_logits(densenet, images))[:, cols].numpy()
    np.testing.assert_allclose(b.predict(images), expected, rtol=1e-4, atol=1e-5)


def test_pathology_errors(densenet_file):
    with pytest.raises(UnknownPathologyError) as info:
        load_xrv_bundle(densenet_file, pathologies=["Effusion", "Tuberculosis"], device="cpu")
    assert "Tuberculosis" in str(info.value) and "Lung Opacity" in str(info.value)
    with pytest.raises(BundleError, match="same output twice"):
        load_xrv_bundle(densenet_file, pathologies=["Effusion", "pleural effusion"], device="cpu")
    b = load_xrv_bundle(densenet_file, pathologies=["Pleural_Thickening", "Fracture"], device="cpu")
    assert b.pathologies == ["Pleural_Thickening", "Fracture"]


def test_missing_and_corrupt_files(xrv, tmp_path):
    missing = tmp_path / "nope" / "densenet.pt"
    with pytest.raises(BundleError) as info:
        load_xrv_bundle(missing, device="cpu")
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a torch file")
    with pytest.raises(BundleError, match=r"junk\.pt is corrupt"):
        load_xrv_bundle(junk, device="cpu")
    with pytest.raises(BundleError, match="unknown torchxrayvision architecture 'vit'"):
        load_xrv_bundle(junk, arch="vit", device="cpu")


def test_wrong_architecture(densenet_file, ae_file):
    with pytest.raises(BundleError) as info:
        load_xrv_bundle(densenet_file, arch="resnet50", device="cpu")
    msg = str(info.value)
    assert str(densenet_file) in msg and "resnet50" in msg and "'fc.weight'" in msg
    # An autoencoder file as the classifier: names the file, the arch, and mismatching keys.
    with pytest.raises(BundleError) as info:
        load_xrv_bundle(ae_file, device="cpu")
    assert str(ae_file) in str(info.value) and "densenet121" in str(info.value)
    # A classifier file as the autoencoder.
    with pytest.raises(BundleError) as info:
        load_xrv_bundle(densenet_file, ae_weights_path=densenet_file, device="cpu")
    msg = str(info.value)
    assert "ResNetAE" in msg and "missing keys" in msg and "unexpected keys" in msg
    assert "conv1.weight" in msg or "layer1" in msg


def test_shape_mismatch_named(xrv, densenet, tmp_path):
    sd = dict(densenet.state_dict())
    sd["features.conv0.weight"] = torch.zeros(64, 3, 7, 7)  # a 3-channel (RGB) stem
    path = tmp_path / "rgb.pt"
    torch.save(sd, path)
    with pytest.raises(BundleError, match=r"shape mismatches.*features\.conv0\.weight"):
        load_xrv_bundle(path, device="cpu")


def test_autoencoder_encode_decode(densenet_file, ae_file, images):
    b = load_xrv_bundle(densenet_file, ae_weights_path=ae_file, device="cpu")
    assert b.resolution == R and b.meta["xrv"]["autoencoder"]["path"] == str(ae_file)
    x = b.preprocess(images)
    with torch.no_grad():
        z = b.autoencoder.encode(x)
        y = b.autoencoder.decode(z)
    assert z.shape[0] == 2 and z.ndim == 4
    assert y.shape == (2, 1, R, R)
    assert float(y.min()) >= -1024 and float(y.max()) <= 1024
    rec = b.reconstruct(images)
    assert rec.shape == (2, R, R) and np.isfinite(rec).all()
    with pytest.raises(BundleError, match="224"):
        b.autoencoder.encode(torch.zeros(1, 1, 128, 128))
    with pytest.raises(BundleError, match="resolution=512"):
        load_xrv_bundle(densenet_file, ae_weights_path=ae_file, resolution=512, device="cpu")


def test_resnet50(tmp_path):
    """xrv.models.ResNet (torchvision ResNet-50, 1-channel stem): native 512 px; a 224 px
    bundle resizes inside, as xrv does."""
    from cfviewer.models.xrv import XrvClassifier

    pytest.importorskip("torchxrayvision")
    torch.manual_seed(4)
    labels = ["Atelectasis", "Effusion", "Pneumothorax"]
    ref = XrvClassifier("resnet50", labels, labels).eval()
    path = tmp_path / "resnet50.pt"
    torch.save(ref.model.model.state_dict(), path)  # the torchvision module's keys
    b = load_xrv_bundle(path, arch="resnet50", labels=labels, resolution=R, device="cpu")
    assert b.pathologies == labels and b.resolution == R
    img = np.random.default_rng(1).uniform(-1024, 1024, size=(R, R)).astype(np.float32)
    probs = b.predict(img)
    assert probs.shape == (1, 3) and np.all((probs >= 0) & (probs <= 1))
    with torch.no_grad():
        expected = ref(b.preprocess(img)).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5)
    assert b.classifier.target_layer is b.classifier.model.model.layer4
    # The same weights saved with the wrapper's "model." prefix load too.
    path2 = tmp_path / "resnet50_wrapped.pt"
    torch.save(ref.model.state_dict(), path2)
    b2 = load_xrv_bundle(path2, arch="resnet50", labels=labels, resolution=R, device="cpu")
    np.testing.assert_allclose(b2.predict(img), probs, rtol=1e-4, atol=1e-5)
    # Default resolution without an autoencoder is the architecture's native 512 px.
    assert load_xrv_bundle(path, arch="resnet50", labels=labels, device="cpu").resolution == 512


def test_bundle_save_load_roundtrip(xrv, tmp_path, images):
    from cfviewer.models.bundle import Bundle

    torch.manual_seed(5)
    th = torch.linspace(0.1, 0.9, 18)
    model = xrv.models.DenseNet(weights=None, op_threshs=th).eval()
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    b = load_xrv_bundle(path, pathologies=["Mass", "Effusion"], device="cpu")
    out = b.save(tmp_path / "bundle")
    loaded = Bundle.load(out, device="cpu")
    assert loaded.pathologies == ["Mass", "Effusion"]
    assert loaded.meta["xrv"]["calibrated"] is True
    np.testing.assert_allclose(loaded.predict(images), b.predict(images), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- explainers
@pytest.mark.slow
def test_explainers_run_on_xrv_bundle(densenet_file, ae_file, images):
    from cfviewer.explain import get_explainer

    b = load_xrv_bundle(densenet_file, ae_weights_path=ae_file, device="cpu")
    img = images[0]
    probs = b.predict(img)[0]
    # The most probable pathology has a positive logit, so its Grad-CAM (for a linear head
    # after global average pooling: the per-position logit contribution) is positive somewhere.
    target = b.pathologies[int(np.argmax(probs))]
    assert probs.max() > 0.5
    cam = get_explainer("gradcam", b).explain(img, target=target)
    assert cam.map.shape == (R, R) and np.isfinite(cam.map).all()
    assert float(cam.map.max()) > 0
    assert math.isclose(cam.pred_original, float(probs.max()), rel_tol=1e-4)

    gb = get_explainer("guided_backprop", b).explain(img, target=target)  # needs no in-place ReLU
    assert gb.map.shape == (R, R) and np.isfinite(gb.map).all() and float(gb.map.max()) > 0

    ls = get_explainer(
        "latentshift-max", b, search_max_lambda=60.0, n_frames=3, search_batch=4
    ).explain(img, target=target)
    assert ls.map.shape == (R, R) and np.isfinite(ls.map).all()
    assert ls.frames is not None and ls.frames.shape[1:] == (R, R)
    assert ls.pred_reconstruction is not None and 0.0 <= ls.pred_reconstruction <= 1.0
    assert ls.frames.min() >= -1024 and ls.frames.max() <= 1024
