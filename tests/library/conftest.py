"""Fixtures for the library/store tests: a file store, synthetic studies, random-weight models.

Everything is real: a SQLite file (and a PostgreSQL database, for the tests that take
``store_url`` or ``any_store``), DICOMs written with engine.dicomwrite, a convnextv2_atto CSRA
checkpoint with random weights run by the real engine at 64 px in fast mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SIZE = 64


@pytest.fixture
def store(tmp_path):
    from cxrlt_desktop.store import open_store

    st = open_store(f"sqlite:///{(tmp_path / 'lib.db').as_posix()}")
    yield st
    st.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of a new, empty library on each dialect: a SQLite file, and a PostgreSQL
    database of its own (``postgres_url``: skipped without CXRLT_TEST_POSTGRES)."""
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def any_store(store_url):
    """The store at :func:`store_url`, migrated to head: the tests using it run on both
    dialects."""
    from cxrlt_desktop.store import open_store

    st = open_store(store_url)
    yield st
    st.close()


@pytest.fixture
def write_study():
    """write_study(folder, n, patient_id=..., study_uid=...) -> list of paths (256 x 256 CR)."""
    from pydicom.uid import generate_uid

    from engine.dicomwrite import write_dicom

    counter = {"seed": 0}

    def make(
        folder: Path,
        n: int = 2,
        *,
        patient_id: str = "PAT001",
        study_uid: str | None = None,
        study_date: str = "20240102",
        size: int = 256,
        **kw,
    ):
        folder.mkdir(parents=True, exist_ok=True)
        study_uid = study_uid or generate_uid()
        series_uid = generate_uid()
        paths = []
        for i in range(n):
            counter["seed"] += 1
            rng = np.random.default_rng(counter["seed"])
            yy, xx = np.mgrid[0:size, 0:size]
            px = (xx * 8 + yy * 4 + rng.integers(0, 400, (size, size))).astype(np.uint16)
            paths.append(
                write_dicom(
                    folder / f"im{i:03d}.dcm",
                    px,
                    patient_id=patient_id,
                    study_uid=study_uid,
                    series_uid=series_uid,
                    study_date=study_date,
                    extra={"InstanceNumber": i + 1},
                    **kw,
                )
            )
        return paths

    return make
