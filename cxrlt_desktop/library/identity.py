"""Is the file at an image's path still the one the scan recorded? Right patient or nothing.

Everything the library attributes to a patient (a prediction, the image the viewer shows, an
exported copy) comes from decoding the file at the image's path *now*, while the patient, study
and series it is filed under come from the header the scan read *then*. A file replaced in
between (another patient's image copied over it, a CT exported to the same name, a re-export
with new UIDs) would be scored and shown under the wrong patient. So before a file is decoded
for any of these, its fresh header is compared with the scanned record
(:func:`changed_since_scan`), and after the decode its size and modification time are checked
once more (a replacement while it was being read). On any difference the file is refused with
``"file changed since the scan: rescan the folder (<what differs>)"``.

What counts as changed:

- the size or the modification time (exact: the scan stores ``st_mtime`` as a float, as this
  check reads it). A copy that keeps the content but touches the mtime is refused too: proving
  that two versions hold the same pixels means hashing the whole file on every decode, and the
  scanner itself re-reads any file whose size or mtime changed, so the rescan the message asks
  for brings the record up to date and the image is scored again;
- DICOM or not (a PNG written over a DICOM);
- the identifiers that file the image: SOPInstanceUID, PatientID, StudyInstanceUID and
  SeriesInstanceUID (compared as the header reader returns them; the message names the
  attribute, never its value, which may be PHI);
- the chest-radiograph check: the fresh header must still describe a usable chest radiograph.

:class:`ScannedFile` is the record (from an ``image`` row: :meth:`ScannedFile.of`, or by id:
:func:`scanned_file`); :func:`read_checked` is the one call the scorer, the viewer and the export
use: header check, decode, re-check.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.imageio import HeaderInfo, ImageReadError

CHANGED_SINCE_SCAN = "file changed since the scan: rescan the folder"

# Header attributes that decide where an image is filed (patient, study, series, image).
IDENTITY_KEYWORDS = ("SOPInstanceUID", "PatientID", "StudyInstanceUID", "SeriesInstanceUID")

T = TypeVar("T")


class FileChanged(ImageReadError):
    """The file is not the one the scan recorded; ``reason`` starts with
    :data:`CHANGED_SINCE_SCAN` and says what differs; ``str(e)`` is ``"<path>: <reason>"``."""


def _text(value: Any) -> str | None:
    """A header value as the scan files it (lists joined with backslashes, stripped)."""
    if value is None:
        return None
    if isinstance(value, list):
        value = "\\".join(str(x) for x in value)
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class ScannedFile:
    """What the scan recorded about one image's file.

    ``identity`` holds the values of :data:`IDENTITY_KEYWORDS` from the scanned header (None
    for a keyword the file did not have, and for every keyword of a PNG/JPEG/TIFF file).
    """

    path: str
    size: int
    mtime: float
    is_dicom: bool
    usable: bool
    identity: tuple[str | None, ...]

    @classmethod
    def of(cls, image: Any) -> ScannedFile:
        """The record of an ``image`` row (or anything with its ``path``, ``size``, ``mtime``,
        ``is_dicom``, ``usable`` and ``meta``)."""
        meta = image.meta or {}
        return cls(
            path=image.path,
            size=int(image.size),
            mtime=float(image.mtime),
            is_dicom=bool(image.is_dicom),
            usable=bool(image.usable),
            identity=tuple(_text(meta.get(k)) for k in IDENTITY_KEYWORDS),
        )


def scanned_file(store: Any, image_id: int) -> ScannedFile | None:
    """The scanned record of an image (None when the store has no such image)."""
    from cxrlt_desktop.store.models import Image

    with store.session() as s, s.begin():
        image = s.get(Image, image_id)
        return None if image is None else ScannedFile.of(image)


def differences(scanned: ScannedFile, header: HeaderInfo) -> list[str]:
    """What differs between the scanned record and a fresh header (empty: the same file)."""
    out: list[str] = []
    if header.size != scanned.size:
        out.append(f"size {scanned.size} -> {header.size} bytes")
    if header.mtime != scanned.mtime:
        out.append("modification time changed")
    if header.is_dicom != scanned.is_dicom:
        out.append("no longer a DICOM file" if scanned.is_dicom else "now a DICOM file")
    else:
        fresh = tuple(_text(header.meta.get(k)) for k in IDENTITY_KEYWORDS)
        out.extend(
            f"another {k}"
            for k, old, new in zip(IDENTITY_KEYWORDS, scanned.identity, fresh, strict=True)
            if old != new
        )
    if scanned.usable and not header.ok:
        out.append(f"no longer a usable chest radiograph: {header.reason or 'unusable'}")
    return out


def changed_since_scan(scanned: ScannedFile, header: HeaderInfo) -> str | None:
    """The reason to refuse the file (:data:`CHANGED_SINCE_SCAN` and what differs), or None
    when the fresh header describes the file the scan recorded."""
    diff = differences(scanned, header)
    return f"{CHANGED_SINCE_SCAN} ({'; '.join(diff)})" if diff else None


def check_header(scanned: ScannedFile) -> HeaderInfo:
    """Read the file's header now and compare it with the record.

    Raises
    ------
    FileChanged
        The file is not the scanned one (the message says what differs).
    """
    from engine.imageio import read_header

    header = read_header(scanned.path)
    reason = changed_since_scan(scanned, header)
    if reason is not None:
        raise FileChanged(scanned.path, reason)
    return header


def check_unchanged_after(scanned: ScannedFile) -> None:
    """After a decode: the size and mtime are still the scanned ones (the file was not replaced
    while it was read). Raises :class:`FileChanged`."""
    try:
        st = os.stat(scanned.path)
        now: tuple[int, float] | None = (st.st_size, st.st_mtime)
    except OSError:
        now = None
    if now != (scanned.size, scanned.mtime):
        raise FileChanged(scanned.path, f"{CHANGED_SINCE_SCAN} (replaced while it was read)")


def read_checked(scanned: ScannedFile, read: Callable[[Path], T]) -> T:
    """Decode the scanned file with ``read`` (e.g. ``engine.imageio.read_source`` or
    ``read_display``) only if it is still the file the scan recorded, before and after.

    Raises
    ------
    FileChanged
        The file changed since the scan (nothing decoded from it may be used).
    ImageReadError
        ``read`` could not decode it.
    """
    check_header(scanned)
    out = read(Path(scanned.path))
    check_unchanged_after(scanned)
    return out


__all__ = [
    "CHANGED_SINCE_SCAN",
    "IDENTITY_KEYWORDS",
    "FileChanged",
    "ScannedFile",
    "changed_since_scan",
    "check_header",
    "check_unchanged_after",
    "differences",
    "read_checked",
    "scanned_file",
]
