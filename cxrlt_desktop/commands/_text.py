"""File names and messages as the commands print or write them: control characters escaped.

A file name can hold anything but ``/`` and NUL: an escape sequence that recolours or clears the
terminal, a carriage return that overwrites the line, bidirectional-override characters that
reorder what is shown, or bytes that are not UTF-8 at all (Python hands those over as lone
surrogates, PEP 383, which cannot be encoded and used to crash ``cxrlt score``). Every command
passes names, paths and messages that quote them through :func:`printable` before printing, and
``cxrlt score`` writes its ImageIDs through it, so what is shown is always one visible line.

Escapes: a byte of a non-UTF-8 name and a C0/C1 control character become ``\\xNN`` (the byte
itself, so ``b"\\xff.png"`` is shown as ``\\xff.png``), other invisible layout characters
(line/paragraph separators, bidirectional controls) ``\\uNNNN``. Everything else, non-ASCII
letters included, is kept.
"""

from __future__ import annotations

import os
import re
from typing import Any

_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    o = ord(match.group())
    if 0xDC80 <= o <= 0xDCFF:  # surrogateescape: the undecodable byte o - 0xDC00
        return f"\\x{o - 0xDC00:02x}"
    if o <= 0xFF:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}"


def printable(value: Any) -> str:
    """``value`` (a str, a path, an exception...) as one visible line: control characters,
    undecodable bytes and invisible layout characters as backslash escapes."""
    text = os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else str(value)
    return _INVISIBLE.sub(_escape, text)
