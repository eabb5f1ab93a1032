"""engine.dicomwrite round trips: what the tests and the demo write is what a reader gets back."""

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from engine.dicomwrite import write_dicom


@pytest.mark.parametrize(
    "ts",
    [
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
        RLELossless,
        JPEG2000Lossless,
    ],
)
@pytest.mark.parametrize("dtype,bits", [(np.uint8, 8), (np.uint16, 12), (np.uint16, 16)])
def test_round_trip(tmp_path, ts, dtype, bits):
    rng = np.random.default_rng(bits)
    pixels = rng.integers(0, 2**bits, size=(64, 80)).astype(dtype)
    path = write_dicom(tmp_path / "x.dcm", pixels, transfer_syntax=ts, bits_stored=bits)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ts
    assert ds.BitsStored == bits
    np.testing.assert_array_equal(ds.pixel_array, pixels)


def test_given_uids_are_kept(tmp_path):
    pixels = np.zeros((32, 32), np.uint16)
    path = write_dicom(
        tmp_path / "u.dcm", pixels, sop_uid="1.2.3.4", study_uid="1.2.3", series_uid="1.2.3.5"
    )
    ds = pydicom.dcmread(path)
    assert ds.SOPInstanceUID == "1.2.3.4" == ds.file_meta.MediaStorageSOPInstanceUID
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == ("1.2.3", "1.2.3.5")
