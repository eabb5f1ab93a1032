"""Radiologist verdicts: each change commits at once and leaves an ``audit_event``.

A verdict is per (image, finding): ``present``, ``absent`` or ``uncertain`` (``None`` clears it),
with the reviewer, the time and the prediction it was made against (the image's current
prediction at that moment). The review row holds the current verdict; the audit trail keeps
every earlier value. A study's review status follows: ``reviewed`` when every usable image has at
least one verdict, ``partial`` when some have, else ``unreviewed``.

Several readers may write at the same moment (department mode, one PostgreSQL database): every
write is an upsert that first locks the image's study row, so two readers marking the same
finding at once both succeed, one after the other (the last writer's verdict stays, both are
in the audit trail, the second's "old" value is the first's verdict), and the study's review
status is computed from what both wrote. Each commit announces itself to the other
workstations (:func:`cxrlt_desktop.store.notify.notify`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cxrlt_desktop.library.triage import refresh_studies, threshold_vector
from cxrlt_desktop.store import Store
from cxrlt_desktop.store.models import (
    VERDICTS,
    AuditEvent,
    Image,
    ImageNote,
    Prediction,
    Review,
    Series,
    Study,
    probs_to_array,
    utcnow,
)
from cxrlt_desktop.store.notify import notify
from engine.classes import ALL_CLASSES


class ReviewError(ValueError):
    """A verdict that cannot be stored (unknown image, finding or verdict)."""


@dataclass
class ReviewResult:
    """What changed: the image, its study and the study's new review status."""

    image_id: int
    study_id: int | None
    review_status: str | None
    changed: int = 1


@dataclass
class Verdict:
    finding: str
    verdict: str
    note: str | None
    reviewer: str
    reviewed_at: datetime
    prediction_id: int | None


def _image(s: Session, image_id: int) -> Image:
    """The image, with its study's row locked for this transaction (PostgreSQL; SQLite's
    write transactions are serial already): verdict writes on one study queue here."""
    img = s.get(Image, image_id)
    if img is None:
        raise ReviewError(f"image {image_id} is not in the store")
    study_id = _study_of(s, img)
    if study_id is not None:
        s.execute(select(Study.id).where(Study.id == study_id).with_for_update())
    return img


def _study_of(s: Session, img: Image) -> int | None:
    if not img.series_id:
        return None
    return s.scalar(select(Series.study_id).where(Series.id == img.series_id))


def _insert_ignoring_conflict(s: Session, model, values: dict, keys: list[str]) -> bool:  # noqa: ANN001
    """INSERT ... ON CONFLICT DO NOTHING (a row another transaction committed first wins);
    True when this one inserted."""
    dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
    return bool(s.execute(stmt).rowcount)


def _locked_row(s: Session, model, where, values: dict, keys: list[str]):  # noqa: ANN001, ANN202
    """The row matching ``where``, locked for this transaction; created from ``values`` when
    missing (an upsert: when another transaction inserts the same key at the same moment, its
    row is the one returned, after it committed). ``(row, existed)``."""
    for _ in range(3):
        row = s.scalar(
            select(model).where(*where).with_for_update().execution_options(populate_existing=True)
        )
        if row is not None:
            return row, True
        if _insert_ignoring_conflict(s, model, values, keys):
            return s.scalar(select(model).where(*where)), False
    raise ReviewError(f"could not write {model.__tablename__}: the row keeps changing")


def _finish(s: Session, img: Image, changed: int = 1) -> ReviewResult:
    study_id = _study_of(s, img)
    status = None
    if study_id is not None:
        s.flush()
        refresh_studies(s, [study_id])
        status = s.scalar(select(Study.review_status).where(Study.id == study_id))
        notify(s, "verdict", study_id=study_id)
    return ReviewResult(img.id, study_id, status, changed)


REVIEWER_MAX = Review.reviewer.type.length


def _check_reviewer(reviewer: str) -> str:
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise ReviewError('a reviewer name is needed (set it in the settings: reviewer = "...")')
    name = reviewer.strip()
    if len(name) > REVIEWER_MAX:
        # the column keeps 128 characters (PostgreSQL refuses more; SQLite would keep them)
        raise ReviewError(
            f"the reviewer name has {len(name)} characters; at most {REVIEWER_MAX} are kept "
            "(shorten it in the settings)"
        )
    return name


