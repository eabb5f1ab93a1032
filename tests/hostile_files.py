"""Files an attacker could drop into a scanned folder, written at run time by the tests.

Each builder writes one small file that reproduces one attack on the image input (a decoder
abort, a decompression bomb, non-finite values, a secret-holding text file, a huge private
element) and returns its path. Nothing here is committed as a binary.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from engine.dicomwrite import make_dataset, write_dicom
from engine.imageio.formats import PNG_SIGNATURE


def chest(shape: tuple[int, int] = (256, 256), seed: int = 0) -> np.ndarray:
    """A 12-bit chest-like test image (bright mediastinum, dark lungs, noise)."""
    rows, cols = shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    lungs = np.exp(-(((x - cols * 0.3) / (cols * 0.15)) ** 2 + ((y - rows / 2) / (rows / 3)) ** 2))
    lungs += np.exp(-(((x - cols * 0.7) / (cols * 0.15)) ** 2 + ((y - rows / 2) / (rows / 3)) ** 2))
    arr = 3000 - 2000 * lungs + rng.normal(0, 40, shape)
    return np.clip(arr, 0, 4095).astype(np.uint16)


def _compressed(path: Path, syntax: str, **header) -> Path:
    from pydicom.uid import UID

    ds = make_dataset(chest(), bits_stored=12, **header)
    ds.compress(UID(syntax), encoding_plugin="pyjpegls" if "4.8" in syntax else "pylibjpeg")
    ds.save_as(path, enforce_file_format=True)
    return path


def _patch_pixel_data(path: Path, old: bytes, new: bytes) -> Path:
    data = path.read_bytes()
    at = data.index(b"\xe0\x7f\x10\x00")  # the pixel data element
    hit = data.index(old, at)
    path.write_bytes(data[:hit] + new + data[hit + len(new) :])
    return path


def jpegls_lying_size(path: Path, size: int = 65535) -> Path:
    """JPEG-LS DICOM: the header says 256 x 256, the stream's SOF55 says ``size`` x ``size``.

    Unchecked, CharLS overflows and GDCM aborts the process (an uncaught C++ exception).
    """
    _compressed(path, "1.2.840.10008.1.2.4.80")
    data = path.read_bytes()
    sof = data.index(b"\xff\xf7", data.index(b"\xe0\x7f\x10\x00"))
    old = data[sof : sof + 9]
    new = old[:5] + struct.pack(">HH", size, size)
    return _patch_pixel_data(path, old, new)


def j2k_lying_size(path: Path, size: int = 60000) -> Path:
    """JPEG 2000 DICOM whose SIZ marker says ``size`` x ``size`` (the header says 256 x 256).

    Unchecked, OpenJPEG tries to allocate the declared image (13.4 GiB for 60000 x 60000).
    """
    _compressed(path, "1.2.840.10008.1.2.4.90")
    data = path.read_bytes()
    siz = data.index(b"\xff\x4f\xff\x51", data.index(b"\xe0\x7f\x10\x00"))
    old = data[siz : siz + 16]
    new = old[:8] + struct.pack(">II", size, size)
    return _patch_pixel_data(path, old, new)


def png_bomb(path: Path, side: int = 16000) -> Path:
    """A valid ``side`` x ``side`` 8-bit PNG of zeros: ~250 KB on disk, 256 MB decoded."""
    row = b"\x00" * (side + 1)  # filter byte 0 + one zero per pixel
    comp = zlib.compressobj(9)
    chunks = [comp.compress(row) for _ in range(side)]
    idat = b"".join(chunks) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )
    return path


def png_chunk(kind: bytes, body: bytes, length: int | None = None) -> bytes:
    """One PNG chunk; ``length`` (default: the body's) is what its length field says."""
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    size = len(body) if length is None else length
    return struct.pack(">I", size) + kind + body + struct.pack(">I", crc)


def palette_png(path: Path, side: int = 64, plte_length: int | None = None) -> Path:
    """A ``side`` x ``side`` 8-bit palette PNG (a grey ramp palette, a diagonal gradient);
    ``plte_length`` makes its PLTE chunk's length field claim that many bytes (the 768 bytes
    of the palette stay what follows): a few-kilobyte file for which a reader that trusts the
    field allocates that much."""
    y, x = np.mgrid[0:side, 0:side]
    pixels = ((x + y) * 255 // (2 * side - 2)).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    palette = bytes(v for i in range(256) for v in (i, i, i))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 3, 0, 0, 0)
    path.write_bytes(
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"PLTE", palette, plte_length)
        + png_chunk(b"IDAT", zlib.compress(raw, 9))
        + png_chunk(b"IEND", b"")
    )
    return path


def nan_slope(path: Path, value: str = "NaN") -> Path:
    """A chest CR whose Rescale Slope is ``value`` (NaN or inf): every modality value non-finite."""
    import logging
    import warnings

    ds = make_dataset(chest(), bits_stored=12)
    ds.RescaleIntercept = "0"
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)  # pydicom warns that the value is not a valid DS: it is meant
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.add_new(0x00281053, "DS", value)
            ds.save_as(path, enforce_file_format=True)
    finally:
        logger.setLevel(level)
    return path


def nan_tiff(path: Path) -> Path:
    """A float32 TIFF chest image with a block of NaN values."""
    import cv2

    arr = chest().astype(np.float32)
    arr[100:120, 100:120] = np.nan
    if not cv2.imwrite(str(path), arr):
        raise RuntimeError(f"cv2 could not write {path}")
    return path


SECRET = "root:x:0:0:s3cr3t-passw0rd:/root:/bin/bash"


def secret_text(path: Path) -> Path:
    """A text file with a secret in its first line (what a symlink to a password file reads)."""
    path.write_text(SECRET + "\nuser:x:1000:1000::/home/user:/bin/sh\n")
    return path


def huge_private_element(path: Path, nbytes: int = 300 * 2**20) -> Path:
    """A chest CR with an ``nbytes`` private OB element before its pixel data (sparse on disk)."""
    write_dicom(path, chest(), bits_stored=12)
    data = path.read_bytes()
    at = data.index(b"\xe0\x7f\x10\x00")
    creator = b"HOSTILE "
    element = struct.pack("<HH2sH", 0x7FD1, 0x0010, b"LO", len(creator)) + creator
    element += struct.pack("<HH2sHI", 0x7FD1, 0x1001, b"OB", 0, nbytes)
    with open(path, "wb") as fp:
        fp.write(data[:at] + element)
        fp.seek(nbytes, 1)  # a hole: the file is large, the disk use is not
        fp.write(data[at:])
    return path
