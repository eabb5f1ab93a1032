"""Thousands of signal emits must not eat the references to True (PySide6 6.12 + Python 3.11).

Without the guard in cxrlt_desktop.ui._pyside_fix, this test aborts the interpreter with
"bool_dealloc: deallocating True or False" after a few hundred emits.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

import cxrlt_desktop.ui  # noqa: F401  (installs the guard)


class _Emitter(QObject):
    progress = Signal(object)
    tick = Signal()


def test_many_emits_keep_true_alive(qtbot):
    e = _Emitter()
    got = []
    e.progress.connect(got.append)
    before = sys.getrefcount(True)
    for i in range(5000):
        e.progress.emit(i)
        e.tick.emit()
    assert len(got) == 5000
    assert sys.getrefcount(True) >= before
