"""The workstation's "being read by" mark on the study it has open.

:class:`ReadingClaim` claims a study when it opens (``cxrlt_desktop.library.claims``), renews
the claim while the study stays open and releases it when another study opens or the window
closes. A claim is a warning for the other readers, never a lock: a failed claim is reported
(``error``) and the reading goes on.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from sqlalchemy import select

from cxrlt_desktop.library.claims import DEFAULT_LEASE_S, claim_study, release, renew
from cxrlt_desktop.store.models import Study


def workstation_name() -> str:
    try:
        return socket.gethostname() or "unknown"
    except OSError:
        return "unknown"


def study_id_of(store, study_uid: str) -> int | None:
    with store.session() as s, s.begin():
        return s.scalar(select(Study.id).where(Study.study_uid == study_uid))


class ReadingClaim(QObject):
    """Signal ``error(text)`` when the store refused a claim (the reading is not affected)."""

    error = Signal(str)

    def __init__(
        self,
        store,
        reader: Callable[[], str],
        *,
        workstation: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self._reader = reader
        self.workstation = workstation or workstation_name()
        self.lease_s = lease_s
        self.study_id: int | None = None
        self._claimed_as: str | None = None  # the reader name the claim was made with
        self._timer = QTimer(self)
        self._timer.setInterval(int(lease_s * 1000 / 3))
        self._timer.timeout.connect(self._renew)

    def open(self, study_uid: str) -> None:
        """The reader opened ``study_uid``: release the previous study's claim, claim this one."""
        self.close()
        try:
            self.study_id = study_id_of(self.store, study_uid)
            if self.study_id is None:
                return
            reader = self._reader()
            claim_study(self.store, self.study_id, reader, self.workstation, self.lease_s)
            self._claimed_as = reader
        except Exception as exc:  # noqa: BLE001 - a mark for others; the reading goes on
            self.error.emit(f"Could not mark the study as being read: {exc}")
            return
        self._timer.start()

    def close(self) -> None:
        """Release the claim (the study was closed, another opened, the window closes)."""
        self._timer.stop()
        study, reader = self.study_id, self._claimed_as
        self.study_id = self._claimed_as = None
        if study is None or reader is None:
            return
        try:
            release(self.store, study, reader)
        except Exception as exc:  # noqa: BLE001 - the lease ends it anyway
            self.error.emit(f"Could not clear the 'being read' mark (it expires by itself): {exc}")

    def _renew(self) -> None:
        if self.study_id is None or self._claimed_as is None:
            return
        try:
            renew(self.store, self.study_id, self._claimed_as, self.workstation, self.lease_s)
        except Exception as exc:  # noqa: BLE001 - tried again at the next tick
            self.error.emit(f"Could not renew the 'being read' mark: {exc}")


__all__ = ["ReadingClaim", "study_id_of", "workstation_name"]
