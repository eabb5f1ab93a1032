"""Thousands of PySide6 calls must not exhaust the references to None / True.

PySide6 6.12.0 on Python 3.11 drops one reference to None per void method call and one to True
per Signal.emit(); without the guard in cxrlt_desktop.ui._pyside_fix this test aborts the
interpreter ("none_dealloc" / "bool_dealloc") long before its loop ends.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from cxrlt_desktop.ui import _pyside_fix


class _Emitter(QObject):
    progress = Signal(object)
    tick = Signal()


def test_many_calls_and_emits_survive(qtbot):
    e = _Emitter()
    got = []
    e.progress.connect(got.append)
    for i in range(20_000):
        e.progress.emit(i)
        e.tick.emit()
        e.setObjectName("x")
    assert len(got) == 20_000
    # Healthy now: either this PySide6 never leaked, or the guard pinned the singletons.
    lost = _pyside_fix.leaked_references()
    assert _pyside_fix.pinned() or (lost["None"] < 32 and lost["True"] < 32)
