"""Create and find studies; add arms, questions and readers.

Paths (a study folder can be copied or moved as a whole):
- the study folder is found when the database is opened, never read from it
  (`cfviewer.study.db`: the study argument / `CFVIEWER_STUDY_DIR`, else the SQLite file's
  folder); `studies.root` stores "." for it (`ROOT_HERE`); `study_folder(study)` resolves it;
- artifacts, the manifest and files copied in by `import --copy` are stored relative to it;
- an imported image (or the bundle) inside the study folder is stored relative to it, one
  outside it keeps its absolute path (a copy then still reads it there: `portable_path`).
Studies made by older versions store an absolute folder (`legacy_root`).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from cfviewer import PATHOLOGIES
from cfviewer.errors import BundleError
from cfviewer.study.errors import (
    ArmError,
    QuestionError,
    ReaderNameError,
    StudyError,
    StudyNotFoundError,
    StudyPathologyError,
    UnknownArmExplainerError,
)
from cfviewer.study.schema import DEFAULT_QUESTIONS, Arm, Question, Reader, Study  # noqa: F401 (re-exported)
from cfviewer.study.tokens import hash_token, new_token

DEFAULT_CONFIG: dict[str, Any] = {
    "pathologies": list(PATHOLOGIES),
    "bundle": None,  # model bundle folder (absolute, or relative to the study folder)
    "sessions_per_arm": 1,  # washout: one arm block per session (>1 splits a block further)
    "min_gap_hours": 0.0,  # optional minimum time between the end of a session and the next
    "app_url": "http://localhost:8501/",
}


def create_study(
    session: Session,
    name: str,
    root: str | Path,
    *,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    questions: Sequence[dict[str, Any]] = DEFAULT_QUESTIONS,
) -> Study:
    """A new study with the reference study's two questions (unless `questions` is given)."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise StudyError(
            f"study name {name!r} is not valid: use letters, digits, '-' and '_' only"
        )
    if session.scalars(select(Study).where(Study.name == name)).first() is not None:
        raise StudyError(f"a study named {name!r} already exists in this database; pick another name")
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    unknown = set(cfg) - set(DEFAULT_CONFIG)
    if unknown:
        raise StudyError(f"unknown study settings {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}")
    validate_washout(cfg)
    folder = _session_folder(session)
    root_p = Path(root).expanduser().resolve()
    bundle_doc = None
    if cfg.get("bundle"):
        bdir = Path(str(cfg["bundle"])).expanduser()
        bundle_doc = check_bundle_dir(bdir if bdir.is_absolute() else root_p / bdir)
    cfg["pathologies"] = check_pathologies(cfg.get("pathologies"), bundle_doc)
    # "." = the study folder found at open time (portable); a folder elsewhere stays absolute
    stored = ROOT_HERE if folder is not None and folder.path == root_p else str(root_p)
    study = Study(name=name, root=stored, seed=int(seed), config=cfg)
    if folder is not None:
        study._cfv_study_folder = folder
    session.add(study)
    session.flush()
    set_questions(session, study, questions)
    return study


# ------------------------------------------------------------------------------ paths ---

ROOT_HERE = "."
"""`studies.root` of a study whose folder is the one its database is opened from."""


class StudyFolderWarning(UserWarning):
    """A study made by an older version is used from another folder than the one it stored."""


def _session_folder(session: Session | None):
    from cfviewer.study.db import STUDY_DIR_INFO

    return session.info.get(STUDY_DIR_INFO) if session is not None else None


def study_folder(study: Study) -> Path:
    """The study's folder now: every stored relative path (artifacts, manifest, copied cases)
    resolves against it. `studies.root` is "." for the folder found when the database was
    opened (`cfviewer.study.db`); an absolute value is a study whose folder is elsewhere, or
    one made by an older version (see `legacy_root`)."""
    from sqlalchemy.orm import object_session

    folder = getattr(study, "_cfv_study_folder", None) or _session_folder(object_session(study))
    stored = study.root or ROOT_HERE
    if not Path(stored).is_absolute():
        if folder is None or folder.path is None:
            raise StudyError(
                f"study {study.name!r}: its paths are relative to its study folder, but the database was "
                "opened without one (PostgreSQL has no folder of its own): pass the study folder "
                "(`cfviewer study CMD FOLDER`, open_database(url, study_dir=FOLDER)) or set "
                "CFVIEWER_STUDY_DIR=FOLDER")
        return (folder.path / stored).resolve()
    return legacy_root(study.name, Path(stored), folder)


