"""A bundle's training domain: the reference distribution stored in bundle.meta["domain"], the
out-of-domain decision, and the warnings at import, sampling and in the sandbox (issue 8, 4)."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cfviewer import PATHOLOGIES, imaging
from cfviewer.cli import main as cli_main
from cfviewer.models import Bundle, random_bundle
from cfviewer.models import domain as dm
from cfviewer.phantoms import iter_phantoms

ROOT = Path(__file__).resolve().parents[1]
DEMO_BUNDLE = ROOT / "study_data" / "demo" / "bundle"
R = 64


def _phantoms(n: int, seed: int, size: int = R, options: dict | None = None) -> list[np.ndarray]:
    from cfviewer.models.data import phantom_config

    return [p.image for p in iter_phantoms(n, seed, size, phantom_config(size, options))]


def _demo_options(doc: dict) -> dict:
    """The phantom options the demo bundle was trained with (what the demo study draws)."""
    return doc["meta"]["training"]["config"].get("phantoms") or {}


def _gradient(size: int = R) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    return (xx * 1800 - 900 + yy * 100).astype(np.float32)


@pytest.fixture(scope="module")
def ref_domain() -> dict:
    """A phantom domain at 64 px from 100 reference phantoms (each also augmented)."""
    imgs = np.stack(_phantoms(100, 101))
    return dm.phantom_domain(imgs, resolution=R, augment={}, seed=7, dataset_seed=101)


@pytest.fixture()
def bundle(ref_domain):
    b = random_bundle(R, seed=0)
    b.meta["domain"] = ref_domain
    return b


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# ------------------------------------------------------------------------- the decision ---

def test_phantoms_are_inside_and_other_images_outside(bundle, ref_domain):
    held_out = _phantoms(40, 2026)
    inside = dm.check_images(bundle, held_out, what="held-out phantoms")
    assert inside.known and inside.n == 40
    assert inside.n_outside <= 2, inside.distances  # the threshold is the 99.5th percentile
    # phantoms drawn at a somewhat larger size and downscaled are the same domain (the demo
    # study's 224 px PNGs against the 128 px demo bundle: test_the_demo_study_cases_are_inside)
    assert dm.check_images(bundle, _phantoms(20, 77, 96)).n_outside <= 1
    rng = np.random.default_rng(0)
    odd = [_gradient(), _gradient(200)[:, ::-1].copy(), np.zeros((R, R), np.float32),
           rng.normal(0, 400, (R, R)).clip(-1024, 1024).astype(np.float32),
           -_phantoms(1, 5)[0]]  # an inverted phantom (a MONOCHROME1 film read as MONOCHROME2)
    out = dm.check_images(bundle, odd, what="odd images", keys=list("abcde"))
    assert out.outside == list("abcde"), out.distances
    assert min(out.distances) > ref_domain["threshold"] > max(np.percentile(inside.distances, 50), 0)
    assert out.warning and out.share == 1.0


def test_reference_is_deterministic_and_stores_its_quantiles(ref_domain):
    again = dm.phantom_domain(np.stack(_phantoms(100, 101)), resolution=R, augment={}, seed=7,
                              dataset_seed=101)
    assert again["threshold"] == ref_domain["threshold"]
    assert ref_domain["description"] == dm.PHANTOMS and "64 px" in ref_domain["details"]
    assert ref_domain["features"] == list(dm.FEATURES) and ref_domain["score"] == dm.SCORE
    assert ref_domain["n_fit"] == ref_domain["n_calibration"] == 2 * 100  # + augmented copies, cross-fitted
    assert ref_domain["calibration"].startswith(f"{dm.FOLDS}-fold cross-fitted")
    q = ref_domain["calibration_quantiles"]
    assert q["50"] <= q["99"] <= q["99.5"] == ref_domain["threshold"] <= q["100"]
    json.dumps(ref_domain)  # it lives in bundle.json


def test_cross_fitting_keeps_an_image_and_its_augmented_copy_in_one_fold():
    groups = np.concatenate([np.arange(50), np.arange(50)])  # 50 images, then their copies
    fold = dm.fold_of(groups)
    assert (fold[:50] == fold[50:]).all() and sorted(np.bincount(fold)) == [20] * dm.FOLDS
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(200, len(dm.FEATURES))) * 50
    ref = dm.fit_reference(feats, quantile=99.5)
    # out-of-fold distances are those of unseen images: larger than the in-fit ones
    assert ref["calibration_quantiles"]["50"] > ref["fit_quantiles"]["50"]
    assert ref["threshold"] == ref["calibration_quantiles"]["99.5"]
    with pytest.raises(dm.DomainError, match="distinct images"):
        dm.fit_reference(feats[:6])


def test_messages_name_the_share_and_the_domain():
    c = dm.DomainCheck("imported images", 40, True, "synthetic phantoms", 3.0, outside=list(range(37)))
    assert c.message == ("37 of 40 imported images (92 %) are outside the bundle's training domain "
                         "(synthetic phantoms): its predictions on them are unreliable")
    assert c.line().startswith("warning: 37 of 40")
    one = dm.DomainCheck("imported images", 1000, True, "synthetic phantoms", 3.0, outside=[5])
    assert "(< 1 %)" in one.message
    ok = dm.DomainCheck("imported images", 40, True, "synthetic phantoms", 3.0)
    assert not ok.warning and ok.line() == ("note: all 40 imported images are inside the bundle's training "
                                            "domain (synthetic phantoms)")
    single = dm.DomainCheck("image", 1, True, "synthetic phantoms", 3.0, outside=[0])
    assert single.message.startswith("the image is outside the bundle's training domain (synthetic phantoms)")


def test_a_bundle_without_a_domain_gives_an_info_line_not_a_warning():
    b = random_bundle(R, seed=0)
    c = dm.check_images(b, [_gradient()], what="imported images")
    assert not c.known and not c.warning and c.n == 1
    assert c.line().startswith("note: the bundle's training domain is unknown")
    assert "cfviewer bundle-domain" in c.message


def test_a_malformed_domain_is_refused_by_name(bundle):
    bundle.meta["domain"] = {**bundle.meta["domain"], "precision": [[1.0]]}
    with pytest.raises(dm.DomainError, match="bundle-domain"):
        dm.check_images(bundle, [_gradient()])
    # where the check runs for a user (import, sampling, sandbox) it never stops the work
    c = dm.safe_check(lambda: dm.check_images(bundle, [_gradient()]), "images", 1)
    assert not c.known and "the check failed" in c.message


def test_write_domain_changes_bundle_json_only(tmp_path, ref_domain):
    d = tmp_path / "b"
    random_bundle(R, seed=1).save(d)
    before = {p.name: _sha(p) for p in d.iterdir() if p.suffix == ".pt"}
    doc0 = json.loads((d / "bundle.json").read_text())
    dm.write_domain(d, ref_domain)
    assert {p.name: _sha(p) for p in d.iterdir() if p.suffix == ".pt"} == before
    doc = json.loads((d / "bundle.json").read_text())
    assert {k: v for k, v in doc.items() if k != "meta"} == {k: v for k, v in doc0.items() if k != "meta"}
    assert doc["meta"]["source"] == "random_bundle" and doc["meta"]["domain"] == ref_domain
    assert dm.get_domain(Bundle.load(d, device="cpu")) == ref_domain
    dm.write_domain(d, None)
    assert dm.get_domain(Bundle.load(d, device="cpu")) is None


# ------------------------------------------------------------------------------ the CLI ---

def _phantom_trained_meta(n_val: int = 48) -> dict:
    return {"training": {"config": {"resolution": R, "seed": 3, "n_val": n_val, "phantoms": {}, "augment": {}},
                         "data_seeds": {"val": 4242}, "n_val": n_val}}


def test_cli_bundle_domain_adds_the_domain_without_touching_weights(tmp_path, capsys):
    d = tmp_path / "b"
    b = random_bundle(R, seed=2)
    b.meta.update(_phantom_trained_meta())
    b.save(d)
    weights = {p.name: _sha(p) for p in d.glob("*.pt")}
    cases = tmp_path / "odd"
    cases.mkdir()
    imaging.write_png16(cases / "gradient.png", _gradient(100))
    assert cli_main(["bundle-domain", "--bundle", str(d), "--no-progress", "--check", str(cases),
                     "--check-phantoms", "20"]) == 0
    out = capsys.readouterr().out
    assert "stored the training domain" in out and "synthetic phantoms" in out
    assert "warning: 1 of 1 images in" in out and "(100 %)" in out
    assert "held-out phantoms (seed 2026)" in out
    assert {p.name: _sha(p) for p in d.glob("*.pt")} == weights
    stored = dm.get_domain(Bundle.load(d, device="cpu"))
    assert stored["reference"]["dataset_seed"] == 4242 and stored["n_fit"] == stored["n_calibration"] == 2 * 48
    # --check-only uses what is stored; a bundle without training metadata needs --images
    assert cli_main(["bundle-domain", "--bundle", str(d), "--check-only", "--check", str(cases)]) == 0
    plain = tmp_path / "plain"
    random_bundle(R, seed=2).save(plain)
    assert cli_main(["bundle-domain", "--bundle", str(plain)]) == 2
    assert "--images" in capsys.readouterr().err


def test_cli_bundle_domain_from_a_folder_of_images(tmp_path, capsys):
    d = tmp_path / "b"
    random_bundle(R, seed=2).save(d)
    ref = tmp_path / "ref"
    ref.mkdir()
    for i, im in enumerate(_phantoms(45, 9)):
        imaging.write_png16(ref / f"p{i}.png", im)
    assert cli_main(["bundle-domain", "--bundle", str(d), "--images", str(ref)]) == 2
    assert "--description" in capsys.readouterr().err
    assert cli_main(["bundle-domain", "--bundle", str(d), "--images", str(ref), "--description",
                     "my films"]) == 0
    stored = dm.get_domain(json.loads((d / "bundle.json").read_text()))
    assert stored["description"] == "my films" and stored["source"] == "images" and stored["augmented"] is None


def test_training_records_the_domain_the_cli_recreates(tmp_path):
    from cfviewer.models.train import TrainConfig, run_training

    cfg = TrainConfig.from_dict(dict(
        resolution=32, seed=5, n_train=16, n_val=40,
        classifier=dict(widths=[8, 8, 8, 8], stem_width=8), autoencoder=dict(widths=[8, 8], latent_channels=4),
        classifier_training=dict(epochs=1, batch_size=16), autoencoder_training=dict(epochs=1, batch_size=16),
        num_threads=1))
    b = run_training(cfg, tmp_path / "out", work_dir=tmp_path / "w", progress=False, device="cpu",
                     log=lambda s: None)
    stored = dm.get_domain(Bundle.load(tmp_path / "out", device="cpu"))
    assert stored is not None and stored["description"] == dm.PHANTOMS and stored["resolution"] == 32
    again = dm.phantom_domain_for_bundle(b.meta, 32)
    assert again["threshold"] == pytest.approx(stored["threshold"]) and again["mean"] == pytest.approx(stored["mean"])


# ----------------------------------------------------------------- import, sample, sandbox ---

def _write_films(folder: Path, films: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path", *PATHOLOGIES])
        for key, img in films.items():
            imaging.write_png16(folder / f"{key}.png", img)
            w.writerow([key, f"{key}.png", *rng.integers(0, 2, len(PATHOLOGIES))])
    return folder / "labels.csv"


def test_import_and_sampling_warn_with_the_share_outside(tmp_path, bundle):
    from cfviewer.study import cohort, studies
    from cfviewer.study.db import open_database

    bdir = tmp_path / "bundle"
    bundle.save(bdir)
    films = {f"ph{i}": im for i, im in enumerate(_phantoms(6, 2027))}
    films.update({"grad": _gradient(90), "flat": np.full((R, R), 300, np.float32)})
    root = tmp_path / "s"
    _write_films(root / "cases", films)
    db = open_database(study_dir=root)
    try:
        with db.write() as s:
            st = studies.create_study(s, "s", root, config={"bundle": str(bdir)})
            rep = cohort.import_cases(s, st, root / "cases", "labels.csv")
        assert rep.domain.known and rep.domain.n == 8
        assert sorted(rep.domain.outside) == ["flat", "grad"]
        assert "warning: 2 of 8 imported images (25 %) are outside the bundle's training domain " \
               "(synthetic phantoms)" in str(rep)
        with db.write() as s:
            st = studies.get_study(s, "s")
            sample = cohort.sample_cohort(s, st, Bundle.load(bdir, device="cpu"), per_pathology=1, fill=True)
        assert sample.domain.n_outside == 2 and sample.domain_cohort[1] == sample.total
        assert "2 of 8 cases the model predicted on (25 %) are outside" in str(sample)
        assert "cohort cases are among them" in str(sample)
    finally:
        db.dispose()


def test_import_without_a_stored_domain_says_it_is_unknown(tmp_path):
    from cfviewer.study import cohort, studies
    from cfviewer.study.db import open_database

    bdir = tmp_path / "bundle"
    random_bundle(R, seed=0).save(bdir)
    root = tmp_path / "s"
    _write_films(root / "cases", {"grad": _gradient(), "ph": _phantoms(1, 3)[0]})
    db = open_database(study_dir=root)
    try:
        with db.write() as s:
            st = studies.create_study(s, "s", root, config={"bundle": str(bdir)})
            rep = cohort.import_cases(s, st, root / "cases", "labels.csv")
            st2 = studies.create_study(s, "t", tmp_path / "t")
            _write_films(tmp_path / "t" / "cases", {"g": _gradient()})
            rep2 = cohort.import_cases(s, st2, tmp_path / "t" / "cases", "labels.csv")
    finally:
        db.dispose()
    assert not rep.domain.known and "note: the bundle's training domain is unknown" in str(rep)
    assert "warning" not in rep.domain.line()
    assert rep2.domain is None  # no bundle named yet: sampling checks the cases


def test_sandbox_warns_about_an_image_outside_the_domain(bundle):
    from cfviewer.ui import sandbox

    chk = sandbox.domain_check(bundle, _gradient(100))
    assert chk.warning and "outside the bundle's training domain (synthetic phantoms)" in chk.message
    assert not sandbox.domain_check(bundle, _phantoms(1, 2028)[0]).warning
    res = sandbox.run_explainers(bundle, _gradient(), "Effusion", ["gradient"], tile=32, gif_size=32)
    assert res[0].domain.warning
    assert list(sandbox.timing_table(res)["training domain"]) == ["OUTSIDE: unreliable"]
    unknown = sandbox.domain_check(random_bundle(R, seed=0), _gradient())
    assert not unknown.warning and "unknown" in unknown.message


# ------------------------------------------------------------------ the shipped demo bundle ---

def test_the_demo_bundle_carries_its_training_domain():
    doc = json.loads((DEMO_BUNDLE / "bundle.json").read_text())
    d = dm.get_domain(doc)
    assert d is not None and d["description"] == dm.PHANTOMS and d["resolution"] == doc["resolution"]
    assert d["reference"]["dataset_seed"] == doc["meta"]["training"]["data_seeds"]["val"]


def test_the_demo_study_cases_are_inside_the_demo_domain(tmp_path):
    """The demo study imports phantoms of the bundle's options at DEMO_IMAGE_SIZE, written as
    16-bit PNGs (cfviewer demo)."""
    from cfviewer.study.demo import DEMO_IMAGE_SIZE

    doc = json.loads((DEMO_BUNDLE / "bundle.json").read_text())
    films = [imaging.load(imaging.write_png16(tmp_path / f"{i}.png", im))
             for i, im in enumerate(_phantoms(30, 20251, DEMO_IMAGE_SIZE, _demo_options(doc)))]
    assert dm.check_images(doc, films).n_outside <= 1


def test_demo_bundle_flags_real_films_and_not_held_out_phantoms(shared_data):
    doc = json.loads((DEMO_BUNDLE / "bundle.json").read_text())
    res = int(doc["resolution"])
    scale = int(doc["meta"]["training"]["config"].get("render_scale", 1))
    phantoms = dm.check_images(doc, _phantoms(200, 2026, res * scale, _demo_options(doc)),
                               what="held-out phantoms")
    assert phantoms.share <= 0.02, phantoms.message
    nih = sorted((shared_data / "nih1000").rglob("*.png"))[::5]  # 200 of the 1,000
    others = sorted([*(shared_data / "nih_samples").glob("*.png"), *(shared_data / "tbx11k").rglob("*.png"),
                     *(shared_data / "dicom").glob("*.dcm")])
    assert len(nih) == 200 and len(others) >= 5
    real = dm.check_files(DEMO_BUNDLE, [*nih, *others], what="real films")
    assert real.share >= 0.98, real.message
