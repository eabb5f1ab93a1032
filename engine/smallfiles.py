"""Read a small text file the user names (settings, zero-shot prompts, calibration), safely.

``Path.read_text`` on a path the user typed reads whatever is there: a FIFO blocks the app for
ever (opening it waits for a writer), ``/dev/zero`` or ``/dev/urandom`` reads until memory runs
out, a folder fails with a bare ``IsADirectoryError``. :func:`read_small_text` opens without
blocking (``O_NONBLOCK``), checks on the open descriptor that it is a regular file (``fstat``: no
gap between the check and the read), refuses a file over the limit from its size before reading,
and reads at most ``limit + 1`` bytes in case the file grows meanwhile.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: Default size limit: settings, prompts and calibration files are a few kilobytes.
MAX_TEXT_BYTES = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class SmallFileError(ValueError):
    """A file that :func:`read_small_text` refuses. ``str(e) == f"{path}: {reason}"``."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n:,} bytes"


def read_small_text(path: Path | str, limit: int = MAX_TEXT_BYTES, encoding: str = "utf-8") -> str:
    """The text of a regular file of at most ``limit`` bytes.

    Parameters
    ----------
    path : path-like
        The file.
    limit : int
        Largest accepted size in bytes (default 1 MiB).
    encoding : str
        Text encoding (strict decoding).

    Returns
    -------
    str
        The decoded text.

    Raises
    ------
    SmallFileError
        Missing or unreadable, not a regular file (a folder, a FIFO, a device, a socket), larger
        than ``limit``, or not valid text in ``encoding``; ``.reason`` says which in one line.
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as e:
        raise SmallFileError(path, "no such file") from e
    except OSError as e:
        if path.is_dir():  # Windows cannot open a folder at all
            raise SmallFileError(path, "is a folder, not a file") from e
        raise SmallFileError(path, f"cannot open: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SmallFileError(path, f"is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise SmallFileError(
                path, f"too large: {_size(st.st_size)} (at most {_size(limit)} accepted)"
            )
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, limit + 1 - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise SmallFileError(path, f"too large: it grew past {_size(limit)} while being read")
    except OSError as e:
        raise SmallFileError(path, f"cannot read: {e.strerror or e}") from e
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise SmallFileError(path, f"not {encoding} text (invalid byte at offset {e.start})") from e


__all__ = ["MAX_TEXT_BYTES", "SmallFileError", "read_small_text"]
