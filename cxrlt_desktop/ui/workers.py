"""Background work: scan, load models, score, off the GUI thread.

The worker drives the same generators the command line uses
(``cxrlt_desktop.library.scanning.scan`` and ``cxrlt_desktop.library.scoring.score_library``) in a QThread and
turns their progress records into signals. Cancellation sets an event that the scoring service
checks between batches; the thread then finishes on its own and :class:`BackgroundJobs` emits
``finished``.
"""

from __future__ import annotations

import gc
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

# Progress records can arrive thousands of times a second during a scan; the GUI needs ~10.
PROGRESS_INTERVAL_S = 0.1


@dataclass
class Progress:
    """One progress update for the status bar.

    ``phase`` is "scan", "load" or "score"; ``rate`` in items/s, ``eta`` in seconds (None when
    unknown).
    """

    phase: str
    done: int
    total: int
    failed: int = 0
    rate: float | None = None
    eta: float | None = None
    text: str = ""


@dataclass
class Problem:
    """A file that could not be used or scored, with the reason."""

    path: str
    reason: str
    phase: str = "score"


@dataclass
class JobResult:
    """How a job ended. ``cancelled`` and ``error`` are mutually exclusive with success."""

    cancelled: bool = False
    error: str | None = None
    scanned: int = 0
    scored: int = 0
    failed: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.cancelled and self.error is None


def _get(rec: Any, name: str, default: Any = None) -> Any:
    if isinstance(rec, dict):
        return rec.get(name, default)
    return getattr(rec, name, default)


def _as_problem(item: Any, phase: str) -> Problem:
    """Normalise the error records of the services: (path, reason), dicts, objects or text."""
    if isinstance(item, Problem):
        return item
    if isinstance(item, tuple | list) and len(item) >= 2:
        return Problem(str(item[0]), str(item[1]), phase)
    path = _get(item, "path")
    reason = _get(item, "reason")
    if path is not None or reason is not None:
        return Problem(str(path or ""), str(reason or ""), phase)
    text = str(item)
    path, sep, reason = text.partition(": ")
    return Problem(path, reason, phase) if sep else Problem("", text, phase)


class PredictorCache:
    """Builds the predictor once (in whichever thread first needs it) and keeps it.

    Parameters
    ----------
    factory
        Zero-argument callable returning an ``engine.predictor.Predictor``; called at most once
        until the factory changes. The lock is never held while it runs (loading takes
        seconds, and the GUI thread may swap the factory meanwhile).
    """

    def __init__(self, factory: Callable[[], Any] | None) -> None:
        self._factory = factory
        self._predictor: Any = None
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self._factory is not None

    def set_factory(self, factory: Callable[[], Any] | None) -> None:
        with self._lock:
            self._factory = factory
            self._predictor = None
            self._generation += 1

    def loaded(self) -> Any:
        return self._predictor

    def get(self) -> Any:
        with self._lock:
            if self._predictor is not None:
                return self._predictor
            factory, generation = self._factory, self._generation
        if factory is None:
            raise RuntimeError("no models configured (File > Settings)")
        # A full (gen-2) collection holds the GIL while it scans every tracked object, and loading
        # models allocates enough to trigger several: with the app's long-lived objects (modules,
        # Qt wrappers, earlier models) in the scan, one took ~400 ms and froze the GUI thread.
        # Moving them to the permanent generation, before and after loading, keeps those
        # collections to the new objects.
        gc.freeze()
        predictor = factory()
        gc.freeze()
        with self._lock:
            if self._generation == generation and self._predictor is None:
                self._predictor = predictor
        return predictor

    def clear(self) -> None:
        with self._lock:
            self._predictor = None
            self._generation += 1

    def put(self, predictor: Any, factory: Callable[[], Any] | None) -> None:
        """Use an already loaded predictor (the settings dialog loaded it to check the files)."""
        with self._lock:
            self._factory = factory
            self._predictor = predictor
            self._generation += 1


