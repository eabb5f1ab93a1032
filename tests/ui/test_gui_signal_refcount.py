"""Thousands of PySide6 calls must not exhaust the references to None / True.

PySide6 6.12.0 on Python 3.11 drops one reference to None per void method call and one to True
per Signal.emit(); with it this test aborts the interpreter ("none_dealloc" / "bool_dealloc")
long before its loop ends. pyproject.toml pins PySide6-Essentials below 6.12.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    progress = Signal(object)
    tick = Signal()


def test_many_calls_and_emits_survive(qtbot):
    e = _Emitter()
    got = []
    e.progress.connect(got.append)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for i in range(20_000):
        e.progress.emit(i)
        e.tick.emit()
        e.setObjectName("x")
    assert len(got) == 20_000
    # Healthy: no reference lost per call (a leaking PySide6 would have lost 20,000+ each).
    assert none_before - sys.getrefcount(None) < 32
    assert true_before - sys.getrefcount(True) < 32
