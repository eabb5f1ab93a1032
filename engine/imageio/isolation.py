"""Compressed pixel data decoded in worker processes, so a decoder crash fails one file only.

The C and C++ decoders behind pydicom's plugins can abort the process (a C++ exception escaping
GDCM, an overflow in CharLS) or allocate without bound, and Python cannot catch either. Each
compressed frame is therefore decoded in a child process of a small pool:

- workers are long-lived (started with the ``spawn`` method, never ``fork``: the app runs Qt and
  torch threads), so their imports are paid once; an idle pool costs two sleeping processes;
- each worker has an address-space limit (``resource.setrlimit(RLIMIT_AS)``), and each decode a
  timeout, after which the worker is killed;
- a worker that dies (signal, limit, timeout) is replaced, and the image fails with a reason
  such as ``decoder crashed (SIGABRT) on this file``;
- a worker sees only the pixel-module attributes and the compressed bytes, never the file, and
  exits when its parent goes away (its end of the pipe closes).

:func:`configure` sets the limits; :func:`decode_isolated` is the entry point.
"""

from __future__ import annotations

import atexit
import os
import queue
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

# Attributes a pixel decoder reads from the data set (pydicom's pixel module).
PIXEL_KEYWORDS = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
)


@dataclass
class PoolLimits:
    """Limits of the decoder pool (see :func:`configure`)."""

    workers: int = 2
    memory_bytes: int = 3 * 2**30
    timeout_s: float = 60.0
    isolate: bool = True  # False: decode in this process (benchmarks, or a trusted archive)


_limits = PoolLimits()
_START_TIMEOUT_S = 120.0


class DecoderFailure(Exception):
    """A worker could not decode the data; the message is the one-line reason for the file."""


class _WorkerDied(DecoderFailure):
    """The worker process ended during the job (crash, signal, memory limit)."""


def configure(
    *,
    workers: int | None = None,
    memory_bytes: int | None = None,
    timeout_s: float | None = None,
    isolate: bool | None = None,
) -> PoolLimits:
    """Set the pool's size, the per-worker memory limit, the per-image timeout, and whether
    compressed data is decoded in workers at all.

    Running workers are replaced when the memory limit changes. Returns the limits now in force.
    """
    global _limits
    new = PoolLimits(
        workers if workers is not None else _limits.workers,
        memory_bytes if memory_bytes is not None else _limits.memory_bytes,
        timeout_s if timeout_s is not None else _limits.timeout_s,
        isolate if isolate is not None else _limits.isolate,
    )
    if new.memory_bytes != _limits.memory_bytes:
        _pool.shutdown()
    _limits = new
    return new


def decode_isolated(ds: Any, plugins: list[str]) -> np.ndarray:
    """Decode frame 0 of ``ds`` (encapsulated pixel data) in a worker process.

    Parameters
    ----------
    ds : pydicom.Dataset
        The data set; only its pixel-module attributes, transfer syntax and pixel data are sent.
    plugins : list of str
        pydicom decoding plugins to try in order before letting pydicom choose.

    Raises
    ------
    DecoderFailure
        The worker crashed, hit its memory limit, timed out, or every plugin failed.
    """
    if not _limits.isolate:
        from engine.imageio.plugins import PluginError, decode_frame

        try:
            return decode_frame(ds, plugins)
        except PluginError as exc:
            raise DecoderFailure(str(exc)) from None
    job = (_pixel_module(ds), plugins)
    try:
        return _pool.run(job, _limits)
    except _WorkerDied:
        # Once more on a new worker: the dead one may have been killed from outside (the
        # system's OOM killer, a user) while idle. A file that kills a second worker is at fault.
        try:
            return _pool.run(job, _limits)
        except _WorkerDied as exc:
            raise DecoderFailure(str(exc)) from None


def _pixel_module(ds: Any) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset

    small = Dataset()
    for keyword in PIXEL_KEYWORDS:
        if keyword in ds:
            setattr(small, keyword, ds[keyword].value)
    small.file_meta = FileMetaDataset()
    small.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    small.PixelData = ds.PixelData
    small["PixelData"].VR = ds["PixelData"].VR
    return small


