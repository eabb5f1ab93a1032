"""Operating thresholds per model set (a threshold belongs to one model version), and the
library's triage options.

``model_set_threshold`` (model set x finding): the threshold t_c in force for that model set and
where it came from (``source``: "default", "settings", "calibration <file>", "migrated", "user").
A finding without a row uses the settings' value, else the engine's default.

``library_setting`` (name -> JSON value): options that decide the stored triage columns, so
every program that writes them (GUI, commands, workers) applies the same; today
``flag_for_processing`` (may FOR PROCESSING images raise the rare-finding flag).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from cxrlt_desktop.store.models import Base, utcnow


class ModelSetThreshold(Base):
    __tablename__ = "model_set_threshold"

    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_set.id"), primary_key=True)
    finding: Mapped[str] = mapped_column(String(64), primary_key=True)
    threshold: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(512), default="default")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LibrarySetting(Base):
    __tablename__ = "library_setting"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
