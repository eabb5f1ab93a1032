"""Live updates in the window: the store's change feed delivered on the GUI thread.

:class:`LiveUpdates` runs a :class:`~cxrlt_desktop.store.notify.ChangeFeed` (a listener thread
of its own: LISTEN/NOTIFY on PostgreSQL, ``PRAGMA data_version`` polling on SQLite) and
re-emits each change as the Qt signal ``changed(Change)``; a connection to a slot of a QObject
living on the GUI thread is queued, so the window's refresh runs on the GUI thread. The
window coalesces the changes (:class:`ChangeBatch`) and refreshes what they touch once per
short interval, through the same debounced refresh that follows its own writes.
"""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QObject, Signal

from cxrlt_desktop.store.notify import Change, ChangeFeed


class LiveUpdates(QObject):
    """Signal ``changed(Change)``: another connection (or workstation) committed a change."""

    changed = Signal(object)

    def __init__(self, store, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._feed = ChangeFeed(store)
        self._on = False
        feed = self._feed
        self.destroyed.connect(lambda *_: feed.stop())

    def start(self) -> None:
        if not self._on:
            self._on = True
            self._feed.start(self._from_feed)

    def stop(self) -> None:
        """Stop listening (waits for the listener thread)."""
        self._on = False
        self._feed.stop()

    @property
    def feed(self) -> ChangeFeed:
        return self._feed

    def _from_feed(self, change: Change) -> None:  # on the feed's thread
        if self._on and shiboken6.isValid(self):
            self.changed.emit(change)


class ChangeBatch:
    """The changes heard since the last refresh, merged: which kinds, and whether a study may
    be concerned (an unknown study counts as every study)."""

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self._ids: set[int] = set()
        self._any = False

    def add(self, change: Change) -> None:
        self.kinds.add(change.what)
        if change.study_ids:
            self._ids |= change.study_ids
        else:
            self._any = True

    def touches(self, study_id: int | None, *kinds: str) -> bool:
        """True when a change of one of ``kinds`` (or "all") may concern ``study_id``."""
        if not (self.kinds & {*kinds, "all"}):
            return False
        return self._any or study_id is None or study_id in self._ids

    def __bool__(self) -> bool:
        return bool(self.kinds)


__all__ = ["ChangeBatch", "LiveUpdates"]
