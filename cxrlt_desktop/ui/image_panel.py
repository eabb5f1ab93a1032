"""The image panel: the study header line with previous / next image, the tool row, the window
presets and the attention overlay controls, around :class:`~cxrlt_desktop.ui.viewer.ImageViewer`.

It shows what it is given (study text, image position, a decoded image, an attention map) and
turns clicks into ``previousRequested`` / ``nextRequested``; the window decides what to show.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from cxrlt_desktop.ui.viewer import ImageViewer


def attention_map(entry, finding: str | None) -> np.ndarray | None:
    """The CSRA attention map of ``finding`` for an image (an ``ImageEntry``), or None: no image,
    no finding selected, no maps stored, or a zero-shot finding (those have none)."""
    if entry is None or entry.attention is None or finding is None:
        return None
    from engine.classes import ALL_CLASSES, TASK1_CLASSES

    i = ALL_CLASSES.index(finding)
    if i >= len(TASK1_CLASSES) or i >= entry.attention.shape[0]:
        return None
    return np.asarray(entry.attention[i], dtype=np.float32)


class ImagePanel(QWidget):
    """Header, tool row, presets and overlay row, viewer (top to bottom)."""

    previousRequested = Signal()
    nextRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = ImageViewer()
        self.viewer.overlayToggled.connect(self._on_viewer_overlay_toggled)
        self.study_label = QLabel("")
        self.study_label.setObjectName("studyLabel")
        self.image_label = QLabel("")
        self.prev_image_button = self._arrow("\u25c0", "Previous image", self.previousRequested)
        self.next_image_button = self._arrow("\u25b6", "Next image", self.nextRequested)
        self.view_tools = QToolBar()
        self.view_tools.setObjectName("viewTools")
        self._build_controls()

        cv = QVBoxLayout(self)
        cv.setContentsMargins(0, 0, 0, 0)
        cv.setSpacing(2)
        header = QHBoxLayout()
        header.addWidget(self.study_label, 1)
        header.addWidget(self.prev_image_button)
        header.addWidget(self.image_label)
        header.addWidget(self.next_image_button)
        cv.addLayout(header)
        cv.addWidget(self.view_tools)
        cv.addWidget(self.view_controls)
        cv.addWidget(self.viewer, 1)

    @staticmethod
    def _arrow(text: str, tip: str, signal) -> QPushButton:
        b = QPushButton(text)
        b.setFixedWidth(30)
        b.setToolTip(tip)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.clicked.connect(lambda _=False: signal.emit())
        return b

    def _build_controls(self) -> None:
        # Presets and the overlay get their own row: one tool bar row overflowed at ~500 px.
        self.preset_box = QComboBox()
        self.preset_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.preset_box.setMinimumContentsLength(16)
        self.preset_box.setToolTip("Window presets: header windows, then lung, mediastinum, bone")
        self.preset_box.activated.connect(self._on_preset_activated)
        self.overlay_box = QCheckBox("Attention")
        self.overlay_box.setToolTip("Show the selected finding's CSRA attention map")
        self.overlay_box.toggled.connect(self.viewer.set_overlay_enabled)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(int(self.viewer.overlay_opacity() * 100))
        self.opacity_slider.setFixedWidth(90)
        self.opacity_slider.setToolTip("Overlay opacity")
        self.opacity_slider.valueChanged.connect(
            lambda value: self.viewer.set_overlay_opacity(value / 100.0)
        )
        self.view_controls = QWidget()
        row = QHBoxLayout(self.view_controls)
        row.setContentsMargins(6, 0, 6, 0)
        row.addWidget(QLabel("Window"))
        row.addWidget(self.preset_box)
        row.addSpacing(12)
        row.addWidget(self.overlay_box)
        row.addWidget(self.opacity_slider)
        row.addStretch(1)

    def add_tools(self, actions: Iterable[QAction]) -> None:
        """Put these actions in the tool row, left to right."""
        for act in actions:
            self.view_tools.addAction(act)

    # ------------------------------------------------------------------ what is shown
    def set_study_text(self, text: str) -> None:
        self.study_label.setText(text)

    def set_position(self, index: int, count: int, series_number: int | None = None) -> None:
        """ "Image i/n" (and the series when the study has several); arrows at the ends off."""
        series = f", series {series_number}" if series_number else ""
        self.image_label.setText(f"Image {index + 1}/{count}{series}")
        self.prev_image_button.setEnabled(index > 0)
        self.next_image_button.setEnabled(index < count - 1)

    def show_image(self, display, attention: np.ndarray | None, path: str) -> None:
        """Display a decoded image (labelled with its file name and size) and refill the presets
        from it."""
        h, w = display.modality.shape
        self.viewer.set_image(display, attention=attention, label=f"{Path(path).name}  {w} x {h}")
        self.preset_box.clear()
        for p in self.viewer.presets():
            self.preset_box.addItem(f"{p.name} ({p.center:.0f}/{p.width:.0f})", p.name)

    def show_error(self, text: str) -> None:
        self.viewer.clear()
        self.viewer._info.setText(text)

    def clear(self) -> None:
        """No image (a study without a usable one)."""
        self.viewer.clear()
        self.image_label.setText("")

    def set_attention(self, attention: np.ndarray | None) -> None:
        """The selected finding's map; the check box stays usable while it is ticked."""
        self.viewer.set_attention(attention)
        self.overlay_box.setEnabled(attention is not None or self.overlay_box.isChecked())

    def apply_named_preset(self, name: str) -> None:
        if self.viewer.has_image():
            self.viewer.apply_preset(name)

    # ------------------------------------------------------------------ slots
    def _on_viewer_overlay_toggled(self, enabled: bool) -> None:
        if self.overlay_box.isChecked() != enabled:
            self.overlay_box.setChecked(enabled)

    def _on_preset_activated(self, index: int) -> None:
        name = self.preset_box.itemData(index)
        if name:
            self.viewer.apply_preset(name)


__all__ = ["ImagePanel", "attention_map"]
