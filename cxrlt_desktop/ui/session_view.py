"""What the reader sees of the reading session: renders a
:class:`~cxrlt_desktop.review.ReviewSession` in the image panel, the findings panel and the DICOM
tag dock (the Qt side of the session, as napari's QtViewer is of its ViewerModel).

On each change the session announces, it shows the study header and the image position, the
image's findings, verdicts and note (:class:`~cxrlt_desktop.ui.review_controller.ReviewController`),
its header tags, and the decoded image once :class:`~cxrlt_desktop.ui.image_loader.ImageLoader`
has it (the next image of the study is prefetched); the attention map follows the selected
finding. It holds no state of its own beyond the loader's cache.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from PySide6.QtCore import QObject, Signal

from cxrlt_desktop.review import ReviewSession
from cxrlt_desktop.ui.dicom_tags import DicomTagBrowser
from cxrlt_desktop.ui.findings_panel import FindingsPanel
from cxrlt_desktop.ui.image_loader import ImageLoader
from cxrlt_desktop.ui.image_panel import ImagePanel, attention_map
from cxrlt_desktop.ui.review_controller import ReviewController
from cxrlt_desktop.ui.store_access import ImageEntry
from cxrlt_desktop.ui.workers import Problem


class SessionView(QObject):
    """Signals: ``studyOpened(uid)`` (its first image is being decoded), ``imageDisplayed(image
    id)``, ``problemFound(Problem)`` (an image that cannot be decoded)."""

    studyOpened = Signal(str)
    imageDisplayed = Signal(int)
    problemFound = Signal(object)

    def __init__(
        self,
        session: ReviewSession,
        image_panel: ImagePanel,
        findings: FindingsPanel,
        review: ReviewController,
        tags: DicomTagBrowser,
        study_text: Callable[[str], str],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.image_panel = image_panel
        self.findings = findings
        self.review = review
        self.tags = tags
        self._study_text = study_text
        self.image_loader = ImageLoader(self)
        self.image_loader.loaded.connect(self._on_image_loaded)
        self.image_loader.failed.connect(self._on_image_failed)
        session.study_opened.connect(self._on_study_opened)
        session.image_changed.connect(self._on_image_changed)
        session.image_updated.connect(self.show_findings)
        image_panel.previousRequested.connect(session.previous_image)
        image_panel.nextRequested.connect(session.next_image)
        findings.findingSelected.connect(lambda _f: self.update_overlay())

    def open_study(self, study_uid: str) -> None:
        """Show a study: its images in reading order, the first one decoded in the background."""
        self.session.open_study(study_uid)
        if not self.session.images:
            self.image_panel.clear()
            self.review.show_none()
            self.tags.clear()

    def show_findings(self, entry: ImageEntry) -> None:
        """Scores, verdicts and note of an image, and the selected finding's attention map."""
        self.review.show(entry)
        self.update_overlay()

    def current_attention(self) -> np.ndarray | None:
        return attention_map(self.session.current, self.findings.current_finding())

    def update_overlay(self) -> None:
        self.image_panel.set_attention(self.current_attention())

    def _scanned(self, image_id: int):  # noqa: ANN202 - ScannedFile | None
        from cxrlt_desktop.library.identity import scanned_file

        store = self.image_loader.store
        return None if store is None else scanned_file(store, image_id)

    # ------------------------------------------------------------------ session callbacks
    def _on_study_opened(self, study_uid: str) -> None:
        if self.session.images:  # its decode first, before the study's other work on this thread
            first = self.session.images[0]
            self.image_loader.prefetch(first.image_id, first.path)
        self.image_panel.set_study_text(self._study_text(study_uid))
        self.studyOpened.emit(study_uid)

    def _on_image_changed(self, entry: ImageEntry) -> None:
        s = self.session
        series = entry.series_number if s.n_series > 1 else None
        self.image_panel.set_position(s.index, len(s.images), series)
        self.show_findings(entry)
        self.tags.load(entry.path, partial(self._scanned, entry.image_id))
        display = self.image_loader.request(entry.image_id, entry.path)
        if display is not None:
            self._display(entry, display)
        if s.index + 1 < len(s.images):
            following = s.images[s.index + 1]
            self.image_loader.prefetch(following.image_id, following.path)

    # ------------------------------------------------------------------ decoded images
    def _on_image_loaded(self, image_id: int, display) -> None:
        entry = self.session.current
        if entry is not None and entry.image_id == image_id:
            self._display(entry, display)

    def _on_image_failed(self, image_id: int, error: str) -> None:
        entry = self.session.current
        if entry is not None and entry.image_id == image_id:
            self.image_panel.show_error(f"Cannot display this image: {error}")
            self.problemFound.emit(Problem(entry.path, error, "view"))

    def _display(self, entry: ImageEntry, display) -> None:
        self.image_panel.show_image(display, self.current_attention(), entry.path)
        self.imageDisplayed.emit(entry.image_id)


__all__ = ["SessionView"]
