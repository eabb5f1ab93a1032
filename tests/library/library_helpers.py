"""Helpers of the library tests: bad inputs of the input-layer issue, CLI command lines."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from pydicom.uid import JPEG2000Lossless

from engine.dicomwrite import make_dataset, write_dicom

SIZE = 64


def write_bad_inputs(folder: Path) -> dict[str, str]:
    """Write the bad files; returns {file name: expected start of the reason} for files the scan
    rejects, plus "trunc_j2k.dcm": None (header intact; fails when decoded for scoring)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    px = rng.integers(0, 4000, (300, 300)).astype(np.uint16)
    (folder / "zero.dcm").write_bytes(b"")
    (folder / "text.dcm").write_text("this is not a DICOM file\n" * 20)
    write_dicom(folder / "ct.dcm", px, modality="CT", body_part="CHEST")
    p = write_dicom(folder / "trunc.dcm", px, bits_stored=12)
    p.write_bytes(p.read_bytes()[:-5000])
    ds = make_dataset(px)
    del ds.PixelData
    for key in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation"):
        delattr(ds, key)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.Modality = "SR"
    ds.save_as(folder / "report.dcm", enforce_file_format=True)
    j = write_dicom(folder / "trunc_j2k.dcm", px, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    data = j.read_bytes()
    j.write_bytes(data[: len(data) * 2 // 3])
    return {
        "zero.dcm": "empty file",
        "text.dcm": "",
        "ct.dcm": "not a radiograph",
        "trunc.dcm": "truncated pixel data",
        "report.dcm": "no pixel data: not an image",
        "trunc_j2k.dcm": None,
    }


def model_args(ckpt: Path, batch: int = 2) -> list[str]:
    """score-library options for the random model (also used by subprocess tests)."""
    return [
        "--task1-checkpoint",
        str(ckpt),
        "--task1-arch",
        "convnextv2_atto",
        "--mode",
        "fast",
        "--image-size",
        str(SIZE),
        "--device",
        "cpu",
        "--batch-size",
        str(batch),
    ]


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cxrlt_desktop", *args]
