"""Department-mode tables: the scoring work queue, worker heartbeats, soft study claims.

- ``score_job`` (image content x model set x kind): one row per unit of scoring work, created
  idempotently (``uq_score_job``: inserting an existing job does nothing) and reused when the
  job is retried. ``state`` is queued -> claimed -> done | failed; a claimed job whose
  ``lease_until`` passed may be claimed again by another worker, and a result is accepted only
  from the worker that holds the claim. ``kind`` is the scoring pass ("paper" today; the
  progressive policy adds "fast"). Claims take the highest ``priority`` first, then the oldest.
- ``worker`` (one row per worker name): what ``cxrlt queue`` lists as live workers.
- ``study_claim`` (study x reader): "being read by" marks; soft, with a lease, never a lock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cxrlt_desktop.store.models import Base, utcnow

JOB_STATES = ("queued", "claimed", "done", "failed")


class ScoreJob(Base):
    __tablename__ = "score_job"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), index=True)
    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_set.id"))
    image_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="paper")
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    state: Mapped[str] = mapped_column(String(16), default="queued")  # JOB_STATES
    worker: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("image_id", "model_set_id", "image_version", "kind", name="uq_score_job"),
        # claim order: state filter, then priority DESC, id ASC
        Index("ix_score_job_claim", "state", "model_set_id", "priority", "id"),
    )


class Worker(Base):
    __tablename__ = "worker"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str | None] = mapped_column(String(256))
    pid: Mapped[int | None] = mapped_column(Integer)
    model_set_id: Mapped[int | None] = mapped_column(ForeignKey("model_set.id"))
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | stopped
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_heartbeat: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    n_done: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)


class StudyClaim(Base):
    __tablename__ = "study_claim"

    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), primary_key=True)
    reader: Mapped[str] = mapped_column(String(128), primary_key=True)
    workstation: Mapped[str | None] = mapped_column(String(256))
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
