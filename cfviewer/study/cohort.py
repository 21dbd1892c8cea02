"""Import cases (all or nothing) and sample the reading cohort.

Where the CSVs are
------------------
`import_cases(folder, labels_csv, boxes_csv=...)` takes an absolute path as given and a relative
one inside the import folder (as the image paths in the CSV). The command line (`cfviewer study
import`) resolves its `--labels` / `--boxes` first (see `resolve_cli_csv`): a relative path is
looked up in the working directory, else in the image folder; when both hold a file of that name
with different contents the import is refused, naming both. The report names the CSV used
(absolute path) and its SHA-256, which is also stored in `study.config["imports"]`.

Reading a CSV
-------------
UTF-8 (with or without a BOM), UTF-16 and UTF-32 with a BOM are read as such; any other encoding
must be named (`encoding="cp1252"`, `--encoding cp1252`): a file that is not valid UTF-8 is
refused with the line of the first bad byte and how it would read in Windows-1252. The delimiter
(comma, semicolon or tab) is taken from the header: the one that yields an id column (labels) or
`Image Index` (boxes); a header that cannot tell them apart is refused.

Labels CSV rules
----------------
* id column: the first of `id`, `case_id`, `Image Index` (NIH). Required, unique.
* path column: the first of `path`, `image`, `file`, `image_path`; relative to the import folder.
  Without one, the id is the file name (as in NIH's `Image Index`).
* one column per pathology holding 0 or 1; a column is a pathology column when its name is one of
  the study's pathologies (case-insensitive, `_` = space). Every study pathology needs a column
  (with `pathologies=[...]`: exactly those), unless it is named in `absent_pathologies`
  (`--absent-pathology`): the cases are then unlabelled for it (not negative) and enter neither
  of its TP/FP strata.
* mask columns `mask_<Pathology>` (or `<Pathology>_mask`): a mask image (non-zero = finding) of
  the same size as the case, relative to the import folder; empty = no mask.
* optional `original_width`, `original_height`: the pixel size the boxes were drawn on (for
  `bbox_scale="auto"`); kept as metadata too.
* every other column is kept as case metadata (`Case.meta`) and listed in the report.

Images
------
Every file must load with `cfviewer.imaging.load`, be at least `imaging.MIN_SIDE` (32) px on the
short side, stay inside the import folder after resolving symlinks, and be unique by SHA-256.
When the study names a bundle, images smaller than its input resolution (read from bundle.json,
without loading the model) are imported with a warning.

Boxes CSV (NIH `BBox_List_2017.csv` layout, as published): `Image Index`, `Finding Label`, then
x, y, w, h (the four columns after `Finding Label`, whatever their headers). Rows for images that
are not being imported are skipped (and counted). A finding is a study pathology by name or via
`bbox_map` (`--bbox-map Nodule=Mass`); other findings are refused unless `bbox_skip_unmapped`
(`--bbox-skip-unmapped`), which skips them with a count per finding. Coordinates are multiplied by
`bbox_scale`: 1 (default: the image's own pixels), a number, or "auto": image size / the
`original_width` x `original_height` of the labels row, else image side / 1024 (NIH's boxes are in
its 1024 x 1024 PNGs; a non-square image then needs the original size). A box must lie inside the
image, and is refused when the case's label for its pathology is 0.

Files are referenced, not copied (unless `copy=True`): the study stores each path relative to the
study folder and its SHA-256; precompute and sampling refuse a file whose bytes changed.
Any problem raises ImportValidationError listing all of them; nothing is written.
"""

from __future__ import annotations

import codecs
import csv
import datetime as _dt
import hashlib
import io
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cfviewer.errors import CfviewerError, ImportValidationError
from cfviewer.files import sha256_file  # also imported from here by its older callers
from cfviewer.study.errors import StudyError
from cfviewer.study.schema import Assignment, Case, CohortItem, Prediction, Study

ID_COLUMNS = ("id", "case_id", "Image Index")
PATH_COLUMNS = ("path", "image", "file", "image_path")
ORIGINAL_SIZE_COLUMNS = ("original width", "original height")  # normalised names (see _norm)
NIH_BOX_SIDE = 1024
"""NIH ChestX-ray14's BBox_List_2017.csv gives boxes in its 1024 x 1024 PNGs' pixels."""

