"""File access before any decoding: stat with a reason for everything that is not a regular file,
the first bytes, and the format decided from them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from engine.imageio import formats
from engine.imageio.formats import FormatError
from engine.imageio.records import ImageReadError


def _stat_file(path: Path) -> os.stat_result:
    """Stat ``path`` following links, with a one-line reason for everything that is not a file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageReadError(
                path,
                f"cannot open: broken symbolic link (target {os.readlink(path)!s} does not exist)",
            ) from None
        raise ImageReadError(path, "cannot open: no such file") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(path, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(path, "not a regular file (device, socket or pipe)")
    return st


def _read_head(path: Path, n: int = 1024) -> bytes:
    try:
        with open(path, "rb") as fp:
            return fp.read(n)
    except PermissionError:
        raise ImageReadError(path, "cannot open: permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open: {exc.strerror or exc}") from None


def identify(path: Path) -> tuple[os.stat_result, str, bool, bytes]:
    st = _stat_file(path)
    if st.st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    head = _read_head(path)
    try:
        kind, preamble = formats.sniff(head)
    except FormatError as exc:
        raise ImageReadError(path, str(exc)) from None
    return st, kind, preamble, head


def size_mtime(path: Path) -> tuple[int, float]:
    try:
        st = os.stat(path)
        return int(st.st_size), float(st.st_mtime)
    except OSError:
        return 0, 0.0


def has_preamble(path: Path) -> bool:
    with open(path, "rb") as fp:
        head = fp.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"
