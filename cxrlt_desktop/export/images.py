"""The PNG copies of the exported images (``images/<ImageID>.png``): conversion and encoding.

Each image's source array (:func:`engine.imageio.read_source`) is stored losslessly where
possible, see :func:`source_to_png_array`. A file that changed since the last scan is refused
before it gets here (:func:`cxrlt_desktop.library.identity.read_checked`), since the verdicts
were made on the scanned one.
"""

from __future__ import annotations

import numpy as np


def source_to_png_array(source: np.ndarray) -> tuple[np.ndarray, bool]:
    """The array to store as PNG for a source array, and whether it was rescaled.

    - uint16 is written as is (16-bit PNG, lossless).
    - uint8 is written as is (8-bit PNG, lossless): the engine keeps uint8 sources as they
      are while it percentile-stretches wider ones, so widening to 16 bits would change what
      the model sees in training compared with the original file.
    - Other integer or float arrays (modality LUT applied) whose values are all integers in
      0..65535 are written as uint16 unchanged (lossless).
    - Anything else (negative, fractional or larger values) is mapped linearly from its
      min..max onto 0..65535 and rounded. The Task 1 preprocessing stretches between
      percentiles, which a positive linear map does not change (up to the rounding), so the
      model sees the same image; absolute modality values are lost (README.txt says how many).
    """
    a = np.asarray(source)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D source array, got shape {a.shape}")
    if a.dtype in (np.uint8, np.uint16):
        return np.ascontiguousarray(a), False
    if a.dtype.kind in "iu" or a.dtype.kind == "f":
        finite = np.isfinite(a) if a.dtype.kind == "f" else None
        if finite is not None and not finite.all():
            a = np.where(finite, a, np.nanmin(np.where(finite, a, np.nan)) if finite.any() else 0)
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0 and hi <= 65535 and (a.dtype.kind in "iu" or np.all(a == np.round(a))):
            return a.astype(np.uint16), False
        if hi > lo:
            scaled = np.rint((a.astype(np.float64) - lo) * (65535.0 / (hi - lo)))
            return np.clip(scaled, 0, 65535).astype(np.uint16), True
        return np.zeros(a.shape, np.uint16), True
    raise ValueError(f"unsupported source dtype {a.dtype}")


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a 2-D uint8/uint16 array (OpenCV writes no text chunks: no metadata)."""
    import cv2

    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("OpenCV could not encode the PNG")
    return buf.tobytes()
