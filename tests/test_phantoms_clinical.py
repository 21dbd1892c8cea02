"""Opt-in clinical realism of the phantoms (mimics, label noise, AP / low-inspiration films,
collimation, annotation, detailed anatomy, subtle findings): the defaults stay bit-identical
(checksums recorded before the feature existed), every new field is validated, and each
feature does what it says at small sizes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from cfviewer import PATHOLOGIES
from cfviewer.phantoms import PhantomConfig, PhantomConfigError, generate, generate_batch
from cfviewer.phantoms.generator import CLINICAL_PRESET
from cfviewer.phantoms.mimics import MIMIC_KINDS

ALL_OFF = {p: 0 for p in PATHOLOGIES}
ALL_ON = {p: 1 for p in PATHOLOGIES}
NO_EXTRAS = dict(mimic_probability=0.0, ap_fraction=0.0, low_inspiration_probability=0.0,
                 collimation_probability=0.0, annotation_probability=0.0, label_noise=0.0)


def _digest(ph) -> str:
    h = hashlib.sha256()
    h.update(ph.image.tobytes())
    h.update(json.dumps(ph.labels, sort_keys=True).encode())
    h.update(json.dumps(ph.confounders, sort_keys=True).encode())
    for k in sorted(ph.masks):
        h.update(k.encode())
        h.update(np.packbits(ph.masks[k]).tobytes())
    h.update(repr(ph.meta["ctr"]).encode())
    h.update(repr(sorted(ph.meta["findings"].items())).encode())
    return h.hexdigest()[:24]


# Computed with the generator as it was before any opt-in feature existed (numpy 2.4, x86-64-v3
# (AVX2) kernels: see _reference_kernels_env).
DEFAULT_DIGESTS = {
    (64, 0): "8d8e9cc4cf77431baa53efc5",
    (64, 1): "2d06e07b3bd0c3411926b291",
    (64, 7): "e28d762656dfb7873205902e",
    (64, 2024): "b3cab87cfca2ee9e48aff792",
    (128, 0): "e4e6c02c483305b4eec72245",
    (128, 1): "f3215df63b8146f92506cda7",
    (128, 7): "e313e59407fd420e9553f2e7",
    (128, 2024): "5309c4492b9e0088741c6d96",
}
ALL_ON_128_SEED5 = "1ddf4adc5c682aafde88d5f1"
CUSTOM_96_SEED3 = "2aebba2db0984458e6702523"
BATCH_6_SEED11_64 = "61cc41050c8404082943bd74"


def _reference_kernels_env() -> dict[str, str]:
    """The environment that makes numpy use the SIMD kernels the digests were recorded with.

    numpy dispatches exp / sin / ... to the widest kernels the CPU has, and the AVX-512 ones
    differ from the AVX2 ones in the last bits: the same generator gives other bytes on an
    AVX-512 machine. The digests were recorded with the x86-64-v3 (AVX2) kernels, so the check
    runs in a child process with the wider dispatch targets switched off
    (NPY_DISABLE_CPU_FEATURES); it is skipped where those kernels do not exist."""
    import os
    import platform

    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    if platform.machine().lower() not in ("x86_64", "amd64") or not __cpu_features__.get("X86_V3"):
        pytest.skip("the digests were recorded with numpy's x86-64-v3 (AVX2) kernels, which this CPU lacks")
    wider = [t for t in __cpu_dispatch__ if t not in ("X86_V2", "X86_V3") and __cpu_features__.get(t)]
    env = dict(os.environ)
    env.pop("NPY_DISABLE_CPU_FEATURES", None)
    if wider:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(wider)
    return env


_DIGEST_SCRIPT = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from test_phantoms_clinical import ALL_ON, NO_EXTRAS, _digest
from cfviewer.phantoms import PhantomConfig, generate, generate_batch
out = {f"default-{s}-{z}": _digest(generate(z, s)) for s, z in json.loads(sys.argv[2])}
out["all_on"] = _digest(generate(5, 128, labels=ALL_ON))
cfg = PhantomConfig(tube_given_no_pneumothorax=1.0, severity_range=(0.2, 0.7), noise=False)
out["custom"] = _digest(generate(3, 96, cfg))
off = PhantomConfig(tube_given_no_pneumothorax=1.0, severity_range=(0.2, 0.7), noise=False,
                    anatomy_detail=False, subtle_findings=False, **NO_EXTRAS)
out["custom_off"] = _digest(generate(3, 96, off))
b = generate_batch(6, 11, 64)
out["batch"] = hashlib.sha256(b.images.tobytes() + b.labels.tobytes()).hexdigest()[:24]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def recorded_kernel_digests() -> dict[str, str]:
    """Digests of the default and plain configs, computed with the recorded SIMD kernels."""
    import subprocess
    import sys
    from pathlib import Path

    env = _reference_kernels_env()
    run = subprocess.run([sys.executable, "-c", _DIGEST_SCRIPT, str(Path(__file__).parent),
                          json.dumps(sorted(DEFAULT_DIGESTS))], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("size, seed", sorted(DEFAULT_DIGESTS))
def test_default_output_is_bit_identical_to_before(recorded_kernel_digests, size, seed):
    assert recorded_kernel_digests[f"default-{size}-{seed}"] == DEFAULT_DIGESTS[(size, seed)]


def test_other_plain_configs_are_bit_identical_to_before(recorded_kernel_digests):
    d = recorded_kernel_digests
    assert d["all_on"] == ALL_ON_128_SEED5
    assert d["custom"] == CUSTOM_96_SEED3
    # setting the new fields to their "off" values explicitly changes nothing either
    assert d["custom_off"] == CUSTOM_96_SEED3
    assert d["batch"] == BATCH_6_SEED11_64
    assert set(generate_batch(2, 11, 64).masks) == {*PATHOLOGIES, "chest_tube", "marker"}


@pytest.mark.parametrize("field, value, message", [
    ("mimic_probability", 1.5, "mimic_probability = 1.5: a probability must be in"),
    ("mimic_probability", -0.1, "mimic_probability"),
    ("ap_fraction", 2, "ap_fraction = 2.0: a probability"),
    ("low_inspiration_probability", float("nan"), "low_inspiration_probability"),
    ("collimation_probability", "0.3", "collimation_probability = '0.3': must be a number"),
    ("annotation_probability", True, "annotation_probability = True: must be a number"),
    ("label_noise", 0.6, "label_noise = 0.6: a flip probability must be in \\[0, 0.5\\]"),
    ("label_noise", -0.01, "label_noise"),
    ("anatomy_detail", "yes", "anatomy_detail = 'yes': must be true or false"),
    ("subtle_findings", 1, "subtle_findings = 1: must be true or false"),
    ("volume_loss", "on", "volume_loss = 'on': must be true or false"),
])
def test_new_fields_are_validated(field, value, message):
    with pytest.raises(PhantomConfigError, match=message):
        PhantomConfig(**{field: value})
    with pytest.raises(PhantomConfigError, match=field):
        PhantomConfig.clinical(**{field: value})


def test_clinical_preset_is_plain_json_and_deterministic():
    doc = json.loads(json.dumps(CLINICAL_PRESET))
    assert PhantomConfig(size=64, **doc) == PhantomConfig.clinical(size=64)
    cfg = PhantomConfig.clinical(size=96)
    assert cfg.realism and cfg.anatomy_detail and cfg.subtle_findings and 0 < cfg.label_noise <= 0.1
    assert PhantomConfig.clinical(ap_fraction=0.0).ap_fraction == 0.0
    for seed in (0, 3):
        a, b = generate(seed, 96, cfg), generate(seed, 96, cfg)
        assert a.image.tobytes() == b.image.tobytes()
        assert a.labels == b.labels and a.meta["label_flipped"] == b.meta["label_flipped"]
        assert sorted(a.masks) == sorted(b.masks)
        assert all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
        assert not np.array_equal(a.image, generate(seed, 96).image)


def test_mimics_are_drawn_with_masks_and_never_set_labels():
    cfg = PhantomConfig(mimic_probability=1.0, tube_given_no_pneumothorax=0.0, marker_probability=0.0)
    for seed in range(3):
        ph = generate(seed, 96, cfg, labels=ALL_OFF)
        assert not any(ph.labels.values())
        assert not any(p in ph.masks for p in PATHOLOGIES)
        for kind in MIMIC_KINDS:
            m = ph.masks[f"mimic_{kind}"]
            assert m.dtype == bool and m.shape == (96, 96) and m.any(), (seed, kind)
        assert set(ph.meta["mimics"]) == set(MIMIC_KINDS)
        plain = generate(seed, 96, PhantomConfig(tube_given_no_pneumothorax=0.0, marker_probability=0.0),
                         labels=ALL_OFF)
        assert np.abs(ph.image - plain.image).max() > 20   # the mimics are visible
    # labels are drawn exactly as without mimics; each kind comes about as often as configured
    half = PhantomConfig(mimic_probability=0.5)
    counts = dict.fromkeys(MIMIC_KINDS, 0)
    for seed in range(40):
        ph, plain = generate(seed, 32, half), generate(seed, 32)
        assert ph.labels == plain.labels and ph.meta["ctr"] == plain.meta["ctr"]
        for kind in MIMIC_KINDS:
            counts[kind] += kind in ph.meta["mimics"]
    assert all(8 <= c <= 32 for c in counts.values()), counts


def test_mimic_masks_lie_where_they_should():
    cfg = PhantomConfig(mimic_probability=1.0)
    ph = generate(4, 128, cfg, labels=ALL_OFF)
    lung = binary_dilation(ph.meta["lung_mask"], iterations=2)
    for kind in ("nipple", "end_on_vessel", "skin_fold", "scar", "breast", "scapula"):
        m = ph.masks[f"mimic_{kind}"]
        assert (m & lung).sum() / m.sum() > 0.8, kind
    # a skin fold keeps the lung markings lateral to it; nothing is taken away from the image
    assert ph.meta["mimics"]["skin_fold"]["contrast"] > 0


def test_label_noise_flips_about_the_configured_share_and_keeps_the_truth():
    rate = 0.1
    cfg = PhantomConfig(label_noise=rate)
    n_img, flips, pairs = 70, 0, 0
    for seed in range(n_img):
        ph = generate(seed, 32, cfg)
        plain = generate(seed, 32)
        true = ph.meta["true_labels"]
        assert true == plain.labels
        assert np.array_equal(ph.image, plain.image)          # only the labels change
        assert set(ph.masks) == set(plain.masks)               # masks follow the drawn findings
        for p in PATHOLOGIES:
            assert (ph.labels[p] != true[p]) == (p in ph.meta["label_flipped"])
        flips += len(ph.meta["label_flipped"])
        pairs += len(PATHOLOGIES)
    assert pairs >= 400
    assert abs(flips / pairs - rate) < 0.05, flips / pairs
    # forced labels are never flipped
    for seed in range(20):
        ph = generate(seed, 32, PhantomConfig(label_noise=0.5), labels={"Mass": 1, "Effusion": 0})
        assert ph.labels["Mass"] == 1 and ph.labels["Effusion"] == 0
    assert generate(0, 32).meta["label_flipped"] == []


def test_ap_films_have_a_larger_apparent_ctr_and_scapulae():
    cfg = PhantomConfig(ap_fraction=0.5)
    ctr = {"AP": [], "PA": []}
    for seed in range(60):
        ph = generate(seed, 32, cfg)
        proj = ph.meta["projection"]
        assert proj in ("AP", "PA")
        ctr[proj].append(ph.meta["ctr"] - ph.meta["ctr_true"])
        assert (ph.meta["ctr_true"] > 0.5) == bool(ph.labels["Cardiomegaly"])
        if proj == "PA":
            assert ph.meta["ctr"] == generate(seed, 32).meta["ctr"]
    assert 15 <= len(ctr["AP"]) <= 45
    assert 0.04 <= min(ctr["AP"]) and max(ctr["AP"]) <= 0.08 + 1e-9
    assert max(ctr["PA"]) == 0.0
    ph = next(generate(s, 96, cfg) for s in range(100) if generate(s, 32, cfg).meta["projection"] == "AP")
    assert ph.masks["mimic_scapula"].any()
    # the drawn heart is as wide as the apparent CTR says
    heart = generate(ph.seed, 192, cfg, labels={"Cardiomegaly": 1})
    assert abs(_mask_ctr(heart) - heart.meta["ctr"]) < 0.04


def _mask_ctr(ph) -> float:
    heart_cols = np.where(ph.masks["Cardiomegaly"].any(axis=0))[0]
    lung_cols = np.where(ph.meta["lung_mask"].any(axis=0))[0]
    return (heart_cols[-1] - heart_cols[0] + 1) / (lung_cols[-1] - lung_cols[0] + 1)


def test_detailed_heart_keeps_the_ctr_meaning():
    cfg = PhantomConfig(anatomy_detail=True)
    for seed in range(4):
        ph = generate(seed, 160, cfg, labels={"Cardiomegaly": 1})
        assert abs(_mask_ctr(ph) - ph.meta["ctr"]) < 0.04, seed
        assert ph.meta["anatomy_options"]["detail"] is True
        plain = generate(seed, 160, labels={"Cardiomegaly": 1})
        assert ph.meta["ctr"] == plain.meta["ctr"]
        assert not np.array_equal(ph.masks["Cardiomegaly"], plain.masks["Cardiomegaly"])


def test_low_inspiration_raises_the_domes():
    cfg = PhantomConfig(low_inspiration_probability=1.0)
    for seed in range(3):
        ph, plain = generate(seed, 32, cfg), generate(seed, 32)
        assert ph.meta["inspiration"] == "low"
        assert plain.meta["patient"]["dome_right"] - ph.meta["patient"]["dome_right"] >= 0.07
        assert ph.meta["ctr"] > plain.meta["ctr"]


def test_subtle_findings_grade_about_a_third_subtle():
    cfg = PhantomConfig(subtle_findings=True)
    grades = []
    for seed in range(30):
        ph = generate(seed, 48, cfg, labels=ALL_ON)
        for p in PATHOLOGIES:
            assert ph.masks[p].any(), (seed, p)
        g = ph.meta["grade"]
        assert set(g) == set(PATHOLOGIES)
        grades += list(g.values())
        if g["Cardiomegaly"] == "subtle":
            assert 0.5 < ph.meta["ctr_true"] <= 0.54
        if g["Mass"] == "subtle":
            assert 1.0 <= ph.meta["findings"]["Mass"]["diameter_cm"] <= 1.5
    share = grades.count("subtle") / len(grades)
    assert 0.2 < share < 0.45, share
    neg = [generate(s, 32, cfg, labels=ALL_OFF).meta["ctr"] for s in range(20)]
    assert max(neg) < 0.5 and max(neg) > 0.46   # normals reach up to the threshold


def test_volume_loss_raises_the_collapsed_side_and_changes_nothing_else():
    """Moderate / obvious plates and lower-lobe collapses raise their own hemidiaphragm, by the
    recorded elevation, and the Atelectasis mask covers the band the dome moved through; the
    subtle tier, upper-lobe collapse and every image without atelectasis are as before."""
    on, off = PhantomConfig(subtle_findings=True, volume_loss=True), PhantomConfig(subtle_findings=True)
    raised = kept = 0
    for seed in range(40):
        a = generate(seed, 64, on, labels={"Atelectasis": 1})
        b = generate(seed, 64, off, labels={"Atelectasis": 1})
        f = a.meta["findings"]["Atelectasis"]
        assert {k: v for k, v in f.items() if k not in ("elevation", "center")} == \
            {k: v for k, v in b.meta["findings"]["Atelectasis"].items() if k != "center"}
        key = "dome_right" if f["side"] < 0 else "dome_left"
        other = "dome_left" if f["side"] < 0 else "dome_right"
        drop = b.meta["patient"][key] - a.meta["patient"][key]
        assert a.meta["patient"][other] == b.meta["patient"][other]
        if f["tier"] > 0 and f["kind"] in ("plate", "lower_lobe"):
            lo = 0.07 if f["kind"] == "plate" else 0.09
            assert lo <= f["elevation"] <= 0.17 and drop == pytest.approx(f["elevation"])
            assert a.masks["Atelectasis"].sum() > b.masks["Atelectasis"].sum()
            raised += 1
        else:
            assert "elevation" not in f and drop == 0.0
            assert np.array_equal(a.image, b.image) and np.array_equal(a.masks["Atelectasis"], b.masks["Atelectasis"])
            kept += 1
        n_on, n_off = generate(seed, 48, on, labels={"Atelectasis": 0}), generate(seed, 48, off, labels={"Atelectasis": 0})
        assert np.array_equal(n_on.image, n_off.image)
    assert raised >= 8 and kept >= 8, (raised, kept)
    assert PhantomConfig.clinical().volume_loss


def test_collimation_and_annotation_masks():
    cfg = PhantomConfig(collimation_probability=1.0, annotation_probability=1.0)
    for seed in range(4):
        ph = generate(seed, 96, cfg)
        col, ann = ph.masks["collimation"], ph.masks["annotation"]
        assert col.any() and ann.any()
        border = np.zeros_like(col)
        border[[0, -1], :] = True
        border[:, [0, -1]] = True
        assert (col & border).any()                          # shutters start at the image edge
        assert ph.image[ann].max() > 700                     # burned-in text is bright
        assert ph.meta["confounders"]["annotation"]["text"]
        # everything away from the two artefacts is unchanged
        plain = generate(seed, 96)
        away = ~binary_dilation(col | ann, iterations=2)
        assert np.array_equal(ph.image[away], plain.image[away])


@pytest.mark.parametrize("size", [32, 40, 64, 128])
def test_every_feature_at_small_sizes(size):
    everything = PhantomConfig.clinical(mimic_probability=1.0, ap_fraction=0.5, low_inspiration_probability=0.5,
                                        collimation_probability=1.0, annotation_probability=1.0)
    for seed in range(3):
        for labels in (None, ALL_ON):
            ph = generate(seed, size, everything, labels=labels)
            assert ph.image.shape == (size, size) and np.isfinite(ph.image).all()
            assert ph.image.min() >= -1024 and ph.image.max() <= 1024
            for m in ph.masks.values():
                assert m.shape == (size, size) and m.dtype == bool


def test_large_size_and_batch_with_clinical_preset():
    ph = generate(1, 512, PhantomConfig.clinical(mimic_probability=1.0), labels=ALL_ON)
    assert ph.image.shape == (512, 512) and all(ph.masks[p].any() for p in PATHOLOGIES)
    b = generate_batch(4, 3, 48, PhantomConfig.clinical(mimic_probability=1.0))
    assert {f"mimic_{k}" for k in ("nipple", "skin_fold", "scar")} <= set(b.masks)
    assert b.masks["mimic_scar"].any(axis=(1, 2)).all()


def test_cli_clinical_preset_writes_the_preset_phantoms(tmp_path):
    from cfviewer.cli import main
    from cfviewer.phantoms import generate, image_seeds
    from cfviewer.imaging import load

    out = tmp_path / "clin"
    assert main(["phantoms", "--clinical", "--n", "3", "--size", "64", "--seed", "4", "--no-dicom",
                 "--out", str(out)]) == 0
    first = generate(int(image_seeds(3, 4)[0]), 64, PhantomConfig.clinical(size=64))
    assert first.meta["projection"] in ("AP", "PA")
    pngs = sorted((out / "images").glob("*.png"))
    assert len(pngs) == 3
    img = load(pngs[0])  # 16-bit PNG round trip of the first clinical phantom
    assert img.shape == (64, 64)
    np.testing.assert_allclose(img, first.image, atol=1.0)
