"""Guard against a reference-count bug of PySide6 6.12.0 on Python 3.11.

In that combination every void PySide6 method (``repaint()``, ``setText()``,
``processEvents()``, ...) returns ``None`` without taking a reference, and ``Signal.emit()``
does the same with ``True``. Python 3.12+ makes these singletons immortal, which hides the
bug there; on 3.11 each call drops one reference, and after a few thousand calls the
interpreter aborts with "none_dealloc: deallocating None" (or "bool_dealloc"). A GUI makes
thousands of such calls a minute.

At import we probe: a few void calls and emits, counting the references lost. Only when the
probe shows the leak (and only on CPython < 3.12) do we give ``None``, ``True`` and ``False``
a very large reference count, which is what Python 3.12 does for them by design (they are
never freed anyway). A fixed PySide6 makes this a no-op. The real fix is a PySide6 release
without the bug (see the report: pin ``PySide6-Essentials`` below 6.12 on Python 3.11).
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

_PROBES = 32
# Far more references than a process can drop (one per call), far from overflowing Py_ssize_t.
_BOOST = 1 << 40
_pinned = False


class _Probe(QObject):
    ping = Signal()


def leaked_references() -> dict[str, int]:
    """References to None / True lost by ``_PROBES`` void calls / emits (0 when healthy)."""
    probe = _Probe()
    none_before = sys.getrefcount(None)
    for _ in range(_PROBES):
        probe.setObjectName("probe")
    none_lost = none_before - sys.getrefcount(None)
    true_before = sys.getrefcount(True)
    for _ in range(_PROBES):
        probe.ping.emit()
    true_lost = true_before - sys.getrefcount(True)
    return {"None": none_lost, "True": true_lost}


def _pin(obj: object) -> None:
    # CPython's object header starts with ob_refcnt (Py_ssize_t).
    cell = ctypes.c_ssize_t.from_address(id(obj))
    cell.value += _BOOST


def install() -> bool:
    """Pin the singletons if this PySide6 leaks their references. Returns whether it did."""
    global _pinned
    if _pinned:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False  # immortal singletons: nothing can go wrong
    lost = leaked_references()
    if lost["None"] < _PROBES and lost["True"] < _PROBES:
        return False
    for obj in (None, True, False, NotImplemented, Ellipsis):
        _pin(obj)
    _pinned = True
    return True


def pinned() -> bool:
    return _pinned


install()
