"""The GUI's one mechanism for background work: superqt workers, run in named lanes.

Every piece of work that must not run on the GUI thread (scan, model load, scoring, export,
retriage, worklist refresh, image decode, settings validation) is a plain function or generator
from the services, wrapped in a superqt :class:`~superqt.utils.FunctionWorker` or
:class:`~superqt.utils.GeneratorWorker` by :func:`superqt.utils.create_worker` and started in a
:class:`Lane`. A lane is a private :class:`QThreadPool` with a fixed number of threads (one by
default: the store wants one writer, the decoder one image at a time), so work of one kind
queues behind itself and never waits behind work of another kind in Qt's global pool.

Stopping: a service that takes ``should_stop`` gets a :class:`StopEvent` from :meth:`Lane.run`
(pass ``stop=True``): a :class:`threading.Event` that can also be called, so it is the services'
``should_stop`` callable as it is. :meth:`Lane.quit` sets it and the service ends at its next
check, returning normally, so its ``returned`` signal still reports what was done. Work without
a stop event gets superqt's ``quit()`` (a generator stops at its next ``yield``). Closing the
window is :func:`quit_all` then :func:`wait_all`.

No other module in ``cxrlt_desktop.ui`` creates threads, thread pools or executors
(``tests/ui/test_background.py`` checks this).
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QThreadPool, Signal
from superqt.utils import FunctionWorker, GeneratorWorker, WorkerBase, create_worker

__all__ = ["Lane", "StopEvent", "quit_all", "wait_all"]

_LANES: weakref.WeakSet[Lane] = weakref.WeakSet()


class StopEvent(threading.Event):
    """The ``should_stop`` of work run with ``stop=True``: an event, and ``stop()`` is ``is_set()``
    (the services take a callable)."""

    def __call__(self) -> bool:
        return self.is_set()


class _Generator(GeneratorWorker):
    """superqt's :class:`GeneratorWorker`, except that a ``RuntimeError`` raised by the generator
    reaches ``errored``.

    superqt takes any ``RuntimeError`` out of the generator for a deleted worker: it emits
    neither ``errored`` nor ``finished``, so the lane would stay busy for ever (and torch raises
    ``RuntimeError`` for many model problems).
    """

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(func, *args, **kwargs)
        # A list, not ``self``: a generator holding its worker would make a reference cycle, and
        # the cyclic collector may then free the worker's QObject on whichever thread happens to
        # allocate (a worker thread mid-query: a crash).
        self._raised: list[RuntimeError] = []
        self._gen = _guarded(self._gen, self._raised)

    def work(self) -> Any:
        result = super().work()
        if self._raised:
            # popped: the exception's traceback holds this worker, and the worker must not hold
            # the exception (a cycle again)
            raise self._raised.pop()  # WorkerBase.run emits errored, then finished
        return result


def _guarded(gen, raised: list[RuntimeError]):  # noqa: ANN001, ANN202
    try:
        return (yield from gen)
    except RuntimeError as exc:
        raised.append(exc)
        return None


class Lane(QObject):
    """A queue of superqt workers running on ``threads`` threads of their own.

    ``idle`` is emitted (on the GUI thread) when the last running worker of the lane finished.
    """

    idle = Signal()

    def __init__(self, name: str, threads: int = 1, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._pool.setObjectName(f"cxrlt-{name}")
        self._lock = threading.Lock()
        self._workers: dict[WorkerBase, threading.Event | None] = {}
        _LANES.add(self)

    def run(
        self,
        func: Callable[..., Any],
        *args: Any,
        stop: bool = False,
        connect: dict[str, Callable[..., Any] | list[Callable[..., Any]]] | None = None,
        **kwargs: Any,
    ) -> FunctionWorker | GeneratorWorker:
        """Run ``func(*args, **kwargs)`` in this lane; returns the started worker.

        ``stop=True`` passes a fresh :class:`StopEvent` as ``should_stop`` (the services'
        cancellation argument). ``connect`` maps signal names (``yielded``, ``returned``,
        ``errored``, ``finished``, ...) to slots, connected before the work starts. Errors go
        to ``errored``; work without an ``errored`` slot has its exception re-raised on the GUI
        thread (superqt's default), so nothing fails silently.
        """
        event = StopEvent() if stop else None
        if event is not None:
            kwargs["should_stop"] = event
        worker_class = _Generator if inspect.isgeneratorfunction(func) else FunctionWorker
        worker = create_worker(
            func,
            *args,
            _start_thread=False,
            _connect=connect,
            _worker_class=worker_class,
            **kwargs,
        )
        self.start(worker, event)
        return worker

    def start(self, worker: WorkerBase, stop: threading.Event | None = None) -> WorkerBase:
        """Start an already built superqt worker in this lane."""
        with self._lock:
            self._workers[worker] = stop
        # Connected with this QObject as context: runs on the GUI thread after the worker's own
        # ``finished`` slots.
        worker.signals.finished.connect(self._on_finished)
        self._pool.start(worker)
        return worker

    def _on_finished(self) -> None:
        sender = self.sender()
        with self._lock:
            for worker in [w for w in self._workers if w.signals is sender]:
                del self._workers[worker]
            empty = not self._workers
        if empty:
            self.idle.emit()

    @property
    def busy(self) -> bool:
        """Whether a worker of this lane is queued or running."""
        with self._lock:
            return bool(self._workers)

    def workers(self) -> list[WorkerBase]:
        with self._lock:
            return list(self._workers)

    def quit(self) -> None:
        """Ask every queued or running worker of this lane to stop (does not wait)."""
        with self._lock:
            items = list(self._workers.items())
        for worker, event in items:
            if event is not None:
                event.set()
            else:
                worker.quit()

    def wait(self, msecs: int = -1) -> bool:
        """Block until the lane's threads are done (``msecs=-1``: no limit); True when they are."""
        return self._pool.waitForDone(msecs)


def _live_lanes() -> list[Lane]:
    """The lanes whose Qt object still exists (a lane deleted with its parent window stays in the
    weak set until Python collects the wrapper; touching its C++ side would crash)."""
    return [lane for lane in list(_LANES) if shiboken6.isValid(lane)]


def quit_all() -> None:
    """Ask the workers of every live lane to stop."""
    for lane in _live_lanes():
        lane.quit()


def wait_all(msecs: int = -1) -> bool:
    """Wait for every live lane's threads; True when all are done within ``msecs`` each."""
    return all(lane.wait(msecs) for lane in _live_lanes())
