"""The GUI's DICOM node: the listener of ``cxrlt listen`` inside the app.

:class:`DicomNodeRunner` owns a :class:`cxrlt_desktop.dicomnode.DicomNode` (pynetdicom's server
threads and the node's library thread: never the GUI thread) and turns what it reports into
signals on the GUI thread: each batch of received images refreshes the worklist and has them
scored (the window's scoring job, or the department queue the node already filled), refusals
go to the Problems dock, and a permanent status-bar label says whether the node listens
("DICOM: CXRLT on 127.0.0.1:11112, 3 received"), is off, or could not start and why.
Settings > DICOM node switches it on and off: the window replaces its ``settings`` object when
the dialog's OK is pressed, and the runner follows within a second (:meth:`apply`, also callable
directly); it stops when the window closes.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel

from cxrlt_desktop.ui.workers import Problem


def status_text(node: dict[str, Any], state: str, received: int = 0, error: str = "") -> str:
    """The status-bar text: ``state`` is "off", "on" or "error"."""
    if state == "off":
        return "DICOM: off"
    if state == "error":
        return f"DICOM: not listening: {error}"
    got = f", {received} received" if received else ""
    return f"DICOM: {node['aet']} on {node['bind']}:{node['port']}{got}"


class DicomNodeRunner(QObject):
    """Runs the DICOM node of ``window.settings.dicom_node`` while it is enabled.

    Signals: ``received(int)`` (new or changed images added to the library),
    ``statusChanged(str)``.
    """

    received = Signal(int)
    statusChanged = Signal(str)
    _added = Signal(object, object)  # (image ids, problems) from the node's library thread
    _refused = Signal(str, str)  # (source, reason) from an association thread

    def __init__(self, window) -> None:  # noqa: ANN001
        super().__init__(window)
        self.window = window
        self.node = None
        self.count = 0
        self.error = ""
        self._applied: dict[str, Any] = {}  # the settings' [dicom_node] in force
        self._node_settings: dict[str, Any] = {}  # the same, with the address actually bound
        self._score_after_job = False
        self.label = QLabel("")
        self.label.setObjectName("dicomNodeStatus")
        window.status_bar.addPermanentWidget(self.label)
        self._added.connect(self._on_added)
        self._refused.connect(self._on_refused)
        window.jobs.finished.connect(self._on_job_finished)
        window.installEventFilter(self)
        self._seen = window.settings
        self._follow = QTimer(self)
        self._follow.setInterval(1000)
        self._follow.timeout.connect(self._follow_settings)
        self._follow.start()
        self.apply(window.settings)

    def _follow_settings(self) -> None:
        if self.window.settings is not self._seen:
            self._seen = self.window.settings
            self.apply(self._seen)

    # -- life cycle ----------------------------------------------------------------------------
    def apply(self, settings) -> None:  # noqa: ANN001
        """Start, restart or stop the node for these settings (after Settings > OK)."""
        node = dict(settings.dicom_node)
        if node == self._applied and (self.node is not None or not node.get("enabled")):
            self._show()
            return
        self.stop()
        self._applied = self._node_settings = node
        self.error = ""
        if node.get("enabled"):
            self._start(node)
        self._show()

    def _start(self, node: dict[str, Any]) -> None:
        from cxrlt_desktop.dicomnode import DicomNode, node_config, tls_context

        try:
            cfg = node_config(node)
            ssl_ctx = (
                tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca)
                if cfg.tls_cert is not None and cfg.tls_key is not None
                else None
            )
            self.node = DicomNode(
                cfg,
                self.window.store,
                on_added=self._from_library_thread,
                on_event=self._from_association,
                ssl_context=ssl_ctx,
            )
            host, port = self.node.start()
            self._node_settings = {**node, "bind": host, "port": port}
        except Exception as exc:  # noqa: BLE001 - shown in the status bar; the app goes on
            self.node = None
            self.error = " ".join(str(exc).split()) or type(exc).__name__

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None

    @property
    def listening(self) -> bool:
        return self.node is not None and self.node.listening

    @property
    def port(self) -> int | None:
        return self._node_settings.get("port") if self.listening else None

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if obj is self.window and event.type() == QEvent.Type.Close and event.isAccepted():
            self._follow.stop()
            self.stop()
        return False

    # -- from the node's threads (emit only) -------------------------------------------------
    def _from_library_thread(self, result) -> None:  # noqa: ANN001
        self._added.emit(list(result.image_ids), list(result.progress.problems))

    def _from_association(self, rec) -> None:  # noqa: ANN001
        if rec.status not in (0, 0xC000) and rec.status != -1:  # refusals (0xC000: via add)
            self._refused.emit(rec.peer, rec.text)

    # -- on the GUI thread ---------------------------------------------------------------------
    def _on_added(self, image_ids: list[int], problems: list) -> None:
        for path, reason in problems:
            self.window.problems_dock.add(Problem(path, reason, "receive"))
        self.count += len(image_ids)
        self._show()
        self.window.refresh_worklist()
        if image_ids:
            self.received.emit(len(image_ids))
            self._score()

    def _on_refused(self, peer: str, text: str) -> None:
        self.window.problems_dock.add(Problem(f"dicom://{peer}", text, "receive"))

    def _score(self) -> None:
        """Score what arrived with the window's models (not in department mode, where the
        node queued the images for the workers; not without models)."""
        w = self.window
        if w.settings.scoring == "workers" or not w.predictors.configured:
            return
        if w.jobs.is_running():
            self._score_after_job = True
            return
        w.score_pending()

    def _on_job_finished(self, _result) -> None:  # noqa: ANN001
        if self._score_after_job:
            self._score_after_job = False
            self._score()

    def _show(self) -> None:
        state = "error" if self.error else ("on" if self.listening else "off")
        text = status_text(self._node_settings, state, self.count, self.error)
        self.label.setText(text)
        self.label.setToolTip(
            "DICOM node (Settings > DICOM node). Inbox: "
            + str(self.node.inbox.root if self.node is not None else "-")
        )
        self.statusChanged.emit(text)
