"""DICOM pixel decoding through pydicom's plugins, and the conversion of stored values to the
source array (modality LUT, MONOCHROME1 inversion, colour to grey)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from engine.imageio.checks import COLOUR
from engine.imageio.dicom_header import ensure_transfer_syntax
from engine.imageio.meta import frame_count, meta_int
from engine.imageio.records import ImageReadError, one_line

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


# pydicom's wrapper around the plugins' own errors.
_ALL_PLUGINS = re.compile(r"^Unable to decode as exceptions were raised by all available plugins: ")


def decode_dicom(path: Path, preamble: bool, meta: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """Full read + decode of frame 0; returns (dataset, stored values, colour already RGB)."""
    import pydicom
    from pydicom.pixels import get_decoder

    try:
        ds = pydicom.dcmread(path, force=not preamble)
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(path, f"damaged DICOM file: {one_line(exc)}") from None
    ensure_transfer_syntax(ds)
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
            text = _ALL_PLUGINS.sub("", one_line(exc))
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
    rows = meta_int(meta, "Rows", 0) or 0
    cols = meta_int(meta, "Columns", 0) or 0
    samples = meta_int(meta, "SamplesPerPixel", 1) or 1
    bits = meta_int(meta, "BitsAllocated", 8) or 8
    return rows * cols * samples * frame_count(meta) * (bits // 8)


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


def dicom_source_and_modality(ds: Any, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(source array as :func:`engine.imageio.read_source` defines it, modality values as float32)."""
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
