"""Application entry points: the QApplication, the main-window factory, the event loop.

Tests build the window with :func:`create_main_window` and never call ``exec()``; the
``cxrlt gui`` command calls :func:`run_gui`.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

from engine.offline import go_offline

go_offline()  # the GUI started without the CLI (tests, benchmarks) is offline too

from pyqtgraph.util.garbage_collector import GarbageCollector  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from cxrlt_desktop.ui.main_window import MainWindow  # noqa: E402

# How often the GUI thread checks whether a cyclic collection is due (seconds).
GC_INTERVAL_S = 0.5


_GC: GarbageCollector | None = None


def ensure_app(argv: list[str] | None = None) -> QApplication:
    """The process's QApplication (created on first use), with cyclic garbage collection moved
    to the GUI thread.

    Python's cyclic collector runs on whichever thread happens to allocate. A Qt object in a
    reference cycle (a widget whose Python side holds a slot bound to itself, a dialog, a
    window the reader closed) would then be destroyed on a decode or scoring thread, which Qt
    does not allow: the process crashes at random. pyqtgraph's :class:`GarbageCollector`
    disables automatic collection and collects on a GUI-thread timer instead (the collection
    thresholds stay as they were).
    """
    global _GC
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
        app.setApplicationName("CXR-LT Desktop")
        app.setOrganizationName("cxrlt-desktop")
    if _GC is None:
        _GC = GarbageCollector(interval=GC_INTERVAL_S)
    return app  # type: ignore[return-value]


def create_main_window(
    store,
    settings,
    *,
    settings_path: str | Path | None = None,
    predictor_factory=None,
    engine_overrides: dict[str, Any] | None = None,
    demo: bool | None = None,
    first_start_dialog: bool = True,
) -> MainWindow:
    """Build the main window (the QApplication must exist; the event loop need not run).

    Parameters
    ----------
    store
        An open store (``cxrlt_desktop.store.open_store``).
    settings
        ``cxrlt_desktop.settings.Settings``.
    settings_path
        Where the settings dialog saves (None: the default config file).
    predictor_factory
        Zero-argument callable returning an ``engine.predictor.Predictor``; None builds one from
        ``settings`` (or leaves scoring off when no model is configured).
    engine_overrides
        Extra ``EngineConfig`` fields (tests and the self-test use a small ``image_size``).
    demo
        Force the "DEMO MODEL" banner on or off; None decides from the model manifests.
    first_start_dialog
        Open the settings dialog with an explanation when no models are configured.
    """
    from cxrlt_desktop.library.thresholds import sync_with_settings

    ensure_app()
    _preload_gil_holding_modules()
    # Thresholds per model set: an existing library keeps the settings' thresholds; the
    # settings' flag_for_processing applies to the library's triage.
    sync_with_settings(store, settings)
    window = MainWindow(
        store,
        settings,
        settings_path=settings_path,
        predictor_factory=predictor_factory,
        engine_overrides=engine_overrides,
        demo=demo,
        first_start_dialog=first_start_dialog,
    )
    from cxrlt_desktop.ui.dicom_node_runner import DicomNodeRunner

    window.dicom_node = DicomNodeRunner(window)  # Settings > DICOM node, status in the status bar
    return window


def _preload_gil_holding_modules() -> None:
    """Import, on the GUI thread before the window shows, the modules whose import holds the GIL
    for a long time when the scoring worker would import them mid-session: onnx (its ml_dtypes C
    extension initialises for ~1 s, needed for the ONNX export of the backbones). Imported in the
    worker, it froze the window for 1.0-1.5 s on a 2-core machine while the reader worked; here
    it lengthens the start by the same time, before anything is on screen."""
    import importlib.util

    if importlib.util.find_spec("onnx") is not None:
        import onnx  # noqa: F401


def run_gui(db_url: str | None = None, folders: list[Path] | None = None) -> int:
    """Open the store and the window, start scanning ``folders``, run the event loop."""
    from cxrlt_desktop.settings import Settings, SettingsError, default_path
    from cxrlt_desktop.store import StoreError, open_store

    app = ensure_app()
    # A settings file that cannot be used stops the start: running on defaults would open
    # another database (verdicts stored where nobody looks), another reviewer name and
    # thresholds, and the first save would overwrite the user's file.
    try:
        settings = Settings.load()
        problem = keymap_problem(settings.shortcuts or None)
        if problem:
            raise SettingsError([problem], str(default_path()))
    except SettingsError as exc:
        return _cannot_start(
            f"{exc}\n\nFix or remove the settings file, then start again. Nothing was changed."
        )
    try:
        store = open_store(db_url or settings.database)
    except StoreError as exc:
        return _cannot_start(str(exc))
    window = create_main_window(store, settings)
    window.show()
    gc.freeze()  # start-up objects live as long as the app: keep them out of full collections
    if folders:
        window.open_paths(list(folders))
    code = app.exec()
    store.close()
    return int(code)


def keymap_problem(overrides: dict[str, str] | None) -> str | None:
    """Why the user's shortcuts cannot be used, or None: an unknown action, a key Qt cannot
    read ("PgDn"), or two actions on one key (compared as Qt reads them: Shift+Ctrl+R is
    Ctrl+Shift+R)."""
    from PySide6.QtGui import QKeySequence

    from cxrlt_desktop.ui.shortcuts import merged_keymap

    try:
        keymap = merged_keymap(overrides)
    except ValueError as exc:
        return str(exc)
    seen: dict[str, str] = {}
    for action, key in keymap.items():
        seq = QKeySequence.fromString(key, QKeySequence.SequenceFormat.PortableText)
        text = seq.toString(QKeySequence.SequenceFormat.PortableText)
        if (
            seq.isEmpty()
            or not text
            or any(int(seq[i].toCombined()) == 0 for i in range(seq.count()))
        ):
            return f"shortcuts.{action}: {key!r} is not a key Qt knows (e.g. PgDown, Ctrl+Shift+R)"
        if text in seen:
            return f"shortcuts.{action}: key {key!r} is already used by {seen[text]!r}"
        seen[text] = action
    return None


def _cannot_start(message: str) -> int:
    """Say why the app cannot start, on stderr and (with a display) in a dialog; exit 2."""
    print(f"cxrlt gui: {message}", file=sys.stderr)
    from PySide6.QtGui import QGuiApplication

    if QGuiApplication.platformName() not in ("offscreen", "minimal"):
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.critical(None, "CXR-LT Desktop cannot start", message)
    return 2


__all__ = ["create_main_window", "ensure_app", "keymap_problem", "run_gui"]
