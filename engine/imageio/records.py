"""What the input layer hands back: the header, display and decode records, the walk problem
record, and :class:`ImageReadError` with its one-line reason."""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_IMAGE_BYTES = 512 * 2**20

# Pixels per image: 64 Mpixel (8192 x 8192) is four times the largest digital chest radiograph
# (about 4300 x 4300); anything larger is refused before its data is decoded.
DEFAULT_MAX_PIXELS = 64 * 2**20


def printable(text: str) -> str:
    """``text`` with control and bidirectional-format characters as backslash escapes.

    Reasons quote header values, and a crafted header can hold line breaks, terminal escape
    sequences or right-to-left overrides; a reason stays one visible line.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() and not unicodedata.category(ch) == "Cf":
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte of a file name that is not UTF-8
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


class ImageReadError(Exception):
    """A file that cannot be read as an image; ``str(e) == f"{path}: {reason}"``."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason = printable(reason)
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


# A bytes literal quoted in a library's message: file content, never repeated in a reason.
_BYTES_REPR = re.compile(r"""b(['"])(?:\\.|(?!\1).)*\1""")


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r" at 0x[0-9a-fA-F]+>", ">", text)  # object reprs: no memory addresses
    text = _BYTES_REPR.sub("(bytes)", text)
    return text if len(text) <= 300 else text[:297] + "..."