class PipelineWorker(QObject):
    """Runs scan then score in its thread. Create it, move it to a QThread, call run()."""

    progress = Signal(object)  # Progress
    problemFound = Signal(object)  # Problem
    modelsLoaded = Signal(object)  # the Predictor
    scanFinished = Signal(int)
    batchScored = Signal(int)  # images done so far: time to refresh the worklist
    finished = Signal(object)  # JobResult

    def __init__(
        self,
        store: Any,
        folders: Sequence[Path],
        predictors: PredictorCache,
        *,
        scan: bool = True,
        score: bool = True,
        thresholds: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self._thresholds = dict(thresholds or {})
        self._store = store
        self._folders = [Path(f) for f in folders]
        self._predictors = predictors
        self._do_scan = scan and bool(self._folders)
        self._do_score = score
        self._stop = threading.Event()
        self._last_emit = 0.0

    def cancel(self) -> None:
        """Ask the job to stop at its next check (between files or batches)."""
        self._stop.set()

    def cancelled(self) -> bool:
        return self._stop.is_set()

    def _throttled(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._last_emit = now
            return True
        return False

    @Slot()
    def run(self) -> None:
        result = JobResult()
        try:
            if self._do_scan:
                self._scan(result)
            if self._do_score and not self._stop.is_set():
                self._score(result)
        except Exception as exc:  # the GUI shows it; the thread must still finish cleanly
            result.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        result.cancelled = self._stop.is_set() and result.error is None
        self.finished.emit(result)

    def _scan(self, result: JobResult) -> None:
        from cxrlt_desktop.library.scanning import scan

        self.progress.emit(Progress("scan", 0, 0, text="Scanning..."))
        seen_problems: set[str] = set()
        for rec in scan(self._store, self._folders, should_stop=self._stop.is_set):
            # ScanProgress: cumulative counts, this batch's unusable files in ``problems``.
            for item in _get(rec, "problems", None) or []:
                p = _as_problem(item, "scan")
                if p.path + p.reason not in seen_problems:
                    seen_problems.add(p.path + p.reason)
                    result.problems.append(p)
                    self.problemFound.emit(p)
            result.scanned = int(_get(rec, "seen", 0) or 0)
            final = bool(_get(rec, "done", False)) or bool(_get(rec, "cancelled", False))
            if self._throttled(force=final):
                rate = _get(rec, "rate")
                self.progress.emit(
                    Progress(
                        "scan",
                        result.scanned,
                        0,
                        failed=int(_get(rec, "unusable", 0) or 0),
                        rate=float(rate) if rate else None,
                        text="Scanning",
                    )
                )
            if self._stop.is_set():
                return
        self.scanFinished.emit(result.scanned)

    def _score(self, result: JobResult) -> None:
        from cxrlt_desktop.library.scoring import score_library

        if not self._predictors.configured:
            return
        self.progress.emit(Progress("load", 0, 0, text="Loading models..."))
        _leave_a_core_for_the_gui()
        predictor = self._predictors.get()
        self.modelsLoaded.emit(predictor)
        if self._stop.is_set():  # closed or cancelled while the models were loading
            return
        seen: set[str] = set()
        last_done = 0  # the record before the first batch has nothing new to show
        for rec in score_library(
            self._store, predictor, should_stop=self._stop.is_set, thresholds=self._thresholds
        ):
            done = int(_get(rec, "done", 0) or 0)
            failed = int(_get(rec, "failed", 0) or 0)
            total = int(_get(rec, "total", 0) or 0)
            for item in _get(rec, "last_errors", None) or []:
                p = _as_problem(item, "score")
                if p.path + p.reason not in seen:
                    seen.add(p.path + p.reason)
                    result.problems.append(p)
                    self.problemFound.emit(p)
            result.scored, result.failed = done, failed
            rate = _get(rec, "rate")
            eta = _get(rec, "eta")
            self.progress.emit(
                Progress(
                    "score",
                    done + failed if total and done + failed <= total else done,
                    total,
                    failed=failed,
                    rate=None if rate is None or not math.isfinite(rate) else float(rate),
                    eta=None if eta is None or not math.isfinite(eta) else float(eta),
                    text="Scoring",
                )
            )
            if done != last_done:
                last_done = done
                self.batchScored.emit(done)
            if self._stop.is_set():
                break


def _leave_a_core_for_the_gui() -> None:
    """Keep torch from taking every core: the GUI thread must get its turn within ~10 ms."""
    try:
        import torch

        cores = os.cpu_count() or 1
        if cores > 1 and torch.get_num_threads() >= cores:
            torch.set_num_threads(cores - 1)
    except Exception:  # torch missing or refusing: nothing to tune
        pass


class BackgroundJobs(QObject):
    """Owns the worker thread; the main window's single entry point for background work.

    Signals
    -------
    started()
    progress(object)        Progress
    problemFound(object)    Problem
    modelsLoaded(object)    the Predictor
    scanFinished(int)
    batchScored(int)
    finished(object)        JobResult, after the thread has stopped
    """

    started = Signal()
    progress = Signal(object)
    problemFound = Signal(object)
    modelsLoaded = Signal(object)
    scanFinished = Signal(int)
    batchScored = Signal(int)
    finished = Signal(object)

    def __init__(
        self,
        store: Any,
        predictors: PredictorCache,
        parent: QObject | None = None,
        *,
        thresholds: dict[str, float] | None = None,
    ):
        super().__init__(parent)
        self._store = store
        self.thresholds = dict(thresholds or {})
        self.predictors = predictors
        self._thread: QThread | None = None
        self._worker: PipelineWorker | None = None
        self._pending: tuple[list[Path], bool] | None = None

    def is_running(self) -> bool:
        return self._thread is not None

    def start(self, folders: Sequence[Path] = (), *, score: bool = True) -> bool:
        """Scan ``folders`` (if any) then score pending images. Queued if a job is running."""
        if self._thread is not None:
            prev = self._pending[0] if self._pending else []
            self._pending = (prev + [Path(f) for f in folders], score)
            return False
        thread = QThread()
        thread.setObjectName("cxrlt-worker")
        worker = PipelineWorker(
            self._store, folders, self.predictors, score=score, thresholds=self.thresholds
        )
        worker.moveToThread(thread)
        worker.progress.connect(self.progress)
        worker.problemFound.connect(self.problemFound)
        worker.modelsLoaded.connect(self.modelsLoaded)
        worker.scanFinished.connect(self.scanFinished)
        worker.batchScored.connect(self.batchScored)
        worker.finished.connect(self._on_worker_finished)
        thread.started.connect(worker.run)
        self._thread, self._worker = thread, worker
        thread.start()
        self.started.emit()
        return True

    def cancel(self) -> None:
        """Stop the running job at its next check and drop any queued one."""
        self._pending = None
        if self._worker is not None:
            self._worker.cancel()

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the worker thread has stopped (used at exit). True when stopped."""
        thread = self._thread
        if thread is None:
            return True
        if timeout_ms < 0:
            return thread.wait()
        return thread.wait(timeout_ms)

    @Slot(object)
    def _on_worker_finished(self, result: JobResult) -> None:
        thread, worker = self._thread, self._worker
        if thread is not None:
            thread.quit()
            thread.wait()
        self._thread, self._worker = None, None
        if worker is not None:
            worker.deleteLater()
        if thread is not None:
            thread.deleteLater()
        pending, self._pending = self._pending, None
        self.finished.emit(result)
        if pending is not None and not result.cancelled:
            self.start(pending[0], score=pending[1])


def format_eta(seconds: float | None) -> str:
    """ "1:05" style ETA, or "" when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


__all__ = [
    "BackgroundJobs",
    "JobResult",
    "PipelineWorker",
    "PredictorCache",
    "Problem",
    "Progress",
    "format_eta",
]
