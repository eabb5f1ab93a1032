"""The store's ORM models (SQLAlchemy 2.0 typed declarative).

Hierarchy and what each table means
-----------------------------------
``patient`` 1-n ``study`` 1-n ``series`` 1-n ``image``.

- ``image`` is one row per file the scan found that is not a duplicate: usable chest radiographs,
  and unusable files with their ``reason`` (an unusable file that carries no UIDs has no series).
  ``sop_uid`` is unique: a second file with the same SOPInstanceUID becomes a
  ``duplicate_file`` row pointing at the first. Rows are never deleted: a file that disappeared
  is ``missing`` and keeps its reviews. ``version`` increases whenever the file at ``path``
  changed (size or mtime), so predictions of the old content are not taken for the new one.
- PNG/JPEG files carry no header: they are images of a synthetic patient/study/series keyed by
  their folder (``patient.synthetic``/``study.synthetic`` are true; the UIDs are ``2.25.<uuid5>``
  derived from the folder's and the file's absolute path).
- ``model_version`` is one model file (sha256, arch, role); ``model_set`` is the set of models
  plus the engine settings that change outputs (its ``key`` is a sha256 of both);
  ``scoring_run`` is one run of the scoring service for a model set (a run that was killed is
  resumed by the next start with the same model set).
- ``prediction`` (image x model set) is immutable: the 36 probabilities as a float32 blob (NaN
  where a task's model was not configured), the Task 1 probabilities before normal gating, the
  CSRA attention maps as a float16 blob, the rare-finding score and the per-image summary.
  ``image.current_prediction_id`` is the newest prediction of the image: what the worklist and
  the review panel show.
- ``finding_hit`` (derived, rebuilt whenever a current prediction or the thresholds change):
  one row per finding at or above its threshold in an image's current prediction, so the
  worklist's finding filter is an index lookup.
- ``study`` carries the triage summary of its images' current predictions (``rare_score``,
  ``n_above``, counts, ``top_findings``, ``review_status``); ``priority`` is ``rare_score`` or
  -1 when nothing is scored, so the worklist is an indexed ORDER BY.
- ``review`` is the current verdict per (image, finding); ``image_note`` the free-text note per
  image; ``audit_event`` records every change (old and new values), so a verdict that was
  overwritten can still be traced.
- ``score_failure`` (image x model set): why scoring failed and how often; an image that failed
  in two runs of the same model set is not queued again until its file changes.
- department mode (``tables_department``): ``score_job`` (the scoring work queue), ``worker``
  (heartbeats), ``study_claim`` ("being read by"); ``tables_thresholds``: operating thresholds
  per model set; ``tables_dicom``: ``dicom_send`` (results sent to a PACS); ``tables_progressive``:
  ``model_set_pair`` (the fast model set a paper model set replaces). They are imported at
  the end of this module so that ``Base.metadata`` always holds the whole schema.
- ``score_attempt`` (image x model set): an image whose scoring began (committed before its file
  is decoded) and has no outcome yet; rows left by a process that died count the interruptions
  (see ``cxrlt_desktop.library.scoring``).

Use helpers: :func:`probs_to_array`, :func:`attention_to_array`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

VERDICTS = ("present", "absent", "uncertain")
REVIEW_STATUSES = ("unreviewed", "partial", "reviewed")


def utcnow() -> datetime:
    """Timezone-aware UTC now (what every timestamp column stores)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every store table."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Patient(Base):
    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(primary_key=True)
    # "id:<PatientID>", "study:<StudyInstanceUID>" (no PatientID) or "folder:<abs path>".
    key: Mapped[str] = mapped_column(String(512), unique=True)
    patient_id: Mapped[str | None] = mapped_column(String(128))  # PHI
    patient_name: Mapped[str | None] = mapped_column(String(256))  # PHI
    birth_date: Mapped[str | None] = mapped_column(String(16))  # PHI, DICOM DA "YYYYMMDD"
    sex: Mapped[str | None] = mapped_column(String(16))
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    study_uid: Mapped[str] = mapped_column(String(128), unique=True)
    study_date: Mapped[str | None] = mapped_column(String(16))  # DICOM DA "YYYYMMDD"
    description: Mapped[str | None] = mapped_column(String(256))
    accession_number: Mapped[str | None] = mapped_column(String(64))  # PHI
    institution_name: Mapped[str | None] = mapped_column(String(256))  # PHI
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    # Triage summary over the study's usable, non-missing images (see triage.refresh_studies).
    rare_score: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[float] = mapped_column(Float, default=-1.0)
    n_above: Mapped[int] = mapped_column(Integer, default=0)  # distinct findings >= threshold
    n_images: Mapped[int] = mapped_column(Integer, default=0)
    n_scored: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    n_reviewed: Mapped[int] = mapped_column(Integer, default=0)
    review_status: Mapped[str] = mapped_column(String(16), default="unreviewed")
    # review_status == "reviewed" (server default: added by revision 0002 to existing rows)
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # [{"finding", "probability", "threshold"}], highest probability/threshold first.
    top_findings: Mapped[list[Any]] = mapped_column(JSON, default=list)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")

    # The worklist order is priority DESC, study_date DESC, id DESC: an ascending index read
    # backwards serves it (SQLite and PostgreSQL), with or without the status filter.
    __table_args__ = (
        Index("ix_study_worklist", "priority", "study_date", "id"),
        Index("ix_study_reviewed_worklist", "reviewed", "priority", "study_date", "id"),
    )


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String(128), unique=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(64))
    series_number: Mapped[int | None] = mapped_column(Integer)

    study: Mapped[Study] = relationship(back_populates="series")
    images: Mapped[list[Image]] = relationship(back_populates="series")


