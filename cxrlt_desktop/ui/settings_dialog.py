"""The settings dialog: model files, engine options, thresholds, shortcuts, and the department
(the library's database URL, who scores, the reader's name).

On OK the values are validated by ``cxrlt_desktop.settings.Settings`` (one message per bad key),
a changed database URL by connecting to it and reading its schema revision
(:func:`~cxrlt_desktop.ui.database_check.check_database`), and, when model files are configured
and this workstation scores, by actually loading them with the engine; both checks run in the
background (superqt workers in the dialog's lane, :mod:`.background`; the layout check of
``engine.checkpoints`` names missing and unexpected keys). The dialog closes only when all
pass, and keeps every value entered when one fails (the reason is shown in the dialog); the
loaded predictor is kept so the main window does not load the models a second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from cxrlt_desktop.ui.background import Lane
from cxrlt_desktop.ui.database_check import check_database
from cxrlt_desktop.ui.dicom_node_settings import DicomNodeTab
from cxrlt_desktop.ui.hanging_settings import HangingTab
from cxrlt_desktop.ui.shortcuts import ACTIONS, merged_keymap

AUTO_ARCH = "auto"
FIRST_START_TEXT = (
    "<b>No models are configured yet.</b> CXR-LT Desktop scores images with local model files "
    "(nothing is downloaded unless you press Get the published models). Add the Task 1 checkpoints (for example the published "
    "<code>convnextv2_base_mimic-cxr_padchest_csra_dbcas.safetensors</code> and an MLP-head "
    "checkpoint) and, for the 6 zero-shot findings, a WhyXrayCLIP folder "
    "(open_clip_config.json + weights). The files are checked by loading them when you press "
    "OK. Without models you can still open folders and review images; scoring waits until "
    "models are set. For a try-out without weights, run <code>cxrlt demo-models</code> and "
    "point here at its output (marked DEMO)."
)


class SettingsDialog(QDialog):
    """Edit and validate :class:`cxrlt_desktop.settings.Settings`.

    Parameters
    ----------
    settings
        The current settings (not modified; read :attr:`result_settings` after acceptance).
    first_start
        Show the explanation for a first start without models.
    engine_overrides
        Extra ``EngineConfig`` fields used when the models are test-loaded (tests shrink the
        image size with it).

    Signals
    -------
    validationFinished(bool, str)
        After OK: whether the settings passed, and the error text when they did not.
    """

    validationFinished = Signal(bool, str)

    def __init__(
        self,
        settings,
        parent: QWidget | None = None,
        *,
        first_start: bool = False,
        engine_overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setModal(True)
        self.resize(720, 560)
        self._settings = settings
        self._engine_overrides = dict(engine_overrides or {})
        self.result_settings = None
        self.loaded_predictor: Any = None
        self._validating = False
        self.lane = Lane("settings-check", parent=self)

        self.intro = QLabel(FIRST_START_TEXT)
        self.intro.setWordWrap(True)
        self.intro.setTextFormat(Qt.TextFormat.RichText)
        self.intro.setVisible(first_start)
        self.intro.setObjectName("firstStartIntro")

        tabs = QTabWidget()
        tabs.addTab(self._models_tab(), "Models")
        tabs.addTab(self._engine_tab(), "Engine")
        tabs.addTab(self._thresholds_tab(), "Thresholds")
        tabs.addTab(self._shortcuts_tab(), "Shortcuts")
        self.department_tab = self._department_tab()
        tabs.addTab(self.department_tab, "Department")
        self.dicom_node_tab = DicomNodeTab()
        tabs.addTab(self.dicom_node_tab, "DICOM node")
        self.hanging_tab = HangingTab()
        tabs.addTab(self.hanging_tab, "Hanging")
        self.tabs = tabs

        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c92a2a;")
        self.error_label.setObjectName("settingsError")
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setVisible(False)
        self.busy.setFormat("Loading models to check them...")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self._on_ok)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(tabs, 1)
        layout.addWidget(self.error_label)
        layout.addWidget(self.busy)
        layout.addWidget(self.buttons)
        self._load_values(settings)

    # ------------------------------------------------------------------ tabs
    def _models_tab(self) -> QWidget:
        w = QWidget()
        form = QFormLayout(w)
        self.checkpoints = QListWidget()
        self.checkpoints.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        add = QPushButton("Add...")
        add.clicked.connect(self._on_add_checkpoint)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._on_remove_checkpoint)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        box = QVBoxLayout()
        box.addWidget(self.checkpoints)
        box.addLayout(buttons)
        form.addRow("Task 1 checkpoints", box)
        self.weights = QLineEdit()
        self.weights.setPlaceholderText("default by head: MLP 1.0, CSRA 1.5")
        form.addRow("Ensemble weights", self.weights)
        self.arch = QComboBox()
        self.arch.setEditable(True)
        self.arch.addItems(
            [AUTO_ARCH, "convnextv2_base", "convnextv2_tiny", "convnextv2_nano", "convnextv2_atto"]
        )
        self.arch.setToolTip("auto: read the architecture from the checkpoint's weights")
        form.addRow("Task 1 architecture", self.arch)
        self.clip_model = QLineEdit()
        self.clip_model.setPlaceholderText("WhyXrayCLIP folder (open_clip local-dir)")
        form.addRow("CLIP model folder", self._with_browse(self.clip_model, folder=True))
        self.prompts = QLineEdit()
        self.prompts.setPlaceholderText("default: the built-in prompt ensembles")
        form.addRow("Prompts JSON", self._with_browse(self.prompts, folder=False))
        self.calibration = QLineEdit()
        self.calibration.setPlaceholderText("optional temperature-scaling JSON")
        form.addRow("Calibration", self._with_browse(self.calibration, folder=False))
        get = QPushButton("Get the published models...")
        get.setObjectName("getPublishedModels")
        get.setToolTip("Download, verify and install the published models (cxrlt models fetch)")
        get.clicked.connect(self.get_published_models)
        form.addRow("", get)
        return w

    def get_published_models(self):  # noqa: ANN201
        """Open the fetch dialog; what it installs fills the model fields (OK checks them)."""
        from cxrlt_desktop.ui.models_fetch_dialog import ModelsFetchDialog

        self.fetch_dialog = ModelsFetchDialog(self)
        self.fetch_dialog.installed.connect(self.use_models)
        self.fetch_dialog.open()
        return self.fetch_dialog

    def use_models(self, entries: list) -> None:
        """Point the model fields at registered models (``RegisteredModel``: role, path)."""
        task1 = [e.path for e in entries if e.role.startswith("task1")]
        clip = [e.path for e in entries if e.role == "clip"]
        if task1:
            self.set_checkpoints(task1)
            self.weights.clear()
            self.arch.setCurrentText(AUTO_ARCH)
        if clip:
            self.clip_model.setText(clip[-1])

    def _engine_tab(self) -> QWidget:
        w = QWidget()
        form = QFormLayout(w)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        form.addRow("Device", self.device)
        self.mode = QComboBox()
        self.mode.addItems(["paper", "fast"])
        self.mode.setToolTip(
            "paper: both models x 6 views, normal gating, CLIP. fast: CSRA model, one view."
        )
        form.addRow("Mode", self.mode)
        self.policy = QComboBox()
        self.policy.setObjectName("scoringPolicy")
        for text, value in (
            ("auto (progressive on a CPU, paper on a GPU)", "auto"),
            ("progressive: fast pass first, then paper", "progressive"),
            ("paper only", "paper"),
            ("fast only", "fast"),
        ):
            self.policy.addItem(text, value)
        self.policy.setToolTip(
            "progressive: every image gets a provisional fast score within seconds, then the "
            "paper's method replaces it, most suspicious images first. paper: the paper's method "
            "only (a GPU is fast enough). fast: the fast pass only, never refined."
        )
        form.addRow("Scoring policy", self.policy)
        self.precision = QComboBox()
        self.precision.addItems(["auto", "fp32", "bf16", "fp16"])
        self.precision.setToolTip("auto: bf16 on a GPU, fp32 on the CPU")
        form.addRow("Precision", self.precision)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 4096)
        form.addRow("Batch size", self.batch_size)
        self.normal_alpha = QDoubleSpinBox()
        self.normal_alpha.setRange(0.0, 10.0)
        self.normal_alpha.setSingleStep(0.1)
        form.addRow("Normal gating alpha", self.normal_alpha)
        return w

    def _department_tab(self) -> QWidget:
        """The library's database, who scores, and the reader's name."""
        w = QWidget()
        form = QFormLayout(w)
        self.database = QLineEdit()
        self.database.setObjectName("databaseUrl")
        self.database.setPlaceholderText(
            "default: the user data folder's cxrlt.db; a department: "
            "postgresql+psycopg://user@server/cxrlt"
        )
        self.database.textEdited.connect(lambda _t: self._show_database_status("", None))
        check = QPushButton("Check")
        check.setToolTip("Connect to the database and read its schema revision")
        check.clicked.connect(self._on_check_database)
        self.check_database_button = check
        row = QHBoxLayout()
        row.addWidget(self.database, 1)
        row.addWidget(check)
        self.database_status = QLabel("")
        self.database_status.setObjectName("databaseStatus")
        self.database_status.setWordWrap(True)
        db_note = QLabel("A new database takes effect at the next start.")
        db_note.setStyleSheet("color: #666;")
        box = QVBoxLayout()
        box.addLayout(row)
        box.addWidget(self.database_status)
        box.addWidget(db_note)
        form.addRow("Database URL", box)
        self.scoring = QComboBox()
        self.scoring.setObjectName("scoring")
        self.scoring.addItem("On this workstation", "workstation")
        self.scoring.addItem("By department workers", "workers")
        self.scoring.setToolTip(
            "By department workers: this workstation loads no model; what it scans is queued "
            "for the department's `cxrlt worker` processes, and the status bar shows the queue."
        )
        form.addRow("Scoring", self.scoring)
        self.reviewer = QLineEdit()
        self.reviewer.setObjectName("readerName")
        self.reviewer.setPlaceholderText("your name, recorded with every verdict")
        self.reviewer.setToolTip(
            "Signs your verdicts, and other workstations show 'being read by NAME' on the study "
            "you have open"
        )
        form.addRow("Reader name", self.reviewer)
        return w

    def _thresholds_tab(self) -> QWidget:
        from engine.classes import class_table

        self.threshold_table = QTableWidget(len(class_table()), 3)
        self.threshold_table.setHorizontalHeaderLabels(["Finding", "Task", "Threshold"])
        self.threshold_table.verticalHeader().setVisible(False)
        self.threshold_table.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.Stretch
        )
        self._threshold_spins: dict[str, QDoubleSpinBox] = {}
        for i, info in enumerate(class_table()):
            item = QTableWidgetItem(info.display_name)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.threshold_table.setItem(i, 0, item)
            task = QTableWidgetItem("zero-shot" if info.task == 2 else "supervised")
            task.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.threshold_table.setItem(i, 1, task)
            spin = QDoubleSpinBox()
            spin.setRange(0.001, 1.0)
            spin.setDecimals(3)
            spin.setSingleStep(0.05)
            self.threshold_table.setCellWidget(i, 2, spin)
            self._threshold_spins[info.name] = spin
        self.flag_for_processing = QCheckBox(
            "FOR PROCESSING images may raise the rare-finding flag"
        )
        self.flag_for_processing.setObjectName("flagForProcessing")
        self.flag_for_processing.setToolTip(
            "Raw detector images (Presentation Intent FOR PROCESSING) are scored and marked, but "
            "the models were trained on images for presentation: by default they do not count "
            "toward a study's rare-finding score or flag."
        )
        w = QWidget()
        box = QVBoxLayout(w)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.flag_for_processing)
        box.addWidget(self.threshold_table, 1)
        return w

    def _shortcuts_tab(self) -> QWidget:
        self.shortcut_table = QTableWidget(len(ACTIONS), 2)
        self.shortcut_table.setHorizontalHeaderLabels(["Action", "Key"])
        self.shortcut_table.verticalHeader().setVisible(False)
        self.shortcut_table.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.Stretch
        )
        self._key_edits: dict[str, QKeySequenceEdit] = {}
        for i, action in enumerate(ACTIONS):
            item = QTableWidgetItem(action.text)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.shortcut_table.setItem(i, 0, item)
            edit = QKeySequenceEdit()
            edit.setMaximumSequenceLength(1) if hasattr(edit, "setMaximumSequenceLength") else None
            self.shortcut_table.setCellWidget(i, 1, edit)
            self._key_edits[action.id] = edit
        return self.shortcut_table

    def _with_browse(self, edit: QLineEdit, *, folder: bool) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        b = QPushButton("Browse...")

        def browse() -> None:
            if folder:
                path = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
            else:
                path, _ = QFileDialog.getOpenFileName(self, "Choose a file", edit.text())
            if path:
                edit.setText(path)

        b.clicked.connect(browse)
        row.addWidget(b)
        return w

    # ------------------------------------------------------------------ values
    def _load_values(self, s) -> None:
        from engine.classes import DEFAULT_THRESHOLDS

        self.checkpoints.clear()
        for p in s.task1_checkpoints:
            self.checkpoints.addItem(str(p))
        self.weights.setText(", ".join(f"{w:g}" for w in s.task1_weights or []))
        self.arch.setCurrentText(s.task1_arch or AUTO_ARCH)
        self.clip_model.setText(str(s.clip_model or ""))
        self.prompts.setText(str(s.prompts or ""))
        self.calibration.setText(str(s.calibration or ""))
        self.device.setCurrentText(s.device)
        self.mode.setCurrentText(s.mode)
        self.policy.setCurrentIndex(max(self.policy.findData(s.policy), 0))
        self.precision.setCurrentText(s.precision or "auto")
        self.batch_size.setValue(int(s.batch_size))
        self.normal_alpha.setValue(float(s.normal_alpha))
        self.reviewer.setText(s.reviewer or "")
        self.flag_for_processing.setChecked(bool(s.flag_for_processing))
        self.dicom_node_tab.load(s.dicom_node)
        self.hanging_tab.load(s.hanging)
        self.database.setText(s.database or "")
        self.scoring.setCurrentIndex(max(0, self.scoring.findData(s.scoring or "workstation")))
        for name, spin in self._threshold_spins.items():
            spin.setValue(float(s.thresholds.get(name, DEFAULT_THRESHOLDS[name])))
        keymap = merged_keymap({k: v for k, v in s.shortcuts.items()} if s.shortcuts else None)
        for action, edit in self._key_edits.items():
            edit.setKeySequence(QKeySequence(keymap[action]))

    def set_checkpoints(self, paths: list[str | Path]) -> None:
        """Replace the Task 1 checkpoint list (the Add button does this one file at a time)."""
        self.checkpoints.clear()
        for p in paths:
            self.checkpoints.addItem(str(p))

    def _document(self) -> dict[str, Any]:
        """The TOML document the widgets describe (for ``Settings.from_dict``)."""
        from engine.classes import DEFAULT_THRESHOLDS

        doc: dict[str, Any] = {}
        if self.database.text().strip():
            doc["database"] = self.database.text().strip()
        if self.reviewer.text().strip():
            doc["reviewer"] = self.reviewer.text().strip()
        if self.scoring.currentData() != "workstation":
            doc["scoring"] = self.scoring.currentData()
        if self.flag_for_processing.isChecked():
            doc["flag_for_processing"] = True
        # What the file holds and no tab edits ([paths], [pacs.NAME]) is kept as it is.
        kept = self._settings.to_dict()
        for key in ("paths", "pacs"):
            if key in kept:
                doc[key] = kept[key]
        models: dict[str, Any] = {}
        ckpts = [self.checkpoints.item(i).text() for i in range(self.checkpoints.count())]
        if ckpts:
            models["task1_checkpoints"] = ckpts
        if self.weights.text().strip():
            try:
                models["task1_weights"] = [
                    float(x) for x in self.weights.text().replace(";", ",").split(",") if x.strip()
                ]
            except ValueError:
                models["task1_weights"] = self.weights.text()  # let Settings name the problem
        arch = self.arch.currentText().strip()
        if arch and arch != AUTO_ARCH:
            models["task1_arch"] = arch
        for key, edit in (
            ("clip_model", self.clip_model),
            ("prompts", self.prompts),
            ("calibration", self.calibration),
        ):
            if edit.text().strip():
                models[key] = edit.text().strip()
        doc["models"] = models
        engine: dict[str, Any] = {
            "mode": self.mode.currentText(),
            "policy": self.policy.currentData(),
            "device": self.device.currentText(),
            "batch_size": self.batch_size.value(),
            "normal_alpha": round(self.normal_alpha.value(), 4),
        }
        if self.precision.currentText() != "auto":
            engine["precision"] = self.precision.currentText()
        doc["engine"] = engine
        thresholds = {
            name: round(spin.value(), 4)
            for name, spin in self._threshold_spins.items()
            if abs(spin.value() - DEFAULT_THRESHOLDS[name]) > 1e-9
        }
        if thresholds:
            doc["thresholds"] = thresholds
        shortcuts = {}
        for action in ACTIONS:
            key = self._key_edits[action.id].keySequence().toString()
            if key and key != action.default:
                shortcuts[action.id] = key
        if shortcuts:
            doc["shortcuts"] = shortcuts
        if node := self.dicom_node_tab.table():
            doc["dicom_node"] = node
        if hanging := self.hanging_tab.table():
            doc["hanging"] = hanging
        return doc

    # ------------------------------------------------------------------ OK
    def _on_ok(self) -> None:
        from cxrlt_desktop.settings import Settings, SettingsError

        if self._validating:
            return
        self.error_label.setText("")
        try:
            settings = Settings.from_dict(self._document())
            merged_keymap(settings.shortcuts)
            for p in settings.task1_checkpoints:
                if not Path(p).is_file():
                    raise SettingsError([f"models.task1_checkpoints: {p}: no such file"])
            if settings.clip_model is not None and not Path(settings.clip_model).is_dir():
                raise SettingsError([f"models.clip_model: {settings.clip_model}: no such folder"])
        except (SettingsError, ValueError) as exc:
            problems = getattr(exc, "problems", None) or [str(exc)]
            self._fail("\n".join(problems))
            return
        self.result_settings = settings
        if settings.database and settings.database != (self._settings.database or None):
            self._start_check(
                "Connecting to the database to check it...",
                check_database,
                settings.database,
                returned=self._on_database_checked,
                errored=self._on_database_failed,
            )
            return
        self._check_models(settings)

    def _check_models(self, settings) -> None:
        """Load the configured models to check them (not when the department's workers score)."""
        if settings.scoring == "workers" or (
            not settings.task1_checkpoints and settings.clip_model is None
        ):
            self._succeed(None)
            return
        config = settings.engine_config(**self._engine_overrides)
        # In the lane: loading convnextv2_base twice plus CLIP takes seconds.
        self._start_check(
            "Loading models to check them...",
            _load_predictor,
            config,
            returned=self._on_models_loaded,
            errored=self._on_models_failed,
        )

    def _start_check(self, text: str, func, *args, returned, errored) -> None:  # noqa: ANN001
        self._validating = True
        self.busy.setFormat(text)
        self.busy.setVisible(True)
        self.buttons.setEnabled(False)
        self.check_database_button.setEnabled(False)
        self.lane.run(func, *args, connect={"returned": returned, "errored": errored})

    # ------------------------------------------------------------------ the database
    def _on_check_database(self) -> None:
        """The Check button: connect to the URL entered and say what is there."""
        url = self.database.text().strip()
        if self._validating:
            return
        if not url:
            self._show_database_status("The default library in the user data folder.", True)
            return
        self._start_check(
            "Connecting to the database to check it...",
            check_database,
            url,
            returned=self._on_check_returned,
            errored=self._on_check_failed,
        )

    @Slot(object)
    def _on_check_returned(self, text: str) -> None:
        self._validation_ended()
        self._show_database_status(text, True)

    @Slot(object)
    def _on_check_failed(self, exc: BaseException) -> None:
        self._validation_ended()
        self._show_database_status(str(exc), False)

    def _show_database_status(self, text: str, ok: bool | None) -> None:
        color = {True: "#2b8a3e", False: "#c92a2a"}.get(ok, "#666")
        self.database_status.setStyleSheet(f"color: {color};")
        self.database_status.setText(text)

    @Slot(object)
    def _on_database_checked(self, text: str) -> None:
        self._validation_ended()
        self._show_database_status(text, True)
        if self.result_settings is not None:
            self._check_models(self.result_settings)

    @Slot(object)
    def _on_database_failed(self, exc: BaseException) -> None:
        self._validation_ended()
        self.result_settings = None
        self._show_database_status(str(exc), False)
        self.tabs.setCurrentWidget(self.department_tab)  # where the URL is
        self._fail(f"The database was not changed: {exc}")

    def _validation_ended(self) -> None:
        self._validating = False
        self.busy.setVisible(False)
        self.buttons.setEnabled(True)
        self.check_database_button.setEnabled(True)

    @Slot(object)
    def _on_models_loaded(self, predictor) -> None:
        self._validation_ended()
        self._succeed(predictor)

    @Slot(object)
    def _on_models_failed(self, exc: BaseException) -> None:
        # Every loader error is a message for the user.
        self._validation_ended()
        self.result_settings = None
        self._fail(f"The models could not be loaded: {type(exc).__name__}: {exc}")

    def _fail(self, text: str) -> None:
        self.error_label.setText(text)
        self.validationFinished.emit(False, text)

    def _succeed(self, predictor) -> None:
        self.loaded_predictor = predictor
        self.validationFinished.emit(True, "")
        self.accept()

    def _on_add_checkpoint(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Task 1 checkpoints", "", "Checkpoints (*.safetensors *.pth *.pt);;All files (*)"
        )
        for p in paths:
            self.checkpoints.addItem(p)

    def _on_remove_checkpoint(self) -> None:
        for item in self.checkpoints.selectedItems():
            self.checkpoints.takeItem(self.checkpoints.row(item))

    def reject(self) -> None:
        if self._validating:
            return  # the loader reports back to this dialog; let it finish first
        super().reject()


def _load_predictor(config):  # noqa: ANN001, ANN202 - runs in the dialog's lane
    from engine.predictor import Predictor

    return Predictor(config)


__all__ = ["SettingsDialog", "FIRST_START_TEXT"]
