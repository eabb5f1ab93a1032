"""The rules applied to a header: can the pixel data be decoded at all (size limit, attributes,
truncation, codecs), and is the file a usable chest radiograph."""

from __future__ import annotations

from typing import Any

from engine.imageio.dicom_header import PixelElement
from engine.imageio.meta import frame_count, meta_int
from engine.imageio.records import DEFAULT_MAX_PIXELS

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR"})


CAPTURE_MODALITIES = frozenset({"SC", "OT"})


CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "PORT CHEST"})


LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL"})


MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})


COLOUR = frozenset(
    {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420", "PALETTE COLOR"}
)


MIN_SIDE = 256


def _format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def limit_problem(
    rows: int,
    cols: int,
    frames: int,
    samples: int,
    bits: int,
    limit: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> str | None:
    """Why an image of this declared size is refused before decoding (None: within limits)."""
    need = rows * cols * frames * samples * max((bits + 7) // 8, 1)
    if need > limit:
        return (
            f"declared image size {cols} x {rows}"
            + (f" x {frames} frames" if frames > 1 else "")
            + (f" x {samples} samples" if samples > 1 else "")
            + f" at {bits} bits needs {_format_bytes(need)}, over the {_format_bytes(limit)} "
            "limit per image (max_image_bytes)"
        )
    if rows * cols > max_pixels:
        return (
            f"declared image size {cols} x {rows} is over the limit of {max_pixels} pixels per "
            "image (a decompression bomb or not a radiograph)"
        )
    return None


def dicom_decode_problem(
    meta: dict[str, Any], pixel: PixelElement, max_image_bytes: int
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
    rows = meta_int(meta, "Rows")
    cols = meta_int(meta, "Columns")
    bits_alloc = meta_int(meta, "BitsAllocated")
    bits_stored = meta_int(meta, "BitsStored", bits_alloc)
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
    samples = meta_int(meta, "SamplesPerPixel", 1) or 1
    frames = frame_count(meta)
    problem = limit_problem(rows, cols, frames, samples, bits_alloc, max_image_bytes)
    if problem:
        return problem
    ts = meta.get("TransferSyntaxUID")
    if ts:
        try:
            UID(ts).is_encapsulated  # noqa: B018 - raises for a UID that is no transfer syntax
        except ValueError:
            return f"unsupported transfer syntax {ts}: not a known one"
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


def rescale_problem(ds: Any) -> str | None:
    """A Rescale Slope or Intercept that is not a finite number makes every value NaN or inf."""
    import math

    for keyword in ("RescaleSlope", "RescaleIntercept"):
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"{keyword} is not a number"
        if not math.isfinite(number):
            return f"{keyword} is {number}: pixel data would be NaN or infinity after rescale"
    return None


def _mentions_chest(meta: dict[str, Any]) -> bool:
    text = " ".join(str(meta.get(k) or "") for k in ("BodyPartExamined", "StudyDescription"))
    text = text.upper()
    return any(word in text for word in ("CHEST", "THORAX", "THORAC", "LUNG", "TORAX", "TÓRAX"))


def dicom_usability(meta: dict[str, Any]) -> tuple[str | None, list[str]]:
    """Is this a chest radiograph the models can score? (reason, warnings).

    Accepted: Modality CR, DX or DR, or SC/OT/none when BodyPartExamined or StudyDescription names
    the chest; one frame; at least :data:`MIN_SIDE` pixels a side; BodyPartExamined absent or a
    chest term. Lateral views and colour images are accepted with a warning.
    """
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
    frames = frame_count(meta)
    if frames > 1:
        return f"multi-frame image ({frames} frames; need a single radiograph)", warnings
    rows = meta_int(meta, "Rows", 0) or 0
    cols = meta_int(meta, "Columns", 0) or 0
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
