"""Reading a DICOM header without its pixels, and what it says about the pixel data element
(present, absent, float, cut short)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.imageio.records import ImageReadError, one_line

_DEFLATED = "1.2.840.10008.1.2.1.99"


@dataclass
class PixelElement:
    """What the header pass learned about the pixel data element."""

    state: str  # "present", "absent", "float", "unknown", "cut" (file ends inside the header)
    length: int | None = None  # None: encapsulated (undefined length) or unknown
    available: int | None = None  # bytes left in the file after the element header


# Values longer than this are skipped, not read: a 300 MB private element costs a seek.
DEFER_SIZE = "1 MB"


def quiet_pydicom() -> None:
    """Value-validation warnings off: the input layer reports one reason per file instead of
    pydicom warning (and logging) once per odd value, which floods a terminal on a bad folder."""
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE


def read_dicom_header(path: Path, preamble: bool) -> tuple[Any, PixelElement]:
    import pydicom

    quiet_pydicom()
    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(
                fp, stop_before_pixels=True, force=not preamble, defer_size=DEFER_SIZE
            )
            pixel = _peek_pixel_element(fp, ds, os.fstat(fp.fileno()).st_size)
    except PermissionError:
        raise ImageReadError(path, "cannot open: permission denied") from None
    except (pydicom.errors.InvalidDicomError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ImageReadError(path, f"damaged DICOM header: {one_line(exc)}") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on garbage
        raise ImageReadError(path, f"damaged DICOM header: {one_line(exc)}") from None
    if not preamble and not _is_sensible_dataset(ds):
        raise ImageReadError(
            path, "not an image: not DICOM (no 'DICM' marker and no recognisable DICOM elements)"
        )
    ensure_transfer_syntax(ds)
    return ds, pixel


def _is_sensible_dataset(ds: Any) -> bool:
    # force=True parses anything; a real data set has some of these type-1 identifying elements.
    keys = ("SOPClassUID", "SOPInstanceUID", "Modality", "StudyInstanceUID", "Rows", "PatientID")
    return sum(1 for k in keys if k in ds) >= 2


def ensure_transfer_syntax(ds: Any) -> None:
    # Files without file meta have no (0002,0010); pixel decoding needs it, so derive it from the
    # encoding pydicom detected.
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        if implicit:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian
        else:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _peek_pixel_element(fp: Any, ds: Any, file_size: int) -> PixelElement:
    """Look at the element where ``stop_before_pixels`` stopped, without reading pixels."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts == _DEFLATED:
        return PixelElement("unknown")  # pydicom inflated into its own buffer; fp says nothing
    pos = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        # End of file: a complete data set without pixels, or one cut short inside the header
        # (pydicom reads a short last value or drops a partial element without complaint).
        if head or _last_element_cut(ds, pos, file_size):
            return PixelElement("cut", available=file_size)
        return PixelElement("absent")
    implicit, little = ds.original_encoding
    endian = "<" if little else ">"
    group, elem = struct.unpack(endian + "HH", head[:4])
    if group != 0x7FE0 or elem not in (0x0008, 0x0009, 0x0010):
        return PixelElement("absent")
    if elem != 0x0010:
        return PixelElement("float")
    if implicit:
        (length,) = struct.unpack(endian + "I", head[4:8])
        start = pos + 8
    elif head[4:6] in (b"OB", b"OW", b"UN", b"OV", b"OL", b"OD", b"OF") and len(head) >= 12:
        (length,) = struct.unpack(endian + "I", head[8:12])
        start = pos + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        start = pos + 8
    if length == 0xFFFFFFFF:
        return PixelElement("present", None, file_size - start)
    return PixelElement("present", length, file_size - start)


def _last_element_cut(ds: Any, pos: int, file_size: int) -> bool:
    """Whether the data set is empty, its last element's value runs past the end of the file, or
    bytes too few for another element follow it (``pos``: where the header read stopped)."""
    if len(ds) == 0:
        return True
    last = ds.get_item(max(ds.keys()))
    tell = getattr(last, "value_tell", None)
    length = getattr(last, "length", None)
    if tell is None or length is None or length == 0xFFFFFFFF:
        return False  # already converted, or a sequence of undefined length: cannot tell
    return tell + length > file_size or tell + length < pos
