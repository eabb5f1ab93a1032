"""Decoding images for the viewer off the GUI thread: a one-thread lane, a small cache, a request
token so that only the latest request is shown, and prefetch of the next image.

:meth:`ImageLoader.request` returns the decoded image at once when it is cached; otherwise the
decode runs in the ``decode`` :class:`~cxrlt_desktop.ui.background.Lane` and ``loaded`` (or
``failed``) follows on the GUI thread, for the latest request or a prefetch only, never for a
request the reader has already moved past. What arrives is the image's
:class:`~cxrlt_desktop.ui.display.DisplayPipeline`: the engine's modality values and the file's
display header (windows, VOI LUTs, padding, shutters, overlay planes).

Right patient or nothing: the image shown under a patient must be the file the scan filed under
that patient. Each decode reads the image's scanned record from the store and decodes through
:func:`cxrlt_desktop.library.identity.read_checked`, so a file replaced since the scan (another
patient's image, a CT, new UIDs, a touched file) is not shown: ``failed`` carries ``"<path>:
file changed since the scan: rescan the folder (...)"``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import partial
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Signal

from cxrlt_desktop.ui.background import Lane

IMAGE_CACHE_SIZE = 6
PREFETCH = -1  # the token of a prefetch: never stale


def _decode(store: Any, image_id: int, path: str, should_stop: threading.Event) -> Any | None:
    # Runs in the decode lane; a close skips what is still queued.
    if should_stop.is_set():
        return None
    from cxrlt_desktop.library.identity import read_checked, scanned_file
    from engine.imageio import ImageReadError, read_display

    if store is None:
        raise ImageReadError(path, "no library to check the file against: not shown")
    scanned = scanned_file(store, image_id)
    if scanned is None:
        raise ImageReadError(path, "not in the library any more: rescan the folder")
    return read_checked(scanned, partial(_read_pipeline, scanned.is_dicom, read_display))


def _read_pipeline(is_dicom: bool, read_display: Any, path: Any) -> Any:
    """The engine's decode and, for a DICOM file, its display header (read between the same
    before/after checks of the scanned file): the image's display pipeline."""
    from cxrlt_desktop.ui.display import DisplayPipeline, read_header

    display = read_display(path)
    header = read_header(str(path)) if is_dicom else None
    pipeline = DisplayPipeline.from_display(display, header)
    pipeline.prerender()  # the first render off the GUI thread
    return pipeline


def _store_of(obj: QObject | None) -> Any | None:
    """The ``store`` of the nearest of ``obj`` and its parents that has one (the main window)."""
    while obj is not None:
        store = getattr(obj, "store", None)
        if store is not None and callable(getattr(store, "session", None)):
            return store
        obj = obj.parent()
    return None


class ImageLoader(QObject):
    """Signals: ``loaded(image_id, pipeline)``, ``failed(image_id, error text)``.

    ``store`` is the library the images' scanned records are read from; without one, the
    loader uses the ``store`` of its nearest parent that has one (the main window, through the
    session view that owns the loader). A loader that finds none shows nothing.
    """

    loaded = Signal(int, object)
    failed = Signal(int, str)

    def __init__(
        self,
        parent: QObject | None = None,
        cache_size: int = IMAGE_CACHE_SIZE,
        *,
        store: Any | None = None,
    ) -> None:
        super().__init__(parent)
        self.lane = Lane("decode", parent=self)
        self._store = store
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self._cache_size = cache_size
        self._token = 0
        self._latest: int | None = None  # the image of the latest request
        self._inflight: set[int] = set()  # images being decoded

    @property
    def store(self) -> Any | None:
        """The library the decodes check files against."""
        return self._store if self._store is not None else _store_of(self.parent())

    def request(self, image_id: int, path: str) -> Any | None:
        """Ask for an image: the cached display image now, or None and ``loaded`` later (a
        decode of it already under way, a prefetch included, is not started again)."""
        self._token += 1
        self._latest = image_id
        cached = self._cache.get(image_id)
        if cached is not None:
            self._cache.move_to_end(image_id)
            return cached
        if image_id not in self._inflight:
            self._start(self._token, image_id, path)
        return None

    def prefetch(self, image_id: int, path: str) -> None:
        """Decode an image the reader is likely to open next, into the cache."""
        if image_id not in self._cache and image_id not in self._inflight:
            self._start(PREFETCH, image_id, path)

    def cached(self, image_id: int) -> bool:
        return image_id in self._cache

    def _start(self, token: int, image_id: int, path: str) -> None:
        self._inflight.add(image_id)
        self.lane.run(
            _decode,
            self.store,
            image_id,
            path,
            stop=True,
            connect={
                "returned": partial(self._on_returned, token, image_id),
                "errored": partial(self._on_errored, token, image_id),
            },
        )

    def _current(self, token: int, image_id: int) -> bool:
        """Whether a finished decode is for the latest request (or a prefetch, which may be)."""
        return token in (self._token, PREFETCH) or image_id == self._latest

    def _alive(self) -> bool:
        """Whether this loader's Qt object still exists: a decode's result is queued to the GUI
        thread and may arrive after the window that owned the loader was deleted."""
        return shiboken6.isValid(self)

    def _on_returned(self, token: int, image_id: int, display: Any | None) -> None:
        self._inflight.discard(image_id)
        if display is None or not self._alive():  # skipped at close, or the loader is gone
            return
        self._cache[image_id] = display
        self._cache.move_to_end(image_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        if self._current(token, image_id):
            self.loaded.emit(image_id, display)

    def _on_errored(self, token: int, image_id: int, exc: BaseException) -> None:
        # FileChanged, ImageReadError or anything a broken file raises
        self._inflight.discard(image_id)
        if self._alive() and self._current(token, image_id):
            self.failed.emit(image_id, str(exc))


__all__ = ["IMAGE_CACHE_SIZE", "ImageLoader"]
