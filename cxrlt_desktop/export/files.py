"""The export folder on disk: its file names, atomic writes, the empty-folder check and clean-up.

Every file of an export is written by :func:`atomic_write`: to a temporary file in the same
folder, fsynced and renamed (``os.replace``), never over an existing file. An export goes into a
new or empty folder only (:func:`prepare_out_dir`); if it fails or is cancelled,
:func:`remove_written` removes what it wrote, so the folder is left as it was.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cxrlt_desktop.export.errors import ExportError

LABELS_CSV = "labels.csv"
DISAGREEMENTS_CSV = "disagreements.csv"
README_TXT = "README.txt"
IMAGES_DIR = "images"
SR_DIR = "sr"


def atomic_write(
    path: str | os.PathLike[str], data: bytes | Callable[[io.BufferedWriter], Any]
) -> Path:
    """Write a file atomically and never over an existing one.

    The bytes (or whatever the callable writes to the open binary file) go to a temporary file
    in the same folder, which is fsynced and then renamed to ``path`` (``os.replace``). If
    anything fails, the temporary file is removed and ``path`` does not appear.

    Raises
    ------
    ExportError
        ``path`` exists already.
    """
    path = Path(path)
    if path.exists():
        raise ExportError(f"{path}: exists already; an export never overwrites a file")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # a concurrent writer got there first
            raise ExportError(f"{path}: exists already; an export never overwrites a file")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk (POSIX); Windows cannot
    # open a folder for fsync and does not need it.
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def prepare_out_dir(out_dir: Path) -> bool:
    """Create ``out_dir`` or check it is empty; True when this export created it."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f"{out_dir}: is a file, not a folder; choose a folder for the export")
        if any(out_dir.iterdir()):
            raise ExportError(
                f"{out_dir}: folder is not empty (an earlier export?); an export never overwrites "
                "one: choose a new or empty folder"
            )
        return False
    try:
        out_dir.mkdir(parents=True)
    except OSError as e:
        raise ExportError(f"{out_dir}: cannot create the export folder ({e.strerror or e})") from e
    return True


def remove_written(files: list[Path], dirs: list[Path], created: Path | None) -> None:
    """Remove an unfinished export: its files, its sub-folders, and the folder if it made it."""
    for f in reversed(files):
        try:
            f.unlink(missing_ok=True)
        except OSError:
            pass
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            pass
    if created is not None:
        try:
            created.rmdir()
        except OSError:
            pass


def csv_bytes(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> bytes:
    """A CSV file (``\\n`` line ends, UTF-8) of a header and rows, as bytes to write."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(header))
    for row in rows:
        w.writerow(list(row))
    return buf.getvalue().encode("utf-8")
