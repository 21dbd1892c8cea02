"""Phantom chest radiographs: determinism, value range, masks vs labels, CTR, confounder
correlation, pneumothorax without markings, the dataset writer and the CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion, gaussian_filter

from cfviewer import PATHOLOGIES
from cfviewer.cli import main
from cfviewer.errors import CfviewerError
from cfviewer.phantoms import (
    CONFOUNDERS,
    Phantom,
    PhantomConfig,
    PhantomConfigError,
    generate,
    generate_batch,
    image_seeds,
    write_dataset,
)

ALL_ON = {p: 1 for p in PATHOLOGIES}
ALL_OFF = {p: 0 for p in PATHOLOGIES}


def only(*names: str) -> dict[str, int]:
    return {p: int(p in names) for p in PATHOLOGIES}


def test_public_api_shape():
    ph = generate(3, 64)
    assert isinstance(ph, Phantom)
    assert CONFOUNDERS == ("chest_tube", "marker")
    assert set(ph.labels) == set(PATHOLOGIES)
    assert set(ph.confounders) == set(CONFOUNDERS)
    assert ph.seed == 3


def test_same_seed_is_bit_identical_and_seeds_differ():
    a, b, c = generate(11, 96), generate(11, 96), generate(12, 96)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.labels == b.labels and a.confounders == b.confounders
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("size", [64, 224])
def test_dtype_range_and_shape(size):
    for seed in range(3):
        img = generate(seed, size).image
        assert img.dtype == np.float32 and img.shape == (size, size)
        assert img.min() >= -1024 and img.max() <= 1024
        assert img.max() - img.min() > 1000   # air outside the body is dark, bone/abdomen bright


def test_lungs_are_dark_and_bone_bright():
    ph = generate(5, 128, labels=ALL_OFF)
    lung = ph.meta["lung_mask"]
    body = ph.meta["body_mask"]
    below = np.zeros_like(lung)
    below[int(0.9 * 128):] = True
    assert ph.image[lung].mean() < ph.image[body & below].mean() - 300


def test_batch_equals_single_generation_and_is_prefix_stable():
    batch = generate_batch(5, 42, 64)
    seeds = image_seeds(5, 42)
    assert np.array_equal(batch.seeds, seeds)
    assert np.array_equal(image_seeds(3, 42), seeds[:3])
    for i in (0, 4):
        ph = generate(int(seeds[i]), 64)
        assert np.array_equal(batch.images[i], ph.image)
        assert list(batch.labels[i]) == [ph.labels[p] for p in PATHOLOGIES]
        for name in (*PATHOLOGIES, *CONFOUNDERS):
            expected = ph.masks.get(name, np.zeros((64, 64), bool))
            assert np.array_equal(batch.masks[name][i], expected)
    assert batch.images.shape == (5, 64, 64) and batch.labels.shape == (5, 6)


def test_parallel_batch_matches_serial():
    serial = generate_batch(4, 9, 48, masks=False)
    par = generate_batch(4, 9, 48, masks=False, n_jobs=2)
    assert np.array_equal(serial.images, par.images)
    assert par.masks is None


def test_masks_present_exactly_for_positive_labels():
    seen = {p: 0 for p in PATHOLOGIES}
    for seed in range(40):
        ph = generate(seed, 96)
        for p in PATHOLOGIES:
            if ph.labels[p]:
                seen[p] += 1
                assert p in ph.masks and ph.masks[p].any(), (seed, p)
                assert ph.masks[p].dtype == bool and ph.masks[p].shape == (96, 96)
            else:
                assert p not in ph.masks, (seed, p)
        for c in CONFOUNDERS:
            assert (c in ph.masks) == ph.confounders[c]
            if ph.confounders[c]:
                assert ph.masks[c].any()
    assert all(v >= 3 for v in seen.values()), seen   # prevalence 0.3 over 40 draws


def test_finding_masks_lie_in_the_lungs_or_body():
    for seed in range(12):
        ph = generate(seed, 128, labels=ALL_ON)
        lung = binary_dilation(ph.meta["lung_mask"], iterations=2)
        for p in ("Atelectasis", "Effusion", "Lung Opacity", "Mass", "Pneumothorax"):
            m = ph.masks[p]
            assert m.any()
            assert (m & lung).sum() / m.sum() > 0.95, (seed, p)
        heart = ph.masks["Cardiomegaly"]
        assert (heart & ph.meta["body_mask"]).sum() == heart.sum()


def test_forced_labels_and_unknown_label():
    ph = generate(1, 64, labels=only("Mass", "Effusion"))
    assert [p for p in PATHOLOGIES if ph.labels[p]] == ["Effusion", "Mass"]
    with pytest.raises(PhantomConfigError, match="Nodule"):
        generate(1, 64, labels={"Nodule": 1})


def _mask_ctr(ph: Phantom) -> float:
    heart_cols = np.where(ph.masks["Cardiomegaly"].any(axis=0))[0]
    lung_cols = np.where(ph.meta["lung_mask"].any(axis=0))[0]
    return (heart_cols[-1] - heart_cols[0] + 1) / (lung_cols[-1] - lung_cols[0] + 1)


def test_ctr_above_half_iff_cardiomegaly():
    for seed in range(60):
        ph = generate(seed, 64)
        assert (ph.meta["ctr"] > 0.5) == bool(ph.labels["Cardiomegaly"]), seed
        assert 0.36 <= ph.meta["ctr"] <= 0.7
    for seed in range(6):   # the drawn heart has the width the recorded CTR says
        ph = generate(seed, 192, labels={"Cardiomegaly": 1})
        assert abs(_mask_ctr(ph) - ph.meta["ctr"]) < 0.04
        neg = generate(seed, 192, labels={"Cardiomegaly": 0})
        assert neg.meta["ctr"] < 0.49
        assert neg.masks.get("Cardiomegaly") is None


def test_chest_tube_follows_pneumothorax_as_configured():
    batch = generate_batch(300, 2024, 40, masks=False)
    ptx = batch.labels[:, PATHOLOGIES.index("Pneumothorax")] == 1
    tube = batch.confounders[:, CONFOUNDERS.index("chest_tube")]
    assert ptx.sum() > 60
    assert abs(tube[ptx].mean() - 0.8) < 0.12
    assert abs(tube[~ptx].mean() - 0.05) < 0.05
    marker = batch.confounders[:, CONFOUNDERS.index("marker")]
    assert 0.35 < marker.mean() < 0.65

    cfg = PhantomConfig(tube_given_pneumothorax=0.0, tube_given_no_pneumothorax=1.0, marker_probability=0.0)
    b2 = generate_batch(60, 7, 40, cfg, masks=False)
    ptx2 = b2.labels[:, PATHOLOGIES.index("Pneumothorax")] == 1
    assert not b2.confounders[ptx2, 0].any() and b2.confounders[~ptx2, 0].all()
    assert not b2.confounders[:, 1].any()


def test_chest_tube_is_on_the_pneumothorax_side():
    cfg = PhantomConfig(tube_given_pneumothorax=1.0)
    for seed in range(6):
        ph = generate(seed, 96, cfg, labels=only("Pneumothorax"))
        cols = np.where(ph.masks["Pneumothorax"])[1]
        tcols = np.where(ph.masks["chest_tube"])[1]
        assert (cols.mean() < 48) == (tcols.mean() < 48)


def _highpass_std(img: np.ndarray, mask: np.ndarray) -> float:
    hp = img - gaussian_filter(img, 1.0)
    return float(hp[mask].std())


def test_pneumothorax_rim_has_no_vessel_markings():
    """Beyond the pleural line the lung is gone: less fine structure (no vessels, no
    parenchyma) than the same region without the pneumothorax and than the mirrored region of
    the contralateral lung. Ribs cross both, so the margins are modest but systematic."""
    cfg = PhantomConfig(noise=False, tube_given_pneumothorax=0.0, marker_probability=0.0,
                        severity_range=(0.6, 1.0))
    size = 256
    vs_base = vs_mirror = 0
    for seed in range(8):
        ph = generate(seed, size, cfg, labels=only("Pneumothorax"))
        core = binary_erosion(ph.masks["Pneumothorax"], iterations=3)   # off the pleural line
        assert core.sum() > 100, seed
        shift = int(round(ph.meta["frame"]["tx"] * size / 2))
        mirrored = np.roll(core[:, ::-1], 2 * shift, axis=1) & ph.meta["lung_mask"]
        base = generate(seed, size, cfg, labels=ALL_OFF)
        rim_std = _highpass_std(ph.image, core)
        vs_base += rim_std < _highpass_std(base.image, core)
        vs_mirror += rim_std < _highpass_std(ph.image, mirrored)
    assert vs_base >= 7 and vs_mirror >= 6, (vs_base, vs_mirror)


def test_config_validation():
    with pytest.raises(PhantomConfigError, match="probability"):
        PhantomConfig(tube_given_pneumothorax=1.5)
    with pytest.raises(PhantomConfigError, match="unknown pathology"):
        PhantomConfig(prevalence={"Nodule": 0.2})
    with pytest.raises(PhantomConfigError, match="size"):
        generate(0, 8)
    cfg = PhantomConfig(prevalence={"Mass": 1.0, "Effusion": 0.0})
    assert cfg.prevalence["Atelectasis"] == 0.3
    b = generate_batch(10, 3, 40, cfg, masks=False)
    assert b.labels[:, PATHOLOGIES.index("Mass")].all()
    assert not b.labels[:, PATHOLOGIES.index("Effusion")].any()


def test_cli_writes_files_that_load_back(tmp_path):
    import pydicom

    from cfviewer.imaging import load

    out = tmp_path / "ph"
    assert main(["phantoms", "--n", "3", "--size", "64", "--seed", "5", "--out", str(out)]) == 0
    with (out / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    assert list(rows[0]) == ["id", "seed", "image", "dicom", *PATHOLOGIES, *CONFOUNDERS, "ctr", "masks"]
    batch = generate_batch(3, 5, 64)
    for i, row in enumerate(rows):
        img = load(out / row["image"])
        assert img.shape == (64, 64)
        assert np.abs(img - batch.images[i]).max() <= 2048 / 65535 + 1e-3
        dimg = load(out / row["dicom"])
        assert np.abs(dimg - batch.images[i]).max() <= 2048 / 4095 + 1e-3
        ds = pydicom.dcmread(out / row["dicom"])
        assert ds.Modality == "DX" and ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.PatientID == row["id"] and len(ds.PixelSpacing) == 2
        assert ds.StudyInstanceUID and ds.SeriesInstanceUID and ds.SOPInstanceUID
        assert [int(row[p]) for p in PATHOLOGIES] == list(batch.labels[i])
        assert abs(float(row["ctr"]) - batch.ctr[i]) < 1e-3
        names = [m for m in row["masks"].split(";") if m]
        present = {p for p in PATHOLOGIES if int(row[p])} | {c for c in CONFOUNDERS if int(row[c])}
        assert len(names) == len(present)
        from PIL import Image

        for rel in names:
            name = next(k for k in present if rel.endswith(f"_{k.replace(' ', '_')}.png"))
            m = np.asarray(Image.open(out / rel)) > 127
            assert np.array_equal(m, batch.masks[name][i])


def test_write_dataset_refuses_to_overwrite(tmp_path):
    write_dataset(tmp_path / "d", 1, 48, 0, dicom=False)
    with pytest.raises(CfviewerError, match="--overwrite"):
        write_dataset(tmp_path / "d", 1, 48, 0)
    write_dataset(tmp_path / "d", 2, 48, 0, overwrite=True, dicom=False)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n", "0", "--out", "X"], "--n 0"),
        (["--size", "10", "--out", "X"], "size 10"),
        (["--n", "2"], "--out DIR is required"),
        (["--n", "2", "--out", "X", "--tube-given-pneumothorax", "2"], "tube_given_pneumothorax"),
    ],
)
def test_bad_cli_args_give_clear_errors(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(["phantoms", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_unknown_prevalence_name(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["phantoms", "--prevalence", "Nodule=0.2", "--out", "x"])
    assert exc.value.code == 2
    assert "Nodule" in capsys.readouterr().err


def test_grid_png(tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    assert main(["phantoms", "--grid", str(out), "--size", "64"]) == 0
    im = Image.open(out)
    assert im.mode == "RGB" and im.size[0] >= 4 * 64 and im.size[1] >= 4 * 64
