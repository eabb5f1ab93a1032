"""Measurements drawn on an image (distance, angle, Cobb angle, cardiothoracic ratio).

``measurement`` (one row per measurement on an image): its ``kind``, its ``points`` in the stored
image's coordinates (``[[column, row], ...]``, DICOM SCOORD convention: (0, 0) is the top-left
corner of the top-left pixel), the ``calibration`` used (spacing, basis, magnification factor:
``cxrlt_desktop.library.measure_geometry.Calibration``), the computed ``value`` with its
``unit`` and display ``text``, and the ``finding`` it informs (Cobb angle: Scoliosis, CTR:
cardiomegaly). Rows are edited in place and deleted when the reader deletes the measurement.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cxrlt_desktop.store.models import Base, utcnow


class Measurement(Base):
    __tablename__ = "measurement"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[list[Any]] = mapped_column(JSON)
    calibration: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    finding: Mapped[str | None] = mapped_column(String(64))
    reader: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
