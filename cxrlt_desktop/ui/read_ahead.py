"""Reading down the worklist from memory: once the open study is on screen, the next study's
first image (and, in the comparison layout, the prior it would show beside it) is decoded into
the loaders' caches, so PgDown shows it without waiting for a decode.

The read-ahead starts :data:`DELAY_MS` after the last image of the open study was displayed, so
it never competes with the decodes the reader is waiting for; each study is read ahead once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer

DELAY_MS = 300


class ReadAhead(QObject):
    """Parameters: ``next_uid()`` the study below the open one in the worklist (or None),
    ``store()`` the library, ``image_loader`` the viewer's loader, ``prior`` the prior
    viewport (:class:`~cxrlt_desktop.ui.comparison.PriorViewport`), ``comparison()`` whether
    the comparison layout is on."""

    def __init__(
        self,
        next_uid: Callable[[], str | None],
        store: Callable[[], Any],
        image_loader: Any,
        prior: Any,
        comparison: Callable[[], bool],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._next_uid, self._store = next_uid, store
        self._loader, self._prior, self._comparison = image_loader, prior, comparison
        self._done: tuple[str, bool] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DELAY_MS)
        self._timer.timeout.connect(self.run)

    def schedule(self, *_args: Any) -> None:
        """Something was displayed: read ahead once the display has settled."""
        self._timer.start()

    def cancel(self) -> None:
        """No read-ahead from now on (the window is closing); a decode under way finishes."""
        self._timer.stop()
        self._timer.timeout.disconnect(self.run)

    def run(self) -> str | None:
        """Read the next study ahead now; returns its UID (None when there is none, or it was
        read ahead already)."""
        from cxrlt_desktop.ui.store_access import study_images

        uid, store = self._next_uid(), self._store()
        with_prior = bool(self._comparison())
        if uid is None or store is None or self._done == (uid, with_prior):
            return None
        self._done = (uid, with_prior)
        images = study_images(store, uid)
        if not images:
            return None
        first = images[0]
        self._loader.prefetch(first.image_id, first.path)
        if with_prior:
            self._prior.prefetch(uid, (first.meta or {}).get("ViewPosition"))
        return uid


__all__ = ["DELAY_MS", "ReadAhead"]
