"""The study database: SQLAlchemy 2.0 typed ORM models.

One database may hold several studies; every row belongs to one study (directly or through its
case / reader). File paths are stored relative to the study folder (`Study.root`).

Times are stored as timezone-aware UTC datetimes written by the server (never by the browser).
The Alembic migrations under `cfviewer/study/migrations/versions/` create exactly these tables;
change both together (`alembic revision --autogenerate` against an up-to-date database).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from cfviewer.study.reference import DEFAULT_QUESTIONS  # noqa: F401  (the one definition; importable here too)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone, so re-attach it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[dt.datetime], dialect: Any) -> Optional[dt.datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(timezone.utc)")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: Optional[dt.datetime], dialect: Any) -> Optional[dt.datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, dt.datetime: UTCDateTime}


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    root: Mapped[str] = mapped_column(Text, doc="'.' = the folder the study is opened from (studies.study_folder); older studies: an absolute folder")
    seed: Mapped[int] = mapped_column(Integer, default=0)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="bundle, pathologies, washout, ...")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    cases: Mapped[list["Case"]] = relationship(back_populates="study", cascade="all, delete-orphan")
    arms: Mapped[list["Arm"]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="Arm.position"
    )
    readers: Mapped[list["Reader"]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="Reader.id"
    )
    questions: Mapped[list["Question"]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="Question.position"
    )


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("study_id", "case_key"),
        UniqueConstraint("study_id", "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    case_key: Mapped[str] = mapped_column(String(200), doc="the id from the labels CSV")
    source_path: Mapped[str] = mapped_column(Text, doc="relative to the study folder")
    sha256: Mapped[str] = mapped_column(String(64))
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    labels: Mapped[dict[str, Any]] = mapped_column(doc="{pathology: 0|1}")
    boxes: Mapped[list[Any]] = mapped_column(
        default=list, doc="[{pathology, x, y, w, h}] in source-image pixels"
    )
    masks: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="{pathology: relative path}")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="other CSV columns")
    imported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship(back_populates="cases")
    predictions: Mapped[list["Prediction"]] = relationship(
        back_populates="case", cascade="all, delete-orphan"
    )


class Prediction(Base):
    """The bundle's probability for one case x pathology (written by `cohort.sample`)."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("case_id", "pathology", "bundle"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    pathology: Mapped[str] = mapped_column(String(100))
    bundle: Mapped[str] = mapped_column(String(200), doc="bundle identity (name@hash)")
    probability: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    positive: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="predictions")


class CohortItem(Base):
    """A case drawn into the reading cohort for one target pathology (each case at most once)."""

    __tablename__ = "cohort"
    __table_args__ = (
        UniqueConstraint("study_id", "case_id"),
        CheckConstraint("stratum IN ('TP', 'FP')", name="stratum"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    pathology: Mapped[str] = mapped_column(String(100), doc="the prediction the reader judges")
    stratum: Mapped[str] = mapped_column(String(2), doc="TP or FP")
    probability: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    bundle: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, doc="order of drawing")

    case: Mapped[Case] = relationship()


class Arm(Base):
    """A study arm. Readers see only `name` (e.g. "Method A"); `methods` is for researchers."""

    __tablename__ = "arms"
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer, default=0)
    methods: Mapped[list[Any]] = mapped_column(
        doc='[{"name": "latentshift", "params": {...}, "show": ["overlay_png", "gif"]}]'
    )
    description: Mapped[str] = mapped_column(Text, default="")

    study: Mapped[Study] = relationship(back_populates="arms")

    @property
    def method_names(self) -> list[str]:
        return [m["name"] for m in self.methods]


