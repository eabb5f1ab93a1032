"""Helpers of the DICOM node tests."""

from __future__ import annotations

from pathlib import Path


def sample(name: str) -> Path:
    """A pydicom-data file (real radiographs: RG1_UNCR.dcm, RG1_J2KR.dcm, ...)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom-data file {name} is missing"
    return Path(path)
