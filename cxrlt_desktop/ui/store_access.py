"""Read-side adapter between the GUI and the store's ORM models.

The services (library, scoring, worklist, reviews) own every write; the GUI needs a few reads
they do not offer as functions: the images of one study in reading order with their current
predictions, the verdicts and note of one image, and the problems recorded so far. Each read is
one short session, returning plain dataclasses (nothing lazy crosses the session boundary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from cxrlt_desktop.store.models import (
    Image,
    ImageNote,
    Prediction,
    Review,
    ScoreFailure,
    Series,
    Study,
    attention_to_array,
    probs_to_array,
)


@dataclass
class ImageEntry:
    """One image of a study as the review screen needs it."""

    image_id: int
    path: str
    series_uid: str | None
    series_number: int | None
    instance_number: int | None
    view_position: str | None
    usable: bool
    reason: str | None
    missing: bool
    prediction_id: int | None = None
    probs: np.ndarray | None = None  # [36] float64
    ungated: np.ndarray | None = None  # [30] float64
    attention: np.ndarray | None = None  # [30, h, w] float16
    meta: dict[str, Any] = field(default_factory=dict)


def study_images(store, study_uid: str, *, usable_only: bool = True) -> list[ImageEntry]:
    """Images of a study in reading order (series number, instance number, path).

    Parameters
    ----------
    store
        The open store.
    study_uid
        StudyInstanceUID (or the synthetic UID of a folder of PNGs).
    usable_only
        Leave out files the scan found unusable and files that went missing.
    """
    with store.session() as s, s.begin():
        q = (
            select(Image, Series, Prediction)
            .join(Series, Series.id == Image.series_id)
            .join(Study, Study.id == Series.study_id)
            .outerjoin(Prediction, Prediction.id == Image.current_prediction_id)
            .where(Study.study_uid == study_uid)
        )
        if usable_only:
            q = q.where(Image.usable.is_(True), Image.missing.is_(False))
        out = []
        for img, ser, pred in s.execute(q).all():
            entry = ImageEntry(
                image_id=img.id,
                path=img.path,
                series_uid=ser.series_uid,
                series_number=ser.series_number,
                instance_number=img.instance_number,
                view_position=img.view_position,
                usable=img.usable,
                reason=img.reason,
                missing=img.missing,
                meta=dict(img.meta or {}),
            )
            if pred is not None:
                entry.prediction_id = pred.id
                entry.probs = probs_to_array(pred.probs)
                entry.ungated = None if pred.ungated is None else probs_to_array(pred.ungated)
                entry.attention = attention_to_array(
                    pred.attention, pred.attention_h, pred.attention_w
                )
            out.append(entry)
    big = 1 << 30
    out.sort(
        key=lambda e: (
            e.series_number if e.series_number is not None else big,
            e.series_uid or "",
            e.instance_number if e.instance_number is not None else big,
            e.path,
        )
    )
    return out


def image_reviews(store, image_id: int) -> tuple[dict[str, str], str]:
    """(verdict per finding, note) of one image."""
    with store.session() as s, s.begin():
        verdicts = {
            f: v
            for f, v in s.execute(
                select(Review.finding, Review.verdict).where(Review.image_id == image_id)
            ).all()
        }
        note = s.scalar(select(ImageNote.note).where(ImageNote.image_id == image_id))
    return verdicts, note or ""


def recorded_problems(store, limit: int = 5000) -> list[tuple[str, str, str]]:
    """(path, reason, phase) of unusable files and of images whose scoring failed."""
    out: list[tuple[str, str, str]] = []
    with store.session() as s, s.begin():
        for path, reason in s.execute(
            select(Image.path, Image.reason)
            .where(Image.usable.is_(False), Image.missing.is_(False))
            .order_by(Image.path)
            .limit(limit)
        ).all():
            out.append((path, reason or "unusable", "scan"))
        for path, reason in s.execute(
            select(Image.path, ScoreFailure.reason)
            .join(ScoreFailure, ScoreFailure.image_id == Image.id)
            .where(Image.missing.is_(False))
            .order_by(Image.path)
            .limit(limit)
        ).all():
            out.append((path, reason, "score"))
    return out


__all__ = ["ImageEntry", "image_reviews", "recorded_problems", "study_images"]
