"""Chest-radiograph input: DICOM / PNG / JPEG / TIFF files to arrays, or a clear reason why not.

Three entry points, all keyed by a path:

- :func:`read_header` reads metadata only (DICOM with ``stop_before_pixels``) and decides whether the
  file is a usable chest radiograph. It never raises for a bad file.
- :func:`read_source` decodes the *source array* the models consume (issue 2, item 5c): what a
  PadChest-style 16-bit PNG export holds.
- :func:`read_display` decodes the *display* form (modality values, default window, presets).
  :func:`read_image` decodes once and returns header, source and display together.

Every failure is an :class:`ImageReadError` whose text is ``"<path>: <one-line reason>"``.
Decoder plugins (all permissively licensed; see docs/io.md): pylibjpeg-openjpeg for JPEG 2000 and
HTJ2K, pyjpegls for JPEG-LS, pylibjpeg-rle for RLE, python-gdcm for JPEG lossless and as a fallback,
Pillow for JPEG baseline/extended when GDCM fails. The GPLv3 pylibjpeg-libjpeg is not used.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import _imagefmt
from engine._imagefmt import FormatError

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "META_KEYWORDS",
    "PHI_KEYWORDS",
    "DecodedImage",
    "DisplayImage",
    "HeaderInfo",
    "ImageReadError",
    "WalkProblem",
    "apply_window",
    "iter_image_files",
    "read_display",
    "read_header",
    "read_image",
    "read_source",
]

DEFAULT_MAX_IMAGE_BYTES = 512 * 2**20

PHI_KEYWORDS = (
    "PatientName",
    "PatientBirthDate",
    "PatientID",
    "AccessionNumber",
    "InstitutionName",
)

# Issue 2 item 5d, then a few extras the library and the viewer use (SamplesPerPixel ... InstanceNumber).
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
)

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR"})
CAPTURE_MODALITIES = frozenset({"SC", "OT"})
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "PORT CHEST"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL"})
MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
COLOUR = frozenset(
    {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420", "PALETTE COLOR"}
)
MIN_SIDE = 256

# Which installed plugin decodes which transfer syntax first (pydicom falls back to the others).
_PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.90": ("pylibjpeg",),  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": ("pylibjpeg",),  # JPEG 2000
    "1.2.840.10008.1.2.4.201": ("pylibjpeg",),  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": ("pylibjpeg",),  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": ("pylibjpeg",),  # HTJ2K
    "1.2.840.10008.1.2.4.80": ("pyjpegls",),  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": ("pyjpegls",),  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),  # RLE
    "1.2.840.10008.1.2.4.50": ("gdcm", "pillow"),  # JPEG baseline
    "1.2.840.10008.1.2.4.51": ("gdcm", "pillow"),  # JPEG extended
    "1.2.840.10008.1.2.4.57": ("gdcm",),  # JPEG lossless
    "1.2.840.10008.1.2.4.70": ("gdcm",),  # JPEG lossless SV1
}
_DEFLATED = "1.2.840.10008.1.2.1.99"


class ImageReadError(Exception):
    """A file that cannot be read as an image; ``str(e) == f"{path}: {reason}"``."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class HeaderInfo:
    """Metadata of one file and whether it is a usable chest radiograph.

    ``meta`` maps every keyword of :data:`META_KEYWORDS` to a JSON-able value (None when absent).
    ``format`` is "dicom", "png", "jpeg", "tiff" or None when the content is not recognised
    (an addition to docs/INTERFACES.md).
    """

    path: Path
    ok: bool
    reason: str | None
    warnings: list[str]
    meta: dict[str, Any]
    is_dicom: bool
    size: int
    mtime: float
    format: str | None = None


@dataclass
class DisplayImage:
    """What the viewer shows.

    ``pixels`` is uint8 at the default window (already inverted when ``invert``); ``modality``
    holds the modality-LUT values (float32) for readout and re-windowing with
    :func:`apply_window`; ``window`` is (center, width) in modality units; ``presets`` lists
    (name, center, width); ``invert`` is True for MONOCHROME1 or Presentation LUT Shape INVERSE.
    """

    pixels: np.ndarray
    modality: np.ndarray
    window: tuple[float, float]
    presets: list[tuple[str, float, float]]
    invert: bool


@dataclass
class DecodedImage:
    """Header, source array and display form of one file, from a single decode."""

    header: HeaderInfo
    source: np.ndarray
    display: DisplayImage