class Image(Base):
    __tablename__ = "image"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id"), index=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime: Mapped[float] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer, default=1)
    sop_uid: Mapped[str | None] = mapped_column(String(128), unique=True)
    is_dicom: Mapped[bool] = mapped_column(Boolean, default=True)
    usable: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    missing: Mapped[bool] = mapped_column(Boolean, default=False)
    view_position: Mapped[str | None] = mapped_column(String(16))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    # Header metadata as read_header returned it (DICOM keywords; contains PHI).
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Newest prediction of this image (None: not scored yet). use_alter: image <-> prediction cycle.
    current_prediction_id: Mapped[int | None] = mapped_column(
        ForeignKey("prediction.id", use_alter=True, name="fk_image_current_prediction")
    )
    scanned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    series: Mapped[Series | None] = relationship(back_populates="images")
    current_prediction: Mapped[Prediction | None] = relationship(
        foreign_keys=[current_prediction_id], post_update=True
    )
    reviews: Mapped[list[Review]] = relationship(back_populates="image")


class DuplicateFile(Base):
    """A file whose SOPInstanceUID is already held by ``image_id`` (not inserted twice)."""

    __tablename__ = "duplicate_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime: Mapped[float] = mapped_column(Float)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), index=True)
    missing: Mapped[bool] = mapped_column(Boolean, default=False)
    scanned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))  # "task1-csra" | "task1-mlp" | "clip"
    arch: Mapped[str | None] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(String(4096))  # where it was last seen
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("sha256", "role", "arch", name="uq_model_version"),)


class ModelSet(Base):
    """Models + output-changing settings; predictions of one model set are comparable."""

    __tablename__ = "model_set"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    # {"models": [{"sha256", "role", "arch", "weight"}], "settings": {...}}
    description: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ScoringRun(Base):
    __tablename__ = "scoring_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_set.id"), index=True)
    mode: Mapped[str | None] = mapped_column(String(16))
    views: Mapped[int | None] = mapped_column(Integer)
    alpha: Mapped[float | None] = mapped_column(Float)
    weights: Mapped[list[Any]] = mapped_column(JSON, default=list)
    precision: Mapped[str | None] = mapped_column(String(16))
    device: Mapped[str | None] = mapped_column(String(32))
    prompts_hash: Mapped[str | None] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # predictor.settings
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    n_done: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    # Incremented by every start of the service that resumes this run (1 = never resumed).
    attempts: Mapped[int] = mapped_column(Integer, default=1)

    model_set: Mapped[ModelSet] = relationship()
    models: Mapped[list[RunModel]] = relationship(back_populates="run")

    # At most one open (unfinished) run per model set: workers started at once share it.
    __table_args__ = (
        Index(
            "uq_scoring_run_open",
            "model_set_id",
            unique=True,
            sqlite_where=text("finished_at IS NULL"),
            postgresql_where=text("finished_at IS NULL"),
        ),
    )


class RunModel(Base):
    __tablename__ = "run_model"

    run_id: Mapped[int] = mapped_column(ForeignKey("scoring_run.id"), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), primary_key=True)
    weight: Mapped[float | None] = mapped_column(Float)

    run: Mapped[ScoringRun] = relationship(back_populates="models")
    model_version: Mapped[ModelVersion] = relationship()


