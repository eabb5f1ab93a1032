"""File-format sniffing and the non-DICOM readers (PNG, JPEG, TIFF) of the input layer.

Formats are recognised by their content, never by the file name: a ``.png`` that holds text is
rejected as text, a DICOM file called ``image.jpg`` is read as DICOM.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

# Groups a DICOM data set without preamble may start with: the file meta group, or the first
# groups of a classic ACR-NEMA/DICOM data set (identifying, patient, ...).
_NO_PREAMBLE_GROUPS = {0x0002, 0x0008}
_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip


class FormatError(Exception):
    """A file's content is not one of the supported formats (message says what it looks like)."""


def sniff(head: bytes) -> tuple[str, bool]:
    """Identify a file from its first bytes (at least 132 when the file is that long).

    Returns
    -------
    (kind, has_preamble)
        kind is "dicom", "png", "jpeg" or "tiff"; has_preamble is meaningful for DICOM only
        (False for a data set that starts right at byte 0).

    Raises
    ------
    FormatError
        With a reason naming what the content looks like.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom", True
    if head.startswith(PNG_MAGIC):
        return "png", False
    if head.startswith(JPEG_MAGIC):
        return "jpeg", False
    if head[:4] in TIFF_MAGICS:
        return "tiff", False
    if _looks_like_bare_dicom(head):
        return "dicom", False
    raise FormatError(_describe_unknown(head))


def _looks_like_bare_dicom(head: bytes) -> bool:
    # A data set without preamble starts with a little-endian tag of a low group, followed by
    # either an explicit VR or a plausible 32-bit implicit-VR length.
    if len(head) < 8:
        return False
    group, elem = struct.unpack("<HH", head[:4])
    if group not in _NO_PREAMBLE_GROUPS or elem > 0x0100:
        return False
    if head[4:6] in _VRS:
        return True
    (length,) = struct.unpack("<I", head[4:8])
    return length < 1024


def _describe_unknown(head: bytes) -> str:
    if not head:
        return "empty file (0 bytes)"
    sample = head[:512]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        # Never quote the content: a symbolic link to a password file would put it into the
        # database and the terminal.
        return "not an image: the file holds text, not DICOM, PNG, JPEG or TIFF"
    if len(head) >= 132:
        marker = head[128:132]
        return (
            "not an image: unknown format (no 'DICM' marker at byte 128, found "
            f"{marker!r}; no PNG, JPEG or TIFF signature, starts with {head[:4].hex(' ')})"
        )
    return (
        f"not an image: unknown format ({len(head)} bytes, too short for DICOM; no PNG, JPEG or "
        f"TIFF signature, starts with {head[:4].hex(' ')})"
    )


def raster_header(path: Path, kind: str, head: bytes) -> dict[str, int | str]:
    """Rows, columns, channels and bits of a PNG/JPEG/TIFF without decoding its pixels.

    Raises
    ------
    FormatError
        When the header itself is damaged.
    """
    if kind == "png":
        return _png_header(head)
    if kind == "jpeg":
        return _jpeg_header(path)
    return _tiff_header(path)


def _png_header(head: bytes) -> dict[str, int | str]:
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise FormatError("damaged PNG: no IHDR chunk after the signature")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour)
    if channels is None:
        raise FormatError(f"damaged PNG: unknown colour type {colour}")
    bits = 8 if colour == 3 else depth  # palette images expand to 8-bit samples
    return {"rows": height, "columns": width, "channels": channels, "bits": max(bits, 8)}


def _jpeg_header(path: Path) -> dict[str, int | str]:
    # Walk the marker segments up to the first start-of-frame (SOF0..SOF15 except DHT/JPG/DAC).
    with open(path, "rb") as fp:
        data = fp.read(1 << 20)
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise FormatError(f"damaged JPEG: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        (seglen,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 10 > len(data):
                break
            bits, height, width, channels = struct.unpack(">BHHB", data[pos + 4 : pos + 10])
            return {"rows": height, "columns": width, "channels": channels, "bits": max(bits, 8)}
        pos += 2 + seglen
    raise FormatError("damaged JPEG: no start-of-frame marker found")


def _tiff_header(path: Path) -> dict[str, int | str]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            mode = im.mode
    except Image.DecompressionBombError as exc:
        # Pillow refuses very large images at open time; report the declared size instead.
        raise FormatError(f"TIFF declares an image too large to open ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - any Pillow failure is a damaged header
        raise FormatError(f"damaged TIFF: {exc}") from exc
    channels = {"L": 1, "I;16": 1, "I;16B": 1, "I": 1, "F": 1, "LA": 2, "RGB": 3, "RGBA": 4}.get(
        mode, len(mode)
    )
    bits = 16 if mode.startswith("I;16") else 32 if mode in ("I", "F") else 8
    return {"rows": height, "columns": width, "channels": channels, "bits": bits}


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MAX_CHUNK = 2**31 - 1  # the PNG specification's limit on a chunk's length
# Chunk types the PNG specification registers: a reason names these; any other type is "a
# chunk" (reasons never quote bytes of the file).
PNG_CHUNK_TYPES = frozenset(
    b"IHDR PLTE IDAT IEND acTL cHRM cICP gAMA iCCP mDCV cLLI sBIT sRGB bKGD hIST tRNS eXIf "
    b"fcTL fdAT pHYs sPLT tIME iTXt tEXt zTXt".split()
)


def check_png_chunks(data: bytes | memoryview) -> None:
    """Walk a PNG's chunks up to IEND and refuse a chunk that does not fit in the file.

    OpenCV's PNG reader allocates a buffer of a chunk's declared length before reading it, so
    a few-kilobyte file whose PLTE chunk claims 2.5 GB made it allocate 2.5 GB. A chunk longer
    than the PNG limit (2^31 - 1 bytes) or than what is left of the file, or a chunk type that
    is not four ASCII letters, makes the file damaged here, before any decoder sees it.

    Raises
    ------
    FormatError
        Naming the chunk, where it starts and what it declares.
    """
    size = len(data)
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= size:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = bytes(data[pos + 4 : pos + 8])
        if not kind.isalpha() or not kind.isascii():
            raise FormatError(f"damaged PNG: the chunk type at byte {pos} is not four letters")
        if length > PNG_MAX_CHUNK or pos + 12 + length > size:
            name = f"chunk {kind.decode('ascii')}" if kind in PNG_CHUNK_TYPES else "a chunk"
            raise FormatError(
                f"damaged PNG: {name} at byte {pos} declares {length:,} bytes, more than "
                f"the file holds ({size:,} bytes)"
            )
        if kind == b"IEND":
            return
        pos += 12 + length
    # no IEND: a truncated file; what is there is left to the decoder, which refuses it


def read_raster(path: Path) -> np.ndarray:
    """Decode a PNG/JPEG/TIFF with OpenCV exactly as ``cv2.imread(path, IMREAD_UNCHANGED)``.

    The bytes go through ``np.fromfile`` + ``cv2.imdecode`` because ``cv2.imread`` cannot open
    non-ASCII paths on Windows. Colour images become grey with ``COLOR_BGR(A)2GRAY`` (OpenCV
    returns BGR order); the dtype is kept.
    """
    import cv2

    buf = np.fromfile(path, dtype=np.uint8)
    if buf[:8].tobytes() == PNG_SIGNATURE:
        check_png_chunks(memoryview(buf))
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FormatError("the image data could not be decoded (damaged or truncated file)")
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif channels in (1, 2):
            img = img[:, :, 0]  # grey (+ alpha): the alpha channel is not image content
        else:
            raise FormatError(f"unsupported image with {channels} channels")
    return np.ascontiguousarray(img)
