"""Background work: scan, load models, score, off the GUI thread.

A job is one superqt generator worker in the ``jobs`` lane (:mod:`.background`, one thread, so
one job at a time): :func:`run_job` drives the generators the command line uses
(``cxrlt_desktop.library.scan``, then ``cxrlt_desktop.library.score_library``), loading the
models between them, and yields what they yield. :class:`BackgroundJobs` turns those records
into signals on the GUI thread. Cancelling sets the job's stop event, which the services check
between files and batches; they then end normally and :class:`BackgroundJobs` emits
``finished``.
"""

from __future__ import annotations

import gc
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from cxrlt_desktop.library import ScanProgress, ScoreProgress, scan, score_library
from cxrlt_desktop.ui.background import Lane, StopEvent

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


class PredictorCache:
    """Builds the predictor once (in whichever thread first needs it) and keeps it.

    Parameters
    ----------
    factory
        Zero-argument callable returning an ``engine.predictor.Predictor``; called at most once
        until the factory changes. The lock is never held while it runs (loading takes
        seconds, and the GUI thread may swap the factory meanwhile).
    """

    def __init__(self, factory: Callable[[], Any] | None, policy: str | None = None) -> None:
        self._factory = factory
        self._predictor: Any = None
        self._fast: tuple[Any, Any] | None = None  # (paper predictor, its fast pass)
        self._policy = policy
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def policy(self) -> str | None:
        """The scoring policy asked for (None: by the device, see :meth:`policy_for`)."""
        return self._policy

    def set_policy(self, policy: str | None) -> None:
        with self._lock:
            self._policy = policy
            self._fast = None

    def policy_for(self, predictor: Any) -> str:
        """The policy this workstation scores ``predictor``'s images with: the one asked for,
        else "fast" for a fast-mode predictor, else progressive on a CPU, paper on a GPU."""
        from cxrlt_desktop.library.progressive import default_policy

        if self._policy is not None:
            return self._policy
        if predictor.config.mode == "fast":
            return "fast"
        return default_policy(predictor.device.type)

    def fast_pass(self, predictor: Any) -> Any:
        """The provisional pass's predictor (fast mode, bf16 backbone where the CPU has bf16
        hardware) when the policy for ``predictor`` is progressive, else None; built once per
        predictor (seconds: call it off the GUI thread)."""
        if predictor.config.mode == "fast" or self.policy_for(predictor) != "progressive":
            return None
        with self._lock:
            if self._fast is not None and self._fast[0] is predictor:
                return self._fast[1]
        from cxrlt_desktop.library.progressive import fast_pass_config

        gc.freeze()
        # the same engine class; one CLIP model in memory for both passes
        fast = type(predictor)(fast_pass_config(predictor.config), share_clip_with=predictor)
        gc.freeze()
        with self._lock:
            if self._predictor is predictor:
                self._fast = (predictor, fast)
        return fast

    @property
    def configured(self) -> bool:
        return self._factory is not None

    def set_factory(self, factory: Callable[[], Any] | None) -> None:
        with self._lock:
            self._factory = factory
            self._predictor = None
            self._fast = None
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
            self._fast = None
            self._generation += 1

    def put(self, predictor: Any, factory: Callable[[], Any] | None) -> None:
        """Use an already loaded predictor (the settings dialog loaded it to check the files)."""
        with self._lock:
            self._factory = factory
            self._predictor = predictor
            self._fast = None
            self._generation += 1


@dataclass
class LoadingModels:
    """Yielded by :func:`run_job` before the models load (that takes seconds)."""


@dataclass
class PassProgress:
    """Yielded by :func:`run_job` in a progressive run: which pass ("fast" or "paper") a
    :class:`~cxrlt_desktop.library.ScoreProgress` record belongs to."""

    name: str
    progress: ScoreProgress


@dataclass
class ModelsLoaded:
    """Yielded by :func:`run_job` once the models are loaded."""

    predictor: Any


def run_job(
    store: Any,
    folders: Sequence[Path],
    predictors: PredictorCache,
    *,
    score: bool,
    thresholds: dict[str, float],
    should_stop: StopEvent,
) -> Generator[ScanProgress | LoadingModels | ModelsLoaded | ScoreProgress, None, bool]:
    """Scan ``folders`` (if any), then load the models and score what is pending (``score`` and
    models configured); runs in the ``jobs`` lane. Returns whether it was asked to stop."""
    if folders:
        yield from scan(store, folders, should_stop=should_stop)
    if score and not should_stop() and predictors.configured:
        yield LoadingModels()
        _leave_a_core_for_the_gui()
        predictor = predictors.get()
        fast = None if should_stop() else predictors.fast_pass(predictor)
        yield ModelsLoaded(predictor)
        if should_stop():  # closed or cancelled while the models were loading
            return True
        if fast is None:
            yield from score_library(
                store, predictor, should_stop=should_stop, thresholds=thresholds
            )
        else:  # progressive: every image ordered by the fast pass, then the paper pass
            from cxrlt_desktop.library.progressive import score_progressive

            for name, prog in score_progressive(
                store,
                fast,
                predictor,
                should_stop=should_stop,
                thresholds=thresholds,
                batch_size=predictor.config.batch_size,
            ):
                yield PassProgress(name, prog)
    return should_stop()


