"""Work around a reference-count bug of ``SignalInstance.emit`` in some PySide6 builds.

PySide6 6.12.0 on Python 3.11 returns ``True`` from ``emit()`` without taking a reference, so
every emit (ours, pyqtgraph's, pytest-qt's) drops one reference to ``True``; after a few hundred
emits the interpreter aborts with "bool_dealloc: deallocating True or False". (Python 3.12+
makes True immortal, which hides the bug there.) At import we emit a probe signal; only when
the probe shows the leak do we wrap ``emit`` to add the missing reference. An over-count on
``True``/``False`` is harmless (they are never freed), an under-count is fatal, so the wrapper
errs on the safe side. A fixed PySide6 makes this a no-op.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal, SignalInstance

_PROBES = 16
_patched = False
ctypes.pythonapi.Py_IncRef.argtypes = [ctypes.py_object]
ctypes.pythonapi.Py_IncRef.restype = None


class _Probe(QObject):
    ping = Signal()


def emit_leaks_true() -> bool:
    """True when ``emit()`` drops a reference to ``True`` (the refs it lost are given back)."""
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(_PROBES):
        probe.ping.emit()
    lost = before - sys.getrefcount(True)
    for _ in range(max(0, lost)):
        _incref(True)
    return lost >= _PROBES


def _incref(obj: object) -> None:
    ctypes.pythonapi.Py_IncRef(obj)


def install() -> bool:
    """Wrap ``SignalInstance.emit`` if this PySide6 needs it. Returns whether it is wrapped."""
    global _patched
    if _patched:
        return True
    if not emit_leaks_true():
        return False
    original = SignalInstance.emit

    def emit(self, *args):
        result = original(self, *args)
        if result is True or result is False:
            _incref(result)
        return result

    SignalInstance.emit = emit
    _patched = True
    return True


install()
