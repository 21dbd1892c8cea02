"""Import cases (all or nothing) and sample the reading cohort.

Labels CSV rules
----------------
* id column: the first of `id`, `case_id`, `Image Index` (NIH). Required, unique.
* path column: the first of `path`, `image`, `file`, `image_path`; relative to the import folder.
  Without one, the id is the file name (as in NIH's `Image Index`).
* one column per pathology holding 0 or 1; a column is a pathology column when its name is one of
  the study's pathologies (case-insensitive, `_` = space). At least one is required; with
  `pathologies=[...]` exactly those are required.
* mask columns `mask_<Pathology>` (or `<Pathology>_mask`): a mask image (non-zero = finding) of
  the same size as the case, relative to the import folder; empty = no mask.
* every other column is kept as case metadata (`Case.meta`) and listed in the report.

Boxes CSV (NIH `BBox_List_2017.csv` layout): `Image Index`, `Finding Label`, then x, y, w, h in
the image's pixels (the four columns after `Finding Label`, whatever their headers). Rows for
images that are not being imported are skipped (and counted).

Files are referenced, not copied (unless `copy=True`): the study stores each path relative to the
study folder and its SHA-256; precompute and sampling refuse a file whose bytes changed.
Every file must load with `cfviewer.imaging.load`, stay inside the import folder after resolving
symlinks, and be unique by SHA-256. Any problem raises ImportValidationError listing all of them;
nothing is written.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cfviewer.errors import CfviewerError, ImportValidationError
from cfviewer.study.errors import StudyError
from cfviewer.study.schema import Assignment, Case, CohortItem, Prediction, Study

ID_COLUMNS = ("id", "case_id", "Image Index")
PATH_COLUMNS = ("path", "image", "file", "image_path")


def _norm(name: str) -> str:
    return " ".join(str(name).strip().replace("_", " ").lower().split())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ImportReport:
    cases: int
    boxes: int
    masks: int
    skipped_box_rows: int
    pathologies: list[str]
    metadata_columns: list[str]
    case_keys: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"imported {self.cases} cases ({', '.join(self.pathologies)}), "
                 f"{self.boxes} boxes, {self.masks} masks"]
        if self.skipped_box_rows:
            lines.append(f"skipped {self.skipped_box_rows} box rows of images not in this import")
        if self.metadata_columns:
            lines.append(f"kept as metadata: {', '.join(self.metadata_columns)}")
        return "\n".join(lines)


def _inside(folder: Path, rel: str) -> tuple[Path | None, str | None]:
    """(resolved path, None) when `rel` names a file inside `folder`, else (None, reason)."""
    if not rel:
        return None, "empty path"
    p = Path(rel)
    p = p if p.is_absolute() else folder / p
    try:
        resolved = p.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # symlink loops
        return None, f"cannot resolve path ({exc})"
    if not resolved.is_relative_to(folder):
        return None, f"path {rel!r} leaves the import folder {folder} (after resolving links); move the file inside it"
    if not resolved.exists():
        return None, f"file {rel!r} does not exist in {folder}"
    if not resolved.is_file():
        return None, f"{rel!r} is not a regular file"
    return resolved, None


def _read_csv(path: Path, what: str, problems: list[str]) -> pd.DataFrame | None:
    if not path.is_file():
        problems.append(f"{what} {path} does not exist")
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:  # empty / binary / malformed
        problems.append(f"{what} {path} is not a readable CSV ({type(exc).__name__}: {exc})")
        return None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _load_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return arr > 0


def import_cases(
    session: Session,
    study: Study,
    folder: str | Path,
    labels_csv: str | Path,
    *,
    boxes_csv: str | Path | None = None,
    pathologies: Sequence[str] | None = None,
    copy: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Validate every row and file, then add the cases to `study` (inside the caller's write
    transaction). Raises ImportValidationError with every problem; nothing is added then."""
    from cfviewer import imaging

    problems: list[str] = []
    folder_p = Path(folder)
    if not folder_p.is_dir():
        raise ImportValidationError([f"import folder {folder_p} does not exist or is not a folder"])
    folder_p = folder_p.resolve()
    labels_p = Path(labels_csv)
    if not labels_p.is_absolute() and not labels_p.exists():
        labels_p = folder_p / labels_p
    df = _read_csv(labels_p, "labels CSV", problems)
    if df is None:
        raise ImportValidationError(problems)

    known = list(study.config.get("pathologies") or [])
    known_by_norm = {_norm(p): p for p in known}
    cols = list(df.columns)
    id_col = next((c for c in ID_COLUMNS if c in cols), None)
    path_col = next((c for c in PATH_COLUMNS if c in cols), None)
    if id_col is None:
        problems.append(f"labels CSV {labels_p}: no id column; name one of {', '.join(ID_COLUMNS)}")
    label_cols: dict[str, str] = {}  # pathology -> column
    mask_cols: dict[str, str] = {}
    meta_cols: list[str] = []
    for c in cols:
        if c in (id_col, path_col):
            continue
        n = _norm(c)
        mask_name = n[5:] if n.startswith("mask ") else n[:-5] if n.endswith(" mask") else None
        if mask_name is not None:
            if mask_name in known_by_norm:
                mask_cols[known_by_norm[mask_name]] = c
            else:
                problems.append(f"labels CSV {labels_p}: mask column {c!r} names an unknown pathology "
                                f"{mask_name!r}; known: {', '.join(known)}")
        elif n in known_by_norm:
            label_cols[known_by_norm[n]] = c
        else:
            meta_cols.append(c)
    if pathologies is not None:
        for p in pathologies:
            if _norm(p) not in known_by_norm:
                problems.append(f"unknown pathology {p!r}: this study's pathologies are {', '.join(known)}")
            elif known_by_norm[_norm(p)] not in label_cols:
                problems.append(f"labels CSV {labels_p}: missing column {p!r} (0/1 per case)")
        chosen = [known_by_norm[_norm(p)] for p in pathologies if _norm(p) in known_by_norm]
        label_cols = {p: label_cols[p] for p in chosen if p in label_cols}
    elif not label_cols:
        problems.append(f"labels CSV {labels_p}: no pathology column; add one 0/1 column per pathology, "
                        f"named as one of {', '.join(known)}")
    if problems:
        raise ImportValidationError(problems)

    existing_keys = set(session.scalars(select(Case.case_key).where(Case.study_id == study.id)))
    existing_sha = dict(session.execute(
        select(Case.sha256, Case.case_key).where(Case.study_id == study.id)).all())
    seen_ids: dict[str, int] = {}
    seen_sha: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    n = len(df)
    if n == 0:
        raise ImportValidationError([f"labels CSV {labels_p} has no rows"])
    for i, rec in enumerate(df.to_dict("records")):
        line = i + 2  # header is line 1
        where = f"{labels_p.name} line {line}"
        key = str(rec[id_col]).strip()
        if not key:
            problems.append(f"{where}: empty {id_col!r}")
            continue
        where = f"{where} (id {key!r})"
        if key in seen_ids:
            problems.append(f"{where}: duplicate id, first on line {seen_ids[key]}")
            continue
        seen_ids[key] = line
        if key in existing_keys:
            problems.append(f"{where}: a case with this id is already in study {study.name!r}")
        rel = str(rec[path_col]).strip() if path_col else key
        path, why = _inside(folder_p, rel)
        labels: dict[str, int] = {}
        for p, c in label_cols.items():
            v = str(rec[c]).strip()
            if v in ("0", "1", "0.0", "1.0"):
                labels[p] = int(float(v))
            else:
                problems.append(f"{where}: column {c!r} must be 0 or 1, got {v!r}")
        if path is None:
            problems.append(f"{where}: {why}")
            continue
        digest = sha256_file(path)
        if digest in seen_sha:
            problems.append(f"{where}: file {rel!r} has the same content (sha256) as id {seen_sha[digest]!r}")
        elif digest in existing_sha:
            problems.append(f"{where}: file {rel!r} is already in the study as case {existing_sha[digest]!r}")
        seen_sha.setdefault(digest, key)
        try:
            img = imaging.load(path)
        except CfviewerError as exc:
            problems.append(f"{where}: {exc}")
            continue
        except Exception as exc:  # a loader bug must still not import half a folder
            problems.append(f"{where}: cannot load {rel!r} ({type(exc).__name__}: {exc})")
            continue
        h, w = img.shape
        masks: dict[str, Path] = {}
        for p, c in mask_cols.items():
            mrel = str(rec[c]).strip()
            if not mrel:
                continue
            mpath, mwhy = _inside(folder_p, mrel)
            if mpath is None:
                problems.append(f"{where}: mask {c!r}: {mwhy}")
                continue
            try:
                m = _load_mask(mpath)
            except Exception as exc:
                problems.append(f"{where}: mask {mrel!r} is not a readable image ({type(exc).__name__}: {exc})")
                continue
            if m.shape != (h, w):
                problems.append(f"{where}: mask {mrel!r} is {m.shape[1]}x{m.shape[0]}, the image {w}x{h}; "
                                "masks must have the image's size")
                continue
            masks[p] = mpath
        rows.append({"key": key, "path": path, "sha256": digest, "h": h, "w": w, "labels": labels,
                     "masks": masks, "meta": {c: rec[c] for c in meta_cols}, "boxes": []})
        if progress:
            progress(i + 1, n)

    skipped_boxes = 0
    n_boxes = 0
    if boxes_csv is not None:
        bp = Path(boxes_csv)
        if not bp.is_absolute() and not bp.exists():
            bp = folder_p / bp
        bdf = _read_csv(bp, "boxes CSV", problems)
        if bdf is not None:
            skipped_boxes, n_boxes = _attach_boxes(bdf, bp, rows, known_by_norm, known, problems)
    if problems:
        raise ImportValidationError(problems)

    root = Path(study.root)
    cases = []
    for r in rows:
        src_rel = _store_path(r["path"], r["sha256"], root, copy)
        mask_rel = {p: _store_path(mp, sha256_file(mp), root, copy, sub="masks") for p, mp in r["masks"].items()}
        cases.append(Case(study_id=study.id, case_key=r["key"], source_path=src_rel, sha256=r["sha256"],
                          height=r["h"], width=r["w"], labels=r["labels"], boxes=r["boxes"],
                          masks=mask_rel, meta=r["meta"]))
    session.add_all(cases)
    session.flush()
    return ImportReport(len(cases), n_boxes, sum(len(r["masks"]) for r in rows), skipped_boxes,
                        list(label_cols), meta_cols, [r["key"] for r in rows])


