"""The main window: the panels, wired to the reading session, the background jobs and the menus.

The state of the reading (open study, current image, the note's image) lives in
:class:`~cxrlt_desktop.review.ReviewSession`; :class:`~cxrlt_desktop.ui.session_view.SessionView`
renders its changes in the image panel, the findings panel and the DICOM tags dock, and the
window feeds it what the reader does (worklist, keys, buttons). The panels are their own modules
(:mod:`.worklist_panel`, :mod:`.image_panel`, :mod:`.findings_panel`, :mod:`.problems_dock`,
:mod:`.dicom_tags`, :mod:`.status_bar`); actions and menus are built from the tables in
:mod:`.shortcuts` (:mod:`.actions`). Everything slow runs in lanes (:mod:`.background`):
scanning and scoring in :class:`~cxrlt_desktop.ui.workers.BackgroundJobs`, decoding in
:class:`~cxrlt_desktop.ui.image_loader.ImageLoader`, the re-sort for new thresholds in
:class:`~cxrlt_desktop.ui.retriage_runner.RetriageRunner`, exports in
:class:`~cxrlt_desktop.ui.export_runner.ExportRunner`. Each verdict is committed by
``cxrlt_desktop.library.reviews`` at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QElapsedTimer, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from cxrlt_desktop.library.claims import being_read_text, readers_of
from cxrlt_desktop.review import ReviewSession
from cxrlt_desktop.ui.actions import apply_keymap, build_actions, build_menus
from cxrlt_desktop.ui.background import quit_all
from cxrlt_desktop.ui.dicom_tags import DicomTagsDock
from cxrlt_desktop.ui.export_runner import ExportRunner
from cxrlt_desktop.ui.findings_panel import FindingsPanel
from cxrlt_desktop.ui.image_panel import ImagePanel
from cxrlt_desktop.ui.live_updates import ChangeBatch, LiveUpdates
from cxrlt_desktop.ui.model_config import DemoBanner, settings_have_models, thresholds_in_force
from cxrlt_desktop.ui.model_config import predictor_factory as settings_predictor_factory
from cxrlt_desktop.ui.model_facts import model_line
from cxrlt_desktop.ui.priors_panel import PriorsDock
from cxrlt_desktop.ui.problems_dock import ProblemsDock
from cxrlt_desktop.ui.queue_monitor import QueueMonitor, queue_text
from cxrlt_desktop.ui.read_ahead import ReadAhead
from cxrlt_desktop.ui.reading_claim import ReadingClaim
from cxrlt_desktop.ui.reading_tools import ReadingTools
from cxrlt_desktop.ui.retriage_runner import RetriageRunner
from cxrlt_desktop.ui.review_controller import ReviewController, reviewer_name
from cxrlt_desktop.ui.session_view import SessionView
from cxrlt_desktop.ui.shortcuts import VIEW_TOOLS, about_box, help_dialog, merged_keymap
from cxrlt_desktop.ui.status_bar import StatusBar, model_status_text
from cxrlt_desktop.ui.store_access import ImageEntry, image_reviews, study_images
from cxrlt_desktop.ui.workers import BackgroundJobs, JobResult, PredictorCache
from cxrlt_desktop.ui.worklist_panel import WorklistPanel

APP_TITLE = "CXR-LT Desktop"
REFRESH_INTERVAL_MS = 700  # worklist refresh while scores stream in
LIVE_REFRESH_MS = 200  # changes from elsewhere: gathered this long, then one refresh
READERS_REFRESH_MS = 30_000  # "being read by" marks re-read (a crashed workstation's expire)


class MainWindow(QMainWindow):
    """The application window. Build it with :func:`cxrlt_desktop.ui.app.create_main_window`.

    Signals: ``studyOpened(uid)`` (its first image is being decoded), ``imageDisplayed(image
    id)``, ``verdictCommitted(image id, finding, verdict)``, ``jobFinished(JobResult)``,
    ``worklistRefreshed()``, ``retriaged(error)`` (the library was re-sorted for new
    thresholds; "" or the error).
    """

    studyOpened = Signal(str)
    imageDisplayed = Signal(int)
    verdictCommitted = Signal(int, str, str)
    jobFinished = Signal(object)
    worklistRefreshed = Signal()
    retriaged = Signal(str)

    def __init__(
        self,
        store,
        settings,
        *,
        settings_path: str | Path | None = None,
        predictor_factory=None,
        engine_overrides: dict[str, Any] | None = None,
        demo: bool | None = None,
        first_start_dialog: bool = True,
        live_updates: bool = True,
    ) -> None:
        super().__init__()
        self.store = store
        self.settings = settings
        self._settings_path = settings_path
        self._engine_overrides = dict(engine_overrides or {})
        self._forced_demo = demo
        self._closing = False  # closing waits for the lanes, then closes again
        self.last_job: JobResult | None = None
        self.setWindowTitle(APP_TITLE)
        self.setAcceptDrops(True)
        self.resize(1500, 920)

        self.session = ReviewSession(lambda uid: study_images(self.store, uid))
        self._workers_mode = settings.scoring == "workers"
        if self._workers_mode:
            predictor_factory = None  # the department's workers score: no model loaded here
        elif predictor_factory is None and settings_have_models(settings):
            predictor_factory = settings_predictor_factory(settings, self._engine_overrides)
        self.predictors = PredictorCache(predictor_factory, settings.requested_policy())
        self.jobs = BackgroundJobs(store, self.predictors, self, thresholds=settings.thresholds)
        self.retriage = RetriageRunner(
            store, lambda: self.settings.thresholds, self.jobs.is_running, self
        )
        self.retriage.finished.connect(self._on_retriaged)
        self.exports = ExportRunner(store, self, defaults=self._export_defaults)
        self.exports.runningChanged.connect(self._on_export_running)
        self._build_panels()
        self._build_department()
        for runner in (self.retriage, self.exports):
            runner.message.connect(self.status_bar.showMessage)
            runner.error.connect(self._report_error)
        for lane in self._lanes():
            lane.idle.connect(self._close_if_closing)
        self._connect_jobs()
        self._build_actions()
        self._apply_keymap(merged_keymap(settings.shortcuts or None))

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_INTERVAL_MS)
        self._refresh_timer.timeout.connect(self.refresh_worklist)

        self._show_models(None)
        try:
            self.problems_dock.load_recorded(store)
        except Exception as exc:  # an old or foreign database: problems are a convenience
            self.statusBar().showMessage(f"Could not read recorded problems: {exc}", 5000)
        self.refresh_worklist()
        self.retriage.resume()
        if live_updates:
            self.live.start()
        self._set_workers_mode(self._workers_mode)
        if first_start_dialog and not (self.predictors.configured or self._workers_mode):
            QTimer.singleShot(0, lambda: self.open_settings(first_start=True))

    # ================================================================== construction
    def _build_panels(self) -> None:
        self.banner = DemoBanner()
        self.worklist_panel = WorklistPanel(self.store)
        self.worklist_model, self.worklist = self.worklist_panel.model, self.worklist_panel.table
        self.worklist_panel.studyActivated.connect(self._on_study_activated)
        self.worklist_model.refreshed.connect(self._on_worklist_refreshed)
        self.worklist_model.refreshFailed.connect(
            lambda msg: self.statusBar().showMessage(f"Worklist refresh failed: {msg}", 10000)
        )
        self.image_panel = ImagePanel()
        self.viewer = self.image_panel.viewer
        self.findings = FindingsPanel()
        self.findings.setMinimumWidth(400)
        self.findings.set_model_line(*model_line(self.settings))
        self.review = ReviewController(
            self.store,
            self.session,
            self.findings,
            reviewer=lambda: reviewer_name(self.settings),
            thresholds=lambda: thresholds_in_force(self.settings),
            overrides=lambda: self.settings.thresholds,
            keyboard_home=self.viewer,
            parent=self,
        )
        self.review.verdictCommitted.connect(self.verdictCommitted)
        self.review.changed.connect(lambda: self._refresh_timer.start(0))
        self.review.error.connect(self._report_error)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        for i, (panel, stretch) in enumerate(
            ((self.worklist_panel, 0), (self.image_panel, 1), (self.findings, 0))
        ):
            self.splitter.addWidget(panel)
            self.splitter.setStretchFactor(i, stretch)
        self.splitter.setSizes([500, 560, 440])
        root = QWidget()
        rv = QVBoxLayout(root)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.setSpacing(0)
        rv.addWidget(self.banner)
        rv.addWidget(self.splitter, 1)
        self.setCentralWidget(root)

        self.tags_dock = DicomTagsDock(self)
        self.tags = self.tags_dock.browser
        self.worklist_panel.showPhiToggled.connect(self.tags.set_show_phi)
        self.view = SessionView(
            self.session,
            self.image_panel,
            self.findings,
            self.review,
            self.tags,
            self.worklist_panel.study_text,
            self,
        )
        self.image_loader = self.view.image_loader
        self.view.studyOpened.connect(self.studyOpened)
        self.view.imageDisplayed.connect(self.imageDisplayed)
        self.problems_dock = ProblemsDock(self)
        self.view.problemFound.connect(self.problems_dock.add)
        for dock in (self.tags_dock, self.problems_dock):
            self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.tabifyDockWidget(self.tags_dock, self.problems_dock)
        # Priors & PACS: the patient's earlier studies, fetch priors, send results.
        self.priors_dock = PriorsDock(self.store, lambda: self.settings, self)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.priors_dock)
        self.tabifyDockWidget(self.problems_dock, self.priors_dock)
        self.view.studyOpened.connect(self.priors_dock.set_study)
        self.priors_dock.studyActivated.connect(self._on_study_activated)
        self.priors_dock.libraryChanged.connect(lambda: self.refresh_worklist())
        self.priors_dock.message.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.tags_dock.raise_()
        # Reading tools: the prior beside the image, measurements, hanging (ui/reading_tools.py)
        self.reading = ReadingTools(
            self,
            self.image_panel,
            self.findings,
            self.view,
            save_settings=lambda: self.settings.save(self._settings_path),
        )
        self.reading.install(self.splitter, 1)
        self.reading.message.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.reading.apply_docks(
            {"tags_dock": self.tags_dock, "problems_dock": self.problems_dock}
            | {"priors_dock": self.priors_dock}
        )
        self.resizeDocks([self.tags_dock], [170], Qt.Orientation.Vertical)
        # the next study decoded while this one is read (ui/read_ahead.py)
        self.read_ahead = ReadAhead(
            self.worklist_panel.next_uid,
            lambda: self.store,
            self.image_loader,
            self.reading.prior,
            self.reading.comparison,
            self,
        )
        self.view.imageDisplayed.connect(self.read_ahead.schedule)
        self.reading.prior.priorShown.connect(self.read_ahead.schedule)
        self.status_bar = StatusBar()
        self.setStatusBar(self.status_bar)
        self.status_bar.cancelRequested.connect(self.cancel_jobs)
        self.viewer.pixelReadout.connect(self.status_bar.readout_label.setText)

    def _connect_jobs(self) -> None:
        jobs = self.jobs
        self.status_bar.follow(jobs)  # before _on_job_finished: the result shows first
        jobs.problemFound.connect(self.problems_dock.add)
        jobs.modelsLoaded.connect(self._show_models)
        jobs.batchScored.connect(
            lambda _n: self._refresh_timer.isActive() or self._refresh_timer.start()
        )
        jobs.scanFinished.connect(lambda _n: self.refresh_worklist())
        jobs.finished.connect(self._on_job_finished)

    def _build_department(self) -> None:
        """Live updates from other workstations, the "being read by" claim of the open study,
        and the department queue's progress (scoring by workers)."""
        self.live = LiveUpdates(self.store, self)
        self.live.changed.connect(self._on_store_changed)
        self._changes = ChangeBatch()
        self._live_timer = QTimer(self)
        self._live_timer.setSingleShot(True)
        self._live_timer.setInterval(LIVE_REFRESH_MS)
        self._live_timer.timeout.connect(self._apply_store_changes)
        self._last_live = QElapsedTimer()  # when the last live refresh ran
        self._readers_timer = QTimer(self)
        self._readers_timer.setInterval(READERS_REFRESH_MS)
        self._readers_timer.timeout.connect(self._refresh_readers)
        self._readers_timer.start()
        self.claim = ReadingClaim(self.store, lambda: reviewer_name(self.settings), parent=self)
        self.claim.error.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.view.studyOpened.connect(self.claim.open)
        self.queue = QueueMonitor(self.store, self)
        self.queue.statusChanged.connect(lambda st: self.status_bar.show_queue(queue_text(st)))
        self.queue.error.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.jobs.scanFinished.connect(self._on_scan_finished)

    def _build_actions(self) -> None:
        """QActions, the image tool row and the menus, from the tables in :mod:`.shortcuts`."""
        self.actions_by_id: dict[str, QAction] = build_actions(self)
        self.export_action = self.actions_by_id["export"]
        self.image_panel.add_tools(self.actions_by_id[i] for i in VIEW_TOOLS)
        build_menus(self, self.actions_by_id)

    def _apply_keymap(self, keymap: dict[str, str]) -> None:
        self._keymap = dict(keymap)
        apply_keymap(self.actions_by_id, keymap)

    # ================================================================== public API
    def open_paths(self, paths: list[str | Path]) -> bool:
        """Scan these folders/files, then score what is pending (scoring by department
        workers: queue it for them). Returns False if queued."""
        if self._workers_mode:
            self.status_bar.progress_label.setText("Scanning; the department's workers score")
        elif not self.predictors.configured:
            self.status_bar.scanning_only()
        return self.jobs.start([Path(p) for p in paths], score=self.predictors.configured)

    def score_pending(self) -> bool:
        """Score every usable image without a prediction for the configured models (scoring
        by department workers: queue them for the workers)."""
        if self._workers_mode:
            self.queue.enqueue_pending()
            return True
        if not self.predictors.configured:
            self.open_settings(first_start=True)
            return False
        return self.jobs.start([], score=True)

    def cancel_jobs(self) -> None:
        """Cancel the background job (it stops after the batch in flight)."""
        if self.jobs.is_running():
            self.status_bar.job_cancelling()
            self.jobs.cancel()

    def refresh_worklist(self) -> None:
        """Re-query the worklist keeping the selection on its study (``worklistRefreshed``
        follows; a worklist with every row loaded is re-queried in the background)."""
        self.worklist_model.refresh_async()

    def select_study(self, study_uid: str) -> bool:
        """Select (and open) a study by UID, fetching pages until it is loaded."""
        return self.worklist_panel.select_study(study_uid)

    def select_row(self, row: int) -> None:
        self.worklist_panel.select_row(row)

    def current_study_uid(self) -> str | None:
        return self.session.study_uid

    def current_image(self) -> ImageEntry | None:
        return self.session.current

    def study_image_entries(self) -> list[ImageEntry]:
        return list(self.session.images)

    def problem_rows(self) -> list[tuple[str, str, str]]:
        """(file, step, reason) rows of the Problems list."""
        return self.problems_dock.rows()

    def keymap(self) -> dict[str, str]:
        return dict(self._keymap)

    def is_demo(self) -> bool:
        return self.banner.isVisibleTo(self)

    def show_help(self) -> QDialog:
        """Help > Keyboard and scores: every shortcut and the rare-finding score formula."""
        self._help_dialog = help_dialog(self, self._keymap)
        return self._help_dialog

    def show_about(self) -> None:
        about_box(self, APP_TITLE)

    def open_settings(self, first_start: bool = False):
        """Open the settings dialog (non-blocking); returns the dialog."""
        from cxrlt_desktop.ui.settings_dialog import SettingsDialog

        dlg = SettingsDialog(
            self.settings, self, first_start=first_start, engine_overrides=self._engine_overrides
        )
        dlg.accepted.connect(lambda: self._on_settings_accepted(dlg))
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.settings_dialog = dlg
        dlg.open()
        return dlg

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of chest X-rays")
        if folder:
            self.open_paths([folder])

    # ================================================================== study / image
    def _on_study_activated(self, study_uid: str) -> None:
        if study_uid != self.session.study_uid:
            self.view.open_study(study_uid)

    def _on_worklist_refreshed(self) -> None:
        self.session.reload()  # predictions that arrived for the open study
        self._refresh_readers()
        self.worklistRefreshed.emit()

    # ================================================================== other workstations
    def is_scoring_by_workers(self) -> bool:
        return self._workers_mode

    def _set_workers_mode(self, on: bool) -> None:
        self._workers_mode = on
        if on:
            self.predictors.set_factory(None)
            self.queue.start()
            self.status_bar.model_status.setText("Models: scored by the department's workers")
        else:
            self.queue.stop()
            self.status_bar.show_queue(None)

    def _on_scan_finished(self, _n: int) -> None:
        if self._workers_mode:
            self.queue.enqueue_pending()

    def _on_store_changed(self, change) -> None:
        """A change committed elsewhere (feed thread -> here, on the GUI thread): gathered for
        :data:`LIVE_REFRESH_MS`, then one refresh."""
        self._changes.add(change)
        if not self._live_timer.isActive():
            # The first change after a quiet spell: in LIVE_REFRESH_MS; while workers stream
            # scores in: at most one refresh per REFRESH_INTERVAL_MS.
            since = self._last_live.elapsed() if self._last_live.isValid() else REFRESH_INTERVAL_MS
            self._live_timer.start(max(LIVE_REFRESH_MS, REFRESH_INTERVAL_MS - since))

    def _apply_store_changes(self) -> None:
        batch, self._changes = self._changes, ChangeBatch()
        self._last_live.start()
        if self._closing or not batch:
            return
        if batch.kinds - {"jobs", "claim", "measurement"}:  # verdicts, scores, studies, "all"
            self.refresh_worklist()  # the open study's new predictions follow it
        elif "claim" in batch.kinds:
            self._refresh_readers()
        if batch.touches(self.claim.study_id, "verdict"):
            self._refresh_open_image()
        if batch.touches(self.claim.study_id, "measurement"):
            self.reading.refresh_measurements()
        if batch.kinds & {"jobs", "all"} and self.queue.active:
            self.queue.poll()

    def _refresh_open_image(self) -> None:
        """Another reader's verdicts and note on the image shown (a note being typed stays)."""
        entry = self.session.current
        if entry is None:
            return
        try:
            verdicts, note = image_reviews(self.store, entry.image_id)
        except Exception as exc:  # noqa: BLE001 - shown again at the next change
            self.statusBar().showMessage(f"Could not read the verdicts: {exc}", 10000)
            return
        if verdicts != self.findings.verdicts():
            self.findings.set_verdicts(verdicts)
            self.session.set_verdicts(entry.image_id, verdicts)
        if self.findings.pending_note() is None and note != self.findings.note_edit.text():
            self.findings.set_note(note)

    def _refresh_readers(self) -> None:
        """Other readers' "being read by" marks in the worklist."""
        try:
            claims = readers_of(self.store, None, exclude=reviewer_name(self.settings))
        except Exception:  # noqa: BLE001 - a convenience: tried again at the next refresh
            return
        self.worklist_model.set_readers(
            {
                study: (
                    being_read_text(readers),
                    "\n".join(
                        f"Being read by {r.name}"
                        + (f" on {r.workstation}" if r.workstation else "")
                        + f" since {r.since.astimezone():%H:%M}"
                        for r in readers
                    ),
                )
                for study, readers in claims.items()
            }
        )

    # ================================================================== jobs and models
    def _on_job_finished(self, result: JobResult) -> None:
        self.last_job = result
        if result.error:
            self._report_error(result.error)
        self.retriage.resume()  # owed when the job scored with thresholds changed since
        self.refresh_worklist()
        self.jobFinished.emit(result)
        self._close_if_closing()

    def _report_error(self, text: str) -> None:
        self.status_bar.report(text)
        if self.isVisible() and not _offscreen():
            QMessageBox.warning(self, APP_TITLE, text)

    def _show_models(self, predictor) -> None:
        """The model status in the status bar; the DEMO banner and title when demo models are
        configured or loaded."""
        text = model_status_text(self.settings, predictor, self.predictors.configured)
        if predictor is not None and self.predictors.policy_for(predictor) == "progressive":
            text += " | progressive (fast pass first)"
        if self._workers_mode:
            text = "Models: scored by the department's workers"
        self.status_bar.model_status.setText(text)
        demo = self.banner.update_for(self.settings, predictor, self._forced_demo)
        self.setWindowTitle(f"{APP_TITLE} - DEMO" if demo else APP_TITLE)

    # ================================================================== thresholds, settings
    def _on_retriaged(self, error: str) -> None:
        if not error:  # the runner has shown its message or error
            self.refresh_worklist()
        self.retriaged.emit(error)

    def _on_settings_accepted(self, dlg) -> None:
        new = dlg.result_settings
        if new is None:
            return
        thresholds_changed = dict(new.thresholds or {}) != dict(self.settings.thresholds or {})
        reader_changed = reviewer_name(new) != reviewer_name(self.settings)
        old_flag = bool(self.settings.flag_for_processing)
        self.settings = new
        self.findings.set_model_line(*model_line(new))
        try:
            new.save(self._settings_path)
        except Exception as exc:
            self._report_error(f"Settings not saved: {exc}")
        self._apply_keymap(merged_keymap(new.shortcuts or None))
        self.jobs.thresholds = dict(new.thresholds or {})
        if thresholds_changed:
            # The worklist's priority, flags and finding filter derive from the thresholds:
            # recompute them for the whole library, off the GUI thread.
            self.retriage.start(owed=self.jobs.is_running())
        if new.flag_for_processing != old_flag:
            # Re-summarises the studies holding FOR PROCESSING images, off the GUI thread.
            from cxrlt_desktop.library.triage import set_flag_for_processing

            self.retriage.lane.run(
                set_flag_for_processing,
                self.store,
                new.flag_for_processing,
                connect={
                    "returned": lambda _n: self._on_retriaged(""),
                    "errored": lambda e: self._report_error(
                        f"FOR PROCESSING option not applied: {e}"
                    ),
                },
            )
        self.predictors.set_policy(new.requested_policy())
        if new.scoring != "workers" and settings_have_models(new):
            self.predictors.put(
                dlg.loaded_predictor, settings_predictor_factory(new, self._engine_overrides)
            )
        else:
            self.predictors.set_factory(None)
        self._set_workers_mode(new.scoring == "workers")
        if reader_changed and self.session.study_uid is not None:
            self.claim.open(self.session.study_uid)  # the mark under the new name
        self._refresh_readers()
        self._forced_demo = None
        self._show_models(dlg.loaded_predictor)
        if self.current_image() is not None:
            self.view.show_findings(self.current_image())

    # ================================================================== export
    def export_running(self) -> bool:
        return self.exports.running()

    def export_to(self, out_dir: Path, **options: Any):
        """Export the verdicts into ``out_dir`` in the background; returns the job (None when
        refused). Its ``finished(result, error)`` signal reports the outcome; the status bar too.
        """
        return self.exports.start(out_dir, options)

    def _export_defaults(self) -> dict[str, Any]:
        return {"demo": self.is_demo(), "thresholds": self.settings.thresholds or None}

    def _on_export_running(self, running: bool) -> None:
        self.export_action.setEnabled(not running)
        if not running:
            self._close_if_closing()

    # ================================================================== drops and closing
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def _lanes(self):
        return (
            self.image_loader.lane,
            self.reading.prior.loader.lane,  # the prior's decodes (read-ahead included)
            self.retriage.lane,
            self.queue.lane,
            self.priors_dock.runner.lane,
        )

    def _busy(self) -> bool:
        busy = any(lane.busy for lane in self._lanes())
        return busy or self.jobs.is_running() or self.export_running()

    def _close_if_closing(self) -> None:
        if self._closing and not self._busy():
            self.close()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Save the note, stop the workers (a scoring job after its batch in flight, an export
        removing what it wrote, a re-sort between transactions, left pending for the next
        start), and close once they have stopped; the window stays responsive meanwhile."""
        if not self._closing:
            if not (_offscreen() or self.exports.confirm_close(self, APP_TITLE)):
                event.ignore()
                return
            self._closing = self.retriage.closing = self.exports.closing = True
            self.review.commit_pending_note()
            self._refresh_timer.stop()
            self._live_timer.stop()
            self.read_ahead.cancel()
            self.queue.stop()
            self.live.stop()
            self.claim.close()  # the "being read by" mark goes with the window
            if self.export_running():
                self.statusBar().showMessage("Cancelling the export, then closing...")
                self.exports.cancel()
            self.cancel_jobs()
            quit_all()  # every lane's workers: decode, re-sort, worklist query, ...
        if self._busy():
            event.ignore()  # _close_if_closing closes when the last worker has stopped
            return
        self.worklist_model.shutdown()
        for lane in self._lanes():
            lane.wait()
        super().closeEvent(event)


def _offscreen() -> bool:
    return QGuiApplication.platformName() in ("offscreen", "minimal")


__all__ = ["APP_TITLE", "MainWindow"]
