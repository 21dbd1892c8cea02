"""Portable study folders: a copied or moved study works where it is and never writes into
the original; stored paths are relative to the study folder (found when the database is opened)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import warnings
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cfviewer.cli import main
from cfviewer.study import artifacts, studies
from cfviewer.study.db import open_database
from cfviewer.study.schema import Artifact, Case, Study
from test_study_support import build_study, positive_bundle, write_cases

NAME = "pilot"


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under root (relative path -> digest)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _checkpoint(root: Path) -> None:
    """Fold SQLite's WAL into the database file, as a user's finished commands leave it."""
    import gc

    gc.collect()  # the CLI's engines: their last connection closing would remove -wal / -shm later
    for db in root.glob("*.db"):
        c = sqlite3.connect(db)
        try:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            c.close()


def _cli_study(base: Path, capsys, db_arg: str | None, cases_inside: bool = True) -> Path:
    """A study made through the CLI in base/pilot: bundle inside the study folder, 24 cases,
    cohort, one reader, 2 (case, arm) precomputed."""
    root = base / NAME
    positive_bundle().save(root / "bundle")
    cases = root / "cases" if cases_inside else base / "incoming"
    write_cases(cases, 24)
    extra = ["--db", db_arg] if db_arg else []
    assert main(["study", "create", str(root), "--bundle", str(root / "bundle"), *extra]) == 0
    assert main(["study", "import", str(root), str(cases), "--labels", "labels.csv", "--quiet"]) == 0
    assert main(["study", "sample", str(root), "--per-pathology", "1", "--quiet", "--device", "cpu"]) == 0
    assert main(["study", "readers", str(root), "--add", "ann"]) == 0
    assert main(["study", "precompute", str(root), "--limit", "2", "--quiet", "--device", "cpu"]) == 0
    capsys.readouterr()
    _checkpoint(root)
    return root


@pytest.mark.parametrize("db_arg", [None, "custom.db"], ids=["study.db", "study.json-sqlite"])
def test_a_copied_study_precomputes_and_exports_into_the_copy_only(tmp_path, capsys, monkeypatch, db_arg):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    monkeypatch.delenv("CFVIEWER_STUDY_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    orig = _cli_study(tmp_path / "a", capsys, str(tmp_path / "a" / NAME / db_arg) if db_arg else None)
    if db_arg:  # the SQLite file inside the study folder is written relative to it
        assert json.loads((orig / "study.json").read_text())["db_url"] == f"sqlite:///{db_arg}"
    before = _tree(orig)
    assert any(k.startswith("artifacts/") for k in before)
    copy = tmp_path / "b" / NAME
    shutil.copytree(orig, copy)

    assert main(["study", "precompute", str(copy), "--limit", "4", "--quiet", "--device", "cpu"]) == 0
    assert _tree(orig) == before, "precompute in the copy changed the original study folder"
    out = capsys.readouterr().out
    assert "computed" in out and str(copy / "artifacts" / "manifest.json") in out
    assert main(["study", "export", str(copy)]) == 0
    assert main(["study", "status", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"in {copy}" in out and "precomputed: 4/" in out and "0 problem(s)" in out

    assert _tree(orig) == before, "the original study folder changed"
    manifest = json.loads((copy / "artifacts" / "manifest.json").read_text())["files"]
    assert len({Path(p).parts[1] + "/" + Path(p).parts[2] for p in manifest}) == 4  # 4 (case, arm)
    for rel, digest in manifest.items():
        assert not Path(rel).is_absolute()
        assert hashlib.sha256((copy / rel).read_bytes()).hexdigest() == digest
    assert (copy / "export" / "responses.csv").is_file()
    db = open_database(study_dir=copy)
    try:
        with db.read() as s:
            st = studies.get_study(s, NAME)
            assert st.root == studies.ROOT_HERE and st.config["bundle"] == "bundle"
            assert studies.study_folder(st) == copy.resolve()
            assert all(not Path(p).is_absolute() for p in s.scalars(select(Case.source_path)))
            assert all(not Path(p).is_absolute() for p in s.scalars(select(Artifact.path)))
    finally:
        db.dispose()


def test_images_outside_the_study_stay_absolute_and_a_copy_names_the_missing_file(tmp_path, capsys,
                                                                                  monkeypatch):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    monkeypatch.delenv("CFVIEWER_STUDY_DIR", raising=False)
    orig = _cli_study(tmp_path / "a", capsys, None, cases_inside=False)
    incoming = (tmp_path / "a" / "incoming").resolve()
    db = open_database(study_dir=orig)
    with db.read() as s:
        paths = list(s.scalars(select(Case.source_path)))
    db.dispose()
    assert paths and all(Path(p).is_absolute() and Path(p).parent == incoming for p in paths)

    copy = tmp_path / "b" / NAME
    shutil.copytree(orig, copy)
    before = _tree(orig)
    assert main(["study", "precompute", str(copy), "--limit", "3", "--quiet", "--device", "cpu"]) == 0
    assert _tree(orig) == before  # the images are read where they are; nothing is written there
    capsys.readouterr()

    shutil.move(incoming, tmp_path / "elsewhere")
    assert main(["study", "precompute", str(copy), "--limit", "4", "--force", "--quiet", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert str(incoming) in out and "outside the study folder" in out and "--copy" in out
    assert _tree(orig) == before


def test_import_copy_makes_the_folder_self_contained(tmp_path):
    root = tmp_path / NAME
    write_cases(tmp_path / "incoming", 4)
    db = open_database(study_dir=root)
    with db.write() as s:
        st = studies.create_study(s, NAME, root)
        from cfviewer.study import cohort

        cohort.import_cases(s, st, tmp_path / "incoming", "labels.csv", copy=True)
    with db.read() as s:
        paths = list(s.scalars(select(Case.source_path)))
    db.dispose()
    assert paths and all(p.startswith("cases/") for p in paths)


def test_an_older_absolute_root_is_used_from_where_the_copy_is(tmp_path):
    b = build_study(tmp_path / "a", name=NAME, per_pathology=1, readers=("r1",))
    with b.db.write() as s:  # as older versions stored it
        s.execute(update(Study).values(root=str(b.root.resolve())))
    b.db.dispose()
    _checkpoint(b.root)
    before = _tree(b.root)
    copy = tmp_path / "b" / NAME
    shutil.copytree(b.root, copy)
    db = open_database(study_dir=copy)
    try:
        with pytest.warns(studies.StudyFolderWarning, match="copied or moved"):
            rep = artifacts.precompute(db, NAME, bundle=positive_bundle(), bundle_id="rand", limit=1)
        assert rep.computed and not rep.failed and rep.manifest == copy.resolve() / "artifacts" / "manifest.json"
    finally:
        db.dispose()
    assert _tree(b.root) == before
    # a study whose folder is elsewhere by design (its database apart, no study database there) keeps it
    db = open_database(f"sqlite:///{tmp_path / 'apart.db'}")
    try:
        with db.write() as s:
            st = studies.create_study(s, "apart", copy / "cases")
            assert Path(st.root).is_absolute()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with db.read() as s:
                assert studies.study_folder(studies.get_study(s, "apart")) == (copy / "cases").resolve()
    finally:
        db.dispose()


def test_without_a_study_folder_the_error_says_how_to_name_one(tmp_path, monkeypatch):
    b = build_study(tmp_path, name=NAME, per_pathology=1, readers=("r1",))
    try:
        with Session(b.db.engine) as s:  # a session that knows no study folder (as PostgreSQL alone)
            st = s.scalars(select(Study)).one()
            with pytest.raises(studies.StudyError, match="CFVIEWER_STUDY_DIR"):
                studies.study_folder(st)
    finally:
        b.db.dispose()
    from cfviewer.study.db import find_study_folder

    pg = "postgresql+psycopg://u:p@localhost:5432/cfv"
    monkeypatch.delenv("CFVIEWER_STUDY_DIR", raising=False)
    assert find_study_folder(pg).path is None
    monkeypatch.setenv("CFVIEWER_STUDY_DIR", str(tmp_path / "x"))
    assert find_study_folder(pg).path == (tmp_path / "x").resolve()
    assert find_study_folder(pg, tmp_path / "y").path == (tmp_path / "y").resolve()


def test_a_copy_opened_with_the_originals_study_dir_variable_is_refused(tmp_path, monkeypatch):
    b = build_study(tmp_path / "a", name=NAME, per_pathology=1, readers=("r1",))
    b.db.dispose()
    copy = tmp_path / "b" / NAME
    shutil.copytree(b.root, copy)
    from cfviewer.study.db import DatabaseError

    monkeypatch.setenv("CFVIEWER_STUDY_DIR", str(b.root))
    with pytest.raises(DatabaseError, match="CFVIEWER_STUDY_DIR"):
        open_database(f"sqlite:///{copy / 'study.db'}")


def test_bundle_check_matches_the_bundle_format():
    from cfviewer.models import bundle as B

    assert (studies.BUNDLE_FORMAT, studies.BUNDLE_VERSION, studies.BUNDLE_JSON) == (B.FORMAT, B.VERSION,
                                                                                   B.BUNDLE_JSON)
