"""Helpers for the threshold and FOR PROCESSING tests: real DICOM files scanned into a real
store, and predictions of chosen probabilities recorded for a model set (as a scoring run
records them), so that triage can be checked on hand-computed numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid
from sqlalchemy import select

from engine.classes import ALL_CLASSES

IDX = {c: i for i, c in enumerate(ALL_CLASSES)}


def probs(**values: float) -> np.ndarray:
    """36 probabilities, 0.01 everywhere but the named findings (underscores for spaces)."""
    p = np.full(len(ALL_CLASSES), 0.01)
    for name, v in values.items():
        p[IDX[name.replace("_", " ")]] = v
    return p


def write_image(
    folder: Path,
    name: str,
    *,
    patient: str,
    intent: str | None = None,
    study_uid: str | None = None,
) -> Path:
    """A 256 x 256 CR chest image (its own study unless ``study_uid``); ``intent``:
    PresentationIntentType."""
    from engine.dicomwrite import write_dicom

    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    yy, xx = np.mgrid[0:256, 0:256]
    px = (xx * 8 + yy * 4 + rng.integers(0, 300, (256, 256))).astype(np.uint16)
    extra = {"InstanceNumber": 1}
    if intent:
        extra["PresentationIntentType"] = intent
    return write_dicom(
        folder / f"{name}.dcm",
        px,
        patient_id=patient,
        study_uid=study_uid or generate_uid(),
        series_uid=generate_uid(),
        study_date="20240102",
        extra=extra,
    )


def scan_folder(store, folder: Path) -> None:
    from cxrlt_desktop.library import scan

    for _ in scan(store, [folder]):
        pass


def image_id(store, path: Path) -> int:
    from cxrlt_desktop.store.models import Image

    with store.session() as s, s.begin():
        return s.scalar(select(Image.id).where(Image.path.like(f"%{path.name}")))


def model_set(store, key: str) -> int:
    """A model set row (created when new) with one finished scoring run."""
    from cxrlt_desktop.store.models import ModelSet, ScoringRun, utcnow

    def work(s):
        ms = s.scalar(select(ModelSet).where(ModelSet.key == key))
        if ms is None:
            ms = ModelSet(key=key, description={"models": [], "test": key})
            s.add(ms)
            s.flush()
        s.add(ScoringRun(model_set_id=ms.id, finished_at=utcnow()))
        return ms.id

    return store.write(work)


def record_prediction(store, image: int, model_set_id: int, p: np.ndarray) -> int:
    """A prediction of ``p`` for the image under the model set, made the image's current one
    (triage columns left for :func:`retriage` to fill)."""
    from cxrlt_desktop.store.models import Image, Prediction, ScoringRun, array_to_probs

    def work(s):
        img = s.get(Image, image)
        run = s.scalar(
            select(ScoringRun.id)
            .where(ScoringRun.model_set_id == model_set_id)
            .order_by(ScoringRun.id.desc())
            .limit(1)
        )
        pred = Prediction(
            image_id=image,
            run_id=run,
            model_set_id=model_set_id,
            image_version=img.version,
            probs=array_to_probs(p),
        )
        s.add(pred)
        s.flush()
        img.current_prediction_id = pred.id
        return pred.id

    return store.write(work)


def worklist_by_patient(store) -> dict:
    from cxrlt_desktop.library import query_worklist

    return {r.patient: r for r in query_worklist(store, show_phi=True)}