def legacy_root(name: str, stored: Path, folder) -> Path:
    """An absolute `studies.root`: older versions stored every study's folder that way; now only
    a study created in another folder than the one its database is opened from has one.

    It is used as it is unless the study was evidently copied or moved with its database: the
    stored folder is gone, or it holds a study database of its own (study.db / study.json: the
    original) while this database is not inside it. Then the folder found at open time is used,
    with a StudyFolderWarning, and the original folder is never written to."""
    if folder is None or folder.path is None or folder.path == stored:
        return stored
    db_inside = folder.db_file is not None and stored in folder.db_file.parents
    copied = not stored.is_dir() or (
        not db_inside and any((stored / f).is_file() for f in ("study.db", "study.json")))
    if not copied:
        return stored
    warnings.warn(StudyFolderWarning(
        f"study {name!r} stores the absolute folder {stored} (written by an older cfviewer), but its "
        f"database was opened from {folder.path}: the study was copied or moved, so its files are read "
        f"and written in {folder.path}, never in {stored}"), stacklevel=3)
    return folder.path


def portable_path(path: str | Path, root: Path) -> str:
    """How a file or folder is stored: relative to the study folder `root` when it is inside it
    (it travels with a copy), else absolute (a copied study still uses it there)."""
    p = Path(path).expanduser().resolve()
    r = Path(root).resolve()
    return os.path.relpath(p, r) if p == r or r in p.parents else str(p)


BUNDLE_FORMAT, BUNDLE_VERSION, BUNDLE_JSON = "cfviewer-bundle", 1, "bundle.json"
"""cfviewer.models.bundle's FORMAT, VERSION and BUNDLE_JSON (that module imports torch; a test
keeps them equal)."""


