"""Precompute: every file with its row and sha256, resumable, safe to run twice at once."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import socket

import numpy as np
import pytest
from sqlalchemy import select

from cfviewer import imaging
from cfviewer.study import artifacts, responses, studies
from cfviewer.study.schema import Artifact, Reader
from test_study_support import build_study, positive_bundle, precompute_worker

A_METHODS = ("gradient", "guided_backprop", "integrated_gradients")


@pytest.fixture()
def built(tmp_path):
    b = build_study(tmp_path, per_pathology=1, readers=("r1",))
    yield b
    b.db.dispose()


def _rows(b) -> list[Artifact]:
    with b.db.read() as s:
        return list(s.scalars(select(Artifact).order_by(Artifact.id)))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_precompute_writes_every_artifact_and_resumes(built):
    bundle = positive_bundle()
    rep = artifacts.precompute(built.db, built.name, bundle=bundle, bundle_id="rand", limit=2)
    assert rep.units == 2 and rep.computed == 2 + 4 and not rep.failed  # 2x input + 3 + 1 explainers
    rows = _rows(built)
    kinds = {(r.method, r.kind) for r in rows}
    for m in A_METHODS:
        assert {(m, "map_npy"), (m, "overlay_png"), (m, "explanation_json")} <= kinds
        assert (m, "gif") not in kinds  # no frames, no animation
    for k in ("map_npy", "overlay_png", "gif", "frames_npz", "counterfactual_png", "explanation_json"):
        assert ("latentshift-max", k) in kinds
    assert ("input", "image_png") in kinds
    for r in rows:
        assert r.status == "done" and _sha(built.root / r.path) == r.sha256 and len(r.params_hash) == 64
    m = np.load(built.root / next(r.path for r in rows if r.kind == "map_npy"))
    assert m.dtype == np.float32 and m.shape == (32, 32)
    doc = json.loads((built.root / next(r.path for r in rows if r.method == "latentshift-max"
                                         and r.kind == "explanation_json")).read_text())
    assert doc["explanation"]["pred_reconstruction"] is not None and doc["explanation"]["n_frames"] >= 2
    assert doc["files"]["gif"]["sha256"] == next(r.sha256 for r in rows if r.kind == "gif")
    manifest = json.loads(rep.manifest.read_text())["files"]
    assert manifest == {r.path: r.sha256 for r in rows}
    # the reader page gets everything from files
    with built.db.read() as s:
        reader = s.scalars(select(Reader)).one()
        first = responses.next_assignment(s, reader).assignment
        view = responses.read_view(s, reader, first.id)
    if view.arm == "Method A" and first.case_id == rows[0].case_id:
        assert [p.index for p in view.panels] == [1, 2, 3] and not view.missing_artifacts
    # second run: nothing to do
    again = artifacts.precompute(built.db, built.name, bundle=bundle, bundle_id="rand", limit=2)
    assert (again.computed, again.skipped) == (0, 6)
    # a damaged file is noticed and only its method recomputed
    gif = next(r for r in rows if r.kind == "gif")
    (built.root / gif.path).write_bytes(b"GIF89a broken")
    st = artifacts.artifact_status(built.db, built.name)
    assert any("changed file" in p for p in st.problems)
    fixed = artifacts.precompute(built.db, built.name, bundle=bundle, bundle_id="rand", limit=2)
    assert (fixed.computed, fixed.skipped) == (1, 5)
    assert not artifacts.artifact_status(built.db, built.name).problems
    # changed explainer parameters invalidate that arm's artifacts
    with built.db.write() as s:
        st = studies.get_study(s, built.name)
        arm = next(a for a in st.arms if a.name == "Method A")
        arm.methods = [{"name": "integrated_gradients", "params": {"n_steps": 8}} if m["name"] == "integrated_gradients"
                       else m for m in arm.methods]
    redo = artifacts.precompute(built.db, built.name, bundle=bundle, bundle_id="rand", limit=2)
    assert redo.computed == 1


def test_refuses_another_bundle_and_changed_case_files(built):
    with pytest.raises(studies.StudyError, match="same model bundle"):
        artifacts.precompute(built.db, built.name, bundle=positive_bundle(), bundle_id="other", limit=1)
    rows_before = _rows(built)
    with built.db.read() as s:
        from cfviewer.study.schema import Case, CohortItem

        case = s.scalars(select(Case).join(CohortItem, CohortItem.case_id == Case.id)
                         .order_by(CohortItem.position)).first()
    imaging.write_png16(built.root / case.source_path, np.zeros((32, 32), np.float32))
    rep = artifacts.precompute(built.db, built.name, bundle=positive_bundle(), bundle_id="rand", limit=1)
    assert rep.failed and "changed since import" in rep.failed[0] and rep.computed == 0
    assert _rows(built) == rows_before == []  # the claim was released, nothing half-done remains


def test_dead_workers_claims_are_taken_over(built):
    with built.db.write() as s:
        st = studies.get_study(s, built.name)
        from cfviewer.study.schema import CohortItem, utcnow

        item = s.scalars(select(CohortItem).order_by(CohortItem.position)).first()
        s.add(Artifact(study_id=st.id, case_id=item.case_id, arm_id=st.arms[0].id, method="input",
                       kind="explanation_json", params_hash="0" * 64, status="claimed",
                       claimed_by=f"{socket.gethostname()}:999999999:dead", claimed_at=utcnow()))
    rep = artifacts.precompute(built.db, built.name, bundle=positive_bundle(), bundle_id="rand", limit=1)
    assert rep.busy == 0 and rep.computed == 4


@pytest.mark.slow
def test_two_precomputes_at_once_share_the_work(built, tmp_path):
    bdir = tmp_path / "bundle"
    positive_bundle().save(bdir)
    url = built.db.url
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=precompute_worker, args=(url, built.name, str(bdir), 4, str(tmp_path / f"r{i}.json")))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(900)
    assert [p.exitcode for p in procs] == [0, 0]
    reps = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(2)]
    assert not any(r["failed"] for r in reps)
    # 4 (case, arm): 4 inputs + 2 x (3 + 1) explainers = 12, each computed exactly once overall
    assert sum(r["computed"] for r in reps) == 12
    assert all(r["computed"] + r["skipped"] + r["busy"] == 12 for r in reps)
    rows = _rows(built)
    assert all(r.status == "done" for r in rows)
    assert len({(r.case_id, r.arm_id, r.method, r.kind) for r in rows}) == len(rows)
    for r in rows:
        assert _sha(built.root / r.path) == r.sha256
