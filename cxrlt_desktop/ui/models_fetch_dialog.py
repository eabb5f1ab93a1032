"""Settings > Models > "Get the published models": licences, download progress, cancel.

The dialog lists the published models of the release's pins (:mod:`cxrlt_desktop.models.pins`)
with what each needs: an unpinned model cannot be fetched and the dialog says how to add it by
hand. The user ticks the models, reads their licences and accepts them (stored in the model
registry, asked once), then the download runs as a superqt worker in the dialog's lane
(:mod:`.background`); progress arrives through a signal, Cancel sets the worker's stop event and
the fetch removes what it had staged. On success :attr:`installed` carries the registered models
so the settings dialog can point its fields at them (its OK then checks and saves them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cxrlt_desktop.ui.background import Lane


class _ProgressRelay(QObject):
    """Carries progress records from the worker thread to the GUI thread (queued signal)."""

    progress = Signal(object)


def fetch_job(models, dest, endpoint, *, should_stop, progress) -> list[Any]:  # noqa: ANN001
    """The worker: install the models (licences already accepted); no settings file written."""
    from cxrlt_desktop.models import Registry, install_published

    return install_published(
        models,
        dest=dest,
        endpoint=endpoint,
        registry=Registry(),
        progress=progress,
        cancel=should_stop,
        configure=False,
    )


class ModelsFetchDialog(QDialog):
    """Fetch the published models. ``installed(list)`` is emitted with the registered models."""

    installed = Signal(list)
    fetchFinished = Signal(bool, str)  # ok, message (also after a failure or a cancel)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        pins: Path | str | None = None,
        dest: Path | str | None = None,
        endpoint: str | None = None,
    ) -> None:
        from cxrlt_desktop.models import Registry, card_html, load_pins
        from cxrlt_desktop.models.cards import card

        super().__init__(parent)
        self.setWindowTitle("Get the published models")
        self.resize(640, 520)
        self._dest = dest
        self._endpoint = endpoint
        self.lane = Lane("models-fetch", parent=self)
        self.lane.idle.connect(self._update_buttons)
        self._relay = _ProgressRelay(self)
        self._relay.progress.connect(self._on_progress)
        self._worker: Any = None
        self.models = load_pins(pins)
        registry = Registry()

        intro = QLabel(
            "Downloads the published models at the revisions this release pins, checks every "
            "file's sha256, installs them into the app's models folder and fills in the model "
            "settings (press OK in Settings to check and keep them). Nothing else in the app "
            "goes online."
        )
        intro.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        self.checks: dict[str, QCheckBox] = {}
        for m in self.models:
            text = m.title if m.pinned else f"{m.title} (no pinned revision in this release)"
            box = QCheckBox(text)
            box.setObjectName(f"fetch-{m.name}")
            box.setChecked(m.pinned)
            box.setEnabled(m.pinned)
            box.setToolTip(f"{m.repo_id} @ {m.revision}" if m.pinned else m.unpinned_message())
            box.toggled.connect(self._update_buttons)
            self.checks[m.name] = box
            layout.addWidget(box)
            if not m.pinned:
                box.setStyleSheet("color: #8a5a00;")
        self.licences = QTextBrowser()
        self.licences.setObjectName("licenceText")
        parts = []
        for m in self.models:
            c = card(m.card)
            done = registry.licence_accepted(m.licence.id, m.licence.text)
            parts.append(
                f"<h4>{m.title}</h4><p><b>Licence: {m.licence.title}</b>"
                + (" (accepted)" if done else "")
                + f"<br>{m.licence.text}</p>"
                + (card_html(c) if c else "")
            )
        self.licences.setHtml("".join(parts))
        layout.addWidget(self.licences, 1)
        self.accept_box = QCheckBox("I have read these licences and accept them")
        self.accept_box.setObjectName("acceptLicences")
        self.accept_box.setChecked(
            all(registry.licence_accepted(m.licence.id, m.licence.text) for m in self.models)
        )
        self.accept_box.toggled.connect(self._update_buttons)
        layout.addWidget(self.accept_box)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setObjectName("fetchStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.buttons = QDialogButtonBox()
        self.download = QPushButton("Download")
        self.download.setObjectName("download")
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.setObjectName("cancelDownload")
        self.cancel_button.setEnabled(False)
        self.buttons.addButton(self.download, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.reject)
        self.download.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        layout.addWidget(self.buttons)
        if not any(m.pinned for m in self.models):
            self.status.setText(
                "This release records no pinned revision for the published models, so they "
                "cannot be fetched from here. Download them by hand on a machine with network "
                "access, copy them here and run cxrlt models add PATH --card NAME (see "
                "docs/models.md); then add them on the Models tab."
            )
        self._update_buttons()

    # ------------------------------------------------------------------ state
    def selected(self) -> list[Any]:
        return [m for m in self.models if m.pinned and self.checks[m.name].isChecked()]

    @property
    def running(self) -> bool:
        return self.lane.busy

    def _update_buttons(self) -> None:
        busy = self.running
        self.download.setEnabled(not busy and bool(self.selected()) and self.accept_box.isChecked())
        self.cancel_button.setEnabled(busy)
        for m in self.models:
            self.checks[m.name].setEnabled(m.pinned and not busy)
        self.accept_box.setEnabled(not busy)

    # ------------------------------------------------------------------ actions
    def start(self) -> None:
        """Accept the licences of the selected models (stored) and start the download."""
        from cxrlt_desktop.models import Registry, configured_endpoint
        from cxrlt_desktop.paths import models_dir

        models = self.selected()
        if not models or not self.accept_box.isChecked() or self.running:
            return
        reg = Registry()
        for m in models:
            reg.accept_licence(m.licence.id, m.licence.text)
        reg.save()
        endpoint = self._endpoint or configured_endpoint()
        dest = self._dest or models_dir()
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"Connecting to {endpoint} ...")
        self._worker = self.lane.run(
            fetch_job,
            models,
            dest,
            endpoint,
            stop=True,
            progress=self._relay.progress.emit,
            connect={"returned": self._on_done, "errored": self._on_error},
        )
        self._update_buttons()

    def cancel(self) -> None:
        if self.running:
            from cxrlt_desktop.models.hub import interrupt

            self.status.setText("Cancelling ...")
            self.lane.quit()  # sets the fetch's cancel event ...
            interrupt()  # ... and closes its connections, so a read in progress ends now

    def reject(self) -> None:  # Close / Escape: a running download is cancelled first
        if self.running:
            self.cancel()
            self.lane.wait()
        super().reject()

    # ------------------------------------------------------------------ worker results
    def _on_progress(self, p) -> None:  # noqa: ANN001
        if p.total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * min(p.done, p.total) / p.total))
        self.status.setText(
            f"{p.model}: {p.file} (file {p.file_index + 1} of {p.n_files}) "
            f"{p.done / 1e6:,.1f} of {(p.total or 0) / 1e6:,.1f} MB"
        )

    def _on_done(self, entries: list) -> None:
        self.progress.setVisible(False)
        names = ", ".join(e.name for e in entries)
        self.status.setText(
            f"Installed and verified: {names}. The model fields are filled in; press OK in "
            "Settings to check and keep them."
        )
        self.installed.emit(list(entries))
        self.fetchFinished.emit(True, self.status.text())
        self._update_buttons()

    def _on_error(self, exc: BaseException) -> None:
        self.progress.setVisible(False)
        self.status.setText(f"Nothing installed: {exc}")
        self.fetchFinished.emit(False, str(exc))
        self._update_buttons()


__all__ = ["ModelsFetchDialog", "fetch_job"]
