"""Operating thresholds per model set (a threshold belongs to one model version).

``model_set_threshold`` (model set x finding): the threshold t_c in force for that model set and
where it came from (``source``: "default", "settings", "calibration <file>", "migrated", "user").
A finding without a row uses the engine's default.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from cxrlt_desktop.store.models import Base, utcnow


class ModelSetThreshold(Base):
    __tablename__ = "model_set_threshold"

    model_set_id: Mapped[int] = mapped_column(ForeignKey("model_set.id"), primary_key=True)
    finding: Mapped[str] = mapped_column(String(64), primary_key=True)
    threshold: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(512), default="default")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
