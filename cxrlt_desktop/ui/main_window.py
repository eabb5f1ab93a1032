"""The main window: worklist, viewer, findings, problems, tags, status bar, menus.

Everything slow happens elsewhere: scanning, model loading and scoring in
:class:`~cxrlt_desktop.ui.workers.BackgroundJobs` (a QThread), image decoding in a one-thread
executor whose result comes back as a signal. Store reads on the GUI thread are single indexed
queries (a few ms); each verdict is committed by ``cxrlt_desktop.library.reviews`` at once.
"""

from __future__ import annotations

import getpass
import inspect
import sys
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from cxrlt_desktop.ui.dicom_tags import DicomTagBrowser
from cxrlt_desktop.ui.findings_panel import FindingsPanel, results_from_prediction
from cxrlt_desktop.ui.shortcuts import ACTIONS, help_html, merged_keymap
from cxrlt_desktop.ui.store_access import ImageEntry, image_reviews, recorded_problems, study_images
from cxrlt_desktop.ui.viewer import ImageViewer
from cxrlt_desktop.ui.workers import (
    BackgroundJobs,
    JobResult,
    PredictorCache,
    Problem,
    Progress,
    format_eta,
)
from cxrlt_desktop.ui.worklist_model import STUDY_UID_ROLE, WorklistModel
from engine.manifest import is_demo_model

DEMO_BANNER = "DEMO MODEL - not for clinical use"
APP_TITLE = "CXR-LT Desktop"
IMAGE_CACHE_SIZE = 6
REFRESH_INTERVAL_MS = 700  # worklist refresh while scores stream in


def is_demo_model_file(path: str | Path | None) -> bool:
    """True when a manifest beside a model file (or in a model folder) says demo."""
    return is_demo_model(path)


def settings_use_demo_models(settings) -> bool:
    """Whether any configured model file carries a demo manifest."""
    paths = list(settings.task1_checkpoints or []) + [settings.clip_model]
    return any(is_demo_model_file(p) for p in paths if p is not None)


def settings_have_models(settings) -> bool:
    return bool(settings.task1_checkpoints) or settings.clip_model is not None


