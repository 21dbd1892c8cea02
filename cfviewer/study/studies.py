"""Create and find studies; add arms, questions and readers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from cfviewer import PATHOLOGIES
from cfviewer.study.errors import StudyError, StudyNotFoundError
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
    study = Study(name=name, root=str(Path(root).resolve()), seed=int(seed), config=cfg)
    session.add(study)
    session.flush()
    set_questions(session, study, questions)
    return study


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
        anchors = list(q.get("anchors") or [str(v) for v in range(1, 6)])
        if len(anchors) != 5:
            raise StudyError(f"question {q.get('key')!r}: give exactly 5 anchor labels (for 1..5), got {len(anchors)}")
        if not q.get("key") or not q.get("text"):
            raise StudyError(f"question #{i + 1} needs a 'key' and a 'text'")
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

    `methods`: explainer names or {"name": ..., "params": {...}} dicts."""
    norm: list[dict[str, Any]] = []
    for m in methods:
        if isinstance(m, str):
            m = {"name": m, "params": {}}
        if not isinstance(m, dict) or not m.get("name"):
            raise StudyError(f"arm {name!r}: each method needs a name, got {m!r}")
        norm.append({"name": str(m["name"]), "params": dict(m.get("params") or {})})
    if not norm:
        raise StudyError(f"arm {name!r} needs at least one explainer")
    names = [m["name"] for m in norm]
    if len(set(names)) != len(names):
        raise StudyError(f"arm {name!r} lists an explainer twice: {names}")
    if any(a.name == name for a in study.arms):
        raise StudyError(f"study {study.name!r} already has an arm named {name!r}")
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
    existing = {r.name for r in study.readers}
    out = []
    for name in names:
        name = name.strip()
        if not name:
            raise StudyError("reader names must not be empty")
        if name in existing:
            raise StudyError(f"study {study.name!r} already has a reader named {name!r}")
        existing.add(name)
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
    """`<root>/study.json` so later commands find a non-default database."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.json").write_text(json.dumps({"db_url": db_url}, indent=2) + "\n")
