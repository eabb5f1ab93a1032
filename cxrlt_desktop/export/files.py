"""The export folder on disk: its file names, atomic writes, the empty-folder check and clean-up.

Every file of an export is written by :func:`atomic_write`: to a temporary file in the same
folder, fsynced and renamed (``os.replace``), never over an existing file, with mode 0600 (an
export holds labels of patients, and with ``include_phi`` their identifiers). An export goes
into a new or empty folder only (:func:`prepare_out_dir`, which creates it 0700); if it fails
or is cancelled, :func:`remove_written` removes what it wrote, so the folder is left as it was.

No header value becomes part of a file name unchecked: :func:`inside` resolves every path an
export writes (files and sub-folders) and refuses one outside the export folder, and
:func:`is_file_uid` is the test a UID passes before it may name a file.
"""

from __future__ import annotations

import io
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxrlt_desktop.export.errors import ExportError
from cxrlt_desktop.export.safe_csv import csv_bytes

__all__ = [
    "DISAGREEMENTS_CSV",
    "FILE_MODE",
    "IMAGES_DIR",
    "LABELS_CSV",
    "README_TXT",
    "SR_DIR",
    "atomic_write",
    "csv_bytes",
    "inside",
    "is_file_uid",
    "make_private_dir",
    "prepare_out_dir",
    "remove_written",
]

LABELS_CSV = "labels.csv"
DISAGREEMENTS_CSV = "disagreements.csv"
README_TXT = "README.txt"
IMAGES_DIR = "images"
SR_DIR = "sr"
FILE_MODE = 0o600
DIR_MODE = 0o700
_FILE_UID = re.compile(r"[0-9.]{1,64}")


def is_file_uid(uid: str | None) -> bool:
    """Whether ``uid`` may be part of a file name: digits and dots only, 1 to 64 characters (a
    DICOM UID's syntax), and not ``.``/``..``-like (at least one digit)."""
    return bool(uid) and _FILE_UID.fullmatch(uid) is not None and any(c.isdigit() for c in uid)


def inside(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root / parts``, checked to resolve inside ``root``; every path an export writes is
    built here.

    Each part must be one plain name (no separator, not ``.``/``..``, no NUL), and the result,
    with symbolic links resolved, must lie inside the resolved ``root``.

    Raises
    ------
    ExportError
        The path would leave ``root`` (the message names both).
    """
    root = Path(root)
    for part in parts:
        bad = (
            not part
            or part in (".", "..")
            or "/" in part
            or "\\" in part
            or "\0" in part
            or (os.altsep is not None and os.altsep in part)
            or Path(part).is_absolute()
            or Path(part).drive
        )
        if bad:
            raise ExportError(
                f"{root}: refused to write {part!r}: a file name must be one plain name "
                "inside the export folder"
            )
    path = root.joinpath(*parts)
    base = root.resolve()
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:
        raise ExportError(f"{root}: refused to write {path}: it resolves outside the export folder")
    return path


def make_private_dir(path: Path) -> Path:
    """Create the folder ``path`` (which must not exist) with mode 0700, whatever the umask."""
    path.mkdir(mode=DIR_MODE)
    if os.name == "posix":
        os.chmod(path, DIR_MODE)
    return path


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | Callable[[io.BufferedWriter], Any],
    *,
    mode: int = FILE_MODE,
) -> Path:
    """Write a file atomically, never over an existing one, with ``mode`` (default 0600).

    The bytes (or whatever the callable writes to the open binary file) go to a temporary file
    in the same folder, created with ``mode`` (the umask can only take bits away), fsynced
    and then renamed to ``path`` (``os.replace``). If anything fails, the temporary file is
    removed and ``path`` does not appear.

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
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
        with os.fdopen(fd, "wb") as f:
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
    """Create ``out_dir`` (mode 0700; missing parents too) or check it is empty; True when this
    export created it. An existing empty folder keeps its mode (the files in it are 0600)."""
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
        out_dir.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        make_private_dir(out_dir)
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