class Prediction(Base):
    """Immutable result of one image under one model set."""

    __tablename__ = "prediction"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("scoring_run.id"), index=True)
    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_set.id"))
    image_version: Mapped[int] = mapped_column(Integer, default=1)
    probs: Mapped[bytes] = mapped_column(
        LargeBinary
    )  # float32[36], engine.classes.ALL_CLASSES order
    ungated: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32[30] before normal gating
    attention: Mapped[bytes | None] = mapped_column(LargeBinary)  # float16[30, h, w], C order
    attention_h: Mapped[int | None] = mapped_column(Integer)
    attention_w: Mapped[int | None] = mapped_column(Integer)
    rare_score: Mapped[float | None] = mapped_column(Float)  # max_c p_c / t_c, rare classes
    n_above: Mapped[int] = mapped_column(Integer, default=0)  # findings (not Normal) >= threshold
    top_findings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    seconds: Mapped[float | None] = mapped_column(Float)  # engine time for this image
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    run: Mapped[ScoringRun] = relationship()

    __table_args__ = (
        # Exactly one prediction per image content per model set: a resumed run cannot double up.
        UniqueConstraint(
            "image_id", "model_set_id", "image_version", name="uq_prediction_image_set"
        ),
    )

    def probabilities(self) -> np.ndarray:
        """The 36 probabilities as float64 (NaN for a task that was not configured)."""
        return probs_to_array(self.probs)

    def attention_maps(self) -> np.ndarray | None:
        """The CSRA attention maps as float16 [30, h, w], or None without a CSRA model."""
        return attention_to_array(self.attention, self.attention_h, self.attention_w)


class FindingHit(Base):
    """Derived: a finding at or above threshold in an image's current prediction."""

    __tablename__ = "finding_hit"

    id: Mapped[int] = mapped_column(primary_key=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("prediction.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    finding: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_finding_hit_finding_study", "finding", "study_id"),)


class ScoreFailure(Base):
    __tablename__ = "score_failure"

    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), primary_key=True)
    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_set.id"), primary_key=True)
    image_version: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("scoring_run.id"))
    last_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ScoreAttempt(Base):
    """Scoring of an image that began (committed before its file is decoded) and has no outcome
    yet: the write of its prediction or failure deletes the row. A row left behind means the
    process ended while the image was in flight (a crash, ``kill -9``, a decoder that took the
    process down); ``started`` counts such starts since the last outcome."""

    __tablename__ = "score_attempt"

    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), primary_key=True)
    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_set.id"), primary_key=True)
    image_version: Mapped[int] = mapped_column(Integer)
    started: Mapped[int] = mapped_column(Integer, default=1)
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("scoring_run.id"))
    last_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Review(Base):
    """The current verdict of one finding of one image (history in audit_event)."""

    __tablename__ = "review"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), index=True)
    finding: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))  # VERDICTS
    note: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(128))
    reviewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("prediction.id"))

    image: Mapped[Image] = relationship(back_populates="reviews")
    prediction: Mapped[Prediction | None] = relationship()

    __table_args__ = (UniqueConstraint("image_id", "finding", name="uq_review_image_finding"),)


class ImageNote(Base):
    __tablename__ = "image_note"

    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), primary_key=True)
    note: Mapped[str] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(128))
    # "verdict" | "note" | "agree_all" | "scan" | "score_run_start" | "score_run_end" | ...
    action: Mapped[str] = mapped_column(String(32))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"), index=True)
    finding: Mapped[str | None] = mapped_column(String(64))
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new: Mapped[dict[str, Any] | None] = mapped_column(JSON)


def probs_to_array(blob: bytes) -> np.ndarray:
    """Decode a ``prediction.probs`` blob to float64 [36]."""
    return np.frombuffer(blob, dtype="<f4").astype(np.float64)


def array_to_probs(probs: np.ndarray) -> bytes:
    """Encode probabilities (any float dtype, NaN allowed) as a little-endian float32 blob."""
    return np.ascontiguousarray(probs, dtype="<f4").tobytes()


def attention_to_array(blob: bytes | None, h: int | None, w: int | None) -> np.ndarray | None:
    """Decode a ``prediction.attention`` blob to float16 [30, h, w] (None when absent)."""
    if blob is None or not h or not w:
        return None
    return np.frombuffer(blob, dtype="<f2").reshape(-1, h, w)


def array_to_attention(att: np.ndarray) -> tuple[bytes, int, int]:
    """Encode attention maps [C, h, w] as a float16 blob plus (h, w)."""
    att = np.ascontiguousarray(att, dtype="<f2")
    return att.tobytes(), int(att.shape[-2]), int(att.shape[-1])


# The other table modules register on Base.metadata (imported last: they import Base from here).
from cxrlt_desktop.store import (  # noqa: E402,F401
    tables_department,
    tables_dicom,
    tables_measurements,
    tables_progressive,
    tables_thresholds,
)
