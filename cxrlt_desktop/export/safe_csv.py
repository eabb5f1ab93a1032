"""CSV files a spreadsheet can open without running anything: the one CSV writer of the app.

A spreadsheet reads a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some
programs, a tab or carriage return) as a formula, so a note, a reviewer's name or a file name
such as ``=HYPERLINK(...)`` would run when the file is opened ("CSV injection"). Every CSV the
app writes (the export's labels.csv and disagreements.csv, ``cxrlt score`` and its
errors file, ``cxrlt prevalence``) goes through :func:`csv_text` / :class:`SafeWriter`, which
prefix such a text cell with ``'`` (the spreadsheet convention for "this is text").

Numbers stay numbers. Which cells are numbers is decided by the caller's types, never guessed
from the content: ``int`` and ``float`` values, and :class:`Numeric` strings (the app's own
formatting of a number, e.g. ``Numeric(f"{p:.6f}")``, checked to parse as a float), are
written as they are; every ``str`` is text and is neutralised. Telling them apart by content
instead ("does it parse as a number?") would also pass a note reading ``-1`` as a number,
which is harmless, but the type is where the knowledge is: the app formatted the number
itself, whereas text came from a person or a file name, whatever it looks like.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

# What a spreadsheet may execute at the start of a cell (OWASP's list).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"


class Numeric(str):
    """A number the app formatted itself (``Numeric(f"{x:.6f}")``): written unchanged.

    Raises
    ------
    ValueError
        The text is not a number (so a formula can never pass as one); "" (an empty cell for
        a missing number) is allowed.
    """

    def __new__(cls, text: str) -> Numeric:
        text = str(text)
        if text:
            float(text)  # ValueError for anything that is not a plain number
        return super().__new__(cls, text)


def safe_cell(value: Any) -> str:
    """A cell as written: numbers (``int``, ``float``, :class:`Numeric`) as they are, text
    starting with a formula trigger prefixed with ``'`` and its line breaks as ``\\n``, ``None``
    as empty."""
    if value is None:
        return ""
    if isinstance(value, Numeric):
        return str(value)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    text = str(value)
    if text.startswith(FORMULA_TRIGGERS):
        text = ESCAPE + text
    # A lone carriage return would end the row for a reader (the writer quotes only cells
    # holding "\n", the line end): line breaks in text are written as "\n".
    return text.replace("\r\n", "\n").replace("\r", "\n")


def safe_row(row: Iterable[Any]) -> list[str]:
    """Each cell of ``row`` through :func:`safe_cell`."""
    return [safe_cell(v) for v in row]


class SafeWriter:
    """``csv.writer`` over ``f`` (``\\n`` line ends) whose every cell goes through
    :func:`safe_cell`; for files written row by row."""

    def __init__(self, f: TextIO) -> None:
        self._w = csv.writer(f, lineterminator="\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._w.writerow(safe_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_text(header: Iterable[Any], rows: Iterable[Iterable[Any]]) -> str:
    """A whole CSV file (header and rows, ``\\n`` line ends) with every cell made safe."""
    buf = io.StringIO()
    w = SafeWriter(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def csv_bytes(header: Iterable[Any], rows: Iterable[Iterable[Any]]) -> bytes:
    """:func:`csv_text` as UTF-8 bytes, to write with :func:`~.files.atomic_write`."""
    return csv_text(header, rows).encode("utf-8")


def write_csv_atomically(out: str | os.PathLike[str], fill: Callable[[SafeWriter], T]) -> T:
    """Create the CSV file ``out`` (mode 0600) from the rows ``fill(writer)`` writes with a
    :class:`SafeWriter`: into ``out.part`` first, renamed to ``out`` when ``fill`` returns; on
    any error (or Ctrl-C) the ``.part`` file is removed and ``out`` is left as it was.
    Returns what ``fill`` returns."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            value = fill(SafeWriter(f))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return value
