"""Cyclic garbage is collected on the GUI thread only (ui/app.py): a Qt object in a reference
cycle freed by a collection that a decode or scoring thread triggered would be destroyed on
that thread, which crashes Qt at random (the test suite once segfaulted inside a worklist query
this way)."""

from __future__ import annotations

import gc
import threading

from cxrlt_desktop.ui.app import ensure_app
from cxrlt_desktop.ui.background import Lane


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def _make_cycles(n: int) -> int:
    for _ in range(n):
        _Node()
    return n


def test_cycles_are_collected_on_the_gui_thread_only(qtbot):
    ensure_app()
    assert not gc.isenabled(), "automatic collection is on: a worker thread may trigger it"
    gui = threading.get_ident()
    threads: list[int] = []

    def record(phase: str, _info: dict) -> None:
        if phase == "start":
            threads.append(threading.get_ident())

    gc.callbacks.append(record)
    try:
        lane = Lane("garbage")
        done = []
        # far more allocations than the generation-0 threshold, on a worker thread
        lane.run(_make_cycles, 50 * gc.get_threshold()[0], connect={"returned": done.append})
        qtbot.waitUntil(lambda: bool(done), timeout=30_000)
        assert [t for t in threads if t != gui] == []
        # ... and the GUI thread does collect them
        _make_cycles(2 * gc.get_threshold()[0])
        qtbot.waitUntil(lambda: gui in threads, timeout=10_000)
    finally:
        gc.callbacks.remove(record)
