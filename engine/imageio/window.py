"""Windowing and the display form: the DICOM linear VOI function, the default window and the
window presets the viewer offers."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.imageio.records import DisplayImage


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


def dicom_display(ds: Any, modality: np.ndarray) -> DisplayImage:
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


def raster_display(grey: np.ndarray) -> DisplayImage:
    modality = grey.astype(np.float32)
    auto = _percentile_window(modality)
    full = _full_range_window(modality)
    presets = [("Auto (0.5-99.5 percentile)", *auto), ("Full range", *full)]
    return DisplayImage(apply_window(modality, *auto, False), modality, auto, presets, False)