def _leave_a_core_for_the_gui() -> None:
    """Keep torch from taking every core: the GUI thread must get its turn within ~10 ms."""
    try:
        import torch

        cores = os.cpu_count() or 1
        if cores > 1 and torch.get_num_threads() >= cores:
            torch.set_num_threads(cores - 1)
    except Exception:  # torch missing or refusing: nothing to tune
        pass


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# The status bar's word for each pass of a progressive run.
PASS_TEXT = {"fast": "Fast pass (provisional)", "paper": "Paper pass"}


@dataclass
class _Job:
    """The GUI thread's side of the running job."""

    scans: bool
    result: JobResult = field(default_factory=JobResult)
    reported: set[tuple[str, str, str]] = field(default_factory=set)  # (phase, path, reason)
    last_emit: float = 0.0
    last_done: int = 0  # the record before the first batch has nothing new to show
    stopped: bool = False  # run_job returned after its stop event was set

    def throttled(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self.last_emit >= PROGRESS_INTERVAL_S:
            self.last_emit = now
            return True
        return False


class BackgroundJobs(QObject):
    """Runs scan-then-score jobs in the ``jobs`` lane, one at a time; the main window's single
    entry point for background work.

    Signals
    -------
    started()
    progress(object)        Progress
    problemFound(object)    Problem
    modelsLoaded(object)    the Predictor
    scanFinished(int)
    batchScored(int)        images done so far: time to refresh the worklist
    finished(object)        JobResult, after the job's worker has ended
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
        self.lane = Lane("jobs", parent=self)
        self._job: _Job | None = None
        self._pending: tuple[list[Path], bool] | None = None

    def is_running(self) -> bool:
        return self._job is not None

    def start(self, folders: Sequence[Path] = (), *, score: bool = True) -> bool:
        """Scan ``folders`` (if any) then score pending images. Queued if a job is running."""
        folders = [Path(f) for f in folders]
        if self._job is not None:
            prev = self._pending[0] if self._pending else []
            self._pending = (prev + folders, score)
            return False
        self._job = _Job(scans=bool(folders))
        self.lane.run(
            run_job,
            self._store,
            folders,
            self.predictors,
            score=score,
            thresholds=dict(self.thresholds),
            stop=True,
            connect={
                "yielded": self._on_record,
                "returned": self._on_returned,
                "errored": self._on_errored,
                "finished": self._on_finished,
            },
        )
        self.started.emit()
        if self._job.scans:
            self.progress.emit(Progress("scan", 0, 0, text="Scanning..."))
        return True

    def cancel(self) -> None:
        """Stop the running job at its next check and drop any queued one."""
        self._pending = None
        self.lane.quit()

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the job's worker has ended (used at exit). True when it has."""
        if self._job is None:
            return True
        return self.lane.wait(timeout_ms if timeout_ms >= 0 else -1)

    # ------------------------------------------------------------ the job's signals (GUI thread)
    @Slot(object)
    def _on_record(self, rec: Any) -> None:
        if isinstance(rec, ScanProgress):
            self._on_scan_progress(rec)
        elif isinstance(rec, ScoreProgress):
            self._on_score_progress(rec)
        elif isinstance(rec, PassProgress):
            self._on_score_progress(rec.progress, rec.name)
        elif isinstance(rec, LoadingModels):
            self.progress.emit(Progress("load", 0, 0, text="Loading models..."))
        elif isinstance(rec, ModelsLoaded):
            self.modelsLoaded.emit(rec.predictor)

    def _report(self, problem: Problem) -> None:
        key = (problem.phase, problem.path, problem.reason)
        if key not in self._job.reported:
            self._job.reported.add(key)
            self._job.result.problems.append(problem)
            self.problemFound.emit(problem)

    def _on_scan_progress(self, rec: ScanProgress) -> None:
        # Cumulative counts; this batch's unusable files in ``problems``.
        job = self._job
        for path, reason in rec.problems:
            self._report(Problem(path, reason, "scan"))
        job.result.scanned = rec.seen
        if job.throttled(force=rec.done or rec.cancelled):
            self.progress.emit(
                Progress(
                    "scan",
                    rec.seen,
                    0,
                    failed=rec.unusable,
                    rate=float(rec.rate) if rec.rate else None,
                    text="Scanning",
                )
            )
        if rec.done:  # the last record of a scan that was not stopped
            self.scanFinished.emit(rec.seen)

    def _on_score_progress(self, rec: ScoreProgress, pass_name: str | None = None) -> None:
        job = self._job
        for path, reason in rec.last_errors:
            self._report(Problem(path, reason, "score"))
        done, failed, total = rec.done, rec.failed, rec.total
        job.result.scored, job.result.failed = done, failed
        self.progress.emit(
            Progress(
                "score",
                done + failed if total and done + failed <= total else done,
                total,
                failed=failed,
                rate=_finite(rec.rate),
                eta=_finite(rec.eta),
                text=PASS_TEXT.get(pass_name, "Scoring"),
            )
        )
        if done != job.last_done:
            job.last_done = done
            self.batchScored.emit(done)

    @Slot(object)
    def _on_returned(self, stopped: bool) -> None:
        self._job.stopped = bool(stopped)

    @Slot(object)
    def _on_errored(self, exc: BaseException) -> None:
        # The GUI shows it; the worker has ended cleanly.
        self._job.result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exception(exc)

    @Slot()
    def _on_finished(self) -> None:
        job, self._job = self._job, None
        result = job.result
        result.cancelled = job.stopped and result.error is None
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
    "LoadingModels",
    "ModelsLoaded",
    "PassProgress",
    "PredictorCache",
    "Problem",
    "Progress",
    "format_eta",
    "run_job",
]
