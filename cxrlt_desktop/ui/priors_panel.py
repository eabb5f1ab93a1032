"""The "Priors & PACS" dock: the open study's patient's earlier studies in the library, fetching
earlier CR/DX studies from a configured PACS, sending the study's results to it, and what was
sent.

State and work live outside the widgets: the library queries and the fetch/send services are
:mod:`cxrlt_desktop.dicomnode` functions; :class:`PacsRunner` (:mod:`.pacs_runner`) runs them in a
background lane with progress and cancel. This dock only shows what they return.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxrlt_desktop.ui.pacs_runner import PacsRunner


def _table(headers: list[str], name: str) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setObjectName(name)
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setStretchLastSection(True)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    return t


def _fill(table: QTableWidget, rows: list[tuple[str, ...]], keys: list[str] | None = None) -> None:
    table.setRowCount(0)
    for r, row in enumerate(rows):
        table.insertRow(r)
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            if keys is not None and c == 0:
                item.setData(Qt.ItemDataRole.UserRole, keys[r])
            table.setItem(r, c, item)


class PriorsDock(QDockWidget):
    """Signals: ``studyActivated(uid)`` (a prior was double-clicked), ``libraryChanged()``
    (fetched priors were added), ``message(str)`` (one line for the status bar)."""

    studyActivated = Signal(str)
    libraryChanged = Signal()
    message = Signal(str)

    def __init__(self, store, settings_getter, parent: QWidget | None = None) -> None:  # noqa: ANN001
        super().__init__("Priors && PACS", parent)
        self.setObjectName("priorsDock")
        self.store = store
        self.runner = PacsRunner(store, settings_getter, self)
        self._study_uid: str | None = None
        self._stale = False  # a refresh waits until the dock is shown

        self.priors = _table(["Date", "Views", "Images", "Description"], "priors")
        self.priors.doubleClicked.connect(self._on_prior_activated)
        self.destination = QComboBox()
        self.destination.setObjectName("pacsDestination")
        self.fetch_button = QPushButton("Fetch priors")
        self.fetch_button.setObjectName("fetchPriors")
        self.fetch_button.setToolTip(
            "Ask the PACS for this patient's earlier CR/DX studies and retrieve the ones the "
            "library lacks"
        )
        self.send_button = QPushButton("Send results")
        self.send_button.setObjectName("sendResults")
        self.send_button.setToolTip(
            "Send this study's AI-result SRs, review SRs and attention heatmaps to the PACS"
        )
        self.retry_button = QPushButton("Retry failed")
        self.retry_button.setObjectName("retryFailed")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.state = QLabel("")
        self.state.setObjectName("pacsState")
        self.state.setWordWrap(True)
        self.sent = _table(["What", "Image", "To", "Status", "Tries", "Error"], "sentResults")

        bar = QHBoxLayout()
        bar.addWidget(QLabel("PACS:"))
        bar.addWidget(self.destination, 1)
        for b in (self.fetch_button, self.send_button, self.retry_button, self.cancel_button):
            bar.addWidget(b)
        work = QHBoxLayout()
        work.addWidget(self.progress, 1)
        work.addWidget(self.state, 2)
        body = QWidget()
        v = QVBoxLayout(body)
        v.setContentsMargins(4, 4, 4, 4)
        v.addWidget(QLabel("Earlier studies of this patient in the library"))
        v.addWidget(self.priors, 2)
        v.addLayout(bar)
        v.addLayout(work)
        v.addWidget(QLabel("Results sent for this study"))
        v.addWidget(self.sent, 2)
        self.setWidget(body)

        self.fetch_button.clicked.connect(self.fetch_priors)
        self.send_button.clicked.connect(self.send_results)
        self.retry_button.clicked.connect(self.retry_failed)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.runner.progress.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.runner.runningChanged.connect(self._update_buttons)
        self.reload_destinations()

    # -- state in -------------------------------------------------------------------------------
    def reload_destinations(self) -> None:
        """The configured ``[pacs.NAME]`` destinations (after a settings change)."""
        current = self.destination.currentText()
        self.destination.clear()
        names = self.runner.destination_names()
        self.destination.addItems(names)
        if current in names:
            self.destination.setCurrentText(current)
        self.destination.setToolTip(
            "" if names else "No PACS destination: add a [pacs.NAME] table to the settings file"
        )
        self._update_buttons()

    def set_study(self, study_uid: str | None) -> None:
        """Show the priors and the sends of ``study_uid`` (read from the store)."""
        self._study_uid = study_uid
        self.refresh()

    def showEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self) -> None:
        """Re-read the open study's priors and sends (while the dock is closed: when opened)."""
        self._stale = not self.isVisible()
        if self._stale:
            self._update_buttons()
            return
        from cxrlt_desktop.dicomnode.send import send_status
        from cxrlt_desktop.library.priors import format_date, prior_studies

        uid = self._study_uid
        priors = prior_studies(self.store, uid) if uid else []
        _fill(
            self.priors,
            [
                (format_date(p.study_date), ", ".join(p.views), str(len(p.images)), p.description)
                for p in priors
            ],
            [p.study_uid for p in priors],
        )
        self.priors.setToolTip("" if priors or not uid else "No earlier study in the library")
        rows = send_status(self.store, study_id=self.runner.study_id(uid)) if uid else []
        _fill(
            self.sent,
            [
                (
                    r.what,
                    str(r.image_id or ""),
                    r.destination,
                    r.status,
                    str(r.attempts),
                    r.error or "",
                )
                for r in rows
            ],
        )
        self._update_buttons()

    # -- actions --------------------------------------------------------------------------------
    def fetch_priors(self) -> bool:
        if not self._study_uid or not self.destination.currentText():
            return False
        return self.runner.fetch(self.destination.currentText(), self._study_uid)

    def send_results(self) -> bool:
        if not self._study_uid or not self.destination.currentText():
            return False
        return self.runner.send(self.destination.currentText(), self._study_uid)

    def retry_failed(self) -> bool:
        if not self.destination.currentText():
            return False
        return self.runner.retry(self.destination.currentText(), self._study_uid)

    # -- feedback -------------------------------------------------------------------------------
    def _update_buttons(self, *_args) -> None:  # noqa: ANN002
        running = self.runner.running
        ready = bool(self._study_uid and self.destination.count()) and not running
        for b in (self.fetch_button, self.send_button):
            b.setEnabled(ready)
        self.retry_button.setEnabled(bool(self.destination.count()) and not running)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)

    def _on_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(min(done, total) if total else 0)
        self.state.setText(text)

    def _on_finished(self, kind: str, text: str, problems: list) -> None:
        lines = [text, *problems[:5]]
        self.state.setText("\n".join(lines))
        self.message.emit(text)
        self.refresh()
        if kind == "fetch":
            self.libraryChanged.emit()

    def _on_prior_activated(self, index) -> None:  # noqa: ANN001
        item = self.priors.item(index.row(), 0)
        if item is not None:
            self.studyActivated.emit(item.data(Qt.ItemDataRole.UserRole))

    def prior_uids(self) -> list[str]:
        return [
            self.priors.item(r, 0).data(Qt.ItemDataRole.UserRole)
            for r in range(self.priors.rowCount())
        ]

    def sent_rows(self) -> list[tuple[str, ...]]:
        return [
            tuple(self.sent.item(r, c).text() for c in range(self.sent.columnCount()))
            for r in range(self.sent.rowCount())
        ]


__all__ = ["PriorsDock"]
