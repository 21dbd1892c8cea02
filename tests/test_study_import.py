"""Import is all or nothing and names every bad file / row; sampling reports the strata."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import func, select

from cfviewer import PATHOLOGIES, imaging
from cfviewer.errors import ImportValidationError, UnknownPathologyError
from cfviewer.study import cohort, studies
from cfviewer.study.errors import StudyError
from cfviewer.study.schema import Case, CohortItem, Prediction
from test_study_support import count_cases, import_into, positive_bundle, read_csv, rewrite_csv, write_cases


_import, _n_cases = import_into, count_cases


def test_import_references_files_with_sha256_and_relative_paths(study):
    db, root = study
    write_cases(root / "cases", 5)
    rep = _import(db, root / "cases")
    assert rep.cases == 5 and rep.pathologies == list(PATHOLOGIES) and rep.metadata_columns == ["split"]
    with db.read() as s:
        cases = list(s.scalars(select(Case).order_by(Case.case_key)))
    assert [c.case_key for c in cases] == [f"case{i:03d}" for i in range(5)]
    c0 = cases[0]
    assert c0.source_path == "cases/case000.png"
    assert c0.sha256 == cohort.sha256_file(root / "cases/case000.png")
    assert (c0.height, c0.width) == (32, 32)
    assert set(c0.labels) == set(PATHOLOGIES) and set(c0.labels.values()) <= {0, 1}
    assert c0.meta == {"split": "test"}


def test_import_copy_puts_files_under_the_study(study, tmp_path):
    db, root = study
    write_cases(tmp_path / "outside", 2)
    _import(db, tmp_path / "outside", copy=True)
    with db.read() as s:
        paths = sorted(s.scalars(select(Case.source_path)))
    assert all(p.startswith("cases/") for p in paths)
    assert all((root / p).is_file() for p in paths)


def test_boxes_nih_layout_and_masks(study):
    db, root = study
    folder = root / "cases"
    labels = write_cases(folder, 3)
    rows = read_csv(labels)
    rows[0].append("mask_Mass")
    mask = np.zeros((32, 32), np.uint8)
    mask[4:10, 5:12] = 255
    from PIL import Image

    Image.fromarray(mask).save(folder / "m0.png")
    rows[1].append("m0.png")
    for r in rows[2:]:
        r.append("")
    rewrite_csv(labels, rows)
    # NIH header "Bbox [x,y,w,h]" splits into four columns; trailing empty columns as in NIH's file
    (folder / "boxes.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,,,\n"
        "case000,Mass,1.5,2,10,8,,\n"
        "case001,Cardiomegaly,0,0,32,32,,\n"
        "not_imported.png,Nodule,1,1,1,1,,\n")
    rep = _import(db, folder, boxes_csv="boxes.csv")
    assert (rep.boxes, rep.masks, rep.skipped_box_rows) == (2, 1, 1)
    with db.read() as s:
        c0 = s.scalars(select(Case).where(Case.case_key == "case000")).one()
    assert c0.boxes == [{"pathology": "Mass", "x": 1.5, "y": 2.0, "w": 10.0, "h": 8.0}]
    assert c0.masks == {"Mass": "cases/m0.png"}


def _expect_refused(db, folder, *needles, **kw):
    with pytest.raises(ImportValidationError) as ei:
        _import(db, folder, **kw)
    text = "\n".join(ei.value.problems)
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    assert _n_cases(db) == 0
    return ei.value.problems


@pytest.mark.parametrize("bad", ["corrupt", "zero_byte", "text_as_png", "missing"])
def test_bad_files_are_named_and_nothing_is_imported(study, bad):
    db, root = study
    folder = root / "cases"
    write_cases(folder, 4)
    target = folder / "case002.png"
    if bad == "corrupt":
        target.write_bytes(target.read_bytes()[:60])
    elif bad == "zero_byte":
        target.write_bytes(b"")
    elif bad == "text_as_png":
        target.write_text("id,label\nthis is not an image\n")
    else:
        target.unlink()
    problems = _expect_refused(db, folder, "line 4 (id 'case002')")
    assert len(problems) == 1


def test_every_problem_is_listed_at_once(study):
    db, root = study
    folder = root / "cases"
    labels = write_cases(folder, 6)
    rows = read_csv(labels)
    (folder / "case001.png").write_bytes(b"")
    rows[3][2] = "yes"                     # case002 Atelectasis
    rows[4][0] = "case000"                 # duplicate id
    rows[5][1] = "../../escape.png"        # leaves the folder
    (folder.parent.parent / "escape.png").write_bytes((folder / "case005.png").read_bytes())
    rows[6][1] = "case000.png"             # same file content as case000
    rows[6][0] = "case005"
    rewrite_csv(labels, rows)
    problems = _expect_refused(
        db, folder, "line 3 (id 'case001')", "must be 0 or 1, got 'yes'",
        "line 5 (id 'case000'): duplicate id, first on line 2", "leaves the import folder",
        "same content (sha256) as id 'case000'")
    assert len(problems) == 5


def test_symlink_out_of_the_folder_is_refused(study, tmp_path):
    db, root = study
    folder = root / "cases"
    write_cases(folder, 2)
    secret = tmp_path / "elsewhere.png"
    secret.write_bytes((folder / "case001.png").read_bytes())
    (folder / "case001.png").unlink()
    os.symlink(secret, folder / "case001.png")
    _expect_refused(db, folder, "line 3 (id 'case001')", "leaves the import folder")


def test_missing_columns_and_unknown_pathologies(study):
    db, root = study
    folder = root / "cases"
    labels = write_cases(folder, 2)
    rows = read_csv(labels)
    rewrite_csv(labels, [[c for i, c in enumerate(r) if i != 0] for r in rows])  # drop id
    _expect_refused(db, folder, "no id column")
    rewrite_csv(labels, [r[:2] + ["x"] for r in rows])  # id, path, nothing else
    _expect_refused(db, folder, "no pathology column")
    rewrite_csv(labels, rows)
    _expect_refused(db, folder, "unknown pathology 'Pneumonia'", pathologies=["Mass", "Pneumonia"])
    rewrite_csv(labels, [r + (["mask_Hernia"] if i == 0 else [""]) for i, r in enumerate(rows)])
    _expect_refused(db, folder, "mask column 'mask_Hernia' names an unknown pathology")
    rewrite_csv(labels, rows)
    (folder / "b.csv").write_text("Image Index,Finding Label,x,y,w,h\ncase000,Nodule,1,1,2,2\n"
                                  "case001,Mass,30,30,5,5\n")
    _expect_refused(db, folder, "unknown pathology 'Nodule'", "leaves the 32x32 image", boxes_csv="b.csv")
    _expect_refused(db, folder, "labels CSV", "does not exist", labels="nope.csv")


def test_existing_cases_are_not_imported_twice(study):
    db, root = study
    write_cases(root / "cases", 3)
    _import(db, root / "cases")
    with pytest.raises(ImportValidationError, match="already in study"):
        _import(db, root / "cases")
    assert _n_cases(db) == 3


def test_sampling_splits_tp_fp_and_reports_shortfalls(study):
    db, root = study
    write_cases(root / "cases", 30, seed=3)
    _import(db, root / "cases")
    b = positive_bundle()
    with db.write() as s:
        st = studies.get_study(s, "s")
        rep = cohort.sample_cohort(s, st, b, per_pathology=4, bundle_id="rb", seed=1)
    assert rep.total == 24
    assert all(r.drawn_tp == 2 and r.drawn_fp == 2 for r in rep.rows)
    assert "pathology" in str(rep) and list(rep.table().columns)[0] == "pathology"
    with db.read() as s:
        items = list(s.scalars(select(CohortItem)))
        assert s.scalar(select(func.count(Prediction.id))) == 30 * len(PATHOLOGIES)
        for it in items:
            label = s.get(Case, it.case_id).labels[it.pathology]
            assert it.stratum == ("TP" if label == 1 else "FP")
    assert len({it.case_id for it in items}) == len(items)  # each case at most once
    # a second draw with the same seed gives the same cohort
    with db.write() as s:
        st = studies.get_study(s, "s")
        with pytest.raises(StudyError, match="already has a cohort"):
            cohort.sample_cohort(s, st, b, per_pathology=4, bundle_id="rb", seed=1)
        cohort.sample_cohort(s, st, b, per_pathology=4, bundle_id="rb", seed=1, replace=True)
    with db.read() as s:
        again = sorted((i.case_id, i.pathology) for i in s.scalars(select(CohortItem)))
    assert again == sorted((i.case_id, i.pathology) for i in items)
    # asking for more than exists: drawn = available, reported
    with db.write() as s:
        st = studies.get_study(s, "s")
        rep = cohort.sample_cohort(s, st, b, per_pathology=40, bundle_id="rb", replace=True)
    assert any(r.drawn_fp < r.requested_fp for r in rep.rows)
    assert "fewer than requested" in str(rep)
    assert all(r.drawn_tp <= r.available_tp and r.drawn_fp <= r.available_fp for r in rep.rows)


def test_sampling_refuses_unknown_pathology_and_changed_files(study):
    db, root = study
    write_cases(root / "cases", 4)
    _import(db, root / "cases")
    with db.write() as s:
        st = studies.get_study(s, "s")
        with pytest.raises(UnknownPathologyError):
            cohort.sample_cohort(s, st, positive_bundle(), pathologies=["Hernia"])
    imaging.write_png16(root / "cases/case001.png", np.zeros((32, 32), np.float32))
    with db.write() as s:
        st = studies.get_study(s, "s")
        with pytest.raises(StudyError, match="changed since import"):
            cohort.sample_cohort(s, st, positive_bundle(), per_pathology=1)


def test_fill_tops_up_a_short_stratum(study):
    db, root = study
    write_cases(root / "cases", 20, seed=5)
    _import(db, root / "cases")
    with db.write() as s:
        st = studies.get_study(s, "s")
        rep = cohort.sample_cohort(s, st, positive_bundle(), per_pathology=16, bundle_id="rb",
                                   pathologies=["Mass"], fp_fraction=0.75, fill=True)
    (row,) = rep.rows
    assert (row.requested_tp, row.requested_fp) == (4, 12)
    assert row.available_fp < 12 < row.available_fp + row.available_tp  # FP short, TP can cover
    assert row.drawn_fp == row.available_fp and row.drawn_tp == 16 - row.drawn_fp