class MainWindow(QMainWindow):
    """The application window. Build it with :func:`cxrlt_desktop.ui.app.create_main_window`.

    Signals
    -------
    studyOpened(str)
        A study was opened (its UID); its first image is being decoded.
    imageDisplayed(int)
        An image (store id) is on screen.
    verdictCommitted(int, str, str)
        (image id, finding, verdict) was committed to the store.
    jobFinished(object)
        A background job ended (:class:`~cxrlt_desktop.ui.workers.JobResult`).
    worklistRefreshed()
        The worklist was re-queried.
    """

    studyOpened = Signal(str)
    imageDisplayed = Signal(int)
    verdictCommitted = Signal(int, str, str)
    jobFinished = Signal(object)
    worklistRefreshed = Signal()
    _imageDecoded = Signal(int, int, object, object)  # token, image id, DisplayImage, error
    retriaged = Signal(str)  # after new thresholds re-sorted the library: "" or the error

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
    ) -> None:
        super().__init__()
        self.store = store
        self.settings = settings
        self._settings_path = settings_path
        self._engine_overrides = dict(engine_overrides or {})
        self._forced_demo = demo
        self._keymap = merged_keymap(settings.shortcuts or None)
        self._study_uid: str | None = None
        self._images: list[ImageEntry] = []
        self._image_index = -1
        self._note_image_id: int | None = None  # the image the note field belongs to
        self._focus_before_note = None
        self._decode_token = 0
        self._image_cache: OrderedDict[int, Any] = OrderedDict()
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxrlt-decode")
        self._close_when_idle = False
        self._closing_done = False
        # Re-sorting the library for new thresholds: its own thread, stopped (not waited for)
        # at close; redone after a scoring job that started with the old thresholds.
        self._retriage_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxrlt-retriage")
        self._retriage_stop = threading.Event()
        self._retriage_after_job = False
        self._problem_keys: set[tuple[str, str]] = set()
        self.last_job: JobResult | None = None

        self.setWindowTitle(APP_TITLE)
        self.setAcceptDrops(True)
        self.resize(1500, 920)

        if predictor_factory is None and settings_have_models(settings):
            predictor_factory = self._settings_predictor_factory(settings)
        self.predictors = PredictorCache(predictor_factory)
        self.jobs = BackgroundJobs(store, self.predictors, self, thresholds=settings.thresholds)
        self.jobs.progress.connect(self._on_job_progress)
        self.jobs.problemFound.connect(self._on_problem_found)
        self.jobs.modelsLoaded.connect(self._on_models_loaded)
        self.jobs.batchScored.connect(self._on_batch_scored)
        self.jobs.scanFinished.connect(self._on_scan_finished)
        self.jobs.finished.connect(self._on_job_finished)
        self.jobs.started.connect(self._on_job_started)
        self._imageDecoded.connect(self._on_image_decoded)
        self.retriaged.connect(self._on_retriaged)

        self._build_central()
        self._build_docks()
        self._build_status_bar()
        self._build_actions()
        self._build_menus()
        self._apply_keymap(self._keymap)

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_INTERVAL_MS)
        self._refresh_timer.timeout.connect(self.refresh_worklist)

        self._update_model_status(None)
        self._update_demo_banner()
        self._load_recorded_problems()
        self.refresh_worklist()
        self._resume_retriage()
        if first_start_dialog and not self.predictors.configured:
            QTimer.singleShot(0, lambda: self.open_settings(first_start=True))

    # ================================================================== construction
    def _build_central(self) -> None:
        self.banner = QLabel(DEMO_BANNER)
        self.banner.setObjectName("demoBanner")
        self.banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.banner.setStyleSheet(
            "#demoBanner { background: #c92a2a; color: white; font-weight: bold;"
            " font-size: 14px; padding: 4px; }"
        )
        self.banner.setVisible(False)

        # --- worklist
        self.status_filter = QComboBox()
        for label, value in (
            ("All studies", "all"),
            ("Unreviewed", "unreviewed"),
            ("Reviewed", "reviewed"),
        ):
            self.status_filter.addItem(label, value)
        self.finding_filter = QComboBox()
        self.finding_filter.addItem("Any finding", "")
        from engine.classes import class_table

        for info in class_table():
            if info.name != "Normal":
                self.finding_filter.addItem(info.display_name, info.name)
        self.finding_filter.setToolTip("Studies with this finding at or above its threshold")
        self.text_filter = QLineEdit()
        self.text_filter.setPlaceholderText("Search patient, description, date")
        self.text_filter.setClearButtonEnabled(True)
        self.show_phi_box = QCheckBox("Show names")
        self.show_phi_box.setToolTip("Show patient names and IDs instead of pseudonyms")
        self._text_timer = QTimer(self)
        self._text_timer.setSingleShot(True)
        self._text_timer.setInterval(250)
        self._text_timer.timeout.connect(self._on_filters_changed)
        self.status_filter.currentIndexChanged.connect(self._on_filters_changed)
        self.finding_filter.currentIndexChanged.connect(self._on_filters_changed)
        self.text_filter.textChanged.connect(lambda _t: self._text_timer.start())
        self.show_phi_box.toggled.connect(self._on_show_phi_toggled)

        self.worklist_model = WorklistModel(self.store, parent=self)
        self.worklist_model.refreshed.connect(self._on_worklist_refreshed)
        self.worklist_model.refreshFailed.connect(
            lambda msg: self.statusBar().showMessage(f"Worklist refresh failed: {msg}", 10000)
        )
        self.worklist = QTableView()
        self.worklist.setObjectName("worklist")
        self.worklist.setModel(self.worklist_model)
        self.worklist.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.worklist.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.worklist.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.worklist.verticalHeader().setVisible(False)
        self.worklist.verticalHeader().setDefaultSectionSize(22)
        self.worklist.horizontalHeader().setSortIndicator(0, Qt.SortOrder.DescendingOrder)
        self.worklist.setSortingEnabled(True)
        self.worklist.horizontalHeader().setStretchLastSection(True)
        self.worklist.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((60, 92, 78, 178, 76, 48, 110)):
            self.worklist.setColumnWidth(col, width)
        self.worklist.selectionModel().currentRowChanged.connect(self._on_current_row_changed)

        filters = QHBoxLayout()
        filters.addWidget(self.status_filter)
        filters.addWidget(self.finding_filter, 1)
        filters2 = QHBoxLayout()
        filters2.addWidget(self.text_filter, 1)
        filters2.addWidget(self.show_phi_box)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(2, 2, 2, 2)
        title = QLabel("<b>Worklist</b> (by rare-finding score)")
        lv.addWidget(title)
        lv.addLayout(filters)
        lv.addLayout(filters2)
        lv.addWidget(self.worklist, 1)

        # --- viewer with its tool bar
        self.viewer = ImageViewer()
        self.viewer.overlayToggled.connect(self._on_viewer_overlay_toggled)
        self.study_label = QLabel("")
        self.study_label.setObjectName("studyLabel")
        self.view_tools = QToolBar()
        self.view_tools.setObjectName("viewTools")
        self.preset_box = QComboBox()
        self.preset_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.preset_box.setMinimumContentsLength(16)
        self.preset_box.setToolTip("Window presets: header windows, then lung, mediastinum, bone")
        self.preset_box.activated.connect(self._on_preset_activated)
        self.overlay_box = QCheckBox("Attention")
        self.overlay_box.setToolTip("Show the selected finding's CSRA attention map")
        self.overlay_box.toggled.connect(self._on_overlay_box_toggled)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(int(self.viewer.overlay_opacity() * 100))
        self.opacity_slider.setFixedWidth(90)
        self.opacity_slider.setToolTip("Overlay opacity")
        self.opacity_slider.valueChanged.connect(self._on_opacity_changed)
        self.image_label = QLabel("")
        self.prev_image_button = QPushButton("\u25c0")
        self.next_image_button = QPushButton("\u25b6")
        for b, tip in (
            (self.prev_image_button, "Previous image"),
            (self.next_image_button, "Next image"),
        ):
            b.setFixedWidth(30)
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.prev_image_button.clicked.connect(self.previous_image)
        self.next_image_button.clicked.connect(self.next_image)

        center = QWidget()
        cv = QVBoxLayout(center)
        cv.setContentsMargins(0, 0, 0, 0)
        cv.setSpacing(2)
        header = QHBoxLayout()
        header.addWidget(self.study_label, 1)
        header.addWidget(self.prev_image_button)
        header.addWidget(self.image_label)
        header.addWidget(self.next_image_button)
        cv.addLayout(header)
        cv.addWidget(self.view_tools)
        self.view_controls = QWidget()
        controls = QHBoxLayout(self.view_controls)
        controls.setContentsMargins(6, 0, 6, 0)
        cv.addWidget(self.view_controls)
        cv.addWidget(self.viewer, 1)

        # --- findings
        self.findings = FindingsPanel()
        self.findings.setMinimumWidth(400)
        self.findings.findingSelected.connect(self._on_finding_selected)
        self.findings.verdictRequested.connect(self._on_verdict_requested)
        self.findings.noteEdited.connect(self._on_note_edited)
        self.findings.noteDone.connect(self._on_note_done)
        self.findings.agreeAllRequested.connect(self._on_agree_all_requested)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(center)
        splitter.addWidget(self.findings)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 0)
        splitter.setSizes([500, 560, 440])
        self.splitter = splitter

        root = QWidget()
        rv = QVBoxLayout(root)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.setSpacing(0)
        rv.addWidget(self.banner)
        rv.addWidget(splitter, 1)
        self.setCentralWidget(root)

    def _build_docks(self) -> None:
        self.tags = DicomTagBrowser()
        self.tags_dock = QDockWidget("DICOM tags", self)
        self.tags_dock.setObjectName("tagsDock")
        self.tags_dock.setWidget(self.tags)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.tags_dock)

        self.problems = QTableWidget(0, 3)
        self.problems.setObjectName("problems")
        self.problems.setHorizontalHeaderLabels(["File", "Step", "Reason"])
        self.problems.verticalHeader().setVisible(False)
        self.problems.horizontalHeader().setStretchLastSection(True)
        self.problems.setColumnWidth(0, 360)
        self.problems.setColumnWidth(1, 50)
        self.problems.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.problems_dock = QDockWidget("Problems", self)
        self.problems_dock.setObjectName("problemsDock")
        self.problems_dock.setWidget(self.problems)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.problems_dock)
        self.tabifyDockWidget(self.tags_dock, self.problems_dock)
        self.tags_dock.raise_()
        self.resizeDocks([self.tags_dock], [170], Qt.Orientation.Vertical)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.model_status = QLabel("")
        self.model_status.setObjectName("modelStatus")
        self.progress_bar = QProgressBar()
        self.progress_bar.setFixedWidth(200)
        self.progress_bar.setVisible(False)
        self.progress_label = QLabel("")
        self.progress_label.setObjectName("progressLabel")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_jobs)
        self.readout_label = QLabel("")
        self.viewer.pixelReadout.connect(self.readout_label.setText)
        bar.addWidget(self.progress_label)
        bar.addWidget(self.progress_bar)
        bar.addWidget(self.cancel_button)
        bar.addPermanentWidget(self.readout_label)
        bar.addPermanentWidget(self.model_status)

    def _build_actions(self) -> None:
        self.actions_by_id: dict[str, QAction] = {}
        handlers = {
            "next_study": self.next_study,
            "previous_study": self.previous_study,
            "next_image": self.next_image,
            "previous_image": self.previous_image,
            "next_series": self.next_series,
            "previous_series": self.previous_series,
            "next_finding": self.findings.next_finding,
            "previous_finding": self.findings.previous_finding,
            "verdict_present": lambda: self.findings.request_verdict("present"),
            "verdict_absent": lambda: self.findings.request_verdict("absent"),
            "verdict_uncertain": lambda: self.findings.request_verdict("uncertain"),
            "agree_all": self._on_agree_all_requested,
            "toggle_overlay": lambda: self.overlay_box.toggle(),
            "reset_window": self.viewer.reset_window,
            "invert": self.viewer.toggle_invert,
            "fit": self.viewer.fit,
            "one_to_one": self.viewer.one_to_one,
            "rotate": lambda: self.viewer.rotate(1),
            "flip": self.viewer.flip_horizontal,
            "preset_lung": lambda: self._apply_named_preset("Lung"),
            "preset_mediastinum": lambda: self._apply_named_preset("Mediastinum"),
            "preset_bone": lambda: self._apply_named_preset("Bone"),
            "note": self._focus_note,
        }
        for a in ACTIONS:
            act = QAction(a.text, self)
            act.setObjectName(f"action_{a.id}")
            act.triggered.connect(lambda _=False, h=handlers[a.id]: h())
            self.addAction(act)  # shortcuts work wherever the focus is in the window
            self.actions_by_id[a.id] = act
        for act_id in ("invert", "rotate", "flip", "fit", "one_to_one", "reset_window"):
            self.view_tools.addAction(self.actions_by_id[act_id])
        self.actions_by_id["invert"].setText("Invert")
        self.actions_by_id["rotate"].setText("Rotate")
        self.actions_by_id["flip"].setText("Flip")
        self.actions_by_id["fit"].setText("Fit")
        self.actions_by_id["one_to_one"].setText("1:1")
        self.actions_by_id["reset_window"].setText("Reset W/L")
        # Presets and the overlay get their own row: one tool bar row overflowed at ~500 px.
        row = self.view_controls.layout()
        row.addWidget(QLabel("Window"))
        row.addWidget(self.preset_box)
        row.addSpacing(12)
        row.addWidget(self.overlay_box)
        row.addWidget(self.opacity_slider)
        row.addStretch(1)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        file_menu = mb.addMenu("&File")
        self.open_action = file_menu.addAction("&Open folder...", self._on_open_folder)
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.score_action = file_menu.addAction("&Score pending images", self.score_pending)
        file_menu.addSeparator()
        self.export_action = file_menu.addAction("&Export labels...", self._on_export)
        export_fn = _export_function()
        if export_fn is None:
            self.export_action.setEnabled(False)
            self.export_action.setToolTip(
                "Export is not available in this build (cxrlt_desktop.export.feedback is missing)"
            )
        file_menu.addSeparator()
        self.settings_action = file_menu.addAction("Se&ttings...", self.open_settings)
        self.settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit", self.close)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)

        view = mb.addMenu("&View")
        for act_id in (
            "toggle_overlay",
            "reset_window",
            "invert",
            "fit",
            "one_to_one",
            "rotate",
            "flip",
        ):
            view.addAction(self.actions_by_id[act_id])
        view.addSeparator()
        for act_id in ("preset_lung", "preset_mediastinum", "preset_bone"):
            view.addAction(self.actions_by_id[act_id])
        view.addSeparator()
        view.addAction(self.tags_dock.toggleViewAction())
        view.addAction(self.problems_dock.toggleViewAction())

        nav = mb.addMenu("&Navigate")
        for act_id in (
            "next_study",
            "previous_study",
            "next_image",
            "previous_image",
            "next_series",
            "previous_series",
            "next_finding",
            "previous_finding",
        ):
            nav.addAction(self.actions_by_id[act_id])

        review = mb.addMenu("&Review")
        for act_id in (
            "verdict_present",
            "verdict_absent",
            "verdict_uncertain",
            "agree_all",
            "note",
        ):
            review.addAction(self.actions_by_id[act_id])

        help_menu = mb.addMenu("&Help")
        help_menu.addAction("&Keyboard and scores", self.show_help)
        help_menu.addAction("&About", self._on_about)

    def _apply_keymap(self, keymap: dict[str, str]) -> None:
        self._keymap = dict(keymap)
        for act_id, act in self.actions_by_id.items():
            act.setShortcut(QKeySequence(keymap[act_id]))
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)

    def _settings_predictor_factory(self, settings):
        overrides = dict(self._engine_overrides)

        def factory():
            from engine.predictor import Predictor

            return Predictor(settings.engine_config(**overrides))

        return factory

    # ================================================================== public API
    def open_paths(self, paths: list[str | Path]) -> bool:
        """Scan these folders/files, then score what is pending. Returns False if queued."""
        paths = [Path(p) for p in paths]
        if not self.predictors.configured:
            self.progress_label.setText("No models configured: scanning only (File > Settings)")
        return self.jobs.start(paths, score=self.predictors.configured)

    def score_pending(self) -> bool:
        """Score every usable image without a prediction for the configured models."""
        if not self.predictors.configured:
            self.open_settings(first_start=True)
            return False
        return self.jobs.start([], score=True)

    def cancel_jobs(self) -> None:
        """Cancel the background job (it stops after the batch in flight)."""
        if self.jobs.is_running():
            self.progress_label.setText("Cancelling...")
            self.cancel_button.setEnabled(False)
            self.jobs.cancel()

    def refresh_worklist(self) -> None:
        """Re-query the worklist keeping the selection on its study.

        A worklist with every row loaded (sorted by a column other than priority) is
        re-queried in a worker thread; ``worklistRefreshed`` follows when it is applied.
        """
        self.worklist_model.refresh_async()

    def _on_worklist_refreshed(self) -> None:
        if self._study_uid is not None:
            self._reload_current_study_predictions()
        self.worklistRefreshed.emit()

    def select_study(self, study_uid: str) -> bool:
        """Select (and open) a study by UID, fetching pages until it is loaded."""
        model = self.worklist_model
        row = model.row_for_uid(study_uid)
        while row < 0 and model.canFetchMore():
            model.fetchMore()
            row = model.row_for_uid(study_uid)
        if row < 0:
            return False
        self._select_row(row)
        return True

    def select_row(self, row: int) -> None:
        self._select_row(row)

    def current_study_uid(self) -> str | None:
        return self._study_uid

    def current_image(self) -> ImageEntry | None:
        if 0 <= self._image_index < len(self._images):
            return self._images[self._image_index]
        return None

    def study_image_entries(self) -> list[ImageEntry]:
        return list(self._images)

    def next_study(self) -> None:
        self._step_study(1)

    def previous_study(self) -> None:
        self._step_study(-1)

    def next_image(self) -> None:
        if self._images and self._image_index < len(self._images) - 1:
            self.show_image(self._image_index + 1)

    def previous_image(self) -> None:
        if self._images and self._image_index > 0:
            self.show_image(self._image_index - 1)

    def _series_starts(self) -> list[int]:
        """Index of the first image of each series, in reading order."""
        starts: list[int] = []
        for i, entry in enumerate(self._images):
            if i == 0 or entry.series_uid != self._images[i - 1].series_uid:
                starts.append(i)
        return starts

    def next_series(self) -> None:
        later = [i for i in self._series_starts() if i > self._image_index]
        if self._images and later:
            self.show_image(later[0])

    def previous_series(self) -> None:
        starts = self._series_starts()
        # From inside a series, go to the start of the series before the current one.
        current = max((i for i in starts if i <= self._image_index), default=None)
        earlier = [i for i in starts if current is not None and i < current]
        if self._images and earlier:
            self.show_image(earlier[-1])

    def problem_rows(self) -> list[tuple[str, str, str]]:
        """(file, step, reason) rows of the Problems list."""
        out = []
        for r in range(self.problems.rowCount()):
            out.append(tuple(self.problems.item(r, c).text() for c in range(3)))
        return out

    def reviewer(self) -> str:
        if self.settings.reviewer:
            return self.settings.reviewer
        try:
            return getpass.getuser()
        except Exception:  # no login name (some containers)
            return "unknown"

    def thresholds(self) -> dict[str, float]:
        from engine.classes import DEFAULT_THRESHOLDS

        return {**DEFAULT_THRESHOLDS, **(self.settings.thresholds or {})}

    def keymap(self) -> dict[str, str]:
        return dict(self._keymap)

    def show_help(self) -> QDialog:
        """Help > Keyboard and scores: every shortcut and the rare-finding score formula."""
        dlg = QDialog(self)
        dlg.setWindowTitle("Keyboard and scores")
        dlg.resize(640, 640)
        text = QTextBrowser()
        text.setObjectName("helpText")
        text.setHtml(help_html(self._keymap))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dlg.reject)
        lay = QVBoxLayout(dlg)
        lay.addWidget(text)
        lay.addWidget(buttons)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        self._help_dialog = dlg
        return dlg

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

    # ================================================================== study / image
    def _select_row(self, row: int) -> None:
        model = self.worklist_model
        if not (0 <= row < model.rowCount()):
            return
        idx = model.index(row, 0)
        self.worklist.selectionModel().setCurrentIndex(
            idx,
            self.worklist.selectionModel().SelectionFlag.ClearAndSelect
            | self.worklist.selectionModel().SelectionFlag.Rows,
        )
        self.worklist.scrollTo(idx)

    def _step_study(self, delta: int) -> None:
        model = self.worklist_model
        cur = self.worklist.currentIndex()
        row = cur.row() if cur.isValid() else -1
        target = row + delta if row >= 0 else 0
        if target >= model.rowCount() and model.canFetchMore():
            model.fetchMore()
        if 0 <= target < model.rowCount():
            self._select_row(target)

    def _on_current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        uid = current.data(STUDY_UID_ROLE)
        if uid and uid != self._study_uid:
            self.open_study(uid)

    def open_study(self, study_uid: str) -> None:
        """Show a study: its images in reading order, the first one decoded in the background."""
        self._study_uid = study_uid
        self._images = study_images(self.store, study_uid)
        self._image_index = -1
        row = self.worklist_model.row_for_uid(study_uid)
        info = self.worklist_model.row_data(row) if row >= 0 else None
        parts = []
        if info is not None:
            from cxrlt_desktop.ui.worklist_model import _get, format_date

            parts = [
                str(_get(info, "patient", "") or ""),
                format_date(_get(info, "study_date")),
                str(_get(info, "description", "") or ""),
            ]
        self.study_label.setText("  \u00b7  ".join(p for p in parts if p))
        self.studyOpened.emit(study_uid)
        if self._images:
            self.show_image(0)
        else:
            self._commit_pending_note()
            self._note_image_id = None
            self.findings.set_note("")
            self.viewer.clear()
            self.findings.set_results(None)
            self.findings.set_title("This study has no usable image")
            self.tags.clear()
            self.image_label.setText("")

    def show_image(self, index: int) -> None:
        """Show image ``index`` of the open study (findings now, pixels when decoded)."""
        if not (0 <= index < len(self._images)):
            return
        self._image_index = index
        entry = self._images[index]
        n_series = len({e.series_uid for e in self._images})
        series = f", series {entry.series_number}" if n_series > 1 and entry.series_number else ""
        self.image_label.setText(f"Image {index + 1}/{len(self._images)}{series}")
        self.prev_image_button.setEnabled(index > 0)
        self.next_image_button.setEnabled(index < len(self._images) - 1)
        self._show_findings(entry)
        self.tags.load(entry.path)
        self._request_decode(entry)
        if index + 1 < len(self._images):
            self._prefetch(self._images[index + 1])

    def _show_findings(self, entry: ImageEntry) -> None:
        same_image = entry.image_id == self._note_image_id
        if not same_image:
            # A note typed but not confirmed (PgDown while typing) belongs to the image it was
            # typed for: save it there before the field shows another image's note.
            self._commit_pending_note()
        title = Path(entry.path).name
        extra = [
            x
            for x in (
                entry.view_position,
                f"series {entry.series_number}" if entry.series_number is not None else None,
            )
            if x
        ]
        if extra:
            title += f" ({', '.join(extra)})"
        if entry.probs is None:
            title += " - not scored yet"
        self.findings.set_title(title)
        if entry.probs is None:
            self.findings.set_results(None)
        else:
            self.findings.set_results(
                results_from_prediction(
                    entry.probs, self.thresholds(), entry.ungated, entry.attention is not None
                )
            )
        verdicts, note = image_reviews(self.store, entry.image_id)
        self.findings.set_verdicts(verdicts)
        if not (same_image and self.findings.pending_note() is not None):
            self.findings.set_note(note)  # (new predictions never wipe a note being typed)
        self._note_image_id = entry.image_id
        self._update_overlay_map()

    def _reload_current_study_predictions(self) -> None:
        """Pick up predictions that arrived for the open study while it is on screen."""
        entry = self.current_image()
        if entry is None or self._study_uid is None:
            return
        fresh = study_images(self.store, self._study_uid)
        by_id = {e.image_id: e for e in fresh}
        changed_current = False
        for i, old in enumerate(self._images):
            new = by_id.get(old.image_id)
            if new is not None and new.prediction_id != old.prediction_id:
                self._images[i] = new
                changed_current = changed_current or i == self._image_index
        if changed_current:
            self._show_findings(self._images[self._image_index])

    def _resume_retriage(self) -> None:
        """A re-sort for new thresholds cut short by a close (or owed after a scoring job that
        still used the old ones) is finished now, with the thresholds in force."""
        from cxrlt_desktop.library.triage import retriage_pending

        try:
            pending = retriage_pending(self.store)
        except Exception:  # noqa: BLE001 - a store problem shows elsewhere; the window opens
            return
        if pending:
            self._start_retriage()

    def _start_retriage(self) -> None:
        self.statusBar().showMessage("Re-sorting the worklist for the new thresholds...")
        self._retriage_pool.submit(self._retriage_job, dict(self.settings.thresholds or {}))

    def _retriage_job(self, thresholds: dict[str, float]) -> None:
        # Runs in the retriage thread, in short transactions, until done or the window closes.
        from cxrlt_desktop.library.triage import retriage

        try:
            retriage(self.store, thresholds, should_stop=self._retriage_stop.is_set)
        except Exception as exc:  # reported on the GUI thread
            self.retriaged.emit(str(exc) or type(exc).__name__)
            return
        self.retriaged.emit("")

    def _on_retriaged(self, error: str) -> None:
        if self._closing_done:
            return
        if error:
            self._report_error(f"The worklist was not re-sorted for the new thresholds: {error}")
            return
        self.statusBar().showMessage("Worklist re-sorted for the new thresholds", 5000)
        self.refresh_worklist()

    def _request_decode(self, entry: ImageEntry) -> None:
        self._decode_token += 1
        token = self._decode_token
        cached = self._image_cache.get(entry.image_id)
        if cached is not None:
            self._image_cache.move_to_end(entry.image_id)
            self._display(entry.image_id, cached)
            return
        self._decoder.submit(self._decode_job, token, entry.image_id, entry.path)

    def _prefetch(self, entry: ImageEntry) -> None:
        if entry.image_id not in self._image_cache:
            self._decoder.submit(self._decode_job, -1, entry.image_id, entry.path)

    def _decode_job(self, token: int, image_id: int, path: str) -> None:
        # Runs in the decoder thread; the result goes back through a queued signal.
        try:
            from engine.imageio import read_display

            display = read_display(path)
        except Exception as exc:  # ImageReadError or anything a broken file raises
            self._imageDecoded.emit(token, image_id, None, str(exc))
            return
        self._imageDecoded.emit(token, image_id, display, None)

    def _on_image_decoded(self, token: int, image_id: int, display, error) -> None:
        if display is not None:
            self._image_cache[image_id] = display
            self._image_cache.move_to_end(image_id)
            while len(self._image_cache) > IMAGE_CACHE_SIZE:
                self._image_cache.popitem(last=False)
        entry = self.current_image()
        if entry is None or entry.image_id != image_id:
            return
        if token != self._decode_token and token != -1:
            return
        if display is None:
            self.viewer.clear()
            self.viewer._info.setText(f"Cannot display this image: {error}")
            self._on_problem_found(Problem(entry.path, str(error), "view"))
            return
        self._display(image_id, display)

    def _display(self, image_id: int, display) -> None:
        entry = self.current_image()
        label = ""
        if entry is not None:
            h, w = display.modality.shape
            label = f"{Path(entry.path).name}  {w} x {h}"
        self.viewer.set_image(display, attention=self._current_attention(), label=label)
        self.preset_box.clear()
        for p in self.viewer.presets():
            self.preset_box.addItem(f"{p.name} ({p.center:.0f}/{p.width:.0f})", p.name)
        self.imageDisplayed.emit(image_id)

    def _current_attention(self) -> np.ndarray | None:
        entry = self.current_image()
        finding = self.findings.current_finding()
        if entry is None or entry.attention is None or finding is None:
            return None
        from engine.classes import ALL_CLASSES, TASK1_CLASSES

        i = ALL_CLASSES.index(finding)
        if i >= len(TASK1_CLASSES) or i >= entry.attention.shape[0]:
            return None
        return np.asarray(entry.attention[i], dtype=np.float32)

    def _update_overlay_map(self) -> None:
        att = self._current_attention()
        self.viewer.set_attention(att)
        self.overlay_box.setEnabled(att is not None or self.overlay_box.isChecked())

    # ================================================================== verdicts
    def _on_verdict_requested(self, finding: str, verdict: str) -> None:
        entry = self.current_image()
        if entry is None:
            return
        from cxrlt_desktop.library import reviews

        try:
            reviews.set_verdict(
                self.store, entry.image_id, finding, verdict, reviewer=self.reviewer()
            )
        except Exception as exc:  # the verdict was not saved: say so, keep the old state
            self._report_error(f"The verdict was not saved: {exc}")
            verdicts, _ = image_reviews(self.store, entry.image_id)
            self.findings.set_verdict(finding, verdicts.get(finding))
            return
        self.findings.set_verdict(finding, verdict)
        self.verdictCommitted.emit(entry.image_id, finding, verdict)
        self._refresh_timer.start(0)

    def _on_note_edited(self, note: str) -> None:
        if self._note_image_id is not None:
            self._save_note(self._note_image_id, note)

    def _commit_pending_note(self) -> None:
        text = self.findings.pending_note()
        if text is not None and self._note_image_id is not None:
            self._save_note(self._note_image_id, text)

    def _save_note(self, image_id: int, note: str) -> None:
        from cxrlt_desktop.library import reviews

        try:
            reviews.set_image_note(self.store, image_id, note, reviewer=self.reviewer())
        except Exception as exc:
            self._report_error(f"The note was not saved: {exc}")
            if image_id == self._note_image_id:
                _, stored = image_reviews(self.store, image_id)
                self.findings.note_not_saved(stored)  # still pending: saved on the next try
            return
        if image_id == self._note_image_id:
            self.findings.set_note(note)

    def _focus_note(self) -> None:
        focus = QApplication.focusWidget()
        if focus is not self.findings.note_edit:
            self._focus_before_note = focus
        self.findings.note_edit.setFocus()

    def _on_note_done(self) -> None:
        """Enter or Escape in the note: give the keyboard back, so verdict keys work again."""
        back = self._focus_before_note
        self._focus_before_note = None
        try:
            usable = back is not None and back.isVisible() and back is not self.findings.note_edit
        except RuntimeError:  # the widget was deleted
            usable = False
        (back if usable else self.viewer).setFocus()

    def _on_agree_all_requested(self) -> None:
        entry = self.current_image()
        if entry is None or entry.probs is None:
            return
        from cxrlt_desktop.library import reviews

        kwargs: dict[str, Any] = {"reviewer": self.reviewer()}
        if "thresholds" in inspect.signature(reviews.agree_with_all).parameters:
            kwargs["thresholds"] = self.settings.thresholds or None
        try:
            reviews.agree_with_all(self.store, entry.image_id, **kwargs)
        except Exception as exc:
            self._report_error(f"'Agree with all' was not saved: {exc}")
            return
        verdicts, _ = image_reviews(self.store, entry.image_id)
        self.findings.set_verdicts(verdicts)
        for finding, verdict in verdicts.items():
            self.verdictCommitted.emit(entry.image_id, finding, verdict)
        self._refresh_timer.start(0)

    # ================================================================== viewer controls
    def _on_finding_selected(self, _finding: str) -> None:
        self._update_overlay_map()

    def _on_overlay_box_toggled(self, checked: bool) -> None:
        self.viewer.set_overlay_enabled(checked)

    def _on_viewer_overlay_toggled(self, enabled: bool) -> None:
        if self.overlay_box.isChecked() != enabled:
            self.overlay_box.setChecked(enabled)

    def _on_opacity_changed(self, value: int) -> None:
        self.viewer.set_overlay_opacity(value / 100.0)

    def _on_preset_activated(self, index: int) -> None:
        name = self.preset_box.itemData(index)
        if name:
            self.viewer.apply_preset(name)

    def _apply_named_preset(self, name: str) -> None:
        if self.viewer.has_image():
            self.viewer.apply_preset(name)

    # ================================================================== worklist
    def _on_filters_changed(self, *_args) -> None:
        self.worklist_model.set_filters(
            status=self.status_filter.currentData(),
            finding=self.finding_filter.currentData() or "",
            text=self.text_filter.text(),
        )

    def _on_show_phi_toggled(self, checked: bool) -> None:
        self.worklist_model.set_filters(show_phi=checked)
        self.tags.set_show_phi(checked)

    def _on_batch_scored(self, _done: int) -> None:
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _on_scan_finished(self, _n: int) -> None:
        self.refresh_worklist()

    # ================================================================== jobs
    def _on_job_started(self) -> None:
        self.progress_bar.setVisible(True)
        self.progress_bar.setRange(0, 0)
        self.cancel_button.setVisible(True)
        self.cancel_button.setEnabled(True)

    def _on_job_progress(self, p: Progress) -> None:
        if p.phase == "scan":
            self.progress_bar.setRange(0, 0)
            rate = f", {p.rate:.0f} files/s" if p.rate else ""
            self.progress_label.setText(f"Scanning: {p.done} files{rate}")
        elif p.phase == "load":
            self.progress_bar.setRange(0, 0)
            self.progress_label.setText("Loading models...")
        else:
            total = max(p.total, 1)
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(p.done, total))
            parts = [f"Scoring {p.done}/{p.total}"]
            if p.rate:
                parts.append(f"{p.rate:.2f} images/s")
            eta = format_eta(p.eta)
            if eta:
                parts.append(f"ETA {eta}")
            if p.failed:
                parts.append(f"{p.failed} failed")
            self.progress_label.setText(", ".join(parts))

    def _on_problem_found(self, problem: Problem) -> None:
        key = (problem.path, problem.reason)
        if key in self._problem_keys:
            return
        self._problem_keys.add(key)
        r = self.problems.rowCount()
        self.problems.insertRow(r)
        for c, text in enumerate((problem.path, problem.phase, problem.reason)):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            self.problems.setItem(r, c, item)
        self.problems_dock.setWindowTitle(f"Problems ({self.problems.rowCount()})")

    def _load_recorded_problems(self) -> None:
        try:
            for path, reason, phase in recorded_problems(self.store):
                self._on_problem_found(Problem(path, reason, phase))
        except Exception as exc:  # an old or foreign database: problems are a convenience
            self.statusBar().showMessage(f"Could not read recorded problems: {exc}", 5000)

    def _on_models_loaded(self, predictor) -> None:
        self._update_model_status(predictor)
        self._update_demo_banner(predictor)

    def _on_job_finished(self, result: JobResult) -> None:
        self.last_job = result
        if self._retriage_after_job and not self._close_when_idle:
            self._retriage_after_job = False
            self._start_retriage()
        self.progress_bar.setVisible(False)
        self.cancel_button.setVisible(False)
        if result.error:
            self.progress_label.setText("Stopped by an error")
            self._report_error(result.error)
        elif result.cancelled:
            self.progress_label.setText(f"Cancelled ({result.scored} scored)")
        else:
            failed = f", {result.failed} failed (see Problems)" if result.failed else ""
            self.progress_label.setText(f"Done: {result.scored} scored{failed}")
        self.refresh_worklist()
        self.jobFinished.emit(result)
        if self._close_when_idle:
            self.close()

    def _report_error(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)
        self.progress_label.setToolTip(text)
        if self.isVisible() and not _offscreen():
            QMessageBox.warning(self, APP_TITLE, text)

    def _update_model_status(self, predictor) -> None:
        s = self.settings
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
            text = (
                f"Models: {', '.join(roles) or 'none'} | {device} "
                f"{ps.get('precision', '')}{runtime} | {ps.get('mode', s.mode)}"
            )
        elif self.predictors.configured:
            n = len(s.task1_checkpoints)
            parts = [f"{n} Task 1 checkpoint{'s' if n != 1 else ''}"] if n else []
            if s.clip_model is not None:
                parts.append("CLIP")
            text = (
                f"Models: {', '.join(parts) or 'configured'} (not loaded) | {s.device} | {s.mode}"
            )
        else:
            text = "Models: none configured (File > Settings)"
        self.model_status.setText(text)

    def _update_demo_banner(self, predictor=None) -> None:
        demo = self._forced_demo
        if demo is None:
            demo = settings_use_demo_models(self.settings)
            if predictor is not None:
                demo = demo or any(
                    is_demo_model_file(getattr(m, "path", None)) for m in predictor.models
                )
        self.banner.setVisible(bool(demo))
        self.setWindowTitle(f"{APP_TITLE} - DEMO" if demo else APP_TITLE)

    def is_demo(self) -> bool:
        return self.banner.isVisibleTo(self)

    # ================================================================== settings
    def _on_settings_accepted(self, dlg) -> None:
        new = dlg.result_settings
        if new is None:
            return
        thresholds_changed = dict(new.thresholds or {}) != dict(self.settings.thresholds or {})
        self.settings = new
        try:
            new.save(self._settings_path)
        except Exception as exc:
            self._report_error(f"Settings not saved: {exc}")
        self._apply_keymap(merged_keymap(new.shortcuts or None))
        self.jobs.thresholds = dict(new.thresholds or {})
        if thresholds_changed:
            # The worklist's priority, flags and finding filter derive from the thresholds:
            # recompute them for the whole library, off the GUI thread. A scoring job that is
            # running writes its batches with the old ones: redo it when that job ends.
            self._start_retriage()
            self._retriage_after_job = self.jobs.is_running()
        if settings_have_models(new):
            self.predictors.put(dlg.loaded_predictor, self._settings_predictor_factory(new))
        else:
            self.predictors.set_factory(None)
        self._forced_demo = None
        self._update_model_status(dlg.loaded_predictor)
        self._update_demo_banner(dlg.loaded_predictor)
        if self.current_image() is not None:
            self._show_findings(self.current_image())

    # ================================================================== files
    def _on_open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of chest X-rays")
        if folder:
            self.open_paths([folder])

    def export_running(self) -> bool:
        job = getattr(self, "_export_job", None)
        return job is not None and job.is_running()

    def _on_export(self) -> None:
        from cxrlt_desktop.ui.export_dialog import ExportDialog

        if self.export_running():
            self._report_error("An export is running: wait for it to finish.")
            return
        dlg = ExportDialog(self)
        if dlg.exec() != QDialog.DialogCode.Accepted or not dlg.folder.text().strip():
            return
        self.export_to(Path(dlg.folder.text().strip()), **dlg.options())

    def export_to(self, out_dir: Path, **options: Any):
        """Export the verdicts into ``out_dir`` in the background; returns the job.

        The job's ``finished(result, error)`` signal reports the outcome; the status bar too.
        """
        from cxrlt_desktop.ui.export_dialog import ExportJob

        if self.export_running():  # one at a time: closing waits for (and cancels) only one
            self._report_error("An export is running: wait for it to finish.")
            return None
        if self._close_when_idle:
            self._report_error("The window is closing: no new export.")
            return None
        options.setdefault("demo", self.is_demo())
        options.setdefault("thresholds", self.settings.thresholds or None)
        job = ExportJob(self.store, out_dir, options, self)
        job.progress.connect(lambda text: self.statusBar().showMessage(text, 3000))
        job.finished.connect(self._on_export_finished)
        self._export_job = job
        self.statusBar().showMessage(f"Exporting to {out_dir}...")
        self.export_action.setEnabled(False)
        job.start()
        return job

    def _on_export_finished(self, result, error: str) -> None:
        self.export_action.setEnabled(_export_function() is not None)
        if self._close_when_idle:
            self.close()
            return
        if error:
            self._report_error(f"Export failed: {error}")
            return
        n = getattr(result, "n_images", None)
        where = getattr(result, "out_dir", "")
        self.statusBar().showMessage(
            f"Exported {n if n is not None else ''} reviewed images to {where}", 15000
        )

    def _on_about(self) -> None:
        from cxrlt_desktop import __version__

        QMessageBox.about(
            self,
            APP_TITLE,
            f"<b>{APP_TITLE}</b> {__version__}<br>Chest X-ray triage with the CXR-LT 2026 "
            "first-place method. Not a medical device.",
        )

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

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.export_running() and not self._close_when_idle:
            # Waiting for a long export here froze the window; ask, then cancel it (the export
            # removes what it wrote) and close when it has stopped.
            if not _offscreen():
                answer = QMessageBox.question(
                    self,
                    APP_TITLE,
                    "An export is running. Cancel it and close?",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                )
                if answer != QMessageBox.StandardButton.Yes:
                    event.ignore()
                    return
            self._close_when_idle = True
            self.statusBar().showMessage("Cancelling the export, then closing...")
        if self.export_running():
            self._export_job.cancel()
        if self.jobs.is_running() or self.export_running():
            # Cancel, let the batch in flight finish and be written, then close for real.
            self._close_when_idle = True
            self.cancel_jobs()
            event.ignore()
            return
        if not self._closing_done:
            self._closing_done = True
            self._refresh_timer.stop()
            self._retriage_stop.set()  # stops between two short transactions (still pending)
            self._retriage_pool.shutdown(wait=False, cancel_futures=True)
            if self._retriage_after_job:  # owed: the job wrote batches with the old thresholds
                from cxrlt_desktop.library.triage import mark_retriage_pending

                try:
                    mark_retriage_pending(self.store, self.settings.thresholds)
                except Exception as exc:  # noqa: BLE001 - closing goes on
                    print(f"cxrlt gui: {exc}", file=sys.stderr)
            self._decoder.shutdown(wait=True, cancel_futures=True)
            self.worklist_model.shutdown()
            job = getattr(self, "_export_job", None)
            if job is not None:
                job.wait()
        super().closeEvent(event)


def _export_function():
    """The export service function, or None when it is not installed."""
    from cxrlt_desktop.ui.export_dialog import export_function

    return export_function()


def _offscreen() -> bool:
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.platformName() in ("offscreen", "minimal")


__all__ = ["DEMO_BANNER", "MainWindow", "is_demo_model_file", "settings_use_demo_models"]
