"""The status bar: background-job progress (text, bar, Cancel), the pixel value under the mouse,
the department queue's progress (scoring by workers) and the model status (which models,
device, precision, runtime, mode)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

from cxrlt_desktop.ui.workers import JobResult, Progress, format_eta


def model_status_text(settings, predictor=None, configured: bool = False) -> str:
    """ "Models: ... | device precision (runtime) | mode" for a loaded predictor, what the
    settings configure when none is loaded yet, or that none is configured."""
    s = settings
    if predictor is not None:
        roles = []
        for m in getattr(predictor, "models", []):
            role = str(getattr(m, "role", "?")).replace("task1-", "").upper()
            roles.append(f"{role} {getattr(m, 'arch', '')}".strip())
        ps = getattr(predictor, "settings", {}) or {}
        device = ps.get("device", getattr(predictor, "device", "?"))
        runtime = {"openvino": " (OpenVINO)", "onnxruntime": " (ONNX Runtime)"}.get(
            ps.get("backend"), ""
        )
        return (
            f"Models: {', '.join(roles) or 'none'} | {device} "
            f"{ps.get('precision', '')}{runtime} | {ps.get('mode', s.mode)}"
        )
    if configured:
        n = len(s.task1_checkpoints)
        parts = [f"{n} Task 1 checkpoint{'s' if n != 1 else ''}"] if n else []
        if s.clip_model is not None:
            parts.append("CLIP")
        return f"Models: {', '.join(parts) or 'configured'} (not loaded) | {s.device} | {s.mode}"
    return "Models: none configured (File > Settings)"


def progress_text(p: Progress) -> str:
    if p.phase == "scan":
        rate = f", {p.rate:.0f} files/s" if p.rate else ""
        return f"Scanning: {p.done} files{rate}"
    if p.phase == "load":
        return "Loading models..."
    parts = [f"{p.text or 'Scoring'} {p.done}/{p.total}"]
    if p.rate:
        parts.append(f"{p.rate:.2f} images/s")
    eta = format_eta(p.eta)
    if eta:
        parts.append(f"ETA {eta}")
    if p.failed:
        parts.append(f"{p.failed} failed")
    return ", ".join(parts)


def result_text(result: JobResult) -> str:
    if result.error:
        return "Stopped by an error"
    if result.cancelled:
        return f"Cancelled ({result.scored} scored)"
    failed = f", {result.failed} failed (see Problems)" if result.failed else ""
    return f"Done: {result.scored} scored{failed}"


class StatusBar(QStatusBar):
    """Signal ``cancelRequested`` when Cancel is clicked."""

    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_status = QLabel("")
        self.model_status.setObjectName("modelStatus")
        self.progress_bar = QProgressBar()
        self.progress_bar.setFixedWidth(200)
        self.progress_bar.setVisible(False)
        self.progress_label = QLabel("")
        self.progress_label.setObjectName("progressLabel")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(lambda _=False: self.cancelRequested.emit())
        self.readout_label = QLabel("")
        self.queue_label = QLabel("")  # scoring by department workers: the queue's progress
        self.queue_label.setObjectName("queueStatus")
        self.queue_label.setVisible(False)
        self.addWidget(self.progress_label)
        self.addWidget(self.progress_bar)
        self.addWidget(self.cancel_button)
        self.addPermanentWidget(self.readout_label)
        self.addPermanentWidget(self.queue_label)
        self.addPermanentWidget(self.model_status)

    def follow(self, jobs) -> None:
        """Show the start, progress and end of ``jobs``' jobs
        (:class:`~cxrlt_desktop.ui.workers.BackgroundJobs`)."""
        jobs.started.connect(self.job_started)
        jobs.progress.connect(self.job_progress)
        jobs.finished.connect(self.job_finished)

    def scanning_only(self) -> None:
        self.progress_label.setText("No models configured: scanning only (File > Settings)")

    def job_started(self) -> None:
        self.progress_bar.setVisible(True)
        self.progress_bar.setRange(0, 0)
        self.cancel_button.setVisible(True)
        self.cancel_button.setEnabled(True)

    def job_progress(self, p: Progress) -> None:
        if p.phase in ("scan", "load"):
            self.progress_bar.setRange(0, 0)
        else:
            total = max(p.total, 1)
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(p.done, total))
        self.progress_label.setText(progress_text(p))

    def job_cancelling(self) -> None:
        self.progress_label.setText("Cancelling...")
        self.cancel_button.setEnabled(False)

    def job_finished(self, result: JobResult) -> None:
        self.progress_bar.setVisible(False)
        self.cancel_button.setVisible(False)
        self.progress_label.setText(result_text(result))

    def show_queue(self, text: str | None) -> None:
        """The department queue's progress (None hides it: scoring on this workstation)."""
        self.queue_label.setVisible(text is not None)
        self.queue_label.setText(text or "")

    def report(self, text: str) -> None:
        """An error: in the message area for 15 s and as the progress text's tool tip."""
        self.showMessage(text, 15000)
        self.progress_label.setToolTip(text)


__all__ = ["StatusBar", "model_status_text", "progress_text", "result_text"]