def _store_path(path: Path, digest: str, root: Path, copy: bool, sub: str = "cases") -> str:
    if copy:
        dest = root / sub / f"{digest[:16]}{path.suffix.lower()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            tmp = dest.with_suffix(dest.suffix + ".tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        path = dest
    return os.path.relpath(path, root.resolve())


def _attach_boxes(bdf: pd.DataFrame, bp: Path, rows: list[dict[str, Any]], known_by_norm: dict[str, str],
                  known: list[str], problems: list[str]) -> tuple[int, int]:
    cols = list(bdf.columns)
    if "Image Index" not in cols or "Finding Label" not in cols:
        problems.append(f"boxes CSV {bp}: needs the NIH BBox_List_2017 columns 'Image Index', "
                        f"'Finding Label', then x, y, w, h (found {cols[:6]})")
        return 0, 0
    j = cols.index("Finding Label")
    if len(cols) < j + 5:
        problems.append(f"boxes CSV {bp}: needs four columns x, y, w, h after 'Finding Label'")
        return 0, 0
    xywh = cols[j + 1:j + 5]
    by_key = {r["key"]: r for r in rows}
    by_name = {Path(r["path"]).name: r for r in rows}
    skipped = added = 0
    for i, rec in enumerate(bdf.to_dict("records")):
        where = f"{bp.name} line {i + 2}"
        idx = str(rec["Image Index"]).strip()
        row = by_key.get(idx) or by_name.get(idx)
        if row is None:
            skipped += 1
            continue
        label = str(rec["Finding Label"]).strip()
        if _norm(label) not in known_by_norm:
            problems.append(f"{where} ({idx}): unknown pathology {label!r}; known: {', '.join(known)}")
            continue
        try:
            x, y, w, h = (float(rec[c]) for c in xywh)
        except ValueError:
            problems.append(f"{where} ({idx}): x, y, w, h must be numbers, got {[rec[c] for c in xywh]}")
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            problems.append(f"{where} ({idx}): box {x, y, w, h} needs finite values and w, h > 0")
            continue
        if x < 0 or y < 0 or x + w > row["w"] + 1e-6 or y + h > row["h"] + 1e-6:
            problems.append(f"{where} ({idx}): box x={x:g} y={y:g} w={w:g} h={h:g} leaves the "
                            f"{row['w']}x{row['h']} image; give boxes in this image's pixels")
            continue
        row["boxes"].append({"pathology": known_by_norm[_norm(label)], "x": x, "y": y, "w": w, "h": h})
        added += 1
    return skipped, added


