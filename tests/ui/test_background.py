"""The GUI's one background mechanism (ui/background.py): superqt workers in lanes."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

from cxrlt_desktop.ui.background import Lane, quit_all, wait_all

UI = Path(__file__).resolve().parents[2] / "cxrlt_desktop" / "ui"
# Names that start threads or pools. Anything that reaches one of them from a GUI module
# (import, attribute, call) counts, so an alias cannot hide it.
THREAD_MAKERS = {
    "Thread",
    "QThread",
    "QThreadPool",
    "ThreadPoolExecutor",
    "ProcessPoolExecutor",
    "new_worker_qthread",
    "start_new_thread",
    "QRunnable",
}


def _thread_names(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Name) and node.id in THREAD_MAKERS:
            found.append(f"{path.name}:{node.lineno} {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in THREAD_MAKERS:
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in THREAD_MAKERS or (node.module or "").startswith("concurrent"):
                    found.append(f"{path.name}:{node.lineno} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(("concurrent", "_thread")):
                    found.append(f"{path.name}:{node.lineno} import {alias.name}")
    return found


def test_only_the_worker_helper_creates_threads():
    offenders = [
        hit
        for path in sorted(UI.rglob("*.py"))
        if path.name != "background.py"
        for hit in _thread_names(path)
    ]
    assert offenders == []
    # the check itself sees a thread where there is one
    assert _thread_names(UI / "background.py")


def _count(n: int, should_stop: threading.Event | None = None):
    done = 0
    for i in range(n):
        if should_stop is not None and should_stop.is_set():
            break
        done += 1
        yield i
    return done


def test_generator_yields_and_returns(qtbot):
    lane = Lane("test")
    got, returned = [], []
    worker = lane.run(_count, 5, connect={"yielded": got.append, "returned": returned.append})
    with qtbot.waitSignal(lane.idle, timeout=10_000):
        pass
    assert got == [0, 1, 2, 3, 4] and returned == [5]
    assert not lane.busy and lane.workers() == []
    assert worker is not None


def test_quit_sets_should_stop_and_the_service_returns(qtbot):
    lane = Lane("test")
    gate = threading.Event()
    returned = []

    def blocked(should_stop: threading.Event):
        yield "started"
        gate.wait(10)
        n = 0
        while not should_stop.is_set():
            n += 1
            yield n
        return "stopped"

    started = threading.Event()
    lane.run(
        blocked,
        stop=True,
        connect={"yielded": lambda v: started.set(), "returned": returned.append},
    )
    qtbot.waitUntil(started.is_set, timeout=10_000)
    quit_all()
    gate.set()
    with qtbot.waitSignal(lane.idle, timeout=10_000):
        pass
    assert wait_all(10_000)
    assert returned == ["stopped"]


def test_one_thread_runs_work_in_order(qtbot):
    lane = Lane("serial")
    order: list[str] = []
    lock = threading.Lock()

    def step(name: str) -> str:
        with lock:
            order.append(f"{name}-start")
        with lock:
            order.append(f"{name}-end")
        return name

    for name in "abc":
        lane.run(step, name)
    qtbot.waitUntil(lambda: not lane.busy, timeout=10_000)
    assert order == ["a-start", "a-end", "b-start", "b-end", "c-start", "c-end"]


def test_errors_reach_the_errored_slot(qtbot):
    lane = Lane("err")
    errors = []

    def boom():
        raise ValueError("bad file")

    lane.run(boom, connect={"errored": errors.append})
    qtbot.waitUntil(lambda: not lane.busy, timeout=10_000)
    assert len(errors) == 1 and str(errors[0]) == "bad file"


def test_a_runtime_error_of_a_generator_reaches_errored_and_the_lane_goes_idle(qtbot):
    # superqt alone takes it for a deleted worker and emits neither errored nor finished.
    lane = Lane("err")
    errors, finished = [], []

    def broken():
        yield 1
        raise RuntimeError("size mismatch for head.weight")

    lane.run(broken, connect={"errored": errors.append, "finished": lambda: finished.append(1)})
    qtbot.waitUntil(lambda: not lane.busy, timeout=10_000)
    assert [str(e) for e in errors] == ["size mismatch for head.weight"]
    assert isinstance(errors[0], RuntimeError) and finished == [1]


def test_should_stop_is_an_event_and_a_callable(qtbot):
    lane = Lane("stop")
    seen = []

    def service(should_stop):  # the services poll ``should_stop()``
        seen.append((should_stop(), should_stop.is_set()))
        yield 0

    lane.run(service, stop=True)
    qtbot.waitUntil(lambda: not lane.busy, timeout=10_000)
    assert seen == [(False, False)]


@pytest.fixture(autouse=True)
def _drain():
    yield
    quit_all()
    wait_all(10_000)


def test_quit_all_skips_a_lane_deleted_with_its_parent(qtbot):
    from PySide6.QtCore import QObject

    parent = QObject()
    dead = Lane("dead", parent=parent)
    parent.deleteLater()
    qtbot.waitUntil(lambda: not __import__("shiboken6").isValid(dead), timeout=10_000)
    live = Lane("live")
    returned = []
    live.run(_count, 2, connect={"returned": returned.append})
    quit_all()
    assert wait_all(10_000)
    qtbot.waitUntil(lambda: not live.busy, timeout=10_000)


def test_finished_workers_are_freed_without_the_cyclic_collector(qtbot):
    """A worker in a reference cycle is freed by the cyclic collector, which runs on whichever
    thread allocates: its QObject then dies on a worker thread (a segfault mid-query). Workers
    must go by reference counting alone, right when they are done."""
    import gc

    from superqt.utils import WorkerBase

    def failing():
        yield 1
        raise RuntimeError("model file is not a checkpoint")

    lane = Lane("refcount")
    gc.collect()
    before = {id(o) for o in gc.get_objects() if issubclass(type(o), WorkerBase)}
    was_enabled = gc.isenabled()  # the app turns automatic collection off (ui/app.py)
    gc.disable()
    try:
        errors = []
        lane.run(_count, 3, stop=True)
        # the message only: an exception object's traceback holds the worker's frames
        lane.run(failing, connect={"errored": lambda exc: errors.append(str(exc))})
        lane.run(sum, [1, 2])
        qtbot.waitUntil(lambda: not lane.busy, timeout=10_000)
        assert lane.wait(10_000)
        qtbot.wait(50)  # the queued finished signals
        left = [
            o for o in gc.get_objects() if issubclass(type(o), WorkerBase) and id(o) not in before
        ]
        assert left == [], left
        assert errors == ["model file is not a checkpoint"]
    finally:
        if was_enabled:
            gc.enable()
