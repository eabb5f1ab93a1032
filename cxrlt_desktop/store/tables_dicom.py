"""DICOM network records: what was sent to which PACS destination, and how it went.

``dicom_send``: one row per object sent (or to send) to a configured destination: ``what`` is
"ai-sr", "review-sr" or "heatmap"; ``status`` is pending | sent | failed; a failure keeps its
``error`` and is retried on request (``attempts`` counts tries), never dropped.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cxrlt_desktop.store.models import Base, utcnow

SEND_STATES = ("pending", "sent", "failed")


class DicomSend(Base):
    __tablename__ = "dicom_send"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("study.id"), index=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"), index=True)
    what: Mapped[str] = mapped_column(String(32))
    destination: Mapped[str] = mapped_column(String(128))
    sop_uid: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # SEND_STATES
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