# ------------------------------------------------------------------------------- sampling ---

@dataclass(frozen=True)
class StratumCount:
    pathology: str
    requested_tp: int
    available_tp: int
    drawn_tp: int
    requested_fp: int
    available_fp: int
    drawn_fp: int


@dataclass
class SamplingReport:
    bundle: str
    seed: int
    rows: list[StratumCount]

    @property
    def total(self) -> int:
        return sum(r.drawn_tp + r.drawn_fp for r in self.rows)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([r.__dict__ for r in self.rows])

    def __str__(self) -> str:
        head = f"{'pathology':<16}{'TP req':>7}{'avail':>7}{'drawn':>7}{'FP req':>8}{'avail':>7}{'drawn':>7}"
        lines = [head]
        for r in self.rows:
            lines.append(f"{r.pathology:<16}{r.requested_tp:>7}{r.available_tp:>7}{r.drawn_tp:>7}"
                         f"{r.requested_fp:>8}{r.available_fp:>7}{r.drawn_fp:>7}")
        lines.append(f"cohort: {self.total} cases (bundle {self.bundle}, seed {self.seed})")
        short = [r.pathology for r in self.rows
                 if r.drawn_tp < r.requested_tp or r.drawn_fp < r.requested_fp]
        if short:
            lines.append(f"fewer than requested for: {', '.join(short)} (not enough cases; see 'avail')")
        return "\n".join(lines)


