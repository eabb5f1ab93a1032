"""The comparison layout: the patient's prior beside the current image, with linked window/level,
zoom and pan.

- :class:`ViewerLink` links two :class:`~cxrlt_desktop.ui.viewer.ImageViewer` s: a window
  change on one moves the other's by the same amount relative to each image's default window
  (images of different detectors have different value ranges), and zoom/pan shows the same part
  of each image (the view rectangle as fractions of the image). Off: each is on its own.
- :class:`PriorViewport` is the second viewport: a line with the prior's date, view and the
  interval ("prior: 2019-03-04 PA, 4 years 2 months earlier"), the list of the patient's other
  studies (the most recent earlier chest study chosen first), the link toggle, and the viewer.
  Its image is decoded off the GUI thread by an :class:`~.image_loader.ImageLoader` of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from cxrlt_desktop.library.priors import (
    PriorCandidate,
    choose_prior,
    format_date,
    interval_text,
    prior_image,
    prior_studies,
    study_date,
)
from cxrlt_desktop.ui.image_loader import ImageLoader
from cxrlt_desktop.ui.viewer import ImageViewer


class ViewerLink:
    """Window/level, zoom and pan of ``a`` and ``b`` move together while ``enabled``."""

    def __init__(self, a: ImageViewer, b: ImageViewer, enabled: bool = True) -> None:
        self.a, self.b = a, b
        self.enabled = enabled
        self._busy = False
        a.windowChanged.connect(lambda c, w: self._window(a, b, c, w))
        b.windowChanged.connect(lambda c, w: self._window(b, a, c, w))
        a.view_box().sigRangeChanged.connect(lambda *_: self._range(a, b))
        b.view_box().sigRangeChanged.connect(lambda *_: self._range(b, a))

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        if self.enabled:
            self._range(self.a, self.b)

    def _window(self, src: ImageViewer, dst: ImageViewer, c: float, w: float) -> None:
        if not self.enabled or self._busy or not (src.has_image() and dst.has_image()):
            return
        if src.at_default_window():  # each image at its own default (a VOI LUT stays one)
            if not dst.at_default_window():
                self._busy = True
                try:
                    dst.reset_window()
                finally:
                    self._busy = False
            return
        c0, w0 = src.default_window()
        d0, v0 = dst.default_window()
        scale = v0 / w0 if w0 else 1.0
        self._busy = True
        try:
            dst.set_window(d0 + (c - c0) * scale, w * scale)
        finally:
            self._busy = False

    def _range(self, src: ImageViewer, dst: ImageViewer) -> None:
        if not self.enabled or self._busy:
            return
        s, d = src.image_shape(), dst.image_shape()
        if s is None or d is None:
            return
        r = src.view_rect()
        fx, fy = d[1] / s[1], d[0] / s[0]
        self._busy = True
        try:
            dst.view_box().setRange(
                QRectF(r.x() * fx, r.y() * fy, r.width() * fx, r.height() * fy), padding=0.0
            )
        finally:
            self._busy = False


class PriorViewport(QWidget):
    """The prior's viewport. Signals: ``priorShown(study_uid)`` when its image is on screen."""

    priorShown = Signal(str)

    def __init__(self, store: Callable[[], Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self.viewer = ImageViewer()
        self.loader = ImageLoader(self, store=None)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_failed)
        self.header = QLabel("No prior")
        self.header.setObjectName("priorLabel")
        self.header.setStyleSheet("font-weight: bold; color: #b35c00")
        self.header.setMinimumWidth(40)  # a narrow viewport cuts the line, never widens
        self.header.setWordWrap(True)
        self.choice = QComboBox()
        self.choice.setToolTip("The patient's other chest studies in the library")
        self.choice.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.choice.setMinimumContentsLength(10)
        self.choice.activated.connect(self._on_choice)
        self.link_box = QCheckBox("Link")
        self.link_box.setToolTip("Link window/level, zoom and pan with the current image")
        self.link_box.setChecked(True)
        top = QHBoxLayout()
        top.setContentsMargins(6, 0, 6, 0)
        top.addWidget(self.header, 1)
        top.addWidget(self.choice)
        top.addWidget(self.link_box)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addWidget(self.viewer, 1)
        self.study_uid: str | None = None
        self.current_date = ""
        self.candidates: list[PriorCandidate] = []
        self.prior: PriorCandidate | None = None
        self.image_id: int | None = None
        self._view: str | None = None

    def set_study(self, study_uid: str | None, view: str | None = None) -> None:
        """The current study (and its image's view): lists its priors and shows the most recent
        earlier one."""
        store = self._store()
        self.loader._store = store
        self.study_uid, self._view = study_uid, view
        self.candidates = [] if store is None or not study_uid else prior_studies(store, study_uid)
        self.current_date = "" if store is None or not study_uid else study_date(store, study_uid)
        self.choice.clear()
        for c in self.candidates:
            self.choice.addItem(c.label(), c.study_uid)
        chosen = (
            None
            if store is None or not study_uid
            else choose_prior(store, study_uid, self.candidates)
        )
        self.show_prior(chosen)

    def show_prior(self, candidate: PriorCandidate | None) -> None:
        self.prior = candidate
        if candidate is None:
            self.image_id = None
            self.viewer.clear()
            self.header.setText("No earlier chest radiograph of this patient in the library")
            return
        self.choice.setCurrentIndex(self.choice.findData(candidate.study_uid))
        im = prior_image(candidate, self._view)
        self.header.setText(self.label_text(candidate, im.view if im else None))
        if im is None:
            self.viewer.clear()
            return
        self.image_id = im.image_id
        display = self.loader.request(im.image_id, im.path)
        if display is not None:
            self._show(display)

    def prefetch(self, study_uid: str, view: str | None) -> None:
        """Decode the prior the viewport would show for ``study_uid`` (the study the reader is
        likely to open next; ``view``: its first image's), into the loader's cache."""
        store = self._store()
        if store is None:
            return
        chosen = choose_prior(store, study_uid, prior_studies(store, study_uid))
        im = prior_image(chosen, view) if chosen is not None else None
        if im is not None:
            self.loader.prefetch(im.image_id, im.path)

    def label_text(self, c: PriorCandidate, view: str | None) -> str:
        interval = interval_text(self.current_date, c.study_date)
        return f"prior: {format_date(c.study_date)} {view or ''}".rstrip() + (
            f", {interval}" if interval else ""
        )

    def _on_choice(self, index: int) -> None:
        uid = self.choice.itemData(index)
        for c in self.candidates:
            if c.study_uid == uid:
                self.show_prior(c)
                return

    def _on_loaded(self, image_id: int, display: Any) -> None:
        if image_id == self.image_id:
            self._show(display)

    def _on_failed(self, image_id: int, error: str) -> None:
        if image_id == self.image_id:
            self.viewer.clear()
            self.viewer._info.setText(f"Cannot display the prior: {error}")

    def _show(self, display: Any) -> None:
        h, w = display.modality.shape
        self.viewer.set_image(display, label=f"{w} x {h}")
        self.priorShown.emit(self.prior.study_uid if self.prior else "")


__all__ = ["PriorViewport", "ViewerLink"]
