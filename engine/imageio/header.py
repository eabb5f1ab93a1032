"""The header pass behind every entry point, and :func:`read_header`, which never raises for a
bad file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.imageio import formats
from engine.imageio.checks import (
    MIN_SIDE,
    dicom_decode_problem,
    dicom_usability,
    limit_problem,
    rescale_problem,
)
from engine.imageio.dicom_header import read_dicom_header
from engine.imageio.files import identify, size_mtime
from engine.imageio.formats import FormatError
from engine.imageio.meta import dicom_meta, empty_meta, raster_meta
from engine.imageio.records import (
    DEFAULT_MAX_IMAGE_BYTES,
    HeaderInfo,
    ImageReadError,
    one_line,
    printable,
)


def header_pass(path: Path, max_image_bytes: int) -> tuple[HeaderInfo, str | None, Any]:
    """The header read behind every entry point.

    Returns (info, decode_problem, dataset): decode_problem is set when the pixels cannot be
    decoded at all, and info.reason then holds it; otherwise info.reason, if any, is a usability
    rejection that still allows decoding (e.g. a CT slice).
    """
    st, kind, preamble, head = identify(path)
    if kind == "dicom":
        ds, pixel = read_dicom_header(path, preamble)
        try:
            meta = dicom_meta(ds)
            problem = dicom_decode_problem(meta, pixel, max_image_bytes) or rescale_problem(ds)
            if problem:
                reason, warnings = problem, []
            else:
                reason, warnings = dicom_usability(meta)
        except Exception as exc:  # noqa: BLE001 - a value pydicom parsed but cannot interpret
            raise ImageReadError(path, f"damaged DICOM header: {one_line(exc)}") from None
        reason = None if reason is None else printable(reason)
        warnings = [printable(w) for w in warnings]
        info = HeaderInfo(
            path, reason is None, reason, warnings, meta, True, st.st_size, st.st_mtime, "dicom"
        )
        return info, problem and reason, ds
    try:
        raster = formats.raster_header(path, kind, head)
    except FormatError as exc:
        raise ImageReadError(path, str(exc)) from None
    meta = raster_meta(raster)
    rows, cols = meta["Rows"], meta["Columns"]
    warnings = []
    problem = None
    if rows <= 0 or cols <= 0:
        problem = f"declares an empty image ({cols} x {rows})"
    else:
        problem = limit_problem(
            rows, cols, 1, int(raster["channels"]), int(raster["bits"]), max_image_bytes
        )
    if problem is None and (rows < MIN_SIDE or cols < MIN_SIDE):
        # PNG/JPEG carry no header to judge by and are accepted; tiny ones get a note.
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
        info, _problem, _ds = header_pass(path, max_image_bytes)
        return info
    except ImageReadError as exc:
        size, mtime = size_mtime(path)
        return HeaderInfo(path, False, exc.reason, [], empty_meta(), False, size, mtime, None)
    except Exception as exc:  # noqa: BLE001 - a header read must never raise for one bad file
        size, mtime = size_mtime(path)
        reason = f"unexpected error reading the header: {one_line(exc)}"
        return HeaderInfo(path, False, reason, [], empty_meta(), False, size, mtime, None)
