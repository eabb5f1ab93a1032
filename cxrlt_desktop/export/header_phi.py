"""What an image's own DICOM header says that matters to a de-identified export.

The store keeps a few identifying values per image (name, ID, birth date, accession number,
institution, dates, UIDs), but a note can quote anything in the header: the referring
physician, another ID, the address, the station. Before a note leaves in a de-identified
export, :func:`read_header_facts` reads the image's header again (no pixels) and collects

- every person name (every element of VR PN, at any depth, sequences included),
- every identifier, address, place and telephone value named in :data:`ID_KEYWORDS` and
  :data:`PLACE_KEYWORDS` (the identifying text attributes of the DICOM basic de-identification
  profile, PS3.15 Annex E),
- every date (VR DA, and the date part of DT) and every UID that is not a standard one,

and also what the header says about burned-in text (``BurnedInAnnotation``) and the SOP class,
for the PNG copies (see :func:`burned_in_reason`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Identifiers of the patient, the visit and the request (PS3.15 Annex E, text values).
ID_KEYWORDS = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "IssuerOfPatientID",
        "AccessionNumber",
        "StudyID",
        "AdmissionID",
        "ServiceEpisodeID",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
        "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest",
        "MedicalRecordLocator",
        "MedicalAlerts",
        "DeviceSerialNumber",
        "PatientTelephoneNumbers",
        "ReferringPhysicianTelephoneNumbers",
        "MilitaryRank",
    }
)
# Places: where the patient lives or was seen, and the machine that took the image.
PLACE_KEYWORDS = frozenset(
    {
        "PatientAddress",
        "ReferringPhysicianAddress",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "RegionOfResidence",
        "CurrentPatientLocation",
        "PatientInstitutionResidence",
        "BranchOfService",
    }
)
# Secondary Capture and the multi-frame Secondary Capture classes: converted or captured
# images (screenshots, digitised film, scanned documents) where burned-in text is common.
SECONDARY_CAPTURE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
    }
)
_STANDARD_UID_ROOT = "1.2.840.10008."  # SOP classes, transfer syntaxes: identify nothing
_MAX_VALUE_BYTES = 64 * 1024  # identifiers are short; a huge value is skipped, not read
_DEFER_SIZE = "1 MB"


@dataclass(frozen=True)
class HeaderFacts:
    """The identifying values of one header and its burned-in-text flag.

    Attributes
    ----------
    names : tuple of str
        Person names as DICOM writes them (``Family^Given^Middle^Prefix^Suffix``, ``=``
        between representations).
    ids : tuple of str
        Identifiers and telephone numbers (:data:`ID_KEYWORDS`).
    places : tuple of str
        Addresses, institutions, departments, station names (:data:`PLACE_KEYWORDS`).
    dates : tuple of str
        Dates as ``YYYYMMDD``.
    uids : tuple of str
        UIDs other than the standard ``1.2.840.10008.`` ones.
    burned_in : str or None
        ``BurnedInAnnotation`` upper-cased ("YES", "NO"), None when absent.
    sop_class_uid : str or None
    """

    names: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    places: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    uids: tuple[str, ...] = ()
    burned_in: str | None = None
    sop_class_uid: str | None = None


def read_header_facts(path: str | os.PathLike[str]) -> HeaderFacts:
    """Read a DICOM file's header (no pixels) and collect its :class:`HeaderFacts`.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        It is not a DICOM file pydicom can parse.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, defer_size=_DEFER_SIZE)
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on a damaged header
        raise ValueError(f"damaged DICOM header ({type(exc).__name__})") from None
    found: dict[str, list[str]] = {"names": [], "ids": [], "places": [], "dates": [], "uids": []}
    for keyword, vr, value in _walk(ds):
        for text in _texts(value):
            kind = _kind(keyword, vr, text)
            if kind is None:
                continue
            if kind == "dates":
                text = text[:8]
            found[kind].append(text)
    burned = ds.get("BurnedInAnnotation")
    sop_class = ds.get("SOPClassUID")
    return HeaderFacts(
        names=tuple(dict.fromkeys(found["names"])),
        ids=tuple(dict.fromkeys(found["ids"])),
        places=tuple(dict.fromkeys(found["places"])),
        dates=tuple(dict.fromkeys(found["dates"])),
        uids=tuple(dict.fromkeys(found["uids"])),
        burned_in=str(burned).strip().upper() if burned else None,
        sop_class_uid=str(sop_class).strip() if sop_class else None,
    )


