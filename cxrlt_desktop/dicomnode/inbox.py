"""The inbox: where received objects are written, atomically, one file per SOP instance.

Layout: ``<inbox>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``. The UIDs come
from the received data set, so each is checked against the UI value representation of PS3.5
(section 9.1: components of digits joined by ".", no leading zero in a component, at most 64
characters) before it becomes a path part: nothing else (no "..", no "/", no NUL) can pass.

A write goes to a temporary file in ``<inbox>/.incoming/`` (same file system), is flushed and
``fsync``-ed, checked by the input layer, then renamed into place and the folder ``fsync``-ed:
the library never sees half a file, and a crash leaves at most a ``.partial`` file in
``.incoming`` (removed at the next start). Before writing, the free space must stay above the
floor (``min_free_bytes``) after the object is written; otherwise nothing is written
(:class:`NoSpace`, answered with an out-of-resources status). The same SOP instance received
again with the same bytes leaves the file untouched; with other bytes (a corrected image, or
another transfer syntax) it replaces the file, and the library reads it as a new version.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
MAX_UID_LENGTH = 64
INCOMING = ".incoming"
PARTIAL_SUFFIX = ".partial"


def valid_uid(value: object) -> bool:
    """True when ``value`` is a str that follows the UI VR grammar (PS3.5 section 9.1)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_UID_LENGTH
        and _UID.fullmatch(value) is not None
    )


class NoSpace(Exception):
    """Storing the object would take the free space below the floor (nothing was written)."""


class Outcome(Enum):
    STORED = "stored"  # a new file
    REPLACED = "replaced"  # the same SOP instance with other bytes: the file was replaced
    UNCHANGED = "unchanged"  # the same SOP instance with the same bytes: nothing written


@dataclass
class Staged:
    """A received object written to a temporary file in ``.incoming`` (not yet in place)."""

    path: Path
    size: int


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Inbox:
    """The inbox folder of one DICOM node.

    Parameters
    ----------
    root
        The inbox folder (created, private to the user, when absent).
    min_free_bytes
        The free-space floor: an object whose writing would leave less free space is refused.
    """

    def __init__(self, root: Path | str, min_free_bytes: int = 0) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.min_free_bytes = int(min_free_bytes)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.incoming = self.root / INCOMING
        self.incoming.mkdir(exist_ok=True, mode=0o700)

    def clean_partial(self) -> int:
        """Remove the temporary files a crash left in ``.incoming``; returns how many."""
        n = 0
        for p in self.incoming.glob(f"*{PARTIAL_SUFFIX}"):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
        return n

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        """The file of one SOP instance; raises ValueError for a UID that is not a valid UI."""
        for name, uid in (
            ("StudyInstanceUID", study_uid),
            ("SeriesInstanceUID", series_uid),
            ("SOPInstanceUID", sop_uid),
        ):
            if not valid_uid(uid):
                shown = uid if isinstance(uid, str) else repr(uid)
                raise ValueError(f"{name} is not a valid UID: {shown[:80]!r}")
        return self.root / study_uid / series_uid / f"{sop_uid}.dcm"

    def stage(self, data: bytes) -> Staged:
        """Write ``data`` to a temporary file in ``.incoming`` (flushed and fsync-ed).

        Raises
        ------
        NoSpace
            The free space after writing would be below the floor, or the disk filled up while
            writing (nothing is left behind).
        OSError
            Another write error (nothing is left behind).
        """
        if self.free_bytes() - len(data) < self.min_free_bytes:
            raise NoSpace(
                f"free space below the floor of {self.min_free_bytes // (1024 * 1024)} MB "
                f"(min_free_mb) for an object of {len(data)} bytes"
            )
        fd, name = tempfile.mkstemp(dir=self.incoming, prefix=".", suffix=PARTIAL_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            Path(name).unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"disk full while writing ({exc.strerror})") from exc
            raise
        return Staged(Path(name), len(data))

    def discard(self, staged: Staged) -> None:
        staged.path.unlink(missing_ok=True)

    def commit(self, staged: Staged, target: Path) -> Outcome:
        """Move a staged file to ``target`` (a :meth:`path_for` path): atomically, or not at all
        when the file there already holds the same bytes."""
        folder = target.parent
        if target.is_file() and target.stat().st_size == staged.size:
            if _same_bytes(target, staged.path):
                self.discard(staged)
                return Outcome.UNCHANGED
        existed = target.exists()
        new_dirs = [p for p in (folder.parent, folder) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(staged.path, target)
        _fsync_dir(folder)
        for d in new_dirs:  # the new folders' entries in their parents
            _fsync_dir(d.parent)
        return Outcome.REPLACED if existed else Outcome.STORED


def _same_bytes(a: Path, b: Path, chunk: int = 1 << 20) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True
