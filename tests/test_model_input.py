"""One model input, owned by the Bundle: every path (sampling, precompute, the reader view, the
CLI, the sandbox) hands the model the same field of view of a film, so the probability a reader
is told is the one the explanation was computed at, also on non-square films."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sqlalchemy import select

from cfviewer import PATHOLOGIES, imaging
from cfviewer.errors import BundleError
from cfviewer.models import Bundle
from cfviewer.models.bundle import CENTER_CROP
from cfviewer.study import artifacts, responses
from cfviewer.study.db import open_database
from cfviewer.study.demo import set_up_study
from cfviewer.study.schema import Artifact, CohortItem, Reader
from cfviewer.ui import viewer
from test_study_support import positive_bundle


def _film(h: int, w: int, seed: int) -> np.ndarray:
    """A non-square film whose sides differ (squashing and cropping give other inputs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    img = 700 * np.sin(9 * xx) * np.cos(5 * yy) + rng.normal(0, 120, (h, w))
    img[:, : w // 6] = 900  # a bright band at the left edge: outside the square of a wide film
    img[: h // 6, :] -= 800  # and a dark one at the top: outside the square of a tall film
    return np.clip(img, -1024, 1024).astype(np.float32)


def test_model_input_crops_to_the_centred_square_and_never_squashes():
    b = positive_bundle()
    wide = _film(64, 96, 0)
    y0, y1, x0, x1 = b.field_of_view(wide.shape)
    assert (y0, y1, x0, x1) == (0, 64, 16, 80) == imaging.center_crop_box(64, 96)
    np.testing.assert_array_equal(b.model_input(wide).numpy(), b.model_input(wide[y0:y1, x0:x1]).numpy())
    assert b.field_of_view((96, 64)) == (16, 80, 0, 64)
    # a list of films of different sizes: each through the same transform
    tall = _film(96, 64, 1)
    both = b.model_input([wide, tall])
    np.testing.assert_array_equal(both[1:].numpy(), b.model_input(tall).numpy())
    np.testing.assert_allclose(b.predict([wide, tall]), np.concatenate([b.predict(wide), b.predict(tall)]),
                               rtol=1e-5, atol=1e-6)
    squashed = imaging.resize_to(wide, (32, 32))
    assert not np.allclose(b.model_input(wide)[0, 0].numpy(), squashed, atol=1.0)
    assert b.input_spec() == {"transform": CENTER_CROP, "resolution": 32}


def test_bundle_json_names_the_transform_and_refuses_an_unknown_one(tmp_path):
    b = positive_bundle()
    b.save(tmp_path / "b")
    doc = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert doc["input_transform"] == CENTER_CROP
    assert Bundle.load(tmp_path / "b", device="cpu").input_transform == CENTER_CROP
    doc["input_transform"] = "squash"
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="unknown input_transform 'squash'"):
        Bundle.load(tmp_path / "b", device="cpu")
    del doc["input_transform"]  # bundles written before the key: the centre crop
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(doc))
    assert Bundle.load(tmp_path / "b", device="cpu").input_transform == CENTER_CROP


@pytest.fixture()
def nonsquare_study(tmp_path):
    """A study of non-square PNG (wide and tall) and DICOM films, sampled and precomputed."""
    root = tmp_path / "s"
    cases = root / "cases"
    cases.mkdir(parents=True)
    shapes = [(64, 96), (96, 64), (72, 128), (128, 72)] * 3
    with open(cases / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path", *PATHOLOGIES])
        for i, (h, wd) in enumerate(shapes):
            img = _film(h, wd, 10 + i)
            if i % 2:
                name = f"c{i:02d}.dcm"
                imaging.write_dicom(cases / name, img, patient_id=f"P{i}")
            else:
                name = f"c{i:02d}.png"
                imaging.write_png16(cases / name, img)
            w.writerow([f"c{i:02d}", name, *[(i + j) % 2 for j in range(len(PATHOLOGIES))]])
    bundle = positive_bundle()
    db = open_database(None, study_dir=root)
    set_up_study(db, "ns", root, cases=cases, bundle=bundle, bundle_id="rand",
                 arms=[("Method A", ["gradient"])], readers=["r1"], per_pathology=2)
    rep = artifacts.precompute(db, "ns", bundle=bundle, bundle_id="rand")
    assert not rep.failed
    yield db, root, bundle
    db.dispose()


def test_nonsquare_films_give_one_probability_from_sampling_to_the_reader_view(nonsquare_study):
    db, root, bundle = nonsquare_study
    with db.read() as s:
        rows = list(s.scalars(select(Artifact).where(Artifact.status == "done")))
        items = {it.case_id: it for it in s.scalars(select(CohortItem))}
        reader = s.scalars(select(Reader)).one()
        views = []
        a = responses.next_assignment(s, reader).assignment
        views.append(responses.read_view(s, reader, a.id))
    assert len(items) >= 6
    seen = 0
    for r in rows:
        if r.kind != "explanation_json" or r.method != "gradient":
            continue
        doc = json.loads((root / r.path).read_text())
        it = items[r.case_id]
        # sampling's probability (what the reader is told) == the explanation's
        assert doc["explanation"]["pred_original"] == pytest.approx(it.probability, rel=1e-5, abs=1e-6)
        assert doc["pred_cohort"] == pytest.approx(it.probability, rel=1e-5, abs=1e-6)
        seen += 1
    assert seen == len(items)
    # the display image records the field of view the model saw
    inputs = [json.loads((root / r.path).read_text()) for r in rows
              if r.method == "input" and r.kind == "explanation_json"]
    for doc in inputs:
        h, w = doc["explanation"]["shape"]
        assert doc["explanation"]["field_of_view"] == list(imaging.center_crop_box(h, w))
        assert doc["explanation"]["model_input"]["transform"] == CENTER_CROP
    view = views[0]
    assert view.field_of_view is not None  # every film is non-square
    y0, y1, x0, x1 = view.field_of_view
    assert (y1 - y0 == 1.0) or (x1 - x0 == 1.0)
    # the overlay's background is the model's field of view of the display image
    disp = viewer.load_pixels(view.image)
    fy0, fy1, fx0, fx1 = viewer.fov_box(*disp.shape, view.field_of_view)
    assert (fy0, fy1, fx0, fx1) == imaging.center_crop_box(*disp.shape)
    crop = viewer.model_space(disp, (32, 32), view.field_of_view)
    np.testing.assert_allclose(crop, viewer.model_space(disp[fy0:fy1, fx0:fx1], (32, 32)))
    # the film is shown whole, with the field of view outlined in amber
    window = viewer.preset_window(disp, "Auto")
    grey = viewer.windowed(disp, window)
    framed = viewer.outline_fov(grey, view.field_of_view)
    assert framed.shape == (*disp.shape, 3)
    edge = (fy0, fx0 + (fx1 - fx0) // 2)
    assert tuple(framed[edge]) == viewer.FOV_COLOUR
    inside = (fy0 + (fy1 - fy0) // 2, fx0 + (fx1 - fx0) // 2)
    assert tuple(framed[inside]) == (grey[inside],) * 3
    assert viewer.render_image(view.image, window, fov=view.field_of_view)[:4] == b"\x89PNG"


def test_params_hash_includes_the_model_input(nonsquare_study, monkeypatch):
    db, root, bundle = nonsquare_study
    again = artifacts.precompute(db, "ns", bundle=bundle, bundle_id="rand")
    assert again.computed == 0
    monkeypatch.setattr(type(bundle), "input_spec", lambda self: {"transform": "other", "resolution": 32})
    changed = artifacts.precompute(db, "ns", bundle=bundle, bundle_id="rand", limit=1)
    assert changed.computed == 2  # the input image and the one explainer of the arm


def test_cli_and_sandbox_predict_what_sampling_predicted(nonsquare_study, tmp_path, capsys):
    from cfviewer.cli import main
    from cfviewer.ui.sandbox import run_explainers

    db, root, bundle = nonsquare_study
    bdir = tmp_path / "bundle"
    bundle.save(bdir)
    with db.read() as s:
        it = s.scalars(select(CohortItem).order_by(CohortItem.position)).first()
        path = root / it.case.source_path
        prob, target = it.probability, it.pathology
    film = imaging.load(path)
    assert film.shape[0] != film.shape[1]
    out = tmp_path / "out"
    assert main(["explain", "--image", str(path), "--target", target, "--method", "gradient",
                 "--bundle", str(bdir), "--device", "cpu", "--out", str(out)]) == 0
    doc = json.loads((out / "explanation.json").read_text())
    assert doc["pred_original"] == pytest.approx(prob, rel=1e-5, abs=1e-6)
    assert doc["field_of_view"] == list(imaging.center_crop_box(*film.shape))
    res = run_explainers(bundle, film, target, ["gradient"])
    assert res[0].ok and res[0].pred_original == pytest.approx(prob, rel=1e-5, abs=1e-6)


def test_raw_integer_pixels_are_refused_with_the_loader_named(tmp_path):
    """A uint16 PNG read with PIL (0-65535) would be clipped to [0, 1024] and give a plausible
    but wrong probability; the bundle refuses integer pixels and names cfviewer.imaging.load,
    whose output it accepts."""
    b = positive_bundle()
    raw = (np.random.default_rng(0).random((64, 64)) * 65535).astype(np.uint16)
    with pytest.raises(BundleError, match=r"uint16 pixels \(values \d+-\d+\).*cfviewer.imaging.load"):
        b.predict(raw)
    path = tmp_path / "film.png"
    from PIL import Image

    Image.fromarray(raw).save(path)
    loaded = imaging.load(path)
    assert loaded.dtype.kind == "f" and b.predict(loaded).shape == (1, len(b.pathologies))