def check_bundle_dir(path: str | Path) -> dict[str, Any]:
    """A light check of a model bundle folder without torch: bundle.json readable, of the
    cfviewer bundle format and version, with its keys, and every weights file present.
    Returns bundle.json's contents; raises BundleError naming the folder and the fix."""
    d = Path(path).expanduser()
    fix = ("give the folder written by `cfviewer train --out DIR` (it holds bundle.json, classifier.pt "
           "and autoencoder.pt), e.g. study_data/demo/bundle")
    if not d.exists():
        raise BundleError(f"model bundle {d} does not exist; {fix}")
    if not d.is_dir():
        raise BundleError(f"model bundle {d} is a file, not a bundle folder; {fix}")
    doc_path = d / BUNDLE_JSON
    if not doc_path.is_file():
        images = sum(1 for f in d.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm", ".dicom"))
        what = f"it holds {images} image file(s): an image folder, not a model bundle" if images else \
            "not a model bundle"
        raise BundleError(f"model bundle {d} has no {BUNDLE_JSON} ({what}); {fix}. "
                          "Images are imported with `cfviewer study import STUDY FOLDER --labels labels.csv`")
    try:
        doc = json.loads(doc_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"model bundle {d}: {doc_path} is not readable JSON ({exc}); re-save the bundle "
                          f"or {fix}") from None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt != BUNDLE_FORMAT:
        raise BundleError(f"model bundle {d}: {doc_path} has format {fmt!r}, not {BUNDLE_FORMAT!r}; {fix}")
    if doc.get("version") != BUNDLE_VERSION:
        raise BundleError(f"model bundle {d}: version {doc.get('version')!r} is not supported (this cfviewer "
                          f"reads version {BUNDLE_VERSION}); re-save it with this cfviewer")
    missing = [k for k in ("pathologies", "resolution", "classifier") if k not in doc]
    if missing:
        raise BundleError(f"model bundle {d}: {doc_path} lacks {missing}; re-save the bundle or {fix}")
    for role in ("classifier", "autoencoder"):
        entry = doc.get(role)
        if role == "autoencoder" and not entry:
            continue
        if not isinstance(entry, dict) or not entry.get("file"):
            raise BundleError(f"model bundle {d}: {doc_path} [{role}] names no weights file; re-save the bundle")
        if not (d / str(entry["file"])).is_file():
            raise BundleError(f"model bundle {d}: the {role} weights {d / str(entry['file'])} are missing; "
                              "copy the whole bundle folder (or re-run `cfviewer train`)")
    return doc


def check_pathologies(pathologies: Sequence[str] | None, bundle_doc: dict[str, Any] | None = None) -> list[str]:
    """The study's pathologies, checked: at least one, none twice, each one the model predicts
    (the bundle's bundle.json when the study names a bundle, else cfviewer.PATHOLOGIES).
    Raises StudyPathologyError naming the pathology and the ones to choose from."""
    names = [str(p).strip() for p in (pathologies or [])]
    if not names or not all(names):
        raise StudyPathologyError("the study needs at least one pathology (and no empty name); choose from "
                                  f"{', '.join(PATHOLOGIES)} or the bundle's pathologies")
    twice = sorted({p for p in names if names.count(p) > 1})
    if twice:
        raise StudyPathologyError(f"pathology {twice[0]!r} is listed twice; list each pathology once")
    if bundle_doc is not None and bundle_doc.get("pathologies"):
        known, source = [str(p) for p in bundle_doc["pathologies"]], "the study's model bundle predicts"
    else:
        known, source = list(PATHOLOGIES), "cfviewer knows (give a model bundle for others)"
    for p in names:
        if p not in known:
            hint = next((k for k in known if k.lower() == p.lower()), None)
            raise StudyPathologyError(
                f"unknown pathology {p!r}: the pathologies {source} are {', '.join(known)}"
                + (f" (did you mean {hint!r}?)" if hint else ""))
    return names


def known_explainers() -> list[str]:
    """The explainer registry's names. Imported on first use only (it loads torch), so the
    reader's process, which never creates arms, stays torch-free."""
    from cfviewer.explain import list_explainers

    return sorted(list_explainers())


def check_arm(name: Any, methods: Sequence[dict[str, Any] | str] | None,
              known: Sequence[str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(display name, [{"name", "params"}]) of one arm, checked: a non-empty display name, at
    least one explainer, none twice, each one the registry knows (`known`; default: the
    registry). Raises ArmError / UnknownArmExplainerError naming the arm and the fix."""
    arm = str(name if name is not None else "").strip()
    if not arm:
        raise ArmError("every arm needs a display name, the only thing readers see of it (e.g. 'Method A')")
    norm: list[dict[str, Any]] = []
    for m in methods or ():
        if isinstance(m, str):
            m = {"name": m.strip(), "params": {}}
        if not isinstance(m, dict) or not m.get("name"):
            raise ArmError(f"arm {arm!r}: each method needs a name, got {m!r}")
        norm.append({"name": str(m["name"]), "params": dict(m.get("params") or {})})
    if not norm:
        raise ArmError(f"arm {arm!r} needs at least one explainer")
    names = [m["name"] for m in norm]
    if len(set(names)) != len(names):
        raise ArmError(f"arm {arm!r} lists an explainer twice: {names}; list each once")
    known = list(known) if known is not None else known_explainers()
    for n in names:
        if n not in known:
            raise UnknownArmExplainerError(arm, n, known)
    return arm, norm


def check_arms(arms: Sequence[tuple[Any, Sequence[dict[str, Any] | str]]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every arm of a new study checked (`check_arm`), at least one, display names unique."""
    if not arms:
        raise ArmError("add at least one arm (a display name and one or more explainers)")
    known = known_explainers()
    out = [check_arm(name, methods, known) for name, methods in arms]
    seen: set[str] = set()
    for arm, _ in out:
        if arm in seen:
            raise ArmError(f"two arms are named {arm!r}; give each arm its own display name")
        seen.add(arm)
    return out


def check_reader_names(names: Iterable[str], existing: Iterable[str] = ()) -> list[str]:
    """Reader names stripped, checked: none empty, none twice, none already in the study.
    Raises ReaderNameError naming the reader."""
    have = set(existing)
    out: list[str] = []
    for name in names:
        name = str(name).strip()
        if not name:
            raise ReaderNameError("reader names must not be empty")
        if name in out:
            raise ReaderNameError(f"the reader name {name!r} is listed twice; names must be unique")
        if name in have:
            raise ReaderNameError(f"this study already has a reader named {name!r}; pick another name")
        out.append(name)
    return out


def validate_washout(cfg: dict[str, Any]) -> None:
    spa = cfg.get("sessions_per_arm", 1)
    gap = cfg.get("min_gap_hours", 0.0)
    if not isinstance(spa, int) or spa < 1:
        raise StudyError(f"sessions_per_arm must be an integer >= 1, got {spa!r}")
    if not isinstance(gap, (int, float)) or gap < 0:
        raise StudyError(f"min_gap_hours must be a number >= 0, got {gap!r}")


def get_study(session: Session, name: str | None = None) -> Study:
    """The study called `name`; with `name=None`, the only study in the database."""
    studies = list(session.scalars(select(Study).order_by(Study.id)))
    if name is None:
        if len(studies) == 1:
            return studies[0]
        raise StudyNotFoundError("(none given)", [s.name for s in studies])
    for s in studies:
        if s.name == name:
            return s
    raise StudyNotFoundError(name, [s.name for s in studies])


def update_config(session: Session, study: Study, **changes: Any) -> None:
    unknown = set(changes) - set(DEFAULT_CONFIG)
    if unknown:
        raise StudyError(f"unknown study settings {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}")
    cfg = {**study.config, **changes}
    validate_washout(cfg)
    study.config = cfg  # reassign so the JSON column is marked dirty


def set_questions(session: Session, study: Study, questions: Iterable[dict[str, Any]]) -> list[Question]:
    """Replace the study's questions (refused once answers exist)."""
    from cfviewer.study.schema import Response

    if study.id is not None and session.scalars(
        select(Response.id).join(Question).where(Question.study_id == study.id).limit(1)
    ).first() is not None:
        raise StudyError(f"study {study.name!r} already has answers; its questions can no longer change")
    for q in list(study.questions):
        session.delete(q)
    session.flush()
    out = []
    for i, q in enumerate(questions):
        if not isinstance(q, dict):
            raise QuestionError(f"question #{i + 1} must be a mapping with 'key', 'text' and 'anchors', got {q!r}")
        anchors = list(q.get("anchors") or [str(v) for v in range(1, 6)])
        if len(anchors) != 5:
            raise QuestionError(f"question {q.get('key')!r}: give exactly 5 anchor labels (for 1..5), "
                                f"got {len(anchors)}")
        if not q.get("key") or not str(q.get("text") or "").strip():
            raise QuestionError(f"question #{i + 1} needs a 'key' and a 'text'")
        if any(o.key == q["key"] for o in out):
            raise QuestionError(f"two questions have the key {q['key']!r}; give each question its own key")
        out.append(Question(study_id=study.id, key=q["key"], text=q["text"], anchors=anchors,
                            position=i, required=bool(q.get("required", True))))
    session.add_all(out)
    session.flush()
    session.refresh(study)
    return out


def add_arm(
    session: Session,
    study: Study,
    name: str,
    methods: Sequence[dict[str, Any] | str],
    description: str = "",
) -> Arm:
    """An arm shown to readers as `name`, made of one or more explainers.

    `methods`: explainer names or {"name": ..., "params": {...}} dicts; checked by `check_arm`
    (display name non-empty and new in the study, explainers known)."""
    name, norm = check_arm(name, methods)
    if any(a.name == name for a in study.arms):
        raise ArmError(f"study {study.name!r} already has an arm named {name!r}; give each arm its own display name")
    arm = Arm(study_id=study.id, name=name, methods=norm, description=description,
              position=len(study.arms))
    session.add(arm)
    session.flush()
    session.refresh(study)
    return arm


@dataclass(frozen=True)
class NewReader:
    reader: Reader
    token: str  # shown once; only its hash is stored


def add_readers(session: Session, study: Study, names: Iterable[str], *, simulated: bool = False) -> list[NewReader]:
    out = []
    for name in check_reader_names(names, (r.name for r in study.readers)):
        token = new_token()
        r = Reader(study_id=study.id, name=name, token_hash=hash_token(token), simulated=simulated)
        session.add(r)
        out.append(NewReader(r, token))
    session.flush()
    session.refresh(study)
    return out


def study_summary(study: Study) -> dict[str, Any]:
    """The study configuration as plain JSON-able data (exported next to the responses)."""
    return {
        "name": study.name,
        "seed": study.seed,
        "config": study.config,
        "created_at": study.created_at.isoformat(),
        "arms": [{"name": a.name, "methods": a.methods, "description": a.description} for a in study.arms],
        "questions": [{"key": q.key, "text": q.text, "anchors": q.anchors, "required": q.required}
                      for q in study.questions],
        "readers": [{"name": r.name, "simulated": r.simulated} for r in study.readers],
    }


def write_study_json(root: Path, db_url: str | None) -> None:
    """`<root>/study.json` so later commands find a non-default database. A SQLite file inside
    the study folder is written relative to it (`sqlite:///study-x.db`; cfviewer.study.db reads
    such a path against the folder holding study.json), so a copy uses its own database."""
    root.mkdir(parents=True, exist_ok=True)
    url = db_url
    if url:
        from sqlalchemy.engine import make_url

        try:
            u = None if "://" not in url else make_url(url)
        except Exception:  # noqa: BLE001 - open_database reports a bad URL with its own message
            u = None
        file = url if "://" not in url else (u.database if u is not None and u.get_backend_name() == "sqlite"
                                              else None)
        if file and file != ":memory:":
            rel = portable_path(file, root)
            if not Path(rel).is_absolute():
                url = f"sqlite:///{rel}"
    (root / "study.json").write_text(json.dumps({"db_url": url}, indent=2) + "\n")
