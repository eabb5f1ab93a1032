"""Chest-radiograph input: DICOM / PNG / JPEG / TIFF files to arrays, or a clear reason why not.

Three entry points, all keyed by a path:

- :func:`read_header` reads metadata only (DICOM with ``stop_before_pixels``) and decides whether the
  file is a usable chest radiograph. It never raises for a bad file.
- :func:`read_source` decodes the *source array* the models consume: what a PadChest-style 16-bit
  PNG export holds (modality LUT applied, MONOCHROME1 inverted, no windowing).
- :func:`read_display` decodes the *display* form (modality values, default window, presets).
  :func:`read_image` decodes once and returns header, source and display together.

Every failure is an :class:`ImageReadError` whose text is ``"<path>: <one-line reason>"``.
Decoder plugins (all permissively licensed; see docs/io.md): pylibjpeg-openjpeg for JPEG 2000 and
HTJ2K, pyjpegls for JPEG-LS, pylibjpeg-rle for RLE, python-gdcm for JPEG lossless and as a fallback,
Pillow for JPEG baseline/extended when GDCM fails. The GPLv3 pylibjpeg-libjpeg is not used.

The package's modules, in the order a file passes through them:

- :mod:`~engine.imageio.records`: the records returned and :class:`ImageReadError`;
- :mod:`~engine.imageio.files`: stat, first bytes, format by content;
- :mod:`~engine.imageio.formats`: format sniffing and the PNG/JPEG/TIFF readers;
- :mod:`~engine.imageio.dicom_header`: the DICOM header without pixels;
- :mod:`~engine.imageio.meta`: the header keywords and their values;
- :mod:`~engine.imageio.checks`: decodability and the chest-radiograph rules;
- :mod:`~engine.imageio.header`: the header pass and :func:`read_header`;
- :mod:`~engine.imageio.pixels`: DICOM pixel decoding and the source-array rule;
- :mod:`~engine.imageio.window`: windowing and the display form;
- :mod:`~engine.imageio.decode`: :func:`read_source`, :func:`read_display`, :func:`read_image`;
- :mod:`~engine.imageio.walk`: :func:`iter_image_files`.

Names without a leading underscore in those modules are shared inside the package; what other
code imports is re-exported here and listed in ``__all__``.
"""

from __future__ import annotations

from engine.imageio.decode import read_display, read_image, read_source
from engine.imageio.header import read_header
from engine.imageio.meta import META_KEYWORDS, PHI_KEYWORDS
from engine.imageio.records import (
    DEFAULT_MAX_IMAGE_BYTES,
    DecodedImage,
    DisplayImage,
    HeaderInfo,
    ImageReadError,
    WalkProblem,
)
from engine.imageio.walk import iter_image_files
from engine.imageio.window import apply_window

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