class Artifact(Base):
    """One precomputed file shown to readers (or kept for audit) for a case under an arm."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("case_id", "arm_id", "method", "kind"),
        CheckConstraint("status IN ('claimed', 'done')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    arm_id: Mapped[int] = mapped_column(ForeignKey("arms.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(100), doc='explainer name, or "input"')
    kind: Mapped[str] = mapped_column(
        String(50), doc="map_npy, overlay_png, gif, counterfactual_png, frames_npz, explanation_json, image_png"
    )
    path: Mapped[Optional[str]] = mapped_column(Text, default=None, doc="relative to the study folder")
    sha256: Mapped[Optional[str]] = mapped_column(String(64), default=None)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params_hash: Mapped[str] = mapped_column(String(64), doc="sha256 of inputs + params")
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(10), default="claimed")
    claimed_by: Mapped[Optional[str]] = mapped_column(String(200), default=None)
    claimed_at: Mapped[Optional[dt.datetime]] = mapped_column(default=None)
    created_at: Mapped[Optional[dt.datetime]] = mapped_column(default=None)


class Reader(Base):
    __tablename__ = "readers"
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, doc="sha256 of the token")
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship(back_populates="readers")


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = (UniqueConstraint("study_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    anchors: Mapped[list[Any]] = mapped_column(doc="five labels, for the answers 1..5")
    position: Mapped[int] = mapped_column(Integer, default=0)
    required: Mapped[bool] = mapped_column(Boolean, default=True)

    study: Mapped[Study] = relationship(back_populates="questions")


class Assignment(Base):
    """One read: a reader sees one cohort case under one arm, at `position` in `session`."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("reader_id", "case_id", "arm_id"),
        UniqueConstraint("reader_id", "position"),
        Index("ix_assignments_reader_session", "reader_id", "session"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    arm_id: Mapped[int] = mapped_column(ForeignKey("arms.id", ondelete="CASCADE"))
    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohort.id", ondelete="CASCADE"))
    session: Mapped[int] = mapped_column(Integer, doc="1-based reading session")
    position: Mapped[int] = mapped_column(Integer, doc="1-based order over all the reader's reads")
    seed: Mapped[int] = mapped_column(Integer, doc="the seed that drew this reader's order")
    shown_at: Mapped[Optional[dt.datetime]] = mapped_column(default=None, doc="first shown (server)")
    seen_at: Mapped[Optional[dt.datetime]] = mapped_column(
        default=None, doc="last sign of the reader on this read (a page run, server time)")
    active_s: Mapped[Optional[float]] = mapped_column(
        Float, default=None, doc="active reading time so far: gaps between page runs, each capped")

    reader: Mapped[Reader] = relationship()
    case: Mapped[Case] = relationship()
    arm: Mapped[Arm] = relationship()
    cohort: Mapped[CohortItem] = relationship()


class Response(Base):
    """The current answer to one question of one read. Every change is also in ResponseHistory."""

    __tablename__ = "responses"
    __table_args__ = (
        UniqueConstraint("reader_id", "case_id", "arm_id", "question_id"),
        CheckConstraint("value BETWEEN 1 AND 5", name="value_1_5"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), index=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    arm_id: Mapped[int] = mapped_column(ForeignKey("arms.id", ondelete="CASCADE"))
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"))
    value: Mapped[int] = mapped_column(Integer)
    comment: Mapped[Optional[str]] = mapped_column(Text, default=None)
    shown_at: Mapped[Optional[dt.datetime]] = mapped_column(default=None)
    submitted_at: Mapped[dt.datetime] = mapped_column()
    duration_s: Mapped[Optional[float]] = mapped_column(
        Float, default=None, doc="active reading time (idle gaps capped, responses.IDLE_CAP_S)")
    raw_duration_s: Mapped[Optional[float]] = mapped_column(
        Float, default=None, doc="submitted_at - shown_at, idle time included")
    app_version: Mapped[str] = mapped_column(String(50))
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    revision: Mapped[int] = mapped_column(Integer, default=1, doc="1 = first answer, +1 per edit")

    question: Mapped[Question] = relationship()


class ResponseHistory(Base):
    """Append-only log: one row per created or edited answer (never updated or deleted)."""

    __tablename__ = "response_history"
    __table_args__ = (CheckConstraint("action IN ('create', 'edit')", name="action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"))
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(10))
    old_value: Mapped[Optional[int]] = mapped_column(Integer, default=None)
    new_value: Mapped[int] = mapped_column(Integer)
    old_comment: Mapped[Optional[str]] = mapped_column(Text, default=None)
    new_comment: Mapped[Optional[str]] = mapped_column(Text, default=None)
    at: Mapped[dt.datetime] = mapped_column()
    app_version: Mapped[str] = mapped_column(String(50))
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)