def _set(
    s: Session,
    img: Image,
    finding: str,
    verdict: str | None,
    reviewer: str,
    note: str | None,
    action: str,
) -> bool:
    where = (Review.image_id == img.id, Review.finding == finding)
    if verdict is None:
        row = s.scalar(select(Review).where(*where).with_for_update())
        if row is None:
            return False
        old = {"verdict": row.verdict, "note": row.note, "reviewer": row.reviewer}
        s.delete(row)
        new = None
    else:
        now = utcnow()
        row, existed = _locked_row(
            s,
            Review,
            where,
            {
                "image_id": img.id,
                "finding": finding,
                "verdict": verdict,
                "reviewer": reviewer,
                "reviewed_at": now,
            },
            ["image_id", "finding"],
        )
        old = (
            {"verdict": row.verdict, "note": row.note, "reviewer": row.reviewer}
            if existed
            else None
        )
        row.verdict = verdict
        row.note = note
        row.reviewer = reviewer
        row.reviewed_at = now
        row.prediction_id = img.current_prediction_id
        new = {
            "verdict": verdict,
            "note": note,
            "reviewer": reviewer,
            "prediction_id": img.current_prediction_id,
        }
    s.add(
        AuditEvent(
            actor=reviewer, action=action, image_id=img.id, finding=finding, old=old, new=new
        )
    )
    return True


def set_verdict(
    store: Store,
    image_id: int,
    finding: str,
    verdict: str | None,
    *,
    reviewer: str,
    note: str | None = None,
) -> ReviewResult:
    """Set (or with ``verdict=None`` clear) one finding's verdict; committed before returning.

    Raises
    ------
    ReviewError
        Unknown image, finding (engine class names) or verdict, or no reviewer name.
    """
    if finding not in ALL_CLASSES:
        raise ReviewError(f"unknown finding {finding!r}")
    if verdict is not None and verdict not in VERDICTS:
        raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)} or None, got {verdict!r}")
    reviewer = _check_reviewer(reviewer)

    def work(s: Session) -> ReviewResult:
        img = _image(s, image_id)
        changed = _set(s, img, finding, verdict, reviewer, note, "verdict")
        return _finish(s, img, int(changed))

    return store.write(work)


def set_image_note(store: Store, image_id: int, note: str | None, *, reviewer: str) -> ReviewResult:
    """Set the free-text note of an image (empty or None deletes it); committed at once."""
    reviewer = _check_reviewer(reviewer)
    text = (note or "").strip() or None

    def work(s: Session) -> ReviewResult:
        img = _image(s, image_id)
        where = (ImageNote.image_id == image_id,)
        if text is None:
            row = s.scalar(select(ImageNote).where(*where).with_for_update())
            old = None if row is None else {"note": row.note, "reviewer": row.reviewer}
            if row is not None:
                s.delete(row)
        else:
            values = {"image_id": image_id, "note": text, "reviewer": reviewer}
            row, existed = _locked_row(s, ImageNote, where, values, ["image_id"])
            old = {"note": row.note, "reviewer": row.reviewer} if existed else None
            row.note, row.reviewer, row.updated_at = text, reviewer, utcnow()
        s.add(
            AuditEvent(
                actor=reviewer,
                action="note",
                image_id=image_id,
                old=old,
                new=None if text is None else {"note": text},
            )
        )
        study_id = _study_of(s, img)
        notify(s, "verdict", study_id=study_id)
        return ReviewResult(img.id, study_id, None)

    return store.write(work)


def agree_with_all(
    store: Store,
    image_id: int,
    *,
    reviewer: str,
    thresholds: Mapping[str, float] | None = None,
    overwrite: bool = False,
) -> ReviewResult:
    """Accept the AI's call for every finding of the image: present when p >= t, else absent.

    Findings without a probability (task not configured) are left alone, and so are verdicts
    already set unless ``overwrite``. All verdicts are written in one transaction.

    Raises
    ------
    ReviewError
        The image has no prediction yet, or no reviewer name.
    """
    reviewer = _check_reviewer(reviewer)
    t = threshold_vector(thresholds)

    def work(s: Session) -> ReviewResult:
        img = _image(s, image_id)
        if img.current_prediction_id is None:
            raise ReviewError(f"image {image_id} has no prediction to agree with")
        probs = probs_to_array(s.get(Prediction, img.current_prediction_id).probs)
        have = set(s.scalars(select(Review.finding).where(Review.image_id == image_id)).all())
        n = 0
        for k, name in enumerate(ALL_CLASSES):
            if np.isnan(probs[k]) or (name in have and not overwrite):
                continue
            verdict = "present" if probs[k] >= t[k] else "absent"
            n += _set(s, img, name, verdict, reviewer, None, "agree_all")
        return _finish(s, img, n)

    return store.write(work)


def image_verdicts(store: Store, image_id: int) -> dict[str, Verdict]:
    """The current verdicts of an image by finding."""
    with store.session() as s, s.begin():
        rows = s.scalars(select(Review).where(Review.image_id == image_id)).all()
        return {
            r.finding: Verdict(
                r.finding, r.verdict, r.note, r.reviewer, r.reviewed_at, r.prediction_id
            )
            for r in rows
        }


def image_note(store: Store, image_id: int) -> str | None:
    """The image's note, or None."""
    with store.session() as s, s.begin():
        row = s.get(ImageNote, image_id)
        return None if row is None else row.note
