"""Helpers for the GUI tests: real mouse events for pyqtgraph views, and test folders of DICOMs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication


def _mouse(kind, vp, pos: QPoint, button, buttons, modifiers=Qt.KeyboardModifier.NoModifier):
    p = QPointF(pos)
    return QMouseEvent(kind, p, QPointF(vp.mapToGlobal(pos)), button, buttons, modifiers)


def drag(
    view,
    start: QPoint,
    end: QPoint,
    button=Qt.MouseButton.LeftButton,
    modifiers=Qt.KeyboardModifier.NoModifier,
):
    """Press at ``start``, move to ``end`` in two steps, release: a real mouse drag."""
    vp = view.viewport()
    QApplication.sendEvent(
        vp, _mouse(QEvent.Type.MouseButtonPress, vp, start, button, button, modifiers)
    )
    mid = QPoint((start.x() + end.x()) // 2, (start.y() + end.y()) // 2)
    for p in (mid, end):
        QApplication.sendEvent(
            vp, _mouse(QEvent.Type.MouseMove, vp, p, Qt.MouseButton.NoButton, button, modifiers)
        )
    QApplication.sendEvent(
        vp,
        _mouse(QEvent.Type.MouseButtonRelease, vp, end, button, Qt.MouseButton.NoButton, modifiers),
    )


def move(view, pos: QPoint):
    vp = view.viewport()
    QApplication.sendEvent(
        vp, _mouse(QEvent.Type.MouseMove, vp, pos, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    )


def wheel(view, pos: QPoint, steps: int = 1):
    """Scroll the wheel ``steps`` notches (positive: away from the user, zoom in)."""
    vp = view.viewport()
    ev = QWheelEvent(
        QPointF(pos),
        QPointF(vp.mapToGlobal(pos)),
        QPoint(0, 0),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(vp, ev)


def write_undecodable_j2k(path: Path) -> Path:
    """A JPEG 2000 DICOM with a valid header whose codestream is destroyed after its start.

    The header-only scan accepts it; decoding the pixels fails.
    """
    from pydicom.uid import JPEG2000Lossless

    from engine.dicomwrite import write_dicom

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 4096, size=(300, 260), dtype=np.uint16)
    write_dicom(
        path,
        pixels,
        transfer_syntax=JPEG2000Lossless,
        bits_stored=12,
        patient_id="BROKEN01",
        patient_name="Broken^Image",
    )
    data = bytearray(path.read_bytes())
    soc = data.find(b"\xff\x4f\xff\x51")  # start of codestream + SIZ marker
    assert soc > 0, "no JPEG 2000 codestream found"
    # Keep the first 2 bytes (SOC) and wipe the rest of the codestream: same length, no SIZ.
    end = len(data) - 16
    data[soc + 2 : end] = b"\x00" * (end - soc - 2)
    path.write_bytes(bytes(data))
    return path


def make_study_folder(
    folder: Path, rg1: Path | None, *, n_phantoms: int = 5, broken: bool = True
) -> Path:
    """Synthetic phantom studies + (optionally) the RG1 radiograph + an undecodable image."""
    from cxrlt_desktop.demo.phantoms import write_demo_data

    folder.mkdir(parents=True, exist_ok=True)
    write_demo_data(folder / "phantoms", n=n_phantoms, seed=3, size=330)
    (folder / "phantoms" / "labels.csv").unlink(missing_ok=True)
    if rg1 is not None:
        (folder / "rg1").mkdir()
        shutil.copy(rg1, folder / "rg1" / "RG1_UNCR.dcm")
    if broken:
        (folder / "broken").mkdir()
        write_undecodable_j2k(folder / "broken" / "broken_j2k.dcm")
    return folder


def stored_verdicts(store, image_id: int) -> dict[str, str]:
    """The image's verdicts as the store holds them: {finding: verdict}."""
    from sqlalchemy import select

    from cxrlt_desktop.store.models import Review

    with store.session() as s, s.begin():
        return dict(
            s.execute(
                select(Review.finding, Review.verdict).where(Review.image_id == image_id)
            ).all()
        )


def independent_study_scores(store, thresholds=None) -> dict[str, float | None]:
    """Rare-finding score per study recomputed from the stored probabilities (not from triage):
    max over the study's images and the rare classes of p / threshold."""
    from sqlalchemy import select

    from cxrlt_desktop.store.models import Image, Prediction, Series, Study, probs_to_array
    from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS, RARE_CLASSES

    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    rare = [ALL_CLASSES.index(c) for c in RARE_CLASSES]
    t = np.array([th[ALL_CLASSES[i]] for i in rare])
    out: dict[str, float | None] = {}
    with store.session() as s, s.begin():
        for uid, blob in s.execute(
            select(Study.study_uid, Prediction.probs)
            .join(Series, Series.study_id == Study.id)
            .join(Image, Image.series_id == Series.id)
            .outerjoin(Prediction, Prediction.id == Image.current_prediction_id)
        ).all():
            score = None if blob is None else float(np.nanmax(probs_to_array(blob)[rare] / t))
            prev = out.get(uid)
            out[uid] = score if prev is None else (prev if score is None else max(prev, score))
    return out


def refile(src: Path, out: Path, study: str, date: str, **extra) -> Path:
    """A copy of the DICOM file ``src`` filed as another study (its own series and instance
    UIDs under ``study``) on ``date``; ``extra`` sets more attributes (e.g. ``PatientID``)."""
    import pydicom

    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = study + ".1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = study + ".1.1"
    ds.StudyDate = ds.SeriesDate = date
    for k, v in extra.items():
        setattr(ds, k, v)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


def shared_library(request, tmp_path: Path, n_studies: int) -> str:
    """The URL of a library of ``n_studies`` scanned phantom studies on the dialect of a
    ``params=["sqlite", "postgresql"]`` fixture's ``request`` (PostgreSQL: the
    ``postgres_url`` fixture's database)."""
    from cxrlt_desktop.demo.phantoms import write_demo_data
    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.store import open_store

    if request.param == "sqlite":
        url = f"sqlite:///{(tmp_path / 'shared.db').as_posix()}"
    else:
        url = request.getfixturevalue("postgres_url")
    write_demo_data(tmp_path / "in", n=n_studies, seed=5, size=330)
    st = open_store(url)
    for _ in scan(st, [tmp_path / "in"]):
        pass
    st.close()
    return url
