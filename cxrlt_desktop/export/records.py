"""What an export reads from the store, as plain typed records.

:func:`read_store` copies the reviewed images (and the images measured but not reviewed), the
predictions their verdicts refer to and each scoring run's model paths out of the database in one read transaction, so no session is held
while the export writes its files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from engine.classes import ALL_CLASSES

_IN_CHUNK = 500  # ids per ``IN (...)`` query


@dataclass
class VerdictRecord:
    """One radiologist verdict on one finding of an image."""

    finding: str
    verdict: str
    note: str | None
    reviewer: str
    reviewed_at: datetime | None
    prediction_id: int | None


@dataclass
class PredictionRecord:
    """A stored prediction with the models and settings of its model set and run."""

    id: int
    probs: np.ndarray
    run_id: int
    model_set_id: int
    models: list[dict[str, Any]]  # [{"sha256", "role", "arch", "weight"}]
    settings: dict[str, Any]
    model_set_key: str = ""
    created_at: datetime | None = None
    # The model set's own operating thresholds (model_set_threshold), by finding; a finding
    # without one uses the export's thresholds.
    thresholds: dict[str, float] = field(default_factory=dict)


@dataclass
class ImageRecord:
    """A reviewed (or measured) image with what the store knows of its patient, study and
    series; ``verdicts`` is empty for an image measured but not reviewed."""

    id: int
    path: str
    sop_uid: str | None
    sop_class_uid: str | None
    is_dicom: bool
    image_key: str
    patient_key: str
    patient_id: str | None
    patient_name: str | None
    birth_date: str | None
    sex: str | None
    study_uid: str | None
    study_date: str | None
    study_time: str | None
    accession: str | None
    institution: str | None
    series_uid: str | None
    modality: str | None
    meta: dict[str, Any]
    current_prediction_id: int | None
    verdicts: dict[str, VerdictRecord]
    size: int = -1  # the file as the last scan saw it
    mtime: float = 0.0
    usable: bool = True  # the scan found a usable chest radiograph
    # the image's measurements (library.measurements.StoredMeasurement), oldest first
    measurements: tuple[Any, ...] = ()


class StoreSnapshot(NamedTuple):
    """Everything an export reads from the store."""

    images: list[ImageRecord]  # reviewed or measured images, by id
    predictions: dict[int, PredictionRecord]  # by prediction id
    run_paths: dict[int, list[str]]  # scoring run id -> its model files


def _chunks(seq: list[int], n: int = _IN_CHUNK) -> Iterable[list[int]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def read_store(store: Any) -> StoreSnapshot:
    """Reviewed images and images with measurements, the predictions their verdicts refer to,
    and each run's model paths."""
    with store.session() as s, s.begin():
        verdicts = _read_verdicts(s)
        for image_id in _measured_image_ids(s):
            verdicts.setdefault(image_id, {})  # measured, not reviewed: no verdict
        images = _read_images(s, verdicts)
        pred_ids = sorted(
            {v.prediction_id for rec in images for v in rec.verdicts.values() if v.prediction_id}
            | {rec.current_prediction_id for rec in images if rec.current_prediction_id}
        )
        preds = _read_predictions(s, pred_ids)
        run_paths = _read_run_paths(s, sorted({p.run_id for p in preds.values()}))
    images.sort(key=lambda r: r.id)
    _attach_measurements(store, images)
    return StoreSnapshot(images, preds, run_paths)


def _measured_image_ids(s: Any) -> list[int]:
    """The images that have at least one measurement."""
    from sqlalchemy import select

    from cxrlt_desktop.store.tables_measurements import Measurement

    return list(s.scalars(select(Measurement.image_id).distinct()))


def _attach_measurements(store: Any, images: list[ImageRecord]) -> None:
    from cxrlt_desktop.library.measurements import measurements_of

    found = measurements_of(store, [r.id for r in images])
    for rec in images:
        rec.measurements = tuple(found.get(rec.id, ()))


def read_image(store: Any, image_id: int) -> tuple[ImageRecord, PredictionRecord | None]:
    """One image (reviewed or not) with its verdicts, and its current prediction if any.

    Raises
    ------
    LookupError
        No image with that id in the store.
    """
    with store.session() as s, s.begin():
        verdicts = _read_verdicts(s, image_id)
        images = _read_images(s, {image_id: verdicts.get(image_id, {})})
        if not images:
            raise LookupError(f"image {image_id}: not in the library")
        rec = images[0]
        pid = rec.current_prediction_id
        pred = _read_predictions(s, [pid]).get(pid) if pid else None
    _attach_measurements(store, [rec])
    return rec, pred


