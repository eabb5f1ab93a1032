"""File > Export: options, then ``cxrlt_desktop.export.feedback`` in a worker thread.

The export writes labels.csv (CXR-LT training format), disagreements.csv and optionally images,
DICOM SR, de-identified unless asked otherwise. It runs off the GUI thread; progress and the
result come back as signals.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
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


def export_function():
    """The export service: ``export_labels`` (as first agreed) or ``export_feedback``; None
    when ``cxrlt_desktop.export.feedback`` is not installed."""
    if importlib.util.find_spec("cxrlt_desktop.export.feedback") is None:
        return None
    try:
        mod = importlib.import_module("cxrlt_desktop.export.feedback")
    except Exception:  # a half-installed export must not stop the GUI
        return None
    return getattr(mod, "export_labels", None) or getattr(mod, "export_feedback", None)


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
        self.copy_images = QCheckBox("Copy images as 16-bit PNG (for training)")
        self.sr = QCheckBox("DICOM Structured Reports")
        form = QFormLayout()
        form.addRow("Output folder", row)
        for box in (self.include_phi, self.shift_dates, self.copy_images, self.sr):
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

    def options(self) -> dict[str, Any]:
        return {
            "include_phi": self.include_phi.isChecked(),
            "shift_dates": self.shift_dates.isChecked(),
            "copy_images": self.copy_images.isChecked(),
            "sr": self.sr.isChecked(),
        }


class ExportJob(QObject):
    """Runs one export in a thread. Signals: ``progress(str)``, ``finished(object, str)``
    (the result or None, and an error message or "")."""

    progress = Signal(str)
    finished = Signal(object, str)

    def __init__(self, store, out_dir: Path, options: dict[str, Any], parent=None) -> None:
        super().__init__(parent)
        self._store = store
        self._out = Path(out_dir)
        self._options = dict(options)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Set when ``finished`` reaches the GUI thread (this object lives there, and this is
        # its first slot), so "running" holds until the window has seen the outcome.
        self._done = False
        self.finished.connect(self._mark_done)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cxrlt-export", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._stop.set()

    def is_running(self) -> bool:
        return self._thread is not None and not self._done

    def _mark_done(self, *_args) -> None:  # noqa: ANN002
        self._done = True

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        fn = export_function()
        if fn is None:
            self.finished.emit(None, "export is not available in this build")
            return
        params = inspect.signature(fn).parameters
        kwargs = {k: v for k, v in self._options.items() if k in params}
        if "progress" in params:
            kwargs["progress"] = lambda p: self.progress.emit(
                f"Export: {getattr(p, 'stage', '')} {getattr(p, 'done', '')}/{getattr(p, 'total', '')}"
            )
        if "should_stop" in params:
            kwargs["should_stop"] = self._stop.is_set
        try:
            result = fn(self._store, self._out, **kwargs)
        except Exception as exc:  # ExportError and friends carry the user message
            self.finished.emit(None, str(exc))
            return
        self.finished.emit(result, "")


__all__ = ["ExportDialog", "ExportJob", "export_function"]
