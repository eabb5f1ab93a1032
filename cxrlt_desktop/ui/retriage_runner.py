"""Re-sorting the library for new thresholds in the background, in the ``retriage`` lane.

``cxrlt_desktop.library.triage.retriage`` recomputes the priority, flags and finding hits of every
current prediction in short transactions; the store records it as pending until the last one, so
a re-sort cut short (a close) is finished at the next start (:meth:`RetriageRunner.resume`). A
scoring job that started with the old thresholds owes another re-sort when it ends: when the
re-sort finishes while such a job still runs (or the window closes), that is recorded in the
store the same way, and the job's end (or the next start) resumes it. What the status bar says
about it (re-sorting, done, the error) comes from here too.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from cxrlt_desktop.library.triage import mark_retriage_pending, retriage, retriage_pending
from cxrlt_desktop.ui.background import Lane

RETRIAGE_MESSAGE = "Re-sorting the worklist for the new thresholds..."


def _retriage(store, thresholds: dict[str, float], should_stop: threading.Event) -> int:
    # Runs in the lane; a stop leaves the re-sort pending in the store.
    return retriage(store, thresholds, should_stop=should_stop.is_set)


class RetriageRunner(QObject):
    """Signals ``started()``, ``message(text, ms)`` for the status bar, ``error(text)`` and
    ``finished(error)`` ("" when done; after its message or error); none of the last three once
    closing."""

    started = Signal()
    message = Signal(str, int)
    error = Signal(str)
    finished = Signal(str)

    def __init__(
        self,
        store,
        thresholds: Callable[[], dict[str, float] | None],
        job_running: Callable[[], bool],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self._thresholds = thresholds
        self._job_running = job_running
        self.closing = False
        self.lane = Lane("retriage", parent=self)

    def start(self, owed: bool = False) -> None:
        """Re-sort for the thresholds in force; ``owed``: a running job still uses old ones."""
        self.started.emit()
        self.message.emit(RETRIAGE_MESSAGE, 0)
        self.lane.run(
            _retriage,
            self.store,
            dict(self._thresholds() or {}),
            stop=True,
            connect={
                "returned": lambda _n: self._done("", owed),
                "errored": lambda e: self._done(str(e) or type(e).__name__, owed),
            },
        )

    def resume(self) -> None:
        """Run a re-sort the store records as pending (not while one runs or at close)."""
        if self.closing or self.lane.busy:
            return
        try:
            pending = retriage_pending(self.store)
        except Exception:  # noqa: BLE001 - a store problem shows elsewhere; the window goes on
            return
        if pending:
            self.start()

    def _done(self, error: str, owed: bool) -> None:
        again = owed and not (self._job_running() or self.closing)  # the job ended meanwhile
        if owed and not again:
            try:  # recorded: the job's end, or the next start, re-sorts again
                mark_retriage_pending(self.store, self._thresholds())
            except Exception as exc:  # noqa: BLE001 - the window goes on
                print(f"cxrlt gui: {exc}", file=sys.stderr)
        if not self.closing:
            if error:
                self.error.emit(f"The worklist was not re-sorted for the new thresholds: {error}")
            else:
                self.message.emit("Worklist re-sorted for the new thresholds", 5000)
            self.finished.emit(error)
        if again:
            self.start()


__all__ = ["RETRIAGE_MESSAGE", "RetriageRunner"]
