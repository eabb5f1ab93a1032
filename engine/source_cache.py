"""An LRU of decoded source arrays, bounded in bytes, shared by the passes of one process.

The progressive policy scores every image twice (a fast pass, then the paper pass); when both
run in one process the second pass finds the decoded array here instead of decoding the file
again (a 2k x 2k JPEG 2000 radiograph takes ~0.3 s to decode on the development VM). Entries are
keyed by the file's path and its identity on disk (size, modification time, inode), so a file
replaced in between is decoded again. Arrays are handed out read-only; the engine's
preprocessing never writes into its input.

Thread-safe: the predictor's decode pool calls :meth:`SourceCache.read` from several threads.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Default share of the memory available at start-up, and the bounds around it.
DEFAULT_FRACTION = 0.15
MIN_BYTES = 64 * 2**20
MAX_BYTES = 4 * 2**30


def available_memory() -> int | None:
    """Bytes of memory available now (MemAvailable on Linux, else free physical pages), or
    None when the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def default_budget() -> int:
    """Bytes for the cache: 15 % of the available memory, between 64 MiB and 4 GiB."""
    avail = available_memory()
    if avail is None:
        return MIN_BYTES * 4
    return int(min(MAX_BYTES, max(MIN_BYTES, avail * DEFAULT_FRACTION)))


def _identity(path: Path) -> tuple:
    st = os.stat(path)
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ino)


class SourceCache:
    """Least-recently-used decoded arrays, at most ``max_bytes`` in all.

    Parameters
    ----------
    max_bytes : int, optional
        Budget (default :func:`default_budget`). An array larger than the budget is returned
        but not kept.
    """

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = int(default_budget() if max_bytes is None else max_bytes)
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, path: Path | str, read: Callable[[Path], np.ndarray]) -> np.ndarray:
        """The decoded array of ``path``: from the cache when the same file was read before,
        else ``read(path)`` (kept for later). ``read``'s errors propagate and nothing is kept."""
        path = Path(path)
        key = _identity(path)
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return arr
            self.misses += 1
        arr = np.asarray(read(path))
        if arr.flags.writeable:
            arr = arr.view()
            arr.flags.writeable = False
        self._put(key, arr)
        return arr

    def reader(
        self, read: Callable[[Path], np.ndarray] | None = None
    ) -> Callable[[Path], np.ndarray]:
        """A ``read`` for :meth:`engine.predictor.Predictor.predict_paths` that goes through the
        cache (``read`` default: ``engine.imageio.read_source``)."""
        if read is None:
            from engine.imageio import read_source as read

        def cached(path: Path) -> np.ndarray:
            return self.get(path, read)

        return cached

    def _put(self, key: tuple, arr: np.ndarray) -> None:
        size = int(arr.nbytes)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= int(old.nbytes)
            self._items[key] = arr
            self.nbytes += size
            while self.nbytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self.nbytes -= int(dropped.nbytes)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


_shared: SourceCache | None = None
_shared_lock = threading.Lock()


def shared_cache() -> SourceCache:
    """The process's one cache (created on first use with the default budget): both passes of
    the progressive policy read through it."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SourceCache()
        return _shared


__all__ = ["SourceCache", "available_memory", "default_budget", "shared_cache"]
