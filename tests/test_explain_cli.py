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
