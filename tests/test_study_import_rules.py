"""Imports that cannot load the wrong thing: where the CSV is, missing pathology columns, images
too small to read, CSV encodings and delimiters, NIH BBox_List_2017.csv as published."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from cfviewer import PATHOLOGIES, imaging
from cfviewer.cli import main
from cfviewer.errors import CfviewerError, ImportValidationError
from cfviewer.study import cohort, studies
from cfviewer.study.db import open_database
from cfviewer.study.schema import Case
from test_study_support import count_cases, import_into, positive_bundle, write_cases

NIH_BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"  # as published: 9 fields


_import, _n_cases = import_into, count_cases


def _refused(db, folder, *needles, **kw) -> str:
    before = _n_cases(db)
    with pytest.raises(ImportValidationError) as ei:
        _import(db, folder, **kw)
    assert isinstance(ei.value, CfviewerError)
    text = "\n".join(ei.value.problems)
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    assert _n_cases(db) == before  # all or nothing
    return text


def _cases(folder: Path, labels: list[dict[str, int]], size=(32, 32), extra: dict[str, list] | None = None,
           columns=PATHOLOGIES, name="labels.csv", seed=0, prefix="c") -> Path:
    """One random 16-bit PNG per entry of `labels` ({pathology: 0/1}, missing = 0) + a labels CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    extra = extra or {}
    with open(folder / name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path", *columns, *extra])
        for i, lab in enumerate(labels):
            hw = size[i] if isinstance(size, list) else size
            imaging.write_png16(folder / f"{prefix}{i}.png", rng.uniform(-1024, 1024, hw).astype(np.float32))
            w.writerow([f"{prefix}{i}", f"{prefix}{i}.png", *(lab.get(p, 0) for p in columns), *(v[i] for v in extra.values())])
    return folder / name


# ------------------------------------------------------------------ 1. where the CSV is


def test_cli_refuses_two_different_labels_csvs_of_one_name(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    study = str(tmp_path / "st")
    assert main(["study", "create", study]) == 0
    write_cases(tmp_path / "images", 3)
    other = tmp_path / "work"
    other.mkdir()
    (other / "labels.csv").write_text("id,path," + ",".join(PATHOLOGIES) + "\nzzz,zzz.png,0,0,0,0,0,0\n")
    monkeypatch.chdir(other)
    capsys.readouterr()
    assert main(["study", "import", study, str(tmp_path / "images"), "--labels", "labels.csv", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "two different files" in err
    assert str(other / "labels.csv") in err and str(tmp_path / "images" / "labels.csv") in err
    assert "absolute path" in err
    # the same bytes in both places are not ambiguous
    (other / "labels.csv").write_bytes((tmp_path / "images" / "labels.csv").read_bytes())
    assert main(["study", "import", study, str(tmp_path / "images"), "--labels", "labels.csv", "--quiet"]) == 0
    assert "imported 3 cases" in capsys.readouterr().out


def test_success_names_the_csv_used_and_stores_its_sha256(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    study = str(tmp_path / "st")
    assert main(["study", "create", study]) == 0
    labels = write_cases(tmp_path / "images", 3)
    monkeypatch.chdir(tmp_path)  # no labels.csv here: the image folder's is used
    capsys.readouterr()
    assert main(["study", "import", study, "images", "--labels", "labels.csv", "--quiet"]) == 0
    out = capsys.readouterr().out
    digest = hashlib.sha256(labels.read_bytes()).hexdigest()
    assert f"labels CSV: {labels.resolve()} (sha256 {digest})" in out
    db = open_database(study_dir=Path(study))
    with db.read() as s:
        (rec,) = studies.get_study(s, "st").config["imports"]
    db.dispose()
    assert rec["labels_csv"] == str(labels.resolve()) and rec["labels_sha256"] == digest and rec["cases"] == 3
    # neither place has it: both are named
    assert main(["study", "import", study, "images", "--labels", "nope.csv", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "working directory" in err and "image folder" in err and "nope.csv" in err


def test_api_takes_a_relative_csv_from_the_import_folder(study, tmp_path, monkeypatch):
    db, root = study
    labels = write_cases(tmp_path / "images", 2)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labels.csv").write_text("id,path,Mass\nx,x.png,1\n")  # a decoy in the working directory
    rep = _import(db, tmp_path / "images")
    assert rep.cases == 2 and rep.labels_csv == str(labels.resolve())


# ------------------------------------------------------------- 2. missing pathology columns


def test_missing_pathology_column_is_refused_unless_declared_absent(study, tmp_path):
    db, root = study
    cols = [p for p in PATHOLOGIES if p not in ("Mass", "Pneumothorax")]
    _cases(tmp_path / "c", [{"Atelectasis": 1}, {"Effusion": 1}], columns=cols)
    text = _refused(db, tmp_path / "c", "no column for Mass, Pneumothorax", "--absent-pathology Mass",
                    "--absent-pathology Pneumothorax", "not negative")
    _refused(db, tmp_path / "c", "no column for Pneumothorax", absent_pathologies=["Mass"])
    _refused(db, tmp_path / "c", "has a column 'Effusion'", absent_pathologies=["Mass", "Pneumothorax", "Effusion"])
    _refused(db, tmp_path / "c", "'Hernia' is not a pathology", absent_pathologies=["Mass", "Pneumothorax", "Hernia"])
    assert "Traceback" not in text
    rep = _import(db, tmp_path / "c", absent_pathologies=["Mass", "pneumothorax"])
    assert rep.cases == 2 and rep.absent == ["Mass", "Pneumothorax"] and rep.unlabelled == ["Mass", "Pneumothorax"]
    assert "unlabelled (not negative) for Mass (declared absent), Pneumothorax (declared absent)" in str(rep)
    with db.read() as s:
        cases = list(s.scalars(select(Case)))
        rec = studies.get_study(s, "s").config["imports"][-1]
    assert all("Mass" not in c.labels and "Pneumothorax" not in c.labels for c in cases)
    assert all(set(c.labels) == set(cols) for c in cases)
    assert rec["absent_pathologies"] == ["Mass", "Pneumothorax"]
    # unlabelled cases are in neither stratum of the absent pathologies
    with db.write() as s:
        st = studies.get_study(s, "s")
        srep = cohort.sample_cohort(s, st, positive_bundle(), per_pathology=2, bundle_id="rb")
    by = {r.pathology: r for r in srep.rows}
    assert by["Mass"].available_tp == by["Mass"].available_fp == 0
    assert by["Atelectasis"].available_tp + by["Atelectasis"].available_fp > 0


def test_cli_absent_pathology_option(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    study = str(tmp_path / "st")
    assert main(["study", "create", study]) == 0
    _cases(tmp_path / "c", [{}, {}], columns=[p for p in PATHOLOGIES if p != "Lung Opacity"])
    args = ["study", "import", study, str(tmp_path / "c"), "--labels", str(tmp_path / "c/labels.csv"), "--quiet"]
    capsys.readouterr()
    assert main(args) == 2
    assert "--absent-pathology 'Lung Opacity'" in capsys.readouterr().err
    assert main(args + ["--absent-pathology", "Lung Opacity"]) == 0
    assert "unlabelled (not negative) for Lung Opacity" in capsys.readouterr().out


# ------------------------------------------------------------------ 3. image size


def test_images_too_small_to_read_are_refused(study, tmp_path):
    db, root = study
    _cases(tmp_path / "c", [{}, {}, {}, {}], size=[(1, 1), (31, 200), (32, 32), (300, 32)])
    text = _refused(db, tmp_path / "c", "line 2 (id 'c0')", "1x1 px", f"minimum of {imaging.MIN_SIDE} px",
                    "line 3 (id 'c1')", "200x31 px")
    assert "c2" not in text and "c3" not in text


def test_images_smaller_than_the_bundle_input_import_with_a_warning(tmp_path):
    root = tmp_path / "s"
    bdir = root / "bundle"
    positive_bundle(64).save(bdir)
    db = open_database(study_dir=root)
    with db.write() as s:
        studies.create_study(s, "s", root, config={"bundle": "bundle"})
    _cases(tmp_path / "c", [{}, {}, {}], size=[(48, 40), (64, 64), (100, 90)])
    rep = _import(db, tmp_path / "c")
    db.dispose()
    assert rep.cases == 3
    (w,) = rep.warnings
    assert "1 of 3 images are smaller than the model's input (64 px" in w and "40x48" in w and "'c0'" in w
    assert "warning: 1 of 3 images" in str(rep)


# ------------------------------------------------------------ 5. encodings and delimiters


def _latin_csv(folder: Path) -> bytes:
    write_cases(folder, 2)
    rows = (folder / "labels.csv").read_text().splitlines()
    rows[0] += ",site"
    rows[1] += ",Clínica Señor"
    rows[2] += ",Hôpital"
    return ("\r\n".join(rows) + "\r\n").encode("cp1252")


def test_non_utf8_csv_is_refused_with_the_fix_and_read_when_named(study, tmp_path):
    db, root = study
    folder = tmp_path / "c"
    (folder / "labels.csv").parent.mkdir(parents=True)
    data = _latin_csv(folder)
    (folder / "labels.csv").write_bytes(data)
    text = _refused(db, folder, str(folder / "labels.csv"), "is not UTF-8", "line 2", "--encoding cp1252",
                    "Clínica Señor")
    assert "UnicodeDecodeError" not in text and "codec" not in text
    _refused(db, folder, "unknown encoding 'klingon'", encoding="klingon")
    rep = _import(db, folder, encoding="cp1252")
    with db.read() as s:
        sites = sorted(c.meta["site"] for c in s.scalars(select(Case)))
        rec = studies.get_study(s, "s").config["imports"][-1]
    assert rep.cases == 2 and sites == ["Clínica Señor", "Hôpital"] and rec["labels_encoding"] == "cp1252"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_csvs_with_a_byte_order_mark_are_read(study, tmp_path, encoding):
    db, root = study
    folder = tmp_path / "c"
    folder.mkdir()
    text = _latin_csv(folder).decode("cp1252")
    (folder / "labels.csv").write_bytes(text.encode(encoding))  # these codecs write the BOM
    rep = _import(db, folder, encoding="ascii")  # a BOM wins over a named encoding
    with db.read() as s:
        sites = sorted(c.meta["site"] for c in s.scalars(select(Case)))
    assert rep.cases == 2 and sites == ["Clínica Señor", "Hôpital"]


def test_utf16_without_bom_is_refused_clearly(study, tmp_path):
    db, root = study
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "labels.csv").write_bytes(_latin_csv(folder).decode("cp1252").encode("utf-16-le"))
    _refused(db, folder, "NUL bytes", "UTF-16", "save it as UTF-8")
    assert _import(db, folder, encoding="utf-16-le").cases == 2


@pytest.mark.parametrize("delim", [";", "\t"])
def test_semicolon_and_tab_separated_csvs_are_read(study, tmp_path, delim):
    db, root = study
    folder = tmp_path / "c"
    labels = write_cases(folder, 3)
    rows = list(csv.reader(open(labels, newline="")))
    rows[0].append("note")
    for r, note in zip(rows[1:], ["1,5 cm", "a, b", ""]):  # commas inside values
        r.append(note)
    with open(labels, "w", newline="") as f:
        csv.writer(f, delimiter=delim).writerows(rows)
    rep = _import(db, folder)
    with db.read() as s:
        c0 = s.scalars(select(Case).where(Case.case_key == "case000")).one()
        rec = studies.get_study(s, "s").config["imports"][-1]
    assert rep.cases == 3 and rep.pathologies == list(PATHOLOGIES)
    assert c0.meta == {"split": "test", "note": "1,5 cm"} and rec["labels_delimiter"] == delim


def test_a_header_that_cannot_tell_its_delimiter_is_refused(study, tmp_path):
    db, root = study
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "labels.csv").write_text("ID;Case,Name\n1;2,3\n")  # no id column on ',' nor on ';'
    _refused(db, folder, "cannot tell its delimiter", "comma and semicolon", str(folder / "labels.csv"))
    (folder / "labels.csv").write_text("id;x,id\n1;2,3\n")  # an id column on both
    _refused(db, folder, "cannot tell its delimiter", "comma and semicolon")


# ------------------------------------------------------------ 6. NIH BBox_List_2017.csv


def _nih_boxes(path: Path, rows: list[tuple[str, str, float, float, float, float]]) -> Path:
    lines = [NIH_BBOX_HEADER] + [f"{i},{f},{x!r},{y!r},{w!r},{h!r},,," for i, f, x, y, w, h in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_nih_bbox_list_as_published_needs_map_skip_and_scale(study, tmp_path):
    db, root = study
    folder = tmp_path / "c"
    _cases(folder, [{"Mass": 1, "Atelectasis": 1}, {"Mass": 1}, {}], size=(64, 64))
    _nih_boxes(folder / "BBox_List_2017.csv", [
        ("c0.png", "Atelectasis", 160.0, 320.0, 320.0, 160.0),
        ("c0.png", "Nodule", 512.0, 512.0, 64.0, 128.0),
        ("c1.png", "Infiltrate", 0.0, 0.0, 1024.0, 1024.0),
        ("c2.png", "Infiltrate", 10.0, 10.0, 100.0, 100.0),
        ("00000001_000.png", "Cardiomegaly", 1.0, 1.0, 2.0, 2.0),  # not imported: counted
    ])
    text = _refused(db, folder, "unknown pathology 'Nodule' in 1 row(s) (line 3)", "--bbox-map 'Nodule=PATHOLOGY'",
                    "unknown pathology 'Infiltrate' in 2 row(s) (line 4, 5)", "--bbox-skip-unmapped",
                    "line 2 (c0.png): box x=160 y=320 w=320 h=160 leaves the 64x64 image", "--bbox-scale auto",
                    boxes_csv="BBox_List_2017.csv")
    assert text.count("unknown pathology") == 2  # one problem per finding, not per row
    _refused(db, folder, "'Nodules' is not a pathology", boxes_csv="BBox_List_2017.csv",
             bbox_map={"Nodule": "Nodules"}, bbox_skip_unmapped=True, bbox_scale="auto")
    _refused(db, folder, "box scale 'big'", boxes_csv="BBox_List_2017.csv", bbox_scale="big")
    rep = _import(db, folder, boxes_csv="BBox_List_2017.csv", bbox_map={"Nodule": "Mass"},
                  bbox_skip_unmapped=True, bbox_scale="auto")
    assert (rep.boxes, rep.skipped_box_rows, rep.skipped_findings) == (2, 1, {"Infiltrate": 2})
    out = str(rep)
    assert "skipped 2 box rows of findings mapped to no study pathology: Infiltrate 2" in out
    assert "skipped 1 box rows of images not in this import" in out and "image side / 1024" in out
    with db.read() as s:
        c0 = s.scalars(select(Case).where(Case.case_key == "c0")).one()
        rec = studies.get_study(s, "s").config["imports"][-1]
    assert c0.boxes == [{"pathology": "Atelectasis", "x": 10.0, "y": 20.0, "w": 20.0, "h": 10.0},
                        {"pathology": "Mass", "x": 32.0, "y": 32.0, "w": 4.0, "h": 8.0, "finding": "Nodule"}]
    assert rec["boxes_sha256"] == hashlib.sha256((folder / "BBox_List_2017.csv").read_bytes()).hexdigest()
    assert rec["bbox_map"] == {"nodule": "Mass"} and rec["skipped_findings"] == {"Infiltrate": 2}


def test_a_box_for_a_finding_labelled_0_is_refused(study, tmp_path):
    db, root = study
    folder = tmp_path / "c"
    _cases(folder, [{"Mass": 1}, {"Mass": 0}])
    (folder / "b.csv").write_text("Image Index,Finding Label,x,y,w,h\nc0,Mass,1,1,4,4\nc1,Nodule,2,2,4,4\n")
    _refused(db, folder, "b.csv line 3 (c1): a 'Nodule' (mapped to Mass) box, but the labels CSV says Mass = 0",
             boxes_csv="b.csv", bbox_map={"Nodule": "Mass"})


def test_box_scale_factor_and_original_size(study, tmp_path):
    db, root = study
    folder = tmp_path / "c"
    _cases(folder, [{"Mass": 1}, {"Mass": 1}], size=[(40, 80), (64, 64)])
    (folder / "b.csv").write_text("Image Index,Finding Label,x,y,w,h\nc0,Mass,100,40,200,60\n")
    _refused(db, folder, "the image is 80x40, not square", "original_width", boxes_csv="b.csv", bbox_scale="auto")
    rep = _import(db, folder, boxes_csv="b.csv", bbox_scale=0.25)
    assert rep.boxes == 1 and "box scale x0.25" in str(rep)
    with db.read() as s:
        c0 = s.scalars(select(Case).where(Case.case_key == "c0")).one()
    assert c0.boxes == [{"pathology": "Mass", "x": 25.0, "y": 10.0, "w": 50.0, "h": 15.0}]

    # original_width / original_height: the size the boxes were drawn on (else NIH's 1024)
    folder2 = tmp_path / "d"
    _cases(folder2, [{"Mass": 1}, {"Mass": 1}], size=[(40, 80), (64, 64)], seed=7, prefix="d",
           extra={"original_width": [800, ""], "original_height": [400, ""]})
    (folder2 / "b.csv").write_text("Image Index,Finding Label,x,y,w,h\nd0,Mass,100,100,200,100\n"
                                   "d1,Mass,512,0,512,1024\n")
    rep = _import(db, folder2, boxes_csv="b.csv", bbox_scale="auto")
    with db.read() as s:
        boxes = {c.case_key: c.boxes for c in s.scalars(select(Case).where(Case.case_key.in_(["d0", "d1"])))}
    assert rep.boxes == 2
    assert boxes["d0"] == [{"pathology": "Mass", "x": 10.0, "y": 10.0, "w": 20.0, "h": 10.0}]
    assert boxes["d1"] == [{"pathology": "Mass", "x": 32.0, "y": 0.0, "w": 32.0, "h": 64.0}]
    _cases(tmp_path / "e", [{"Mass": 1}], prefix="e", seed=9, extra={"original_width": ["x"]})
    _refused(db, tmp_path / "e", "has 'original_width' but not the other")


def test_cli_bbox_options(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    study = str(tmp_path / "st")
    assert main(["study", "create", study]) == 0
    folder = tmp_path / "c"
    _cases(folder, [{"Mass": 1, "Lung Opacity": 1}, {}], size=(64, 64))
    _nih_boxes(folder / "BBox_List_2017.csv", [("c0.png", "Nodule", 512.0, 512.0, 64.0, 128.0),
                                               ("c0.png", "Infiltrate", 0.0, 0.0, 512.0, 512.0),
                                               ("c0.png", "Pneumonia", 0.0, 0.0, 512.0, 512.0)])
    base = ["study", "import", study, str(folder), "--labels", str(folder / "labels.csv"),
            "--boxes", str(folder / "BBox_List_2017.csv"), "--quiet"]
    capsys.readouterr()
    assert main(base + ["--bbox-map", "Nodule"]) == 2
    assert "write FINDING=PATHOLOGY" in capsys.readouterr().err
    assert main(base + ["--bbox-map", "Nodule=Mass", "--bbox-map", "Infiltrate=Lung Opacity",
                        "--bbox-skip-unmapped", "--bbox-scale", "auto"]) == 0
    out = capsys.readouterr().out
    assert "2 boxes" in out and "Pneumonia 1" in out and "boxes CSV:" in out


def test_real_nih_bbox_rows(shared_data, study, tmp_path):
    """The NIH boxes of ../shared/data/nih1000 (1024-px space, 64-px images) in the published layout."""
    db, root = study
    nih = shared_data / "nih1000"
    rows = [r for r in csv.DictReader(open(nih / "labels.csv", newline="")) if r["bbox_label"]]
    assert rows
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Image Index", "path", *[p for p in PATHOLOGIES if p != "Lung Opacity"]])
        for r in rows:
            found = r["Finding Labels"].split("|")
            w.writerow([r["Image Index"], r["path"], *[int(p in found) for p in PATHOLOGIES if p != "Lung Opacity"]])
    _nih_boxes(tmp_path / "BBox_List_2017.csv", [
        (r["Image Index"], r["bbox_label"], *(float(r[f"bbox_{k}"]) for k in "xywh")) for r in rows])
    kw = dict(boxes_csv=tmp_path / "BBox_List_2017.csv", absent_pathologies=["Lung Opacity"])
    _refused(db, nih, "unknown pathology 'Infiltrate'", "leaves the 64x64 image", labels=tmp_path / "labels.csv", **kw)
    rep = _import(db, nih, tmp_path / "labels.csv", bbox_map={"Infiltrate": "Lung Opacity"},
                  bbox_skip_unmapped=True, bbox_scale="auto", **kw)
    n_pneumonia = sum(r["bbox_label"] == "Pneumonia" for r in rows)
    assert rep.cases == len(rows) and rep.skipped_findings == ({"Pneumonia": n_pneumonia} if n_pneumonia else {})
    assert rep.boxes == len(rows) - n_pneumonia
    with db.read() as s:
        got = {c.case_key: c for c in s.scalars(select(Case))}
    for r in rows:
        if r["bbox_label"] == "Pneumonia":
            continue
        (b,) = got[r["Image Index"]].boxes
        assert b["x"] == pytest.approx(float(r["bbox_x"]) / 16) and b["h"] == pytest.approx(float(r["bbox_h"]) / 16)