@dataclass(frozen=True)
class WalkProblem:
    """A path met during a folder walk that is not a file to read (loop, unlistable, missing)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


# ----------------------------------------------------------------------------------------------
# windowing


def apply_window(
    modality: np.ndarray, center: float, width: float, invert: bool = False
) -> np.ndarray:
    """Window modality values to uint8 with the DICOM linear VOI function.

    PS3.3 C.11.2.1.2.1: ``y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255``, clipped to 0..255; a
    width of 1 or less is a threshold at ``c - 0.5``. ``invert`` flips the result (255 - y), as
    MONOCHROME1 and Presentation LUT Shape INVERSE require after the VOI step.

    Parameters
    ----------
    modality : np.ndarray
        Modality-LUT values (any real dtype).
    center, width : float
        Window center and width in the same units.
    invert : bool
        Invert after windowing.

    Returns
    -------
    np.ndarray
        uint8 array of the same shape.
    """
    x = np.asarray(modality, dtype=np.float32)
    center = float(center)
    width = float(width)
    if width <= 1.0:
        y = np.where(x > center - 0.5, np.float32(255.0), np.float32(0.0))
    else:
        y = x - np.float32(center - 0.5)
        y *= np.float32(255.0 / (width - 1.0))
        y += np.float32(127.5)
        np.clip(y, 0.0, 255.0, out=y)
    out = np.rint(y).astype(np.uint8)
    if invert:
        np.subtract(255, out, out=out)
    return out


def _percentile_window(values: np.ndarray) -> tuple[float, float]:
    # A subsample is enough for percentiles and keeps this cheap on 4k x 4k images.
    step = max(1, int(np.sqrt(values.size / 250_000)))
    sample = values[::step, ::step]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    return (float(lo) + float(hi)) / 2.0, max(float(hi) - float(lo), 1.0)


def _full_range_window(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    return (lo + hi) / 2.0, max(hi - lo, 1.0)


# ----------------------------------------------------------------------------------------------
# file access


def _stat_file(path: Path) -> os.stat_result:
    """Stat ``path`` following links, with a one-line reason for everything that is not a file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageReadError(
                path,
                f"cannot open: broken symbolic link (target {os.readlink(path)!s} does not exist)",
            ) from None
        raise ImageReadError(path, "cannot open: no such file") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(path, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(path, "not a regular file (device, socket or pipe)")
    return st


def _read_head(path: Path, n: int = 1024) -> bytes:
    try:
        with open(path, "rb") as fp:
            return fp.read(n)
    except PermissionError:
        raise ImageReadError(path, "cannot open: permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open: {exc.strerror or exc}") from None


def _identify(path: Path) -> tuple[os.stat_result, str, bool, bytes]:
    st = _stat_file(path)
    if st.st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    head = _read_head(path)
    try:
        kind, preamble = _imagefmt.sniff(head)
    except FormatError as exc:
        raise ImageReadError(path, str(exc)) from None
    return st, kind, preamble, head


# ----------------------------------------------------------------------------------------------
# DICOM header


@dataclass
class _PixelElement:
    """What the header pass learned about the pixel data element."""

    state: str  # "present", "absent", "float", "unknown", "cut" (file ends inside the header)
    length: int | None = None  # None: encapsulated (undefined length) or unknown
    available: int | None = None  # bytes left in the file after the element header


def _read_dicom_header(path: Path, preamble: bool) -> tuple[Any, _PixelElement]:
    import pydicom

    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=not preamble)
            pixel = _peek_pixel_element(fp, ds, os.fstat(fp.fileno()).st_size)
    except PermissionError:
        raise ImageReadError(path, "cannot open: permission denied") from None
    except (pydicom.errors.InvalidDicomError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ImageReadError(path, f"damaged DICOM header: {_one_line(exc)}") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on garbage
        raise ImageReadError(path, f"damaged DICOM header: {_one_line(exc)}") from None
    if not preamble and not _is_sensible_dataset(ds):
        raise ImageReadError(
            path, "not an image: not DICOM (no 'DICM' marker and no recognisable DICOM elements)"
        )
    _ensure_transfer_syntax(ds)
    return ds, pixel


def _is_sensible_dataset(ds: Any) -> bool:
    # force=True parses anything; a real data set has some of these type-1 identifying elements.
    keys = ("SOPClassUID", "SOPInstanceUID", "Modality", "StudyInstanceUID", "Rows", "PatientID")
    return sum(1 for k in keys if k in ds) >= 2


def _ensure_transfer_syntax(ds: Any) -> None:
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


def _peek_pixel_element(fp: Any, ds: Any, file_size: int) -> _PixelElement:
    """Look at the element where ``stop_before_pixels`` stopped, without reading pixels."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts == _DEFLATED:
        return _PixelElement("unknown")  # pydicom inflated into its own buffer; fp says nothing
    pos = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        # End of file: a complete data set without pixels, or one cut short inside the header
        # (pydicom reads a short last value or drops a partial element without complaint).
        if head or _last_element_cut(ds, pos, file_size):
            return _PixelElement("cut", available=file_size)
        return _PixelElement("absent")
    implicit, little = ds.original_encoding
    endian = "<" if little else ">"
    group, elem = struct.unpack(endian + "HH", head[:4])
    if group != 0x7FE0 or elem not in (0x0008, 0x0009, 0x0010):
        return _PixelElement("absent")
    if elem != 0x0010:
        return _PixelElement("float")
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
        return _PixelElement("present", None, file_size - start)
    return _PixelElement("present", length, file_size - start)


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


# pydicom's wrapper around the plugins' own errors.
_ALL_PLUGINS = re.compile(r"^Unable to decode as exceptions were raised by all available plugins: ")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r" at 0x[0-9a-fA-F]+>", ">", text)  # object reprs: no memory addresses
    return text if len(text) <= 300 else text[:297] + "..."


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


def _dicom_meta_slow(ds: Any) -> dict[str, Any]:
    """Reference implementation of :func:`_dicom_meta` (pydicom conversion for every value)."""
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
    if vr == "IS" or vr == "DS":
        text = _split(value.decode("ascii"))
        if text is None:
            return None
        conv = int if vr == "IS" else float
        return [conv(t) for t in text] if isinstance(text, list) else conv(text)
    if vr in _TEXT_VRS and codec is not None:
        return _split(value.decode(codec))
    raise LookupError(vr)


def _dicom_meta(ds: Any) -> dict[str, Any]:
    """The META_KEYWORDS values of a header, JSON-able (None when absent or empty).

    Converting raw element bytes directly for the simple VRs halves the cost of a header read
    compared with pydicom's validating conversion (a folder scan reads thousands of headers);
    anything unusual (other character sets, already converted elements, odd VRs) goes through
    pydicom. ``_dicom_meta_slow`` is the reference the tests compare with.
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


def _int(meta: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = meta.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _frames(meta: dict[str, Any]) -> int:
    return max(_int(meta, "NumberOfFrames", 1) or 1, 1)


def _format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def _limit_problem(
    rows: int, cols: int, frames: int, samples: int, bits: int, limit: int
) -> str | None:
    need = rows * cols * frames * samples * max((bits + 7) // 8, 1)
    if need > limit:
        return (
            f"declared image size {cols} x {rows}"
            + (f" x {frames} frames" if frames > 1 else "")
            + (f" x {samples} samples" if samples > 1 else "")
            + f" at {bits} bits needs {_format_bytes(need)}, over the {_format_bytes(limit)} "
            "limit per image (max_image_bytes)"
        )
    return None


def _dicom_decode_problem(
    meta: dict[str, Any], pixel: _PixelElement, max_image_bytes: int
) -> str | None:
    """Reasons the pixel data cannot be decoded at all (checked before any pixel is read)."""
    from pydicom.uid import UID

    if pixel.state == "cut":
        return (
            f"truncated file: it ends inside the DICOM header ({pixel.available} bytes), before "
            "the pixel data"
        )
    if pixel.state == "absent":
        sop = meta.get("SOPClassUID")
        name = UID(sop).name if sop else "unknown"
        return f"no pixel data: not an image (SOP class {name})"
    if pixel.state == "float":
        return "float pixel data (7FE0,0008/0009) is not a radiograph and is not supported"
    rows = _int(meta, "Rows")
    cols = _int(meta, "Columns")
    bits_alloc = _int(meta, "BitsAllocated")
    bits_stored = _int(meta, "BitsStored", bits_alloc)
    if rows is None or cols is None or bits_alloc is None:
        missing = [k for k in ("Rows", "Columns", "BitsAllocated") if meta.get(k) is None]
        return f"image attributes missing from the header: {', '.join(missing)}"
    if rows <= 0 or cols <= 0:
        return f"declares an empty image (Rows={rows}, Columns={cols})"
    if bits_alloc not in (8, 16):
        return f"BitsAllocated={bits_alloc} is not supported (need 8 or 16)"
    if bits_stored is not None and bits_stored > bits_alloc:
        return f"BitsStored ({bits_stored}) exceeds BitsAllocated ({bits_alloc})"
    if bits_stored is None or bits_stored < 1:
        return f"invalid BitsStored ({bits_stored})"
    photometric = meta.get("PhotometricInterpretation")
    if photometric not in MONOCHROME and photometric not in COLOUR:
        return (
            f"PhotometricInterpretation {photometric} is neither monochrome nor convertible colour"
        )
    samples = _int(meta, "SamplesPerPixel", 1) or 1
    frames = _frames(meta)
    problem = _limit_problem(rows, cols, frames, samples, bits_alloc, max_image_bytes)
    if problem:
        return problem
    ts = meta.get("TransferSyntaxUID")
    if ts == "1.2.840.10008.1.2.4.51" and bits_stored > 8:
        # GDCM's and Pillow's JPEG codecs here are 8-bit only; the one 12-bit JPEG plugin for
        # pydicom, pylibjpeg-libjpeg, is GPLv3 and deliberately not bundled (docs/io.md).
        return (
            f"JPEG Extended with {bits_stored}-bit samples cannot be decoded: no permissively "
            "licensed 12-bit JPEG decoder is installed (pylibjpeg-libjpeg is GPLv3, not used)"
        )
    if pixel.length is not None and ts and not UID(ts).is_encapsulated:
        need = rows * cols * frames * samples * (bits_alloc // 8)
        if pixel.available is not None and pixel.available < min(pixel.length, need):
            return (
                f"truncated pixel data: the file ends {pixel.available} bytes into the pixel data, "
                f"{rows} x {cols} x {bits_alloc}-bit needs {need} bytes"
            )
        if pixel.length < need:
            return (
                f"truncated pixel data: {pixel.length} bytes, {rows} x {cols} x {bits_alloc}-bit "
                f"needs {need} bytes"
            )
    if ts and pixel.length is None and pixel.available is not None and pixel.available < 16:
        return "truncated pixel data: the encapsulated pixel data holds no fragments"
    return None


def _mentions_chest(meta: dict[str, Any]) -> bool:
    text = " ".join(str(meta.get(k) or "") for k in ("BodyPartExamined", "StudyDescription"))
    text = text.upper()
    return any(word in text for word in ("CHEST", "THORAX", "THORAC", "LUNG", "TORAX", "TÓRAX"))


def _dicom_usability(meta: dict[str, Any]) -> tuple[str | None, list[str]]:
    """Issue 2 item 5e: is this a chest radiograph the models can score? (reason, warnings)."""
    warnings: list[str] = []
    modality = (meta.get("Modality") or "").upper()
    if modality in CAPTURE_MODALITIES:
        if not _mentions_chest(meta):
            return (
                f"secondary capture (Modality={modality}) without a chest BodyPartExamined or "
                "StudyDescription",
                warnings,
            )
    elif not modality:
        if not _mentions_chest(meta):
            return "no Modality and no chest BodyPartExamined or StudyDescription", warnings
        warnings.append("no Modality in the header; accepted because it names the chest")
    elif modality not in RADIOGRAPH_MODALITIES:
        return f"not a radiograph (Modality={modality}; need CR, DX or DR)", warnings
    frames = _frames(meta)
    if frames > 1:
        return f"multi-frame image ({frames} frames; need a single radiograph)", warnings
    rows = _int(meta, "Rows", 0) or 0
    cols = _int(meta, "Columns", 0) or 0
    if rows < MIN_SIDE or cols < MIN_SIDE:
        return (
            f"image too small ({cols} x {rows} pixels; need at least {MIN_SIDE} x {MIN_SIDE})",
            warnings,
        )
    body = meta.get("BodyPartExamined")
    if body is not None and body.strip().upper() not in CHEST_BODY_PARTS:
        return f"not a chest radiograph (BodyPartExamined={body})", warnings
    view = (meta.get("ViewPosition") or "").strip().upper()
    if view in LATERAL_VIEWS:
        warnings.append(
            f"lateral view (ViewPosition={meta.get('ViewPosition')}); the models expect PA/AP"
        )
    if meta.get("PhotometricInterpretation") in COLOUR:
        warnings.append(f"colour image ({meta.get('PhotometricInterpretation')}) converted to grey")
    return None, warnings


def _empty_meta() -> dict[str, Any]:
    return dict.fromkeys(META_KEYWORDS)


def _raster_meta(info: dict[str, int | str]) -> dict[str, Any]:
    meta = _empty_meta()
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


def _header_pass(path: Path, max_image_bytes: int) -> tuple[HeaderInfo, str | None, Any]:
    """The header read behind every entry point.

    Returns (info, decode_problem, dataset): decode_problem is set when the pixels cannot be
    decoded at all, and info.reason then holds it; otherwise info.reason, if any, is a usability
    rejection that still allows decoding (e.g. a CT slice).
    """
    st, kind, preamble, head = _identify(path)
    if kind == "dicom":
        ds, pixel = _read_dicom_header(path, preamble)
        meta = _dicom_meta(ds)
        problem = _dicom_decode_problem(meta, pixel, max_image_bytes)
        if problem:
            reason, warnings = problem, []
        else:
            reason, warnings = _dicom_usability(meta)
        info = HeaderInfo(
            path, reason is None, reason, warnings, meta, True, st.st_size, st.st_mtime, "dicom"
        )
        return info, problem, ds
    try:
        raster = _imagefmt.raster_header(path, kind, head)
    except FormatError as exc:
        raise ImageReadError(path, str(exc)) from None
    meta = _raster_meta(raster)
    rows, cols = meta["Rows"], meta["Columns"]
    warnings = []
    problem = None
    if rows <= 0 or cols <= 0:
        problem = f"declares an empty image ({cols} x {rows})"
    else:
        problem = _limit_problem(
            rows, cols, 1, int(raster["channels"]), int(raster["bits"]), max_image_bytes
        )
    if problem is None and (rows < MIN_SIDE or cols < MIN_SIDE):
        # PNG/JPEG carry no header to judge by and are accepted (item 5e); tiny ones get a note.
        warnings.append(f"small image ({cols} x {rows} pixels)")
    if problem is None and int(raster["channels"]) >= 3:
        warnings.append("colour image converted to grey")
    info = HeaderInfo(
        path, problem is None, problem, warnings, meta, False, st.st_size, st.st_mtime, kind
    )
    return info, problem, None


def read_header(
    path: str | os.PathLike[str], *, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> HeaderInfo:
    """Read a file's metadata (no pixels) and check it is a usable chest radiograph.

    Parameters
    ----------
    path : str or PathLike
        A DICOM (with or without preamble), PNG, JPEG or TIFF file.
    max_image_bytes : int
        Images whose declared pixel data would exceed this are rejected.

    Returns
    -------
    HeaderInfo
        ``ok`` False with a one-line ``reason`` for a file that cannot be used. Never raises for a
        bad file.
    """
    path = Path(path)
    try:
        info, _problem, _ds = _header_pass(path, max_image_bytes)
        return info
    except ImageReadError as exc:
        size, mtime = _size_mtime(path)
        return HeaderInfo(path, False, exc.reason, [], _empty_meta(), False, size, mtime, None)
    except Exception as exc:  # noqa: BLE001 - a header read must never raise for one bad file
        size, mtime = _size_mtime(path)
        reason = f"unexpected error reading the header: {_one_line(exc)}"
        return HeaderInfo(path, False, reason, [], _empty_meta(), False, size, mtime, None)


def _size_mtime(path: Path) -> tuple[int, float]:
    try:
        st = os.stat(path)
        return int(st.st_size), float(st.st_mtime)
    except OSError:
        return 0, 0.0


# ----------------------------------------------------------------------------------------------
# DICOM pixels


def _decode_dicom(path: Path, preamble: bool, meta: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """Full read + decode of frame 0; returns (dataset, stored values, colour already RGB)."""
    import pydicom
    from pydicom.pixels import get_decoder

    try:
        ds = pydicom.dcmread(path, force=not preamble)
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(path, f"damaged DICOM file: {_one_line(exc)}") from None
    _ensure_transfer_syntax(ds)
    ts = ds.file_meta.TransferSyntaxUID
    if "PixelData" not in ds:
        # The header pass saw the pixel element, so pydicom dropped it while reading: an
        # encapsulated sequence that ends early.
        raise ImageReadError(
            path, "truncated pixel data: the pixel data element ends before its end marker"
        )
    if not ts.is_encapsulated:
        need = _native_bytes(meta)
        have = len(ds.PixelData)
        if have < need:
            raise ImageReadError(
                path, f"truncated pixel data: {have} bytes, the header's image size needs {need}"
            )
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise ImageReadError(path, f"unsupported transfer syntax {ts} ({ts.name})") from None
    if not decoder.is_available:
        raise ImageReadError(path, f"no decoder installed for transfer syntax {ts.name} ({ts})")
    available = set(decoder.available_plugins)
    plugins = [p for p in _PREFERRED_PLUGINS.get(str(ts), ()) if p in available]
    errors: list[str] = []
    for plugin in [*plugins, ""]:
        try:
            arr, _ = decoder.as_array(ds, index=0, decoding_plugin=plugin)
            break
        except Exception as exc:  # noqa: BLE001 - try the next plugin, report all if none works
            text = _ALL_PLUGINS.sub("", _one_line(exc))
            if plugin and text.startswith(f"{plugin}: "):
                text = text[len(plugin) + 2 :]
            errors.append(f"{plugin or 'all plugins'}: {text}")
    else:
        # The preferred decoder's complaint is the telling one; pydicom's "all plugins" text
        # repeats it beside the failures of decoders that were never meant for this data.
        raise ImageReadError(
            path,
            f"cannot decode {ts.name} pixel data (damaged or unsupported compressed data): "
            + errors[0],
        )
    return ds, arr


def _native_bytes(meta: dict[str, Any]) -> int:
    rows = _int(meta, "Rows", 0) or 0
    cols = _int(meta, "Columns", 0) or 0
    samples = _int(meta, "SamplesPerPixel", 1) or 1
    bits = _int(meta, "BitsAllocated", 8) or 8
    return rows * cols * samples * _frames(meta) * (bits // 8)


def _stored_range(ds: Any) -> tuple[int, int]:
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _rescale(ds: Any) -> tuple[float, float] | None:
    if "RescaleSlope" not in ds and "RescaleIntercept" not in ds:
        return None
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    return (1.0 if slope is None else float(slope), 0.0 if intercept is None else float(intercept))


def _has_modality_lut(ds: Any) -> bool:
    seq = ds.get("ModalityLUTSequence")
    return bool(seq) and "LUTData" in seq[0]


def _to_grey_rgb(arr: np.ndarray, ds: Any) -> np.ndarray:
    import cv2

    if ds.PhotometricInterpretation == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    if arr.dtype not in (np.uint8, np.uint16):
        arr = arr.astype(np.uint16 if arr.dtype.itemsize > 1 else np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)


def _modality_values(arr: np.ndarray, ds: Any) -> tuple[np.ndarray, tuple[float, float], bool]:
    """Modality-LUT values, the stored range passed through the same LUT, and whether a LUT applied.

    Without Modality LUT attributes the stored integers are returned unchanged.
    """
    lo, hi = _stored_range(ds)
    if _has_modality_lut(ds):
        from pydicom.pixels import apply_modality_lut

        values = apply_modality_lut(arr, ds).astype(np.float64)
        mapped = apply_modality_lut(np.arange(lo, hi + 1, dtype=np.int64), ds)
        return values, (float(mapped.min()), float(mapped.max())), True
    rescale = _rescale(ds)
    if rescale is not None:
        slope, intercept = rescale
        values = arr.astype(np.float64)
        values *= slope
        values += intercept
        a, b = lo * slope + intercept, hi * slope + intercept
        return values, (min(a, b), max(a, b)), True
    return arr, (float(lo), float(hi)), False


def _dicom_source_and_modality(ds: Any, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(source array per issue 2 item 5c, modality values as float32 for the display)."""
    photometric = ds.PhotometricInterpretation
    if arr.ndim == 3 or photometric in COLOUR:
        grey = _to_grey_rgb(arr, ds)
        return grey, grey.astype(np.float32)
    values, (lo, hi), has_lut = _modality_values(arr, ds)
    mono1 = photometric == "MONOCHROME1"
    if has_lut:
        source = (lo + hi) - values if mono1 else values
        return source, values.astype(np.float32)
    # No modality LUT: keep integers. Signed data is shifted by -lo (two's complement to offset
    # binary) so it fits the unsigned dtype of a 16-bit PNG export, order and contrast preserved.
    slo, shi = _stored_range(ds)
    dtype = np.uint8 if int(ds.BitsAllocated) == 8 else np.uint16
    if mono1:
        source = (shi - arr.astype(np.int64)).astype(dtype)  # (lo + hi) - v - lo
    elif slo < 0:
        source = (arr.astype(np.int64) - slo).astype(dtype)
    else:
        source = arr.astype(dtype, copy=False)
    return source, arr.astype(np.float32)


def _dicom_display(ds: Any, arr: np.ndarray, modality: np.ndarray) -> DisplayImage:
    invert = ds.PhotometricInterpretation == "MONOCHROME1" or (
        str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE"
    )
    auto = _percentile_window(modality)
    full = _full_range_window(modality)
    presets: list[tuple[str, float, float]] = []
    centers = _as_list(ds.get("WindowCenter"))
    widths = _as_list(ds.get("WindowWidth"))
    names = _as_list(ds.get("WindowCenterWidthExplanation"))
    if centers and widths:
        for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
            try:
                c, w = float(c), float(w)
            except (TypeError, ValueError):
                continue
            if w <= 0:
                continue
            name = str(names[i]) if i < len(names) and names[i] else f"Window {i + 1}"
            presets.append((name, c, w))
    voi = ds.get("VOILUTSequence")
    if voi and "LUTData" in voi[0]:
        from pydicom.pixels import apply_voi

        item = voi[0]
        n, first, bits = (int(v) for v in item.LUTDescriptor)
        n = n or 65536
        out_max = float((1 << int(bits)) - 1) if bits else float(np.max(item.LUTData))
        # Apply the VOI LUT to the stored/modality values the LUT indexes.
        mapped = apply_voi(np.rint(modality).astype(np.int64), ds, 0).astype(np.float32)
        pixels = np.clip(np.rint(mapped * (255.0 / max(out_max, 1.0))), 0, 255).astype(np.uint8)
        if invert:
            np.subtract(255, pixels, out=pixels)
        window = (first + n / 2.0, float(n))
        explanation = str(item.get("LUTExplanation") or "VOI LUT")
        presets.insert(0, (f"{explanation} (as linear window)", window[0], window[1]))
        presets += [("Auto (0.5-99.5 percentile)", *auto), ("Full range", *full)]
        return DisplayImage(pixels, modality, window, presets, invert)
    window = (presets[0][1], presets[0][2]) if presets else auto
    presets += [("Auto (0.5-99.5 percentile)", *auto), ("Full range", *full)]
    pixels = apply_window(modality, window[0], window[1], invert)
    return DisplayImage(pixels, modality, window, presets, invert)


def _as_list(value: Any) -> list[Any]:
    from pydicom.multival import MultiValue

    if value is None:
        return []
    if isinstance(value, (MultiValue, list, tuple)):
        return list(value)
    return [value]


def _raster_display(grey: np.ndarray) -> DisplayImage:
    modality = grey.astype(np.float32)
    auto = _percentile_window(modality)
    full = _full_range_window(modality)
    presets = [("Auto (0.5-99.5 percentile)", *auto), ("Full range", *full)]
    return DisplayImage(apply_window(modality, *auto, False), modality, auto, presets, False)


# ----------------------------------------------------------------------------------------------
# public decode entry points


def _decode(path: Path, max_image_bytes: int, want_display: bool) -> DecodedImage:
    try:
        return _decode_impl(path, max_image_bytes, want_display)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(path, "out of memory while decoding the image") from None
    except OSError as exc:  # the file changed or vanished between the header and the pixels
        raise ImageReadError(path, f"cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop a batch
        raise ImageReadError(path, f"unexpected error decoding: {_one_line(exc)}") from None


def _decode_impl(path: Path, max_image_bytes: int, want_display: bool) -> DecodedImage:
    info, problem, _ds = _header_pass(path, max_image_bytes)
    if problem:
        raise ImageReadError(path, problem)
    if info.is_dicom:
        if _frames(info.meta) > 1:
            raise ImageReadError(
                path,
                f"multi-frame image ({_frames(info.meta)} frames): only single frames are read",
            )
        preamble = _has_preamble(path)
        ds, arr = _decode_dicom(path, preamble, info.meta)
        try:
            source, modality = _dicom_source_and_modality(ds, arr)
            display = _dicom_display(ds, arr, modality) if want_display else None
        except ImageReadError:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed LUT etc. is a per-file problem
            raise ImageReadError(path, f"cannot convert the pixel data: {_one_line(exc)}") from None
    else:
        try:
            grey = _imagefmt.read_raster(path)
        except FormatError as exc:
            raise ImageReadError(path, str(exc)) from None
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(path, f"cannot decode the image: {_one_line(exc)}") from None
        source = grey
        display = _raster_display(grey) if want_display else None
    return DecodedImage(info, source, display)  # type: ignore[arg-type]


def _has_preamble(path: Path) -> bool:
    with open(path, "rb") as fp:
        head = fp.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def read_source(
    path: str | os.PathLike[str], *, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> np.ndarray:
    """Decode the model's source array (issue 2 item 5c).

    Modality LUT applied (Rescale Slope/Intercept or Modality LUT Sequence), no VOI windowing,
    MONOCHROME1 inverted as ``(lo + hi) - v`` where [lo, hi] is the possible stored-value range
    passed through the modality LUT. Without modality LUT attributes the dtype is uint8
    (BitsAllocated 8) or uint16 (signed values shifted by 2**(BitsStored-1)); with them float64.
    Colour becomes grey (RGB2GRAY for DICOM, BGR2GRAY for OpenCV-read files).

    Parameters
    ----------
    path : str or PathLike
        DICOM, PNG, JPEG or TIFF file.
    max_image_bytes : int
        Refuse images whose declared pixel data exceeds this, before allocating it.

    Returns
    -------
    np.ndarray
        2-D array.

    Raises
    ------
    ImageReadError
        With a one-line reason naming the file.
    """
    return _decode(Path(path), max_image_bytes, want_display=False).source


def read_display(
    path: str | os.PathLike[str], *, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> DisplayImage:
    """Decode the display form: modality values, default window, presets and inversion flag.

    The default window is the VOI LUT when present, else the first Window Center/Width pair, else
    a 0.5-99.5 percentile window. Raises :class:`ImageReadError`.
    """
    return _decode(Path(path), max_image_bytes, want_display=True).display


def read_image(
    path: str | os.PathLike[str], *, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> DecodedImage:
    """Decode once and return header, source array and display form.

    ``header.ok`` may be False for a decodable image that is not a usable chest radiograph (for
    example a CT slice); undecodable files raise :class:`ImageReadError`.
    """
    return _decode(Path(path), max_image_bytes, want_display=True)


# ----------------------------------------------------------------------------------------------
# folder walk


def iter_image_files(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> Iterator[Path | WalkProblem]:
    """Yield every file under ``paths`` (folders walked recursively, sorted by name).

    Every regular file is yielded, whatever its name: formats are decided by content, and a file
    that is not an image gets its reason from :func:`read_header` rather than being skipped.
    Symbolic links are followed except into a folder already walked (a loop), which yields a
    :class:`WalkProblem`, as do unlistable folders, missing paths and folders holding no files.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            count = [0]
            yield from _walk(path, set(), set(), count)
            if count[0] == 0:
                yield WalkProblem(path, "folder holds no files")
        elif os.path.lexists(path):
            yield path  # a file, a broken link or a special file: read_header says which
        else:
            yield WalkProblem(path, "no such file or folder")


_IMAGE_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff"})


def _walk(
    folder: Path, ancestors: set[tuple[int, int]], visited: set[tuple[int, int]], count: list[int]
) -> Iterator[Path | WalkProblem]:
    try:
        st = os.stat(folder)
    except OSError as exc:
        yield WalkProblem(folder, f"cannot open folder: {exc.strerror or exc}")
        return
    key = (st.st_dev, st.st_ino)
    if key in ancestors:
        yield WalkProblem(
            folder,
            f"symbolic link loop: leads back to {os.path.realpath(folder)}, not walked again",
        )
        return
    if key in visited:
        yield WalkProblem(
            folder, f"symbolic link to a folder already walked ({os.path.realpath(folder)})"
        )
        return
    visited.add(key)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield WalkProblem(folder, f"cannot list folder: {exc.strerror or exc}")
        return
    ancestors = ancestors | {key}
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            before = count[0]
            yield from _walk(Path(entry.path), ancestors, visited, count)
            if count[0] == before and Path(entry.name).suffix.lower() in _IMAGE_SUFFIXES:
                # Someone expected an image here: say so instead of passing it by in silence.
                yield WalkProblem(
                    Path(entry.path), "is a directory named like an image file, holding no files"
                )
        else:
            count[0] += 1
            yield Path(entry.path)
