"""The decode entry points: :func:`read_source`, :func:`read_display` and :func:`read_image`,
each one header pass and one decode, with every failure turned into :class:`ImageReadError`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.imageio import formats
from engine.imageio.files import has_preamble
from engine.imageio.formats import FormatError
from engine.imageio.header import header_pass
from engine.imageio.meta import frame_count
from engine.imageio.pixels import decode_dicom, dicom_source_and_modality
from engine.imageio.records import (
    DEFAULT_MAX_IMAGE_BYTES,
    DecodedImage,
    DisplayImage,
    ImageReadError,
    one_line,
)
from engine.imageio.window import dicom_display, raster_display


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
        raise ImageReadError(path, f"unexpected error decoding: {one_line(exc)}") from None


def _decode_impl(path: Path, max_image_bytes: int, want_display: bool) -> DecodedImage:
    info, problem, _ds = header_pass(path, max_image_bytes)
    if problem:
        raise ImageReadError(path, problem)
    if info.is_dicom:
        if frame_count(info.meta) > 1:
            raise ImageReadError(
                path,
                f"multi-frame image ({frame_count(info.meta)} frames): only single frames are read",
            )
        preamble = has_preamble(path)
        ds, arr = decode_dicom(path, preamble, info.meta)
        try:
            source, modality = dicom_source_and_modality(ds, arr)
            _refuse_non_finite(path, source, "after rescale")
            display = dicom_display(ds, modality) if want_display else None
        except ImageReadError:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed LUT etc. is a per-file problem
            raise ImageReadError(path, f"cannot convert the pixel data: {one_line(exc)}") from None
    else:
        try:
            grey = formats.read_raster(path)
        except FormatError as exc:
            raise ImageReadError(path, str(exc)) from None
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(path, f"cannot decode the image: {one_line(exc)}") from None
        _refuse_non_finite(path, grey, "(floating-point image)")
        source = grey
        display = raster_display(grey) if want_display else None
    return DecodedImage(info, source, display)  # type: ignore[arg-type]


def _refuse_non_finite(path: Path, values: np.ndarray, where: str) -> None:
    # Scored, a NaN image is a black image with NaN probabilities: refuse it instead.
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ImageReadError(path, f"pixel data contains NaN or infinity {where}")


def read_source(
    path: str | os.PathLike[str], *, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> np.ndarray:
    """Decode the model's source array: what a 16-bit PNG export of the image holds.

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
