"""The image size a compressed stream declares, read from its first bytes without decoding.

A decoder allocates what the stream says, not what the DICOM header says: a 100 KB file whose
JPEG-LS frame header claims 65535 x 65535 makes the decoder try to allocate gigabytes (or abort
the process). :func:`declared_size` reads the frame header of the stream itself, so the caller can
compare it with Rows x Columns and a pixel-count limit before any decoder runs.

Formats: JPEG (SOF0-SOF15: baseline, extended, lossless), JPEG-LS (SOF55), JPEG 2000 and HTJ2K
(the SIZ marker of a raw codestream, or of the ``jp2c`` box of a JP2 file). RLE has no size of
its own: its decoder writes into a buffer sized from Rows x Columns.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Start-of-frame markers that carry a frame header (not DHT C4, JPG C8, DAC CC), and JPEG-LS SOF55.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}  # RSTn, TEM, SOI: no length field
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


@dataclass(frozen=True)
class StreamSize:
    """What a stream's frame header declares."""

    kind: str  # "JPEG", "JPEG-LS" or "JPEG 2000"
    rows: int
    columns: int
    components: int


class StreamError(ValueError):
    """The stream's header cannot be read (the message says where it stops making sense)."""


def declared_size(data: bytes) -> StreamSize | None:
    """The size declared by a JPEG, JPEG-LS or JPEG 2000 stream (None for other data).

    Raises
    ------
    StreamError
        When the data starts like one of these formats but its header is damaged.
    """
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data.startswith(_J2K_SOC_SIZ):
        return _j2k_siz(data, 4)
    if data.startswith(_JP2_SIGNATURE):
        return _jp2(data)
    return None


def _jpeg(data: bytes) -> StreamSize:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise StreamError(f"damaged JPEG stream: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS:
            if pos + 10 > len(data) or length < 8:
                break
            _bits, rows, cols, comps = struct.unpack(">BHHB", data[pos + 4 : pos + 10])
            kind = "JPEG-LS" if marker == 0xF7 else "JPEG"
            return StreamSize(kind, rows, cols, comps)
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        pos += 2 + length
    raise StreamError("damaged JPEG stream: no frame header (SOF) before the image data")


def _j2k_siz(data: bytes, pos: int) -> StreamSize:
    # SIZ: Lsiz(2) Rsiz(2) Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz (4 each) Csiz(2).
    if pos + 40 > len(data):
        raise StreamError("damaged JPEG 2000 stream: the SIZ marker is cut short")
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", data[pos + 4 : pos + 20])
    (csiz,) = struct.unpack(">H", data[pos + 36 : pos + 38])
    if xo > xsiz or yo > ysiz:
        raise StreamError("damaged JPEG 2000 stream: the image offset lies outside the image")
    return StreamSize("JPEG 2000", ysiz - yo, xsiz - xo, csiz)


def _jp2(data: bytes) -> StreamSize:
    # Walk the top-level boxes to the contiguous codestream box.
    pos = 0
    while pos + 8 <= len(data):
        length, box = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if length == 1 and pos + 16 <= len(data):
            (length,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        if box == b"jp2c":
            start = pos + header
            if data[start : start + 4] != _J2K_SOC_SIZ:
                raise StreamError("damaged JP2 file: its codestream does not start with SOC, SIZ")
            return _j2k_siz(data, start + 4)
        if length == 0 or length < header:
            break
        pos += length
    raise StreamError("damaged JP2 file: no codestream box (jp2c)")
