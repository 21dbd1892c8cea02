"""Issue 8, section 4: cases where the autoencoder alone flips the decision (the reconstruction
is on the other side of the bundle's threshold, Latent Shift paper appendix K) are flagged in
the cohort report (`study sample`) and in the precompute summary (`study precompute`)."""

from __future__ import annotations

import csv

import numpy as np
import torch
from torch import nn

from cfviewer import PATHOLOGIES, imaging
from cfviewer.models import Bundle

LEVELS = [50.0, 300.0, 80.0, 400.0, 100.0, 600.0, -300.0, -400.0]
MASS = [1, 1, 0, 0, 1, 0, 1, 0]
FLIPPED = {"case000", "case002", "case004"}  # mean in [0, 150): positive, reconstruction negative


class MeanClassifier(nn.Module):
    """p = sigmoid(mean(x) / 100) for every pathology: positive (threshold 0.5) iff mean >= 0."""

    def __init__(self):
        super().__init__()
        self.pathologies = list(PATHOLOGIES)
        self.register_buffer("one", torch.ones(len(PATHOLOGIES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.mean((1, 2, 3))[:, None] / 100.0 * self.one)


class DarkeningAE(nn.Module):
    """D(E(x)) = x - 150."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x / 1024.0

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z * 1024.0 - 150.0


def _bundle() -> Bundle:
    return Bundle(MeanClassifier(), DarkeningAE(), resolution=32, device="cpu")


def _write_cases(folder):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path", *PATHOLOGIES, "split"])
        for i, (level, mass) in enumerate(zip(LEVELS, MASS)):
            img = (level + rng.normal(0, 5, (32, 32))).astype(np.float32)
            imaging.write_png16(folder / f"case{i:03d}.png", img)
            w.writerow([f"case{i:03d}", f"case{i:03d}.png", *[mass if p == "Mass" else 0 for p in PATHOLOGIES],
                        "test"])


def test_cohort_report_and_precompute_summary_flag_autoencoder_flips(tmp_path):
    from cfviewer.study import artifacts, cohort, studies
    from cfviewer.study.db import open_database

    root = tmp_path / "s"
    _write_cases(root / "cases")
    bundle = _bundle()
    db = open_database(None, study_dir=root)
    try:
        with db.write() as s:
            st = studies.create_study(s, "s", root)
            studies.add_arm(s, st, "Method B", [{"name": "latentshift-max", "params": {}}])
            cohort.import_cases(s, st, root / "cases", "labels.csv")
            rep = cohort.sample_cohort(s, st, bundle, pathologies=["Mass"], per_pathology=6,
                                       bundle_id="flip")
        assert rep.total == 6 and rep.ae_checked == 6
        assert set(rep.ae_flips) == FLIPPED
        text = str(rep)
        assert "the autoencoder alone flips the decision for 3 of 6 cohort cases" in text
        assert all(k in text for k in FLIPPED)

        pre = artifacts.precompute(db, "s", bundle=bundle, bundle_id="flip")
        assert not pre.failed and pre.computed == 6 + 6  # input + latentshift-max per case
        assert set(pre.ae_flips) == FLIPPED
        assert "flips the decision for 3 case(s)" in str(pre)
        # up-to-date artifacts are read back: a resumed run still reports them
        again = artifacts.precompute(db, "s", bundle=bundle, bundle_id="flip")
        assert again.computed == 0 and set(again.ae_flips) == FLIPPED
    finally:
        db.dispose()


def test_bundles_without_an_autoencoder_report_nothing(tmp_path):
    from cfviewer.study import cohort, studies
    from cfviewer.study.db import open_database

    root = tmp_path / "s"
    _write_cases(root / "cases")
    db = open_database(None, study_dir=root)
    try:
        with db.write() as s:
            st = studies.create_study(s, "s", root)
            cohort.import_cases(s, st, root / "cases", "labels.csv")
            b = Bundle(MeanClassifier(), None, resolution=32, device="cpu")
            rep = cohort.sample_cohort(s, st, b, pathologies=["Mass"], per_pathology=6, bundle_id="noae")
        assert rep.ae_flips == [] and rep.ae_checked is None and "autoencoder" not in str(rep)
    finally:
        db.dispose()
