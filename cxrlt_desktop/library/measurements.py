"""Measurements stored per image: add, edit, delete, list; each change commits at once and
leaves an ``audit_event`` (old and new values), like a verdict, and is announced to the other
workstations as a ``"measurement"`` change of the image's study
(:func:`cxrlt_desktop.store.notify.notify`), so an open viewer of the image redraws it.

The value is computed here from the points and the image's calibration
(:mod:`.measure_geometry`), never taken from the caller, so what is stored, shown and exported is
one number. The calibration is the caller's (the viewer reads it from the file's header, which
holds the magnification factor the library's stored header does not); :func:`image_calibration`
gives the library's own from the stored header when no file is at hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cxrlt_desktop.library.measure_geometry import (
    FINDING_OF_KIND,
    PIXELS,
    Calibration,
    MeasurementError,
    Point,
    calibration_of,
    measure,
)
from cxrlt_desktop.store import Store
from cxrlt_desktop.store.models import AuditEvent, Image, Series, utcnow
from cxrlt_desktop.store.notify import notify
from cxrlt_desktop.store.tables_measurements import Measurement


@dataclass(frozen=True)
class StoredMeasurement:
    """One measurement as stored."""

    id: int
    image_id: int
    kind: str
    points: tuple[Point, ...]
    calibration: Calibration
    value: float
    unit: str
    text: str
    finding: str | None
    reader: str | None
    version: int


def _row(m: Measurement) -> StoredMeasurement:
    return StoredMeasurement(
        m.id,
        m.image_id,
        m.kind,
        tuple((float(p[0]), float(p[1])) for p in m.points),
        Calibration.from_dict(m.calibration),
        float(m.value),
        m.unit,
        m.text,
        m.finding,
        m.reader,
        m.version,
    )


def _snapshot(m: Measurement) -> dict:
    return {
        "kind": m.kind,
        "points": m.points,
        "value": m.value,
        "unit": m.unit,
        "finding": m.finding,
    }


def _announce(s: Session, image_id: int) -> None:
    """A ``"measurement"`` change of the image's study, sent when the transaction commits."""
    study_id = s.scalar(
        select(Series.study_id)
        .join(Image, Image.series_id == Series.id)
        .where(Image.id == image_id)
    )
    notify(s, "measurement", study_id=study_id)


def image_calibration(store: Store, image_id: int) -> Calibration:
    """The calibration the library's stored header gives (PixelSpacing or ImagerPixelSpacing;
    pixels when neither or no such image)."""
    with store.session() as s, s.begin():
        meta = s.scalar(select(Image.meta).where(Image.id == image_id))
    return calibration_of(meta or {}) if meta else PIXELS


def add_measurement(
    store: Store,
    image_id: int,
    kind: str,
    points: Sequence[Point],
    calibration: Calibration = PIXELS,
    *,
    reader: str | None = None,
) -> StoredMeasurement:
    """Store a new measurement on an image (MeasurementError for bad points or no image)."""
    result = measure(kind, points, calibration)

    def work(s: Session) -> StoredMeasurement:
        if s.get(Image, image_id) is None:
            raise MeasurementError(f"no image with id {image_id}")
        m = Measurement(
            image_id=image_id,
            kind=kind,
            points=[[float(x), float(y)] for x, y in points],
            calibration=calibration.as_dict(),
            value=result.value,
            unit=result.unit,
            text=result.text,
            finding=FINDING_OF_KIND.get(kind),
            reader=reader,
            version=1,
        )
        s.add(m)
        s.flush()
        s.add(
            AuditEvent(
                actor=reader,
                action="measurement_add",
                image_id=image_id,
                finding=m.finding,
                old=None,
                new=_snapshot(m),
            )
        )
        _announce(s, image_id)
        return _row(m)

    return store.write(work)


def update_measurement(
    store: Store, measurement_id: int, points: Sequence[Point], *, reader: str | None = None
) -> StoredMeasurement:
    """Move a measurement's points (an edit); its value is computed again with its calibration."""

    def work(s: Session) -> StoredMeasurement:
        m = s.get(Measurement, measurement_id)
        if m is None:
            raise MeasurementError(f"no measurement with id {measurement_id}")
        old = _snapshot(m)
        result = measure(m.kind, points, Calibration.from_dict(m.calibration))
        m.points = [[float(x), float(y)] for x, y in points]
        m.value, m.unit, m.text = result.value, result.unit, result.text
        m.version = (m.version or 1) + 1
        m.updated_at = utcnow()
        if reader:
            m.reader = reader
        s.add(
            AuditEvent(
                actor=reader,
                action="measurement_edit",
                image_id=m.image_id,
                finding=m.finding,
                old=old,
                new=_snapshot(m),
            )
        )
        _announce(s, m.image_id)
        s.flush()
        return _row(m)

    return store.write(work)


def delete_measurement(store: Store, measurement_id: int, *, reader: str | None = None) -> bool:
    """Delete a measurement; False when there was none."""

    def work(s: Session) -> bool:
        m = s.get(Measurement, measurement_id)
        if m is None:
            return False
        s.add(
            AuditEvent(
                actor=reader,
                action="measurement_delete",
                image_id=m.image_id,
                finding=m.finding,
                old=_snapshot(m),
                new=None,
            )
        )
        _announce(s, m.image_id)
        s.delete(m)
        return True

    return store.write(work)


def image_measurements(store: Store, image_id: int) -> list[StoredMeasurement]:
    """An image's measurements, oldest first."""
    return measurements_of(store, [image_id]).get(image_id, [])


def measurements_of(store: Store, image_ids: Iterable[int]) -> dict[int, list[StoredMeasurement]]:
    """The measurements of several images (image id -> oldest first)."""
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    out: dict[int, list[StoredMeasurement]] = {}
    if not ids:
        return out
    with store.session() as s, s.begin():
        for start in range(0, len(ids), 500):
            rows = s.scalars(
                select(Measurement)
                .where(Measurement.image_id.in_(ids[start : start + 500]))
                .order_by(Measurement.image_id, Measurement.id)
            ).all()
            for m in rows:
                out.setdefault(m.image_id, []).append(_row(m))
    return out


__all__ = [
    "StoredMeasurement",
    "add_measurement",
    "delete_measurement",
    "image_calibration",
    "image_measurements",
    "measurements_of",
    "update_measurement",
]
