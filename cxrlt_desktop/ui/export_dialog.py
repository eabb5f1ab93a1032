"""File > Export: options, then ``cxrlt_desktop.export.iter_export`` in the ``export`` lane.

The export writes labels.csv (CXR-LT training format), disagreements.csv and optionally images,
DICOM SR, de-identified unless asked otherwise. The options are the command line's: dates are
shifted per patient when de-identified (the box follows "Keep patient identifiers" until the
reader sets it), and images that may show burned-in text are left out unless allowed. It runs
off the GUI thread (a superqt generator worker, :mod:`.background`); progress and the result
come back as signals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cxrlt_desktop.export import ExportProgress, ExportResult, default_shift_dates, iter_export
from cxrlt_desktop.ui.background import Lane


class ExportDialog(QDialog):
    """Choose the output folder and the de-identification options."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export labels")
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("a new or empty folder")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._on_browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.include_phi = QCheckBox("Keep patient identifiers (not de-identified)")
        self.shift_dates = QCheckBox("Shift dates per patient")
        self.shift_dates.setChecked(default_shift_dates(False))
        self._shift_dates_set = False  # the reader set it: "Keep identifiers" leaves it alone
        self.shift_dates.clicked.connect(self._on_shift_dates_clicked)
        self.include_phi.toggled.connect(self._on_include_phi)
        self.copy_images = QCheckBox("Copy images as 16-bit PNG (for training)")
        self.allow_burned_in = QCheckBox("Also copy images that may show burned-in text")
        self.allow_burned_in.setToolTip(
            "Images whose header says text is burned into the pixels (BurnedInAnnotation YES), "
            "or secondary captures without that flag, are left out of a de-identified export "
            "unless this is checked; check them by eye."
        )
        self.allow_burned_in.setEnabled(False)
        self.copy_images.toggled.connect(self.allow_burned_in.setEnabled)
        self.sr = QCheckBox("DICOM Structured Reports")
        form = QFormLayout()
        form.addRow("Output folder", row)
        for box in (
            self.include_phi,
            self.shift_dates,
            self.copy_images,
            self.allow_burned_in,
            self.sr,
        ):
            form.addRow("", box)
        note = QLabel(
            "labels.csv holds the radiologists' verdicts in the CXR-LT training format; "
            "disagreements.csv lists verdicts that contradict the model at its threshold."
        )
        note.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)

    def _on_browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export into")
        if path:
            self.folder.setText(path)

    def _on_shift_dates_clicked(self) -> None:
        self._shift_dates_set = True

    def _on_include_phi(self, include_phi: bool) -> None:
        if not self._shift_dates_set:
            self.shift_dates.setChecked(default_shift_dates(include_phi))

    def options(self) -> dict[str, Any]:
        copy_images = self.copy_images.isChecked()
        return {
            "include_phi": self.include_phi.isChecked(),
            "shift_dates": self.shift_dates.isChecked(),
            "copy_images": copy_images,
            "allow_burned_in": copy_images and self.allow_burned_in.isChecked(),
            "sr": self.sr.isChecked(),
        }


class ExportJob(QObject):
    """Runs one export in its own lane. Signals: ``progress(str)``, ``finished(object, str)``
    (the :class:`~cxrlt_desktop.export.ExportResult` or None, and an error message or "").

    ``options`` are :func:`~cxrlt_desktop.export.iter_export`'s keywords (``include_phi``,
    ``shift_dates``, ``copy_images``, ``allow_burned_in``, ``sr``, ``demo``, ``thresholds``).
    :meth:`cancel` sets the export's ``should_stop``: it removes what it wrote and ends with
    :class:`~cxrlt_desktop.export.ExportCancelled`, reported as the error.
    """

    progress = Signal(str)
    finished = Signal(object, str)

    def __init__(self, store, out_dir: Path, options: dict[str, Any], parent=None) -> None:
        super().__init__(parent)
        self._store = store
        self._out = Path(out_dir)
        self._options = dict(options)
        self.lane = Lane("export", parent=self)
        self._started = False
        # Set when ``finished`` reaches the GUI thread (this object lives there, and this is
        # its first slot), so "running" holds until the window has seen the outcome.
        self._done = False
        self.finished.connect(self._mark_done)

    def start(self) -> None:
        self._started = True
        self.lane.run(
            iter_export,
            self._store,
            self._out,
            **self._options,
            stop=True,
            connect={
                "yielded": self._on_progress,
                "returned": self._on_returned,
                "errored": self._on_errored,
            },
        )

    def cancel(self) -> None:
        self.lane.quit()

    def is_running(self) -> bool:
        return self._started and not self._done

    def _mark_done(self, *_args) -> None:  # noqa: ANN002
        self._done = True

    def wait(self, timeout: float | None = None) -> None:
        """Block until the export's worker has ended, or for ``timeout`` seconds."""
        self.lane.wait(-1 if timeout is None else max(0, int(timeout * 1000)))

    @Slot(object)
    def _on_progress(self, p: ExportProgress) -> None:
        self.progress.emit(f"Export: {p.stage} {p.done}/{p.total}")

    @Slot(object)
    def _on_returned(self, result: ExportResult) -> None:
        self.finished.emit(result, "")

    @Slot(object)
    def _on_errored(self, exc: BaseException) -> None:
        # ExportError and friends carry the user message.
        self.finished.emit(None, str(exc))


__all__ = ["ExportDialog", "ExportJob"]
