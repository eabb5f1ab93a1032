"""Scoring by department workers: the window queues its scans and shows the queue's progress.

With ``scoring = "workers"`` in the settings the window loads no model: after a scan it queues
the new images for the model sets the department's workers score
(``cxrlt_desktop.library.queue.enqueue_for_active_sets``), and the status bar shows the queue
(queued, being scored, done, failed, live workers), read in the background every few seconds
and whenever the change feed reports queue activity.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from cxrlt_desktop.ui.background import Lane

POLL_MS = 3000


def queue_text(status: dict[str, Any]) -> str:
    """One line for the status bar from ``queue_status``."""
    sets = status.get("model_sets") or []
    totals = {k: sum(int(m.get(k) or 0) for m in sets) for k in ("queued", "claimed", "done")}
    failed = sum(int(m.get("failed") or 0) for m in sets)
    live = sum(1 for w in status.get("workers") or [] if w.get("live"))
    text = (
        f"Queue: {totals['queued']:,} queued, {totals['claimed']:,} being scored, "
        f"{totals['done']:,} done"
    )
    if failed:
        text += f", {failed:,} failed"
    if live:
        return f"{text} | {live} worker{'s' if live != 1 else ''}"
    return f"{text} | no worker running"


def _enqueue_all(store) -> int:  # noqa: ANN001 - runs in the lane
    from cxrlt_desktop.library.queue import enqueue_for_active_sets

    return enqueue_for_active_sets(store, None)


def _status(store) -> dict[str, Any]:  # noqa: ANN001 - runs in the lane
    from cxrlt_desktop.library.queue import queue_status

    return queue_status(store)


class QueueMonitor(QObject):
    """Signals: ``statusChanged(dict)`` (``queue_status``), ``queued(int)`` (jobs added by
    :meth:`enqueue_pending`), ``error(text)``."""

    statusChanged = Signal(object)
    queued = Signal(int)
    error = Signal(str)

    def __init__(self, store, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.lane = Lane("queue", parent=self)
        self.last: dict[str, Any] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    def start(self) -> None:
        self._timer.start()
        self.poll()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def active(self) -> bool:
        return self._timer.isActive()

    def poll(self) -> None:
        """Read the queue's counts in the background (skipped while a read is in flight)."""
        if self.lane.busy:
            return
        self.lane.run(
            _status,
            self.store,
            connect={"returned": self._on_status, "errored": self._on_error},
        )

    def enqueue_pending(self) -> None:
        """Queue every usable image not yet scored by the active model sets (idempotent)."""
        self.lane.run(
            _enqueue_all,
            self.store,
            connect={"returned": self._on_queued, "errored": self._on_error},
        )

    @Slot(object)
    def _on_status(self, status: dict[str, Any]) -> None:
        self.last = status
        self.statusChanged.emit(status)

    @Slot(object)
    def _on_queued(self, n: int) -> None:
        self.queued.emit(int(n))
        self.poll()

    @Slot(object)
    def _on_error(self, exc: BaseException) -> None:
        self.error.emit(f"Scoring queue: {exc}")


__all__ = ["QueueMonitor", "queue_text"]