class _Worker:
    def __init__(self, ctx: Any, memory_bytes: int) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main, args=(child, memory_bytes), daemon=True, name="cxrlt-decoder"
        )
        self.proc.start()
        child.close()
        # The worker says "ready" once its imports are done; a worker that cannot start is not
        # the fault of the file it was started for.
        try:
            ready = self.conn.poll(_START_TIMEOUT_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise DecoderFailure(
                f"the decoder process could not start ({self.death()}); this file was not decoded"
            )

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def death(self) -> str:
        self.proc.join(5)
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                return signal.Signals(-code).name
            except ValueError:
                return f"signal {-code}"
        return f"exit code {code}"


class _Pool:
    """Idle workers in a queue; a thread takes one, runs one job, puts it back (or replaces it)."""

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._generation = 0

    def _take(self, limits: PoolLimits) -> tuple[_Worker, int]:
        while True:
            with self._lock:
                generation = self._generation
                try:
                    return self._idle.get_nowait(), generation
                except queue.Empty:
                    grow = self._started < limits.workers
                    if grow:
                        self._started += 1
            if grow:
                return self._start(limits, generation), generation
            try:  # every worker busy: wait for one, re-checking after a shutdown
                return self._idle.get(timeout=0.5), generation
            except queue.Empty:
                continue

    def _start(self, limits: PoolLimits, generation: int) -> _Worker:
        import multiprocessing

        try:
            return _Worker(multiprocessing.get_context("spawn"), limits.memory_bytes)
        except BaseException:
            with self._lock:
                if generation == self._generation:
                    self._started -= 1
            raise

    def _give_back(self, worker: _Worker, healthy: bool, generation: int) -> None:
        with self._lock:
            current = generation == self._generation
            if healthy and current:
                self._idle.put(worker)
                return
            if current:
                self._started -= 1  # the next job starts a replacement
        worker.kill()

    def run(self, job: Any, limits: PoolLimits) -> np.ndarray:
        worker, generation = self._take(limits)
        while not worker.proc.is_alive():  # died while idle (killed from outside): replace it
            self._give_back(worker, False, generation)
            worker, generation = self._take(limits)
        healthy = False
        try:
            try:
                worker.conn.send(job)
                ready = worker.conn.poll(limits.timeout_s)
            except (BrokenPipeError, EOFError, OSError):
                raise _WorkerDied(_crash_reason(worker.death(), limits.memory_bytes)) from None
            if not ready:
                raise DecoderFailure(
                    f"decoder timed out after {limits.timeout_s:g} s on this file (stopped)"
                )
            try:
                status, payload = worker.conn.recv()
            except (EOFError, OSError):
                raise _WorkerDied(_crash_reason(worker.death(), limits.memory_bytes)) from None
            healthy = True
            if status == "ok":
                return payload
            if status == "memory":
                raise DecoderFailure(
                    f"decoder ran out of memory (limit {_gib(limits.memory_bytes)} per decoder) "
                    "on this file"
                )
            raise DecoderFailure(payload)
        finally:
            self._give_back(worker, healthy, generation)

    def idle_pids(self) -> list[int]:
        with self._lock:
            workers = []
            while True:
                try:
                    workers.append(self._idle.get_nowait())
                except queue.Empty:
                    break
            for worker in workers:
                self._idle.put(worker)
        return [w.proc.pid for w in workers if w.proc.pid is not None]

    def shutdown(self) -> None:
        """Stop every idle worker; busy ones stop when their job returns."""
        with self._lock:
            self._generation += 1
            self._started = 0
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            worker.kill()


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _crash_reason(death: str, memory_bytes: int) -> str:
    text = f"decoder crashed ({death}) on this file"
    if death == "SIGABRT":
        # A C++ allocation failure under the memory limit also ends in abort().
        text += f" (damaged data, or more than the {_gib(memory_bytes)} decoder memory limit)"
    return text


_pool = _Pool()
atexit.register(_pool.shutdown)


def worker_pids() -> list[int]:
    """Process ids of the idle workers (for diagnostics and tests)."""
    return _pool.idle_pids()


def shutdown() -> None:
    """Stop the pool's workers (they also stop by themselves when this process exits)."""
    _pool.shutdown()


# --- the worker process ------------------------------------------------------------------------


def _worker_main(conn: Any, memory_bytes: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _quiet()
    from engine.imageio.plugins import decode_frame

    _limit_memory(memory_bytes)
    if os.environ.get("CXRLT_DECODER_TEST_CRASH") == "abort-on-start":
        os.abort()
    conn.send("ready")
    while True:
        try:
            ds, plugins = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        try:
            _test_fault(os.environ.get("CXRLT_DECODER_TEST_CRASH"))
            reply: tuple[str, Any] = ("ok", decode_frame(ds, plugins))
        except MemoryError:
            reply = ("memory", None)
        except Exception as exc:  # noqa: BLE001 - the reason goes back to the parent
            reply = ("error", str(exc))
        del ds
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _test_fault(kind: str | None) -> None:
    # Test hooks: the decoder faults no real file is known to cause any more (the stream checks
    # catch those), made on demand so the isolation itself stays tested.
    if kind == "abort":
        os.abort()
    if kind == "hang":
        import time

        time.sleep(3600)
    if kind and kind.startswith("allocate:"):
        bytearray(int(kind.split(":", 1)[1]))  # over the limit: MemoryError under RLIMIT_AS


def _limit_memory(memory_bytes: int) -> None:
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the timeout and the process boundary remain
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _quiet() -> None:
    # Plugin warnings are the parent's business: it reports failures in one line per file.
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    if sys.stderr is not None:
        sys.stderr.flush()