_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}


def _norm(name: str) -> str:
    return " ".join(str(name).strip().replace("_", " ").lower().split())


@dataclass
class ImportReport:
    cases: int
    boxes: int
    masks: int
    skipped_box_rows: int
    pathologies: list[str]
    metadata_columns: list[str]
    case_keys: list[str] = field(default_factory=list)
    labels_csv: str = ""
    labels_sha256: str = ""
    boxes_csv: str | None = None
    boxes_sha256: str | None = None
    absent: list[str] = field(default_factory=list)
    """study pathologies declared absent from the labels CSV: these cases are unlabelled for them"""
    unlabelled: list[str] = field(default_factory=list)
    """every study pathology without labels in this import (absent or left out by `pathologies`)"""
    skipped_findings: dict[str, int] = field(default_factory=dict)
    """box rows skipped because their finding maps to no study pathology, per finding"""
    box_scale: str | None = None
    warnings: list[str] = field(default_factory=list)
    domain: Any = None
    """cfviewer.models.domain.DomainCheck: imported images outside the study bundle's training
    domain (None when the study names no bundle yet)"""

    def __str__(self) -> str:
        lines = [f"imported {self.cases} cases ({', '.join(self.pathologies)}), "
                 f"{self.boxes} boxes, {self.masks} masks"]
        if self.labels_csv:
            lines.append(f"labels CSV: {self.labels_csv} (sha256 {self.labels_sha256})")
        if self.boxes_csv:
            lines.append(f"boxes CSV: {self.boxes_csv} (sha256 {self.boxes_sha256}); {self.box_scale}")
        if self.unlabelled:
            why = {p: "declared absent" if p in self.absent else "not in --pathologies" for p in self.unlabelled}
            lines.append("unlabelled (not negative) for " + ", ".join(f"{p} ({why[p]})" for p in self.unlabelled)
                         + f": these {self.cases} cases enter neither the TP nor the FP stratum of "
                         + ("it" if len(self.unlabelled) == 1 else "them"))
        if self.skipped_box_rows:
            lines.append(f"skipped {self.skipped_box_rows} box rows of images not in this import")
        if self.skipped_findings:
            lines.append(f"skipped {sum(self.skipped_findings.values())} box rows of findings mapped to no study "
                         "pathology: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped_findings.items())))
        if self.metadata_columns:
            lines.append(f"kept as metadata: {', '.join(self.metadata_columns)}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        if self.domain is not None:
            lines.append(self.domain.line())
        return "\n".join(lines)


def resolve_cli_csv(value: str | Path, folder: str | Path, option: str = "--labels") -> Path:
    """The absolute path a command-line CSV argument means. Absolute: as given. Relative: in the
    working directory, else in the image folder `folder`; refused (ImportValidationError) when
    both exist with different contents, or when neither exists."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    in_cwd = (Path.cwd() / p).absolute()
    in_folder = (Path(folder).expanduser() / p).absolute()
    a, b = in_cwd.is_file(), in_folder.is_file()
    if a and b and in_cwd.resolve() != in_folder.resolve() and sha256_file(in_cwd) != sha256_file(in_folder):
        raise ImportValidationError([
            f"{option} {value}: two different files have this name, {in_cwd.resolve()} (working directory) "
            f"and {in_folder.resolve()} (image folder); a relative path is looked up in the working "
            "directory first, so pass the absolute path of the one you mean"])
    if a:
        return in_cwd.resolve()
    if b:
        return in_folder.resolve()
    raise ImportValidationError([
        f"{option} {value}: no such file in the working directory ({Path.cwd()}) or in the image "
        f"folder ({Path(folder).expanduser().absolute()}); check the name or pass an absolute path"])


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


@dataclass
class CsvFile:
    """A CSV as read for an import: where, its bytes' SHA-256, how it was decoded, its table."""

    path: Path
    sha256: str
    encoding: str
    delimiter: str
    frame: pd.DataFrame


class _CsvProblem(Exception):
    pass


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _decode_csv(raw: bytes, encoding: str | None) -> tuple[str, str]:
    """(text, encoding used), or _CsvProblem saying what is wrong and what to do."""
    for bom, enc in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(enc), enc
            except UnicodeDecodeError as exc:
                raise _CsvProblem(
                    f"starts with a {enc.upper()} byte-order mark but is not valid {enc.upper()} (line "
                    f"{_line_of(raw, exc.start)}); save it again as UTF-8") from None
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise _CsvProblem(f"unknown encoding {encoding!r}; name one Python knows, e.g. utf-8, cp1252, "
                              "latin-1, utf-16") from None
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            raise _CsvProblem(
                f"cannot be decoded as {encoding} (byte 0x{raw[exc.start]:02x} on line {_line_of(raw, exc.start)}); "
                "name its real encoding (--encoding) or save it as UTF-8") from None
    if b"\x00" in raw:
        raise _CsvProblem(
            "contains NUL bytes: it is UTF-16 or UTF-32 text without a byte-order mark, or not text at all; "
            "save it as UTF-8 (or UTF-16 with a byte-order mark), or name its encoding, e.g. --encoding utf-16-le")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        n = _line_of(raw, exc.start)
        start = raw.rfind(b"\n", 0, exc.start) + 1
        end = raw.find(b"\n", exc.start)
        line = raw[start:end if end >= 0 else len(raw)].decode("cp1252", errors="replace").rstrip("\r")
        if len(line) > 80:
            line = line[:77] + "..."
        raise _CsvProblem(
            f"is not UTF-8 (byte 0x{raw[exc.start]:02x} on line {n}); its encoding cannot be told for sure. "
            f"Read as Windows-1252 / Latin-1 (Excel's plain 'CSV' on Windows) line {n} is {line!r}: if that "
            "is right, pass --encoding cp1252 (or encoding='cp1252'); better, save the file as UTF-8 "
            "('CSV UTF-8' in Excel)") from None


def _sniff_delimiter(text: str, expect: Sequence[str]) -> str:
    """The delimiter whose header split yields one of `expect` as a column (comma, semicolon, tab)."""
    header = text.splitlines()[0] if text else ""
    fields = {d: next(csv.reader([header], delimiter=d), []) for d in _DELIMITERS}
    want = set(expect)
    plausible = [d for d, f in fields.items() if any(x.strip() in want for x in f)]
    if len(plausible) == 1:
        return plausible[0]
    used = [d for d, f in fields.items() if len(f) > 1]
    if len(plausible) > 1 or len(used) > 1:
        names = " and ".join(_DELIMITERS[d] for d in (plausible if len(plausible) > 1 else used))
        raise _CsvProblem(
            f"cannot tell its delimiter: the header {header[:80]!r} splits on {names}"
            + ("" if len(plausible) > 1 else f" and names no {' / '.join(expect)} column either way")
            + "; save it with one delimiter (commas) and quote values that contain it")
    return used[0] if used else ","


def _read_csv(path: Path, what: str, problems: list[str], *, encoding: str | None = None,
              expect: Sequence[str] = ID_COLUMNS) -> CsvFile | None:
    if not path.is_file():
        problems.append(f"{what} {path} does not exist")
        return None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(f"{what} {path} cannot be read ({exc.strerror}); check its permissions")
        return None
    try:
        text, enc = _decode_csv(raw, encoding)
        text = text.lstrip("\ufeff")
        delim = _sniff_delimiter(text, expect)
    except _CsvProblem as exc:
        problems.append(f"{what} {path} {exc}")
        return None
    try:
        df = pd.read_csv(io.StringIO(text), sep=delim, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:  # empty / malformed
        problems.append(f"{what} {path} is not a readable CSV ({type(exc).__name__}: {exc}); save it as a "
                        "comma-separated UTF-8 file with a header row")
        return None
    df.columns = [str(c).strip() for c in df.columns]
    return CsvFile(path, hashlib.sha256(raw).hexdigest(), enc, delim, df)


def _csv_path(value: str | Path, folder: Path) -> Path:
    p = Path(value).expanduser()
    p = p if p.is_absolute() else folder / p
    try:
        return p.resolve()
    except (OSError, RuntimeError):
        return p.absolute()


def _load_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return arr > 0


def _study_root(study: Study) -> Path:
    """The study's folder now (`studies.study_folder`; `studies.root` may be relative)."""
    from cfviewer.study.studies import study_folder

    return study_folder(study)


def _bundle_resolution(study: Study) -> tuple[int | None, str | None]:
    """(input side of the study's bundle, None), or (None, why it is unknown); reads bundle.json
    only (no model, no torch)."""
    b = (study.config or {}).get("bundle")
    if not b:
        return None, None
    d = Path(str(b)).expanduser()
    if not d.is_absolute():
        d = _study_root(study) / d
    try:
        return int(json.loads((d / "bundle.json").read_text())["resolution"]), None
    except Exception as exc:
        return None, (f"could not read the model's input resolution from {d / 'bundle.json'} "
                      f"({type(exc).__name__}); image sizes were not compared with it")


def _import_domain(study: Study, rows: list[dict[str, Any]]) -> Any:
    """Which imported images lie outside the training domain stored in the study bundle's
    bundle.json (cfviewer.models.domain; no model is loaded). None without a bundle; a failed
    check is reported, never fatal."""
    from cfviewer.models import domain

    b = (study.config or {}).get("bundle")
    if not b:
        return None
    d = Path(str(b)).expanduser()
    d = d if d.is_absolute() else _study_root(study) / d
    what = "imported images"
    return domain.safe_check(lambda: domain.check_files(d, [r["path"] for r in rows], what=what,
                                                        keys=[r["key"] for r in rows]), what, len(rows))


def _parse_box_scale(scale: float | str | None, problems: list[str]) -> float | str:
    if scale is None:
        return 1.0
    if isinstance(scale, str) and scale.strip().lower() == "auto":
        return "auto"
    try:
        f = float(scale)
    except (TypeError, ValueError):
        f = float("nan")
    if not math.isfinite(f) or f <= 0:
        problems.append(f"box scale {scale!r}: give 'auto' or a number > 0 (box coordinates are multiplied by it)")
        return 1.0
    return f


def import_cases(
    session: Session,
    study: Study,
    folder: str | Path,
    labels_csv: str | Path,
    *,
    boxes_csv: str | Path | None = None,
    pathologies: Sequence[str] | None = None,
    absent_pathologies: Sequence[str] = (),
    encoding: str | None = None,
    bbox_map: Mapping[str, str] | None = None,
    bbox_skip_unmapped: bool = False,
    bbox_scale: float | str | None = None,
    copy: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Validate every row and file, then add the cases to `study` (inside the caller's write
    transaction) and append a record of the import (CSV paths and SHA-256s, options) to
    `study.config["imports"]`. Raises ImportValidationError with every problem; nothing is added
    then. See the module docstring for the rules."""
    from cfviewer import imaging

    problems: list[str] = []
    folder_p = Path(folder)
    if not folder_p.is_dir():
        raise ImportValidationError([f"import folder {folder_p} does not exist or is not a folder"])
    folder_p = folder_p.resolve()
    labels_p = _csv_path(labels_csv, folder_p)
    lab = _read_csv(labels_p, "labels CSV", problems, encoding=encoding, expect=ID_COLUMNS)
    if lab is None:
        raise ImportValidationError(problems)
    df = lab.frame

    known = list(study.config.get("pathologies") or [])
    known_by_norm = {_norm(p): p for p in known}
    cols = list(df.columns)
    id_col = next((c for c in ID_COLUMNS if c in cols), None)
    path_col = next((c for c in PATH_COLUMNS if c in cols), None)
    if id_col is None:
        problems.append(f"labels CSV {labels_p}: no id column; name one of {', '.join(ID_COLUMNS)} "
                        f"(found {', '.join(map(repr, cols[:8]))})")
        raise ImportValidationError(problems)
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
    absent: list[str] = []
    for a in absent_pathologies or ():
        if _norm(a) not in known_by_norm:
            problems.append(f"--absent-pathology {a!r} is not a pathology of this study; its pathologies are "
                            f"{', '.join(known)}")
        elif known_by_norm[_norm(a)] in label_cols:
            problems.append(f"labels CSV {labels_p} has a column {label_cols[known_by_norm[_norm(a)]]!r}, but "
                            f"--absent-pathology says {a!r} is absent; drop one of the two")
        elif known_by_norm[_norm(a)] not in absent:
            absent.append(known_by_norm[_norm(a)])
    if pathologies is not None:
        for p in pathologies:
            if _norm(p) not in known_by_norm:
                problems.append(f"unknown pathology {p!r}: this study's pathologies are {', '.join(known)}")
            elif known_by_norm[_norm(p)] not in label_cols and known_by_norm[_norm(p)] not in absent:
                problems.append(f"labels CSV {labels_p}: missing column {p!r} (0/1 per case)")
        chosen = [known_by_norm[_norm(p)] for p in pathologies if _norm(p) in known_by_norm]
        label_cols = {p: label_cols[p] for p in chosen if p in label_cols}
    elif not label_cols:
        problems.append(f"labels CSV {labels_p}: no pathology column; add one 0/1 column per pathology, "
                        f"named as one of {', '.join(known)}")
    else:
        missing = [p for p in known if p not in label_cols and p not in absent]
        if missing:
            flags = " ".join(f"--absent-pathology {p!r}" if " " in p else f"--absent-pathology {p}" for p in missing)
            problems.append(
                f"labels CSV {labels_p}: no column for {', '.join(missing)} (the study's pathologies are "
                f"{', '.join(known)}; found columns {', '.join(map(repr, cols))}). Add a 0/1 column for each; "
                f"or, if the CSV deliberately has no labels for {'it' if len(missing) == 1 else 'them'}, pass "
                f"{flags} (absent_pathologies=[...]): the cases are then unlabelled for "
                f"{'it' if len(missing) == 1 else 'them'}, not negative")
    unlabelled = [p for p in known if p not in label_cols]
    size_cols = {n: c for c in meta_cols if (n := _norm(c)) in ORIGINAL_SIZE_COLUMNS}
    if len(size_cols) == 1:
        problems.append(f"labels CSV {labels_p}: has {next(iter(size_cols.values()))!r} but not the other of "
                        "original_width / original_height; give both or neither")
    box_scale = _parse_box_scale(bbox_scale, problems)
    box_map: dict[str, str] = {}
    for finding, target in (bbox_map or {}).items():
        t = known_by_norm.get(_norm(target))
        if t is None:
            problems.append(f"--bbox-map '{finding}={target}': {target!r} is not a pathology of this study; "
                            f"map the finding to one of {', '.join(known)}")
        elif box_map.get(_norm(finding), t) != t:
            problems.append(f"--bbox-map: finding {finding!r} is mapped twice ({box_map[_norm(finding)]}, {t})")
        else:
            box_map[_norm(finding)] = t
    min_side = imaging.MIN_SIDE
    model_side, model_why = _bundle_resolution(study)

    existing_keys = set(session.scalars(select(Case.case_key).where(Case.study_id == study.id)))
    existing_sha = dict(session.execute(
        select(Case.sha256, Case.case_key).where(Case.study_id == study.id)).all())
    seen_ids: dict[str, int] = {}
    seen_sha: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    n = len(df)
    if n == 0:
        raise ImportValidationError([*problems, f"labels CSV {labels_p} has no rows"])
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
        original = None
        if len(size_cols) == 2 and any(str(rec[c]).strip() for c in size_cols.values()):
            try:
                original = tuple(float(rec[size_cols[k]]) for k in ORIGINAL_SIZE_COLUMNS)
                if not all(math.isfinite(v) and v > 0 for v in original):
                    raise ValueError
            except ValueError:
                problems.append(f"{where}: original_width / original_height must be numbers > 0, got "
                                f"{[rec[size_cols[k]] for k in ORIGINAL_SIZE_COLUMNS]}")
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
        small = imaging.size_problem(h, w, min_side)
        if small:
            problems.append(f"{where}: image {rel!r} {small}")
            continue
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
                     "masks": masks, "meta": {c: rec[c] for c in meta_cols}, "boxes": [], "original": original})
        if progress:
            progress(i + 1, n)

    skipped_boxes = 0
    n_boxes = 0
    skipped_findings: dict[str, int] = {}
    box: CsvFile | None = None
    if boxes_csv is not None:
        bp = _csv_path(boxes_csv, folder_p)
        box = _read_csv(bp, "boxes CSV", problems, encoding=encoding, expect=("Image Index",))
        if box is not None:
            skipped_boxes, n_boxes, skipped_findings = _attach_boxes(
                box.frame, bp, rows, known_by_norm, known, problems, box_map=box_map,
                skip_unmapped=bbox_skip_unmapped, scale=box_scale)
    if problems:
        raise ImportValidationError(problems)

    warnings: list[str] = []
    if model_why:
        warnings.append(model_why)
    elif model_side:
        smaller = [r for r in rows if min(r["h"], r["w"]) < model_side]
        if smaller:
            s0 = min(smaller, key=lambda r: min(r["h"], r["w"]))
            warnings.append(f"{len(smaller)} of {len(rows)} images are smaller than the model's input "
                            f"({model_side} px, bundle {study.config.get('bundle')}), the smallest {s0['w']}x{s0['h']} "
                            f"(id {s0['key']!r}): the model sees them upsampled, which can change its predictions")
    scale_text = None
    if box is not None:
        if box_scale == "auto":
            scale_text = (f"box scale auto: image size / original_width x original_height, else image side / "
                          f"{NIH_BOX_SIDE} (NIH)")
        elif box_scale != 1.0:
            scale_text = f"box scale x{box_scale:g}"
        else:
            scale_text = "boxes in the images' own pixels"

    root = _study_root(study)
    cases = []
    for r in rows:
        src_rel = _store_path(r["path"], r["sha256"], root, copy)
        mask_rel = {p: _store_path(mp, sha256_file(mp), root, copy, sub="masks") for p, mp in r["masks"].items()}
        cases.append(Case(study_id=study.id, case_key=r["key"], source_path=src_rel, sha256=r["sha256"],
                          height=r["h"], width=r["w"], labels=r["labels"], boxes=r["boxes"],
                          masks=mask_rel, meta=r["meta"]))
    session.add_all(cases)
    record = {
        "imported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cases": len(cases),
        "folder": str(folder_p),
        "labels_csv": str(labels_p), "labels_sha256": lab.sha256,
        "labels_encoding": lab.encoding, "labels_delimiter": lab.delimiter,
        "pathologies": list(label_cols), "absent_pathologies": absent, "unlabelled": unlabelled,
        "boxes_csv": str(box.path) if box else None, "boxes_sha256": box.sha256 if box else None,
        "boxes": n_boxes, "box_scale": box_scale if box else None, "bbox_map": box_map if box else {},
        "skipped_box_rows": skipped_boxes, "skipped_findings": skipped_findings,
    }
    cfg = dict(study.config or {})
    cfg["imports"] = [*cfg.get("imports", []), record]
    study.config = cfg  # reassign so the JSON column is marked dirty
    session.flush()
    return ImportReport(len(cases), n_boxes, sum(len(r["masks"]) for r in rows), skipped_boxes,
                        list(label_cols), meta_cols, [r["key"] for r in rows],
                        labels_csv=str(labels_p), labels_sha256=lab.sha256,
                        boxes_csv=str(box.path) if box else None, boxes_sha256=box.sha256 if box else None,
                        absent=absent, unlabelled=unlabelled, skipped_findings=skipped_findings,
                        box_scale=scale_text, warnings=warnings, domain=_import_domain(study, rows))


def _store_path(path: Path, digest: str, root: Path, copy: bool, sub: str = "cases") -> str:
    if copy:
        dest = root / sub / f"{digest[:16]}{path.suffix.lower()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            tmp = dest.with_suffix(dest.suffix + ".tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        path = dest
    from cfviewer.study.studies import portable_path

    return portable_path(path, root)  # inside the study folder: relative; outside: absolute


def _box_factors(scale: float | str, row: dict[str, Any]) -> tuple[float, float, str | None]:
    """(x factor, y factor, None) for a case's boxes, or (.., .., why they cannot be scaled)."""
    if scale != "auto":
        return float(scale), float(scale), None
    if row.get("original"):
        ow, oh = row["original"]
        return row["w"] / ow, row["h"] / oh, None
    if row["w"] != row["h"]:
        return 1.0, 1.0, (f"box scale auto: the image is {row['w']}x{row['h']}, not square, so NIH's "
                          f"{NIH_BOX_SIDE} x {NIH_BOX_SIDE} box space does not fit it; add original_width / "
                          "original_height columns (the size the boxes were drawn on) to the labels CSV, or "
                          "pass a number to --bbox-scale")
    return row["w"] / NIH_BOX_SIDE, row["h"] / NIH_BOX_SIDE, None


def _attach_boxes(bdf: pd.DataFrame, bp: Path, rows: list[dict[str, Any]], known_by_norm: dict[str, str],
                  known: list[str], problems: list[str], *, box_map: Mapping[str, str] | None = None,
                  skip_unmapped: bool = False, scale: float | str = 1.0) -> tuple[int, int, dict[str, int]]:
    """Attach the boxes to `rows`; (rows of images not imported, boxes added, skipped per finding)."""
    cols = list(bdf.columns)
    if "Image Index" not in cols or "Finding Label" not in cols:
        problems.append(f"boxes CSV {bp}: needs the NIH BBox_List_2017 columns 'Image Index', "
                        f"'Finding Label', then x, y, w, h (found {cols[:6]})")
        return 0, 0, {}
    j = cols.index("Finding Label")
    if len(cols) < j + 5:
        problems.append(f"boxes CSV {bp}: needs four columns x, y, w, h after 'Finding Label'")
        return 0, 0, {}
    xywh = cols[j + 1:j + 5]
    box_map = dict(box_map or {})
    by_key = {r["key"]: r for r in rows}
    by_name = {Path(r["path"]).name: r for r in rows}
    unmapped: dict[str, list[int]] = {}
    skipped = added = 0
    for i, rec in enumerate(bdf.to_dict("records")):
        line = i + 2
        where = f"{bp.name} line {line}"
        idx = str(rec["Image Index"]).strip()
        row = by_key.get(idx) or by_name.get(idx)
        if row is None:
            skipped += 1
            continue
        label = str(rec["Finding Label"]).strip()
        target = box_map.get(_norm(label)) or known_by_norm.get(_norm(label))
        if target is None:
            unmapped.setdefault(label, []).append(line)
            continue
        what = repr(label) if target == label else f"{label!r} (mapped to {target})"
        try:
            x, y, w, h = (float(rec[c]) for c in xywh)
        except ValueError:
            problems.append(f"{where} ({idx}): x, y, w, h must be numbers, got {[rec[c] for c in xywh]}")
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            problems.append(f"{where} ({idx}): box {x, y, w, h} needs finite values and w, h > 0")
            continue
        if row["labels"].get(target) == 0:
            problems.append(f"{where} ({idx}): a {what} box, but the labels CSV says {target} = 0 for this case; "
                            "fix the label or remove the box row")
            continue
        fx, fy, why = _box_factors(scale, row)
        if why:
            problems.append(f"{where} ({idx}): {why}")
            continue
        sx, sy, sw, sh = x * fx, y * fy, w * fx, h * fy
        tol = 1e-6 * max(row["w"], row["h"], 1)
        if sx < -tol or sy < -tol or sx + sw > row["w"] + tol or sy + sh > row["h"] + tol:
            scaled = "" if (fx, fy) == (1.0, 1.0) else f" (x={x:g} y={y:g} w={w:g} h={h:g} in the CSV, scaled)"
            hint = ("; give boxes in this image's pixels, or pass --bbox-scale auto (NIH's 1024-px boxes) "
                    "or --bbox-scale FACTOR" if scale == 1.0 else "; check --bbox-scale")
            problems.append(f"{where} ({idx}): box x={sx:g} y={sy:g} w={sw:g} h={sh:g}{scaled} leaves the "
                            f"{row['w']}x{row['h']} image{hint}")
            continue
        b = {"pathology": target, "x": sx, "y": sy, "w": sw, "h": sh}
        if target != label:
            b["finding"] = label
        row["boxes"].append(b)
        added += 1
    if unmapped and not skip_unmapped:
        for label, lines in unmapped.items():
            first = ", ".join(map(str, lines[:3])) + (", ..." if len(lines) > 3 else "")
            problems.append(
                f"boxes CSV {bp}: unknown pathology {label!r} in {len(lines)} row(s) (line {first}); this "
                f"study's pathologies are {', '.join(known)}. Map the finding to one (--bbox-map "
                f"'{label}=PATHOLOGY', bbox_map={{...}}) or skip its rows (--bbox-skip-unmapped)")
    return skipped, added, {k: len(v) for k, v in unmapped.items()}


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
    ae_flips: list[str] = field(default_factory=list)
    """Cohort case keys where the autoencoder alone flips the decision: the reconstruction's
    probability is on the other side of the threshold from the one the reader is shown."""
    ae_checked: int | None = None
    """Cohort cases checked for ``ae_flips`` (None: the bundle has no autoencoder)."""
    domain: Any = None
    """cfviewer.models.domain.DomainCheck of every case the model predicted on; ``domain_cohort``
    counts the drawn cohort cases among those outside (outside, drawn)."""
    domain_cohort: tuple[int, int] | None = None

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
        if self.ae_flips:
            lines.append(f"the autoencoder alone flips the decision for {len(self.ae_flips)} of {self.ae_checked} "
                         f"cohort cases (Latent Shift frames start from its reconstruction, on the other side "
                         f"of the threshold): {', '.join(self.ae_flips)}")
        if self.domain is not None:
            line = self.domain.line()
            if self.domain.warning and self.domain_cohort is not None:
                line += f"; {self.domain_cohort[0]} of the {self.domain_cohort[1]} cohort cases are among them"
            lines.append(line)
        return "\n".join(lines)


def __getattr__(name: str) -> Any:
    # `bundle_identity` is the Bundle's (cfviewer.models.bundle), re-exported here for the
    # callers that still import it from this module; imported on first use, so that importing
    # this module does not import torch.
    if name == "bundle_identity":
        from cfviewer.models.bundle import bundle_identity

        return bundle_identity
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_case_image(study: Study, case: Case, verify: bool = True) -> np.ndarray:
    """The case's pixels; refuses a file whose bytes changed since import."""
    from cfviewer import imaging

    from cfviewer.study.studies import study_folder

    root = study_folder(study)
    path = root / case.source_path
    if not path.is_file():
        if Path(case.source_path).is_absolute():
            raise StudyError(
                f"case {case.case_key!r}: file {path} is missing. It was imported from outside the study "
                f"folder, so the study refers to it by that absolute path (a copied or moved study still "
                f"reads it there, and it does not travel with the folder {root}): restore it at {path}, or "
                "import the cases again with `cfviewer study import STUDY FOLDER --labels CSV --copy` "
                "(copies them into <study>/cases/ so the study folder is self-contained)")
        raise StudyError(f"case {case.case_key!r}: file {path} is missing (stored as {case.source_path!r}, "
                         f"relative to the study folder {root}); restore it there or re-import the case")
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
    from cfviewer.models.bundle import bundle_identity

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
    flips, checked = _autoencoder_flips(study, bundle, items, cases)
    dom = _cohort_domain(study, bundle, cases)
    return SamplingReport(bundle_id, seed, rows, ae_flips=flips, ae_checked=checked, domain=dom,
                          domain_cohort=(dom.among(it.case_id for it in items), len(items)) if dom else None)


def _cohort_domain(study: Study, bundle: Any, cases: Sequence[Case]) -> Any:
    """Which cases lie outside the bundle's training domain (cfviewer.models.domain), by case
    id; a failed check is reported, never fatal."""
    from cfviewer.models import domain

    what = "cases the model predicted on"
    return domain.safe_check(lambda: domain.check_images(
        bundle, (load_case_image(study, c, verify=False) for c in cases), what=what,
        keys=[c.id for c in cases]), what, len(cases))


def _autoencoder_flips(study: Study, bundle: Any, items: Sequence[CohortItem], cases: Sequence[Case],
                       batch_size: int = 16) -> tuple[list[str], int | None]:
    """Case keys of the cohort items whose autoencoder reconstruction is on the other side of
    the item's threshold from the item's probability (Latent Shift paper, appendix K)."""
    if getattr(bundle, "autoencoder", None) is None:
        return [], None
    from cfviewer.explain.latentshift import flips_decision

    by_id = {c.id: c for c in cases}
    flips: list[str] = []
    for start in range(0, len(items), batch_size):
        chunk = list(items[start:start + batch_size])
        recon = bundle.reconstruct([load_case_image(study, by_id[it.case_id]) for it in chunk])
        probs = bundle.predict(recon)
        for it, pr in zip(chunk, probs):
            p_rec = float(pr[bundle.target_index(it.pathology)])
            if flips_decision(it.probability, p_rec, it.threshold):
                flips.append(by_id[it.case_id].case_key)
    return flips, len(items)
