"""`cfviewer explain` end to end on a PNG and on a DICOM."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cfviewer import imaging
from cfviewer.cli import main
from cfviewer.models import random_bundle

RES = 64


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundle")
    random_bundle(resolution=RES, seed=4).save(d)
    return d


@pytest.fixture(scope="module")
def radiograph() -> np.ndarray:
    yy, xx = np.mgrid[:90, :120] / 100.0
    img = 900 * np.exp(-((yy - 0.45) ** 2 + (xx - 0.6) ** 2) / 0.05) - 500
    return np.clip(img, -1024, 1024).astype(np.float32)


def test_png_latentshift_writes_every_artifact(tmp_path, bundle_dir, radiograph, capsys):
    png = imaging.write_png16(tmp_path / "cxr.png", radiograph)
    out = tmp_path / "out"
    rc = main(["explain", "--image", str(png), "--target", "lung_opacity", "--method", "latentshift-max",
               "--bundle", str(bundle_dir), "--param", "n_frames=6", "--param", "search_pred_diff=0.8",
               "--gif-size", "128", "--out", str(out)])
    assert rc == 0
    assert "latentshift-max for Lung Opacity" in capsys.readouterr().out
    for name in ("map.npy", "map.png", "overlay.png", "image.png", "counterfactual.png",
                 "animation.gif", "explanation.json"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "explanation.json").read_text())
    assert doc["method"] == "latentshift-max" and doc["target"] == "Lung Opacity"
    assert len(doc["lambdas"]) == 6 and doc["lambdas"][-1] == 0.0
    assert doc["params"]["search_pred_diff"] == 0.8 and doc["params"]["n_frames"] == 6
    assert doc["evaluations"]["decoder"] > 0 and doc["timings"]["total"] > 0
    assert doc["image_format"] == "png" and doc["pred_reconstruction"] is not None
    m = np.load(out / "map.npy")
    assert m.shape == (RES, RES) and m.dtype == np.float32
    # no absolute paths: files by name in --out, the input by name + sha256, the bundle by identity
    import hashlib

    text = (out / "explanation.json").read_text()
    assert str(tmp_path) not in text and str(bundle_dir) not in text

    def strings(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from strings(x)
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
        elif isinstance(v, str):
            yield v

    assert not [v for v in strings(doc) if v.startswith("/") or "\\" in v]
    assert doc["image_name"] == "cxr.png" and doc["image_sha256"] == hashlib.sha256(png.read_bytes()).hexdigest()
    assert doc["bundle"] == bundle_dir.name and doc["bundle_id"].startswith(bundle_dir.name + "@")
    assert all("/" not in f and (out / f).is_file() for f in doc["files"].values())
    gif = Image.open(out / "animation.gif")
    assert gif.n_frames >= 10 and gif.size[0] == 128


def test_dicom_gradient_with_augmentation(tmp_path, bundle_dir, radiograph):
    dcm = imaging.write_dicom(tmp_path / "cxr.dcm", radiograph, patient_id="P001")
    out = tmp_path / "out"
    rc = main(["explain", "--image", str(dcm), "--target", "Mass", "--method", "gradient",
               "--bundle", str(bundle_dir), "--augment", "2", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "explanation.json").read_text())
    assert doc["method"] == "gradient+aug2" and doc["image_format"] == "dicom"
    assert not (out / "animation.gif").exists()  # no frames for a gradient map
    # the image went through the centre crop + resize of cfviewer.imaging
    np.testing.assert_allclose(
        np.load(out / "map.npy").shape, (RES, RES)
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "{tmp}/missing.png", "--target", "Mass"], "missing.png: no such file"),
        (["--image", "{png}", "--target", "Mass", "--method", "gradcam2"], "unknown explainer 'gradcam2'"),
        (["--image", "{png}", "--target", "Fracture", "--method", "gradient"], "unknown pathology 'Fracture'"),
        (["--image", "{png}", "--target", "Mass", "--param", "n_stepz=3", "--method", "integrated_gradients"],
         "no parameter 'n_stepz'"),
        (["--image", "{tmp}/junk.png", "--target", "Mass", "--method", "gradient"], "cannot load image"),
    ],
)
def test_user_errors_exit_2_with_a_message(tmp_path, bundle_dir, radiograph, capsys, args, message):
    png = imaging.write_png16(tmp_path / "cxr.png", radiograph)
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    argv = ["explain"] + [a.format(tmp=tmp_path, png=png) for a in args]
    argv += ["--bundle", str(bundle_dir), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_bundle_is_a_clear_error(tmp_path, radiograph, capsys):
    png = imaging.write_png16(tmp_path / "cxr.png", radiograph)
    rc = main(["explain", "--image", str(png), "--target", "Mass", "--bundle", str(tmp_path / "nobundle"),
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "nobundle" in capsys.readouterr().err


def test_list_prints_the_registry(capsys):
    assert main(["explain", "--image", "x", "--target", "y", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert "latentshift-max" in names and "adversarial_fi" in names


def test_search_stopped_at_zero_suggests_no_unchecked_range(tmp_path, bundle_dir, radiograph, capsys):
    png = imaging.write_png16(tmp_path / "cxr.png", radiograph)
    out = tmp_path / "out"
    rc = main(["explain", "--image", str(png), "--target", "Mass", "--bundle", str(bundle_dir),
               "--param", "search_min_pred=1.0", "--gif-size", "64", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "note: the search stopped at lambda 0" in text and "search_min_pred = 1.0" in text
    assert "fix_range=[" not in text  # never a range no rule has checked
    doc = json.loads((out / "explanation.json").read_text())
    assert doc["notes"] and "fix_range=[" not in doc["notes"][0]
    assert doc["params"]["search"]["lower"] == 0.0


def test_demo_forced_range_warns_about_rising_frames_and_blobs(tmp_path, capsys):
    """Issue 8: on the demo bundle a case whose reconstruction is already below 0.05; the old
    note suggested fix_range=[-200,0], which gives saturated blobs and a rising prediction (on the
    stage-3 demo classifier the prediction rises clearly from -400 on, so that range is forced)."""
    from cfviewer import paths
    from cfviewer.phantoms import generate

    if not (paths.demo_bundle_dir() / "bundle.json").is_file():
        pytest.skip("no demo bundle")
    npy = tmp_path / "ph.npy"
    np.save(npy, generate(10_000_000, size=128).image)
    rc = main(["explain", "--image", str(npy), "--target", "Cardiomegaly", "--gif-size", "128",
               "--out", str(tmp_path / "a")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "below search_min_pred" in text and "fix_range=[" not in text and "warning:" not in text
    rc = main(["explain", "--image", str(npy), "--target", "Cardiomegaly", "--gif-size", "128",
               "--param", "fix_range=[-400,0]", "--out", str(tmp_path / "b")])
    assert rc == 0
    text = capsys.readouterr().out
    doc = json.loads((tmp_path / "b" / "explanation.json").read_text())
    assert doc["frame_preds"][0] > doc["frame_preds"][-1] + 0.05  # it does rise
    assert doc["warnings"] == doc["params"]["warnings"] and len(doc["warnings"]) >= 3
    for needle in ("rises along the frames meant to lower it", "leaves the search limits",
                   "pixels are at the [-1024, 1024] limits"):
        assert any(needle in w for w in doc["warnings"]), needle
        assert "warning: the" in text and needle in text
