"""DICOM pixel decoding through pydicom's plugins, and the conversion of stored values to the
source array (modality LUT, MONOCHROME1 inversion, colour to grey)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.imageio.checks import COLOUR
from engine.imageio.dicom_header import DEFER_SIZE, ensure_transfer_syntax
from engine.imageio.isolation import DecoderFailure, decode_isolated
from engine.imageio.meta import frame_count, meta_int
from engine.imageio.plugins import PREFERRED_PLUGINS, PluginError, decode_frame
from engine.imageio.records import DEFAULT_MAX_PIXELS, ImageReadError, one_line
from engine.imageio.streams import StreamError, declared_size


def decode_dicom(
    path: Path, preamble: bool, meta: dict[str, Any], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Any, np.ndarray]:
    """Full read + decode of frame 0; returns (dataset, stored values, colour already RGB).

    Compressed pixel data is checked against the size its own stream declares, then decoded in
    a worker process (:mod:`~engine.imageio.isolation`); native data is decoded here, its size
    being known from the header.
    """
    import pydicom
    from pydicom.pixels import get_decoder

    try:
        ds = pydicom.dcmread(path, force=not preamble, defer_size=DEFER_SIZE)
        ensure_transfer_syntax(ds)
        ts = ds.file_meta.TransferSyntaxUID
        encapsulated = ts.is_encapsulated
        has_pixels = "PixelData" in ds
        pixel_bytes = ds.PixelData if has_pixels else b""
    except ValueError as exc:
        if "not a transfer syntax" not in str(exc):
            raise ImageReadError(path, f"damaged DICOM file: {one_line(exc)}") from None
        raise ImageReadError(
            path, f"unsupported transfer syntax {ds.file_meta.TransferSyntaxUID}: not a known one"
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(path, f"damaged DICOM file: {one_line(exc)}") from None
    if not has_pixels:
        # The header pass saw the pixel element, so pydicom dropped it while reading: an
        # encapsulated sequence that ends early.
        raise ImageReadError(
            path, "truncated pixel data: the pixel data element ends before its end marker"
        )
    if not encapsulated:
        need = _native_bytes(meta)
        have = len(pixel_bytes)
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
    plugins = [p for p in PREFERRED_PLUGINS.get(str(ts), ()) if p in available]
    if not encapsulated:
        try:
            return ds, decode_frame(ds, plugins)
        except PluginError as exc:
            raise ImageReadError(path, str(exc)) from None
    problem = stream_problem(pixel_bytes, meta, max_pixels)
    if problem:
        raise ImageReadError(path, problem)
    try:
        return ds, decode_isolated(ds, plugins)
    except DecoderFailure as exc:
        raise ImageReadError(path, str(exc)) from None


def stream_problem(pixel_data: bytes, meta: dict[str, Any], max_pixels: int) -> str | None:
    """Why frame 0's compressed stream must not reach a decoder (None when it may).

    The size the stream declares must be the header's Rows x Columns and within ``max_pixels``.
    """
    from pydicom.encaps import get_frame

    try:
        frame = get_frame(pixel_data, 0, number_of_frames=1)
        size = declared_size(frame[:65536])
    except StreamError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - pydicom's item parser on damaged data
        return f"damaged encapsulated pixel data: {one_line(exc)}"
    if size is None:
        return None  # RLE or an unknown stream: its decoder sizes its output from the header
    rows = meta_int(meta, "Rows", 0) or 0
    cols = meta_int(meta, "Columns", 0) or 0
    if size.rows * size.columns > max_pixels:
        return (
            f"compressed {size.kind} stream declares {size.columns} x {size.rows} pixels, over "
            f"the limit of {max_pixels} pixels per image"
        )
    if (size.rows, size.columns) != (rows, cols):
        return (
            f"compressed {size.kind} stream declares {size.columns} x {size.rows} pixels, the "
            f"header says {cols} x {rows}: refused (damaged or crafted file)"
        )
    samples = meta_int(meta, "SamplesPerPixel", 1) or 1
    if size.components != samples:
        return (
            f"compressed {size.kind} stream declares {size.components} components, the header "
            f"says SamplesPerPixel {samples}: refused (damaged or crafted file)"
        )
    return None


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
