"""Write synthetic DICOM radiographs: used by tests, benchmarks and the demo data.

Not a general DICOM writer: one grey frame, the attributes a CR/DX chest image carries, and an
optional compressed transfer syntax (encoded with pydicom's encoder plugins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

SOP_CLASS_FOR_MODALITY = {
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "CT": CTImageStorage,
}


def make_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    modality: str = "CR",
    patient_id: str = "TEST0001",
    patient_name: str = "Doe^Jane",
    patient_birth_date: str = "19600101",
    patient_sex: str = "F",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    study_date: str = "20240102",
    study_description: str = "CHEST PA",
    accession_number: str = "ACC0001",
    institution_name: str = "General Hospital",
    body_part: str | None = "CHEST",
    view_position: str | None = "PA",
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    pixel_spacing: tuple[float, float] | None = (0.15, 0.15),
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """A dataset holding ``pixels`` (2-D uint8/uint16/int16 array, or HxWx3 uint8 RGB).

    ``rescale`` is (slope, intercept); ``window`` is (center, width).
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = SOP_CLASS_FOR_MODALITY.get(modality, ComputedRadiographyImageStorage)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = patient_sex
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.StudyDescription = study_description
    ds.AccessionNumber = accession_number
    ds.InstitutionName = institution_name
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if view_position is not None:
        ds.ViewPosition = view_position
    if pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(pixel_spacing)
    if rescale is not None:
        ds.RescaleSlope = rescale[0]
        ds.RescaleIntercept = rescale[1]
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter = window[0]
        ds.WindowWidth = window[1]
    if pixels.ndim == 3:
        ds.set_pixel_data(
            pixels, photometric_interpretation="RGB", bits_stored=8, generate_instance_uid=False
        )
    else:
        bits = bits_stored or pixels.dtype.itemsize * 8
        ds.set_pixel_data(
            pixels,
            photometric_interpretation=photometric,
            bits_stored=bits,
            generate_instance_uid=False,
        )
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    return ds


def write_dicom(
    path: str | Path,
    pixels: np.ndarray,
    *,
    transfer_syntax: str | UID = ExplicitVRLittleEndian,
    encoding_kwargs: dict[str, Any] | None = None,
    **header: Any,
) -> Path:
    """Write ``pixels`` as a DICOM Part 10 file, compressed when ``transfer_syntax`` says so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = make_dataset(pixels, **header)
    ts = UID(transfer_syntax)
    if ts.is_compressed:
        ds.compress(ts, **(encoding_kwargs or {}))
    elif ts != ExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ts
        if not ts.is_little_endian and ds.BitsAllocated > 8:
            # pydicom writes the PixelData bytes as given: swap them for a big-endian file.
            swapped = np.frombuffer(ds.PixelData, dtype=f"<u{ds.BitsAllocated // 8}").byteswap()
            ds.PixelData = swapped.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


__all__ = ["make_dataset", "write_dicom", "pydicom"]
