"""Progressive triage: which fast model set's predictions a paper model set replaces.

``model_set_pair``: one row per (fast model set, paper model set) scored together by the
progressive policy: the fast set's predictions are the provisional pass of the paper set's (a
fast set may pair with several paper sets, e.g. the same CSRA model with or without an MLP). The fast and paper passes have different model-set keys (the mode
is part of a model set's settings), so their predictions are distinct rows of ``prediction``,
each with its model set; this link says that an image showing the fast set's prediction shows
a *provisional* score, to be replaced by the paper set's prediction as soon as it exists. A fast
model set scored on its own (the "fast" policy) has no row: its scores are final.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from cxrlt_desktop.store.models import Base, utcnow


class ModelSetPair(Base):
    __tablename__ = "model_set_pair"

    fast_model_set_id: Mapped[int] = mapped_column(ForeignKey("model_set.id"), primary_key=True)
    paper_model_set_id: Mapped[int] = mapped_column(
        ForeignKey("model_set.id"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
