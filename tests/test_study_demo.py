"""`cfviewer demo`: builds the demo study from phantoms, reuses it, rebuilds with --force."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from cfviewer.cli import main
from cfviewer.models import random_bundle
from cfviewer.study.db import open_database
from cfviewer.study.demo import DEMO_READERS, build_demo, demo_url
from cfviewer.study.schema import Case, CohortItem, Reader, Response


@pytest.fixture()
def demo_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CFVIEWER_STUDY_DATA", str(tmp_path))
    monkeypatch.setenv("CFVIEWER_DB_URL", "sqlite:////nonexistent/should/not/be/used.db")
    root = tmp_path / "demo"
    b = random_bundle(32, 0)
    b.thresholds = {p: 0.3 for p in b.pathologies}
    b.save(root / "bundle")
    return root


def test_missing_bundle_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CFVIEWER_STUDY_DATA", str(tmp_path))
    assert main(["demo", "--quiet"]) == 2
    assert "demo model bundle is missing" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_build_reuse_simulate_force(demo_root, capsys):
    kw = dict(n_pool=40, per_pathology=2, image_size=64, quiet=True)
    res = build_demo(demo_root, **kw)
    assert not res.reused and set(res.links) == set(DEMO_READERS)
    assert all(link.startswith("http://localhost:8501/?token=") for link in res.links.values())
    assert res.precompute.computed > 0 and not res.precompute.failed
    doc = json.loads((demo_root / "readers.json").read_text())
    assert "DEMO ONLY" in doc["note"] and (demo_root / "readers.json").stat().st_mode & 0o077 == 0
    db = open_database(demo_url(demo_root))
    with db.read() as s:
        n_cohort = s.scalar(select(func.count(CohortItem.id)))
        strata = set(s.scalars(select(CohortItem.stratum)))
        masks = sum(len(c.masks) for c in s.scalars(select(Case)))
    assert n_cohort == res.sampling.total > 0 and strata <= {"TP", "FP"}
    assert masks > 0  # the phantoms' finding masks came along
    # the CLI reuses it and reprints the same links
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert all(link in out for link in res.links.values())
    again = build_demo(demo_root, simulate=True, **kw)
    assert again.reused and again.precompute.computed == 0 and again.links == res.links
    assert again.simulation.reads == 2 * 2 * n_cohort
    with db.read() as s:
        sim = s.scalar(select(func.count(Response.id)).where(Response.simulated.is_(True)))
        real = s.scalar(select(func.count(Reader.id)).where(Reader.simulated.is_(False)))
    assert sim == 2 * again.simulation.reads and real == 2
    third = build_demo(demo_root, simulate=True, **kw)
    assert third.simulation.reads == 0  # simulated readers are not answered twice
    db.dispose()
    forced = build_demo(demo_root, force=True, **kw)
    assert not forced.reused and forced.links != res.links
    db = open_database(demo_url(demo_root))
    with db.read() as s:
        assert s.scalar(select(func.count(Response.id))) == 0
        # deterministic: the same phantoms and cohort again
        assert s.scalar(select(func.count(CohortItem.id))) == n_cohort
    db.dispose()
    assert not (demo_root.parent / "should").exists()


@pytest.mark.slow
def test_the_demo_pool_gives_the_demo_bundle_half_false_positives_in_every_pathology():
    """The demo study asks "does the explanation help catch a wrong prediction?": its cohort
    (per_pathology cases, fp_fraction 0.5) needs that many false positives of the shipped
    bundle in the pool, for every pathology."""
    import inspect

    import numpy as np

    from cfviewer.models import Bundle
    from cfviewer.models.data import phantom_config
    from cfviewer.phantoms import iter_phantoms
    from cfviewer.study.demo import DEMO_IMAGE_SIZE, DEMO_POOL, DEMO_SEED
    from pathlib import Path

    per_pathology = inspect.signature(build_demo).parameters["per_pathology"].default
    b = Bundle.load(Path(__file__).resolve().parents[1] / "study_data" / "demo" / "bundle", device="cpu")
    options = b.meta["training"]["config"]["phantoms"]
    phs = list(iter_phantoms(DEMO_POOL, DEMO_SEED, DEMO_IMAGE_SIZE, phantom_config(DEMO_IMAGE_SIZE, options)))
    probs = np.asarray(b.predict([p.image for p in phs]))
    labels = np.array([[p.labels[k] for k in b.pathologies] for p in phs])
    called = probs >= b.threshold_array()[None]
    fp = dict(zip(b.pathologies, (called & (labels == 0)).sum(0).tolist()))
    tp = dict(zip(b.pathologies, (called & (labels == 1)).sum(0).tolist()))
    assert min(fp.values()) >= per_pathology // 2, fp
    assert min(tp.values()) >= per_pathology - per_pathology // 2, tp
