"""File > Export labels from the window's side: the options dialog, one export at a time in the
background (:class:`~cxrlt_desktop.ui.export_dialog.ExportJob`, which runs
``cxrlt_desktop.export.export_feedback``), its outcome in the status bar, cancel at close.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDialog, QMessageBox, QWidget


class ExportRunner(QObject):
    """Signals: ``message(text, ms)`` for the status bar, ``error(text)``, ``runningChanged(bool)``
    (False once the export ended, whatever the outcome). ``defaults()`` gives the options an
    export takes unless told otherwise (``demo``, ``thresholds``: what the window has in force)."""

    message = Signal(str, int)
    error = Signal(str)
    runningChanged = Signal(bool)

    def __init__(
        self,
        store,
        parent: QObject | None = None,
        defaults: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self._defaults = defaults
        self.job = None
        self.closing = False  # no new export; the outcome of a cancelled one is not reported

    def running(self) -> bool:
        return self.job is not None and self.job.is_running()

    def choose(self, parent: QWidget) -> tuple[Path, dict[str, Any]] | None:
        """The options dialog: (folder, options), or None when cancelled or refused."""
        from cxrlt_desktop.ui.export_dialog import ExportDialog

        if self.running():
            self.error.emit("An export is running: wait for it to finish.")
            return None
        dlg = ExportDialog(parent)
        if dlg.exec() != QDialog.DialogCode.Accepted or not dlg.folder.text().strip():
            return None
        return Path(dlg.folder.text().strip()), dlg.options()

    def choose_and_start(self, parent: QWidget | None = None):
        """File > Export labels: the options dialog (over ``parent``, default the runner's
        parent), then the export; returns the job, or None when cancelled or refused."""
        chosen = self.choose(parent if parent is not None else self.parent())
        return None if chosen is None else self.start(*chosen)

    def confirm_close(self, parent: QWidget, title: str) -> bool:
        """Whether the window may close: yes when no export runs, else the reader's answer to
        "Cancel it and close?"."""
        if not self.running():
            return True
        answer = QMessageBox.question(
            parent,
            title,
            "An export is running. Cancel it and close?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def start(self, out_dir: Path, options: dict[str, Any]):
        """Start an export into ``out_dir`` with ``options`` over ``defaults()``; returns the job,
        or None when refused.

        The job's ``finished(result, error)`` signal reports the outcome; the status bar too.
        """
        from cxrlt_desktop.ui.export_dialog import ExportJob

        if self.running():  # one at a time: closing waits for (and cancels) only one
            self.error.emit("An export is running: wait for it to finish.")
            return None
        if self.closing:
            self.error.emit("The window is closing: no new export.")
            return None
        job = ExportJob(self.store, out_dir, {**self._defaults(), **options}, self)
        job.progress.connect(lambda text: self.message.emit(text, 3000))
        job.finished.connect(self._on_finished)
        self.job = job
        self.message.emit(f"Exporting to {out_dir}...", 0)
        self.runningChanged.emit(True)
        job.start()
        return job

    def cancel(self) -> None:
        """Cancel a running export (it removes what it wrote)."""
        if self.running():
            self.job.cancel()

    def _on_finished(self, result, error: str) -> None:
        if not self.closing:
            if error:
                self.error.emit(f"Export failed: {error}")
            else:
                self.message.emit(_outcome(result), 15000)
        self.runningChanged.emit(False)


def _outcome(result) -> str:  # noqa: ANN001 - ExportResult
    """The status-bar line of a finished export, with what it left out and why."""
    text = f"Exported {result.n_images} reviewed images to {result.out_dir}"
    left = []
    if result.n_images_burned_in:
        left.append(f"{result.n_images_burned_in} images left out for burned-in text")
    if result.n_notes_withheld:
        left.append(f"{result.n_notes_withheld} notes withheld")
    return text + (f" ({'; '.join(left)}: see README.txt)" if left else "")


__all__ = ["ExportRunner"]
