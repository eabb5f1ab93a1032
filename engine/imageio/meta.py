"""The header keywords the app reads (:data:`META_KEYWORDS`) and their JSON-able values, from a
DICOM data set or from a PNG/JPEG/TIFF header."""

from __future__ import annotations

import struct
from typing import Any

PHI_KEYWORDS = (
    "PatientName",
    "PatientBirthDate",
    "PatientID",
    "AccessionNumber",
    "InstitutionName",
)


# What a header read returns: identification, study, series and image attributes, stored by the
# library and shown by the viewer.
META_KEYWORDS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyDescription",
    "AccessionNumber",
    "InstitutionName",
    "SeriesInstanceUID",
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "SOPInstanceUID",
    "SOPClassUID",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PhotometricInterpretation",
    "TransferSyntaxUID",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PixelRepresentation",
    "StudyTime",
    "SeriesDescription",
    "SeriesNumber",
    "InstanceNumber",
    "PresentationIntentType",  # FOR PROCESSING images are marked and not flagged by default
)


def _jsonable(value: Any) -> Any:
    from pydicom.multival import MultiValue
    from pydicom.valuerep import PersonName

    if value is None:
        return None
    if isinstance(value, (MultiValue, list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, PersonName):
        text = str(value)
        return text or None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return None
    text = str(value)
    return text or None


def _slow_value(ds: Any, key: str) -> Any:
    """One keyword's value through pydicom's own conversion, JSON-able."""
    if key == "TransferSyntaxUID":
        value = ds.file_meta.get("TransferSyntaxUID")
    else:
        value = ds.get(key)
    try:
        return _jsonable(value)
    except Exception:  # noqa: BLE001 - a malformed value is reported as missing, not fatal
        return None


def dicom_meta_slow(ds: Any) -> dict[str, Any]:
    """Reference implementation of :func:`dicom_meta` (pydicom conversion for every value)."""
    meta = {key: _slow_value(ds, key) for key in META_KEYWORDS}
    if isinstance(meta.get("NumberOfFrames"), str):
        meta["NumberOfFrames"] = None
    return meta


_META_TAGS: list[tuple[str, int, str]] = []


# Character sets whose text decodes with one Python codec (no ISO 2022 code extensions).
_SIMPLE_CHARSETS = {
    "": "ascii",
    "ISO_IR 6": "ascii",
    "ISO_IR 192": "utf-8",
    "ISO_IR 100": "latin-1",
}


_TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC"})


_ASCII_VRS = frozenset({"UI", "CS", "DA", "TM", "DT", "AS"})


def _meta_tags() -> list[tuple[str, int, str]]:
    global _META_TAGS
    if not _META_TAGS:
        from pydicom.datadict import dictionary_VR, tag_for_keyword

        # Built aside and bound at once: decoder threads may call this concurrently.
        tags = []
        for key in META_KEYWORDS:
            tag = tag_for_keyword(key)
            assert tag is not None, key
            tags.append((key, tag, dictionary_VR(tag)))
        _META_TAGS = tags
    return _META_TAGS


def _split(text: str) -> Any:
    text = text.strip(" \x00")
    if not text:
        return None
    if "\\" in text:
        return [part.strip(" \x00") for part in text.split("\\")]
    return text


def _convert_raw(raw: Any, vr: str, codec: str | None) -> Any:
    """Convert a raw element's bytes the way pydicom would, for the VRs the header uses.

    Raises LookupError for anything it does not handle, so the caller falls back to pydicom.
    """
    value = raw.value
    if value is None or len(value) == 0:
        return None
    vr = raw.VR or vr
    if vr == "US":
        fmt = ("<" if raw.is_little_endian else ">") + "H" * (len(value) // 2)
        nums = struct.unpack(fmt, value[: 2 * (len(value) // 2)])
        return nums[0] if len(nums) == 1 else list(nums)
    if vr in _ASCII_VRS:
        return _split(value.decode("ascii"))
    if vr in ("IS", "DS"):
        text = _split(value.decode("ascii"))
        if text is None:
            return None
        conv = int if vr == "IS" else float
        return [conv(t) for t in text] if isinstance(text, list) else conv(text)
    if vr in _TEXT_VRS and codec is not None:
        return _split(value.decode(codec))
    raise LookupError(vr)


def dicom_meta(ds: Any) -> dict[str, Any]:
    """The META_KEYWORDS values of a header, JSON-able (None when absent or empty).

    Converting raw element bytes directly for the simple VRs halves the cost of a header read
    compared with pydicom's validating conversion (a folder scan reads thousands of headers);
    anything unusual (other character sets, already converted elements, odd VRs) goes through
    pydicom. ``dicom_meta_slow`` is the reference the tests compare with.
    """
    from pydicom.dataelem import RawDataElement

    charset = ds.get("SpecificCharacterSet")
    if charset is None:
        codec: str | None = "ascii"
    elif isinstance(charset, str):
        codec = _SIMPLE_CHARSETS.get(charset.strip())
    else:
        codec = None  # code extensions: pydicom decodes those
    meta: dict[str, Any] = {}
    for key, tag, vr in _meta_tags():
        if key == "TransferSyntaxUID":
            meta[key] = _slow_value(ds, key)
            continue
        raw = ds.get_item(tag)
        if raw is None:
            meta[key] = None
            continue
        if isinstance(raw, RawDataElement):
            try:
                meta[key] = _convert_raw(raw, vr, codec)
                continue
            except (LookupError, ValueError, UnicodeDecodeError, struct.error):
                pass
        meta[key] = _slow_value(ds, key)
    if isinstance(meta.get("NumberOfFrames"), (str, list)):
        meta["NumberOfFrames"] = None
    return meta


def meta_int(meta: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = meta.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def frame_count(meta: dict[str, Any]) -> int:
    return max(meta_int(meta, "NumberOfFrames", 1) or 1, 1)


def empty_meta() -> dict[str, Any]:
    return dict.fromkeys(META_KEYWORDS)


def raster_meta(info: dict[str, int | str]) -> dict[str, Any]:
    meta = empty_meta()
    channels = int(info["channels"])
    meta.update(
        Rows=int(info["rows"]),
        Columns=int(info["columns"]),
        BitsAllocated=int(info["bits"]),
        BitsStored=int(info["bits"]),
        SamplesPerPixel=1 if channels <= 2 else 3,
        PhotometricInterpretation="MONOCHROME2" if channels <= 2 else "RGB",
        NumberOfFrames=1,
    )
    return meta
