"""Right patient or nothing: a file replaced after the scan is not scored under the scanned
patient. Real files: synthetic CR studies, the RG1 radiograph (another patient) and the CT of
pydicom-data, the real scorer with the random-weight model, a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import shutil

import pydicom
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select

from cxrlt_desktop.library.identity import (
    CHANGED_SINCE_SCAN,
    FileChanged,
    ScannedFile,
    changed_since_scan,
    read_checked,
)
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.scoring import score_library
from cxrlt_desktop.store.models import Image, Patient, Prediction, ScoreFailure, Series, Study
from engine.imageio import read_header, read_source


def _testdata(name):
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip("pydicom-data is not installed")
    return path


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on PostgreSQL."""
    return any_store


def _scan(store, folder):
    for _ in scan(store, [folder]):
        pass


def _replace_keeping_size_and_mtime(path, **changes):
    """Rewrite the DICOM with other attribute values of the same length, then put its mtime
    back: only the header says it changed."""
    st = os.stat(path)
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        assert len(str(value)) == len(str(getattr(ds, key))), key
        setattr(ds, key, value)
        if key == "SOPInstanceUID":
            ds.file_meta.MediaStorageSOPInstanceUID = value
    ds.save_as(path)
    assert os.path.getsize(path) == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _other_uid(uid: str) -> str:
    """A UID of the same length that differs in its last digit."""
    return uid[:-1] + ("1" if uid[-1] != "1" else "2")


def _swap_other_patient(path):
    shutil.copyfile(_testdata("RG1_UNCR.dcm"), path)


def _swap_ct(path):
    shutil.copyfile(_testdata("CT_small.dcm"), path)


def _touch(path):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def _new_sop_uid(path):
    uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    _replace_keeping_size_and_mtime(path, SOPInstanceUID=_other_uid(uid))


def _new_patient_id(path):
    _replace_keeping_size_and_mtime(path, PatientID="PATZ")


CHANGES = {
    "another patient's radiograph": (_swap_other_patient, "another SOPInstanceUID"),
    "a CT": (_swap_ct, "no longer a usable chest radiograph: not a radiograph (Modality=CT"),
    "touched": (_touch, "modification time changed"),
    "new SOPInstanceUID, same size and mtime": (_new_sop_uid, "another SOPInstanceUID"),
    "new PatientID, same size and mtime": (_new_patient_id, "another PatientID"),
}


@pytest.fixture
def two_patients(store, tmp_path, write_study):
    a = write_study(tmp_path / "lib" / "a", 2, patient_id="PATA")
    b = write_study(tmp_path / "lib" / "b", 1, patient_id="PATB")
    _scan(store, tmp_path / "lib")
    return a, b


def _image(s, path):
    return s.scalars(select(Image).where(Image.path == str(path))).one()


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_file_changed_after_the_scan_is_not_scored(store, two_patients, predictor, change):
    (a1, a2), (b1,) = two_patients
    mutate, detail = CHANGES[change]
    mutate(a1)
    progs = list(score_library(store, predictor))
    assert progs[-1].finished and progs[-1].done == 2 and progs[-1].failed == 1
    errors = [e for p in progs for e in p.last_errors]
    assert len(errors) == 1 and errors[0][0] == str(a1)
    assert errors[0][1].startswith(CHANGED_SINCE_SCAN) and detail in errors[0][1]
    with store.session() as s, s.begin():
        changed = _image(s, a1)
        assert s.scalars(select(Prediction).where(Prediction.image_id == changed.id)).all() == []
        assert changed.current_prediction_id is None
        fail = s.scalars(select(ScoreFailure).where(ScoreFailure.image_id == changed.id)).one()
        assert fail.reason == errors[0][1] and fail.image_version == changed.version
        for other in (a2, b1):
            assert _image(s, other).current_prediction_id is not None
        study = s.get(Study, s.get(Series, changed.series_id).study_id)
        assert (study.n_images, study.n_scored, study.n_failed) == (2, 1, 1)


def test_after_the_rescan_the_swapped_in_radiograph_is_scored_under_its_own_patient(
    store, two_patients, predictor
):
    (a1, _a2), _ = two_patients
    _swap_other_patient(a1)
    list(score_library(store, predictor))
    _scan(store, a1.parent.parent)
    progs = list(score_library(store, predictor))
    assert progs[-1].done == 1 and progs[-1].failed == 0
    with store.session() as s, s.begin():
        now = _image(s, a1)
        patient = s.get(Patient, s.get(Study, s.get(Series, now.series_id).study_id).patient_id)
        assert patient.patient_id == "9RG1" and now.current_prediction_id is not None
        # The scanned image of PATA keeps no prediction of the other patient's pixels.
        old = s.scalars(select(Image).where(Image.path.startswith(f"{a1} (replaced"))).one()
        assert old.missing and old.current_prediction_id is None
        assert s.scalars(select(Prediction).where(Prediction.image_id == old.id)).all() == []


@pytest.mark.parametrize(
    "change", ["touched", "new SOPInstanceUID, same size and mtime", "a CT"], ids=str
)
def test_the_rescan_the_message_asks_for_brings_the_record_up_to_date(
    store, two_patients, predictor, change
):
    """Even a file whose size and mtime look unchanged is read again by the rescan."""
    (a1, _a2), _ = two_patients
    CHANGES[change][0](a1)
    list(score_library(store, predictor))
    _scan(store, a1.parent.parent)
    progs = list(score_library(store, predictor))
    with store.session() as s, s.begin():
        now = _image(s, a1)
        fresh = read_header(a1)
        assert changed_since_scan(ScannedFile.of(now), fresh) is None
        if change == "a CT":
            assert not now.usable and progs[-1].done == 0
        else:
            assert now.current_prediction_id is not None and progs[-1].done == 1
        assert progs[-1].failed == 0


def test_read_checked_decodes_the_scanned_file_and_refuses_a_swap(store, two_patients):
    (a1, _a2), _ = two_patients
    with store.session() as s, s.begin():
        scanned = ScannedFile.of(_image(s, a1))
    assert read_checked(scanned, read_source).shape == (256, 256)
    _swap_other_patient(a1)
    with pytest.raises(FileChanged) as err:
        read_checked(scanned, read_source)
    assert str(err.value).startswith(f"{a1}: {CHANGED_SINCE_SCAN} (size ")
    assert "another PatientID" in err.value.reason


def test_a_file_replaced_while_it_is_decoded_is_refused(store, two_patients):
    (a1, _a2), _ = two_patients
    with store.session() as s, s.begin():
        scanned = ScannedFile.of(_image(s, a1))

    def read_then_replaced(path):
        pixels = read_source(path)
        _swap_other_patient(path)  # between the header check and the end of the decode
        return pixels

    with pytest.raises(FileChanged, match="replaced while it was read"):
        read_checked(scanned, read_then_replaced)


def test_a_png_is_checked_by_size_and_mtime(store, tmp_path):
    import cv2
    import numpy as np

    folder = tmp_path / "pngs"
    folder.mkdir()
    path = folder / "x.png"
    cv2.imwrite(str(path), np.full((300, 300), 90, np.uint8))
    _scan(store, folder)
    with store.session() as s, s.begin():
        scanned = ScannedFile.of(_image(s, path))
    assert not scanned.is_dicom and set(scanned.identity) == {None}
    assert changed_since_scan(scanned, read_header(path)) is None
    shutil.copyfile(_testdata("RG1_UNCR.dcm"), path)  # a DICOM under the PNG's name
    reason = changed_since_scan(scanned, read_header(path))
    assert reason.startswith(CHANGED_SINCE_SCAN) and "now a DICOM file" in reason