def _read_verdicts(s: Any, image_id: int | None = None) -> dict[int, dict[str, VerdictRecord]]:
    """image id -> finding -> verdict, for every known verdict on a known finding (of one
    image when ``image_id`` is given)."""
    from sqlalchemy import select

    from cxrlt_desktop.store.models import VERDICTS, Review

    by_image: dict[int, dict[str, VerdictRecord]] = {}
    query = select(Review).order_by(Review.image_id, Review.finding)
    if image_id is not None:
        query = query.where(Review.image_id == image_id)
    for r in s.scalars(query):
        if r.verdict not in VERDICTS or r.finding not in ALL_CLASSES:
            continue
        by_image.setdefault(r.image_id, {})[r.finding] = VerdictRecord(
            r.finding, r.verdict, r.note, r.reviewer, r.reviewed_at, r.prediction_id
        )
    return by_image


def _read_images(s: Any, verdicts: dict[int, dict[str, VerdictRecord]]) -> list[ImageRecord]:
    """The images of ``verdicts`` (an empty dict: measured, not reviewed), with their series,
    study and patient."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from cxrlt_desktop.store.models import Image, Series, Study

    images: list[ImageRecord] = []
    for chunk in _chunks(sorted(verdicts)):
        rows = s.scalars(
            select(Image)
            .where(Image.id.in_(chunk))
            .options(
                selectinload(Image.series).selectinload(Series.study).selectinload(Study.patient)
            )
        )
        images.extend(_image_record(im, verdicts[im.id]) for im in rows)
    return images


def _image_record(im: Any, verdicts: dict[str, VerdictRecord]) -> ImageRecord:
    series = im.series
    study = series.study if series is not None else None
    patient = study.patient if study is not None else None
    meta = dict(im.meta or {})
    return ImageRecord(
        id=im.id,
        path=im.path,
        sop_uid=im.sop_uid,
        sop_class_uid=meta.get("SOPClassUID"),
        is_dicom=bool(im.is_dicom),
        image_key=im.sop_uid or f"path:{im.path}",
        # An image without series (unusable file without UIDs) still is one person's: key it
        # by the file, so it never shares a patient pseudonym.
        patient_key=patient.key if patient is not None else f"image:{im.path}",
        patient_id=patient.patient_id if patient is not None else None,
        patient_name=patient.patient_name if patient is not None else None,
        birth_date=patient.birth_date if patient is not None else None,
        sex=patient.sex if patient is not None else None,
        study_uid=study.study_uid if study is not None else None,
        study_date=study.study_date if study is not None else None,
        study_time=meta.get("StudyTime"),
        accession=study.accession_number if study is not None else None,
        institution=study.institution_name if study is not None else None,
        series_uid=series.series_uid if series is not None else None,
        modality=series.modality if series is not None else meta.get("Modality"),
        meta=meta,
        current_prediction_id=im.current_prediction_id,
        verdicts=verdicts,
        size=im.size,
        mtime=im.mtime,
        usable=bool(im.usable),
    )


def _read_predictions(s: Any, pred_ids: list[int]) -> dict[int, PredictionRecord]:
    """These predictions, each with its model set's models and its run's settings."""
    from sqlalchemy import select

    from cxrlt_desktop.store.models import ModelSet, Prediction, ScoringRun

    preds: dict[int, PredictionRecord] = {}
    set_thresholds: dict[int, dict[str, float]] = {}
    for chunk in _chunks(pred_ids):
        for p, ms, run in s.execute(
            select(Prediction, ModelSet, ScoringRun)
            .join(ModelSet, Prediction.model_set_id == ModelSet.id)
            .join(ScoringRun, Prediction.run_id == ScoringRun.id)
            .where(Prediction.id.in_(chunk))
        ):
            desc = ms.description or {}
            preds[p.id] = PredictionRecord(
                id=p.id,
                probs=p.probabilities(),
                run_id=p.run_id,
                model_set_id=p.model_set_id,
                models=list(desc.get("models") or []),
                settings=dict(run.settings or desc.get("settings") or {}),
                model_set_key=ms.key,
                created_at=p.created_at,
                thresholds=set_thresholds.setdefault(ms.id, {}),
            )
    _read_set_thresholds(s, set_thresholds)
    return preds


def _read_set_thresholds(s: Any, by_set: dict[int, dict[str, float]]) -> None:
    """Fill ``by_set`` (model set id -> {}) with each set's operating thresholds."""
    from sqlalchemy import select

    from cxrlt_desktop.store.tables_thresholds import ModelSetThreshold

    for chunk in _chunks(sorted(by_set)):
        for row in s.scalars(
            select(ModelSetThreshold).where(ModelSetThreshold.model_set_id.in_(chunk))
        ):
            if row.finding in ALL_CLASSES:
                by_set[row.model_set_id][row.finding] = float(row.threshold)


def _read_run_paths(s: Any, run_ids: list[int]) -> dict[int, list[str]]:
    """run id -> the paths of the model files it scored with."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from cxrlt_desktop.store.models import RunModel

    run_paths: dict[int, list[str]] = {}
    for chunk in _chunks(run_ids):
        for rm in s.scalars(
            select(RunModel)
            .where(RunModel.run_id.in_(chunk))
            .options(selectinload(RunModel.model_version))
        ):
            run_paths.setdefault(rm.run_id, []).append(rm.model_version.path)
    return run_paths