def _kind(keyword: str, vr: str, text: str) -> str | None:
    """Which list a value belongs to, or None when it identifies nothing."""
    if vr == "PN":
        return "names"
    if keyword in ID_KEYWORDS:
        return "ids"
    if keyword in PLACE_KEYWORDS:
        return "places"
    if vr in ("DA", "DT"):
        return "dates" if len(text) >= 8 and text[:8].isdigit() else None
    if vr == "UI":
        return None if text.startswith(_STANDARD_UID_ROOT) else "uids"
    return None


def _walk(ds: Any) -> Iterator[tuple[str, str, Any]]:
    """(keyword, VR, value) of the elements worth reading, at any depth; the values of other
    elements (pixel-sized blobs, private data) are never converted."""
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    for tag in list(ds.keys()):
        if tag.is_private or tag.group == 0x7FE0:
            continue
        try:
            raw = ds.get_item(tag)
            keyword = keyword_for_tag(tag) or ""
            vr = getattr(raw, "VR", None) or dictionary_VR(tag)
        except Exception:  # noqa: BLE001 - unknown tag, odd element: nothing to take from it
            continue
        wanted = vr in ("SQ", "PN", "DA", "DT", "UI") or keyword in ID_KEYWORDS | PLACE_KEYWORDS
        if not wanted:
            continue
        length = getattr(raw, "length", 0) or 0
        if vr != "SQ" and length > _MAX_VALUE_BYTES:
            continue
        try:
            value = ds[tag].value
        except Exception:  # noqa: BLE001 - a value pydicom cannot decode: skipped
            continue
        if vr == "SQ":
            for item in value or ():
                yield from _walk(item)
        else:
            yield keyword, vr, value


def _texts(value: Any) -> Iterator[str]:
    """The non-empty strings of a (possibly multi-valued) element value."""
    from pydicom.multival import MultiValue

    if value is None:
        return
    if isinstance(value, (MultiValue, list, tuple)):
        for v in value:
            yield from _texts(v)
        return
    if isinstance(value, bytes):
        return
    text = str(value).strip(" \x00")
    if text:
        yield text


def burned_in_reason(facts: HeaderFacts | None, is_dicom: bool) -> str | None:
    """Why an image's pixels may show burned-in text (so a de-identified export leaves its PNG
    out), or None.

    - ``BurnedInAnnotation`` YES: the modality says text is burned in.
    - A Secondary Capture without ``BurnedInAnnotation``: captured or converted images
      (screenshots, digitised film with its label, scanned requests) carry burned-in text
      often enough that absence of the flag cannot be read as "no text".
    - Other DICOM images without the flag (CR and DX as acquired): copied. Acquisition
      devices do not burn patient text into the pixels as a rule, the attribute is optional
      for CR, and treating its absence as "yes" would leave out nearly every CR image.
    - PNG/JPEG/TIFF files have no header to say either way: copied, and README.txt counts them
      (they usually come from data sets that were de-identified before release).
    """
    if not is_dicom or facts is None:
        return None
    if facts.burned_in == "YES":
        return "burned-in text (BurnedInAnnotation YES)"
    if facts.burned_in is None and facts.sop_class_uid in SECONDARY_CAPTURE_CLASSES:
        return "secondary capture without BurnedInAnnotation: may show burned-in text"
    return None
