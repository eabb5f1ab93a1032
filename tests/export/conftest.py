"""Fixtures for the feedback-export tests: a real store (a SQLite file, or with ``any_store``
each of SQLite and a PostgreSQL database of its own), real DICOMs full of distinctive
PHI, a real scan, and predictions either from a random-weight model run by the engine or
inserted by hand with known probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from engine.classes import ALL_CLASSES

SIZE = 64

# Distinctive PHI strings: none of them may appear in any byte of a de-identified export.
PHI = {
    "name": "Zyxwvut^Qwerty",
    "patient_id": "PIDQ55501",
    "birth_date": "19471113",
    "accession": "ACC987654",
    "institution": "Saint Testington",
    "study_date": "20230417",
    "study_uid": "1.2.826.0.1.3680043.8.498.4242424242",
    "series_uid": "1.2.826.0.1.3680043.8.498.4343434343",
}
SECOND_PATIENT = {"name": "Plumbfoot^Ixora", "patient_id": "PIDQ77702", "accession": "ACC246810"}


@dataclass
class Library:
    folder: Path
    paths: list[Path]
    sop_uids: list[str]
    image_ids: dict[Path, int]  # path -> store image id


def _pixels(seed: int, size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    return (xx * 9 + yy * 5 + rng.integers(0, 500, (size, size))).astype(np.uint16)


@pytest.fixture
def store(tmp_path):
    """A SQLite file store only; modules that run on both dialects use :func:`any_store`."""
    from cxrlt_desktop.store import open_store

    st = open_store("sqlite:///" + str(tmp_path / "x.db"))
    yield st
    st.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of a new, empty library on each dialect: a SQLite file, and a PostgreSQL
    database of its own (``postgres_url``: skipped without CXRLT_TEST_POSTGRES)."""
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "x.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def any_store(store_url):
    """The store at :func:`store_url`: the tests using it run on SQLite and PostgreSQL.

    A module whose every test should run on both dialects can override ``store`` with
    ``@pytest.fixture def store(any_store): return any_store``; :func:`library` then scans into
    it too."""
    from cxrlt_desktop.store import open_store

    st = open_store(store_url)
    yield st
    st.close()


def _sop_uid(path: Path) -> str:
    # Read back: pydicom's set_pixel_data makes a new SOPInstanceUID, whatever write_dicom got.
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def write_phi_library(folder: Path) -> tuple[list[Path], list[str]]:
    """Three CR images of the PHI patient (one study) and one of a second patient."""
    from engine.dicomwrite import write_dicom

    paths, uids = [], []
    for i in range(3):
        uid = f"1.2.826.0.1.3680043.8.498.99{i}1717171"
        paths.append(
            write_dicom(
                folder / "Zyxwvut_Qwerty" / f"img{i}.dcm",
                _pixels(i),
                bits_stored=12 if i else 16,
                patient_id=PHI["patient_id"],
                patient_name=PHI["name"],
                patient_birth_date=PHI["birth_date"],
                accession_number=PHI["accession"],
                institution_name=PHI["institution"],
                study_date=PHI["study_date"],
                study_uid=PHI["study_uid"],
                series_uid=PHI["series_uid"],
                sop_uid=uid,
                extra={"InstanceNumber": i + 1},
            )
        )
        uids.append(_sop_uid(paths[-1]))
    uid = "1.2.826.0.1.3680043.8.498.5551919191"
    paths.append(
        write_dicom(
            folder / "other" / "img.dcm",
            _pixels(7),
            patient_id=SECOND_PATIENT["patient_id"],
            patient_name=SECOND_PATIENT["name"],
            accession_number=SECOND_PATIENT["accession"],
            institution_name=PHI["institution"],
            study_date="20221230",
            sop_uid=uid,
        )
    )
    uids.append(_sop_uid(paths[-1]))
    return paths, uids


def scan_folder(store, folder: Path) -> dict[Path, int]:
    from sqlalchemy import select

    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.store.models import Image

    for _ in scan(store, [folder]):
        pass
    with store.session() as s, s.begin():
        rows = s.execute(select(Image.path, Image.id, Image.usable, Image.reason)).all()
    bad = [(p, r) for p, _i, ok, r in rows if not ok]
    assert not bad, bad
    return {Path(p).resolve(): i for p, i, _ok, _r in rows}


@pytest.fixture
def library(tmp_path, store) -> Library:
    folder = tmp_path / "studies"
    paths, uids = write_phi_library(folder)
    ids = scan_folder(store, folder)
    return Library(folder, paths, uids, {p: ids[p.resolve()] for p in paths})


def insert_prediction(
    store,
    image_id: int,
    probs: np.ndarray,
    *,
    models: list[dict] | None = None,
    settings: dict | None = None,
    model_paths: list[Path] | None = None,
    key: str = "set-a",
) -> int:
    """Insert a model set (reused by key), a run and a prediction with ``probs``; make it the
    image's current prediction. Returns the prediction id."""
    from sqlalchemy import select

    from cxrlt_desktop.store.models import (
        Image,
        ModelSet,
        ModelVersion,
        Prediction,
        RunModel,
        ScoringRun,
        array_to_probs,
    )

    models = models or [
        {"sha256": "ab" * 32, "role": "task1-csra", "arch": "convnextv2_atto", "weight": 1.5}
    ]
    settings = settings or {"mode": "fast", "views": ["orig"], "normal_alpha": 0.5}

    def work(s):
        ms = s.scalar(select(ModelSet).where(ModelSet.key == key))
        if ms is None:
            ms = ModelSet(key=key, description={"models": models, "settings": settings})
            s.add(ms)
            s.flush()
        # A finished run: the store allows one open run per model set, and this one is done.
        now = datetime.now(UTC)
        run = ScoringRun(
            model_set_id=ms.id,
            settings=settings,
            mode=settings.get("mode"),
            started_at=now,
            finished_at=now,
        )
        s.add(run)
        s.flush()
        for m, path in zip(models, model_paths or [None] * len(models), strict=True):
            mv = ModelVersion(
                sha256=m["sha256"], role=m["role"], arch=m["arch"], path=str(path or "/nowhere")
            )
            existing = s.scalar(
                select(ModelVersion).where(
                    ModelVersion.sha256 == m["sha256"],
                    ModelVersion.role == m["role"],
                    ModelVersion.arch == m["arch"],
                )
            )
            if existing is None:
                s.add(mv)
                s.flush()
            else:
                mv = existing
            s.add(RunModel(run_id=run.id, model_version_id=mv.id, weight=m.get("weight")))
        img = s.get(Image, image_id)
        p = Prediction(
            image_id=image_id,
            run_id=run.id,
            model_set_id=ms.id,
            image_version=img.version,
            probs=array_to_probs(np.asarray(probs, dtype=np.float64)),
        )
        s.add(p)
        s.flush()
        img.current_prediction_id = p.id
        return p.id

    return store.write(work)


def probs_with(values: dict[str, float], default: float = 0.5) -> np.ndarray:
    p = np.full(len(ALL_CLASSES), default)
    for k, v in values.items():
        p[ALL_CLASSES.index(k)] = v
    return p


def all_bytes(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