def bundle_identity(bundle_dir: str | Path | None, bundle: Any = None) -> str:
    """A short name for the model that made the predictions: folder name @ hash of its files."""
    if bundle_dir is None:
        meta = getattr(bundle, "meta", {}) or {}
        return f"in-memory:{meta.get('source', 'bundle')}:{meta.get('seed', '')}"
    d = Path(bundle_dir)
    h = hashlib.sha256()
    for f in sorted(p for p in d.iterdir() if p.is_file()):
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return f"{d.name}@{h.hexdigest()[:12]}"


def load_case_image(study: Study, case: Case, verify: bool = True) -> np.ndarray:
    """The case's pixels; refuses a file whose bytes changed since import."""
    from cfviewer import imaging

    path = Path(study.root) / case.source_path
    if not path.is_file():
        raise StudyError(f"case {case.case_key!r}: file {path} is missing; restore it or re-import the case")
    if verify and sha256_file(path) != case.sha256:
        raise StudyError(f"case {case.case_key!r}: file {path} changed since import (sha256 differs); "
                         "restore the original or re-import the case")
    return imaging.load(path)


def predict_cases(
    session: Session, study: Study, bundle: Any, bundle_id: str, *,
    cases: Iterable[Case] | None = None, batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Store the bundle's probability for every case x pathology (skips stored ones)."""
    cases = list(cases if cases is not None else session.scalars(
        select(Case).where(Case.study_id == study.id).order_by(Case.id)))
    have = set(session.scalars(select(Prediction.case_id).join(Case).where(
        Case.study_id == study.id, Prediction.bundle == bundle_id).distinct()))
    todo = [c for c in cases if c.id not in have]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        # the full films: Bundle.model_input crops and resizes them, as precompute does
        probs = bundle.predict([load_case_image(study, c) for c in chunk])
        pos = bundle.positive(probs)
        for c, pr, po in zip(chunk, probs, pos):
            for j, p in enumerate(bundle.pathologies):
                session.add(Prediction(case_id=c.id, pathology=p, bundle=bundle_id, probability=float(pr[j]),
                                       threshold=float(bundle.thresholds[p]), positive=bool(po[j])))
        session.flush()
        if progress:
            progress(min(start + batch_size, len(todo)), len(todo))
    return len(todo)


def sample_cohort(
    session: Session,
    study: Study,
    bundle: Any,
    *,
    bundle_id: str | None = None,
    per_pathology: int = 40,
    fp_fraction: float = 0.5,
    pathologies: Sequence[str] | None = None,
    seed: int | None = None,
    fill: bool = False,
    replace: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SamplingReport:
    """Run the bundle on every case, split predicted positives into true (label 1) and false
    (label 0) positives per pathology with the bundle's thresholds, and draw `per_pathology`
    cases per pathology, `fp_fraction` of them false positives, with `seed` (default: the
    study's). Each case enters the cohort at most once (pathologies are drawn in order).
    With `fill=True` a short stratum is topped up from the other one. The result table
    reports requested vs available vs drawn."""
    from cfviewer.errors import UnknownPathologyError

    if per_pathology < 1 or not 0 <= fp_fraction <= 1:
        raise StudyError(f"per_pathology must be >= 1 and fp_fraction in [0, 1] "
                         f"(got {per_pathology}, {fp_fraction})")
    bundle_id = bundle_id or bundle_identity(None, bundle)
    seed = int(study.seed if seed is None else seed)
    paths = list(pathologies or study.config.get("pathologies") or bundle.pathologies)
    for p in paths:
        if p not in bundle.pathologies:
            raise UnknownPathologyError(p, bundle.pathologies)
    if session.scalar(select(func.count(CohortItem.id)).where(CohortItem.study_id == study.id)):
        if not replace:
            raise StudyError(f"study {study.name!r} already has a cohort; pass --replace to draw it again")
        if session.scalar(select(func.count(Assignment.id)).where(Assignment.study_id == study.id)):
            raise StudyError(f"study {study.name!r} already has a reading schedule; the cohort can no longer change")
        session.execute(delete(CohortItem).where(CohortItem.study_id == study.id))
    cases = list(session.scalars(select(Case).where(Case.study_id == study.id).order_by(Case.id)))
    if not cases:
        raise StudyError(f"study {study.name!r} has no cases; import some first (`cfviewer study import`)")
    predict_cases(session, study, bundle, bundle_id, cases=cases, progress=progress)
    preds = {(c, p): (prob, thr, pos) for c, p, prob, thr, pos in session.execute(
        select(Prediction.case_id, Prediction.pathology, Prediction.probability, Prediction.threshold,
               Prediction.positive).join(Case).where(Case.study_id == study.id, Prediction.bundle == bundle_id))}
    taken: set[int] = set()
    rows: list[StratumCount] = []
    items: list[CohortItem] = []
    ss = np.random.SeedSequence([seed, 1])
    for p, child in zip(paths, ss.spawn(len(paths))):
        rng = np.random.default_rng(child)
        with_label = [c for c in cases if p in c.labels]
        tp = [c for c in with_label if preds[(c.id, p)][2] and c.labels[p] == 1 and c.id not in taken]
        fp = [c for c in with_label if preds[(c.id, p)][2] and c.labels[p] == 0 and c.id not in taken]
        want_fp = int(round(per_pathology * fp_fraction))
        want_tp = per_pathology - want_fp
        base_tp, base_fp = min(want_tp, len(tp)), min(want_fp, len(fp))
        n_tp, n_fp = base_tp, base_fp
        if fill:  # top a short stratum up from the other one
            n_tp += min(len(tp) - base_tp, want_fp - base_fp)
            n_fp += min(len(fp) - base_fp, want_tp - base_tp)
        chosen_tp = [tp[k] for k in sorted(rng.choice(len(tp), n_tp, replace=False))] if n_tp else []
        chosen_fp = [fp[k] for k in sorted(rng.choice(len(fp), n_fp, replace=False))] if n_fp else []
        for stratum, chosen in (("TP", chosen_tp), ("FP", chosen_fp)):
            for c in chosen:
                prob, thr, _ = preds[(c.id, p)]
                taken.add(c.id)
                items.append(CohortItem(study_id=study.id, case_id=c.id, pathology=p, stratum=stratum,
                                        probability=prob, threshold=thr, bundle=bundle_id,
                                        position=len(items) + 1))
        rows.append(StratumCount(p, want_tp, len(tp), n_tp, want_fp, len(fp), n_fp))
    session.add_all(items)
    session.flush()
    return SamplingReport(bundle_id, seed, rows)
