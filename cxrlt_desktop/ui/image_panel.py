"""The image panel: the study header line with previous / next image, the tool row, the window
presets, the file's overlay planes and the attention overlay controls, around
:class:`~cxrlt_desktop.ui.viewer.ImageViewer`.

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


def preset_label(p) -> str:
    """The preset box's text: the name, and the window (or "VOI LUT", or the function when it
    is not LINEAR)."""
    if getattr(p, "kind", "window") == "lut":
        return f"{p.name} (VOI LUT)"
    fn = getattr(p, "function", "LINEAR")
    suffix = "" if fn == "LINEAR" else f" {fn.lower().replace('_', ' ')}"
    return f"{p.name} ({p.center:.0f}/{p.width:.0f}{suffix})"


def display_notes(display) -> list[str]:
    """What the image line says about the header's display parts: FOR PROCESSING, shutters,
    overlay planes, padding, and what could not be applied."""
    notes = []
    if getattr(display, "intent", None) == "FOR PROCESSING":
        notes.append("FOR PROCESSING")
    shutter = getattr(display, "shutter", None)
    if shutter is not None:
        notes.append("shutter " + "+".join(s.lower() for s in shutter.shapes))
    planes = getattr(display, "overlays", None) or []
    if planes:
        notes.append(f"{len(planes)} overlay plane{'s' if len(planes) > 1 else ''}")
    if getattr(display, "padding", None) is not None:
        notes.append("padding")
    notes.extend(getattr(display, "warnings", None) or [])
    return notes


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
        self.preset_box.setToolTip(
            "Window presets: the file's VOI LUTs and windows (named by the file), then auto, "
            "lung, mediastinum, bone and full range computed from the image (padding left out)"
        )
        self.preset_box.activated.connect(self._on_preset_activated)
        self.viewer.windowChanged.connect(self._on_window_changed)
        self.planes_box = QCheckBox("Graphics")
        self.planes_box.setObjectName("overlayPlanesBox")
        self.planes_box.setToolTip("Show the file's overlay planes (DICOM 60xx graphics)")
        self.planes_box.toggled.connect(self.viewer.set_overlay_planes_enabled)
        self.viewer.overlayPlanesToggled.connect(self._on_viewer_planes_toggled)
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
        row.addWidget(self.planes_box)
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
        """Display a decoded image (a display pipeline; labelled with its file name, size and
        what its header asks for) and refill the presets from it."""
        h, w = display.modality.shape
        label = f"{Path(path).name}  {w} x {h}" + "".join(
            f"  \u00b7  {part}" for part in display_notes(display)
        )
        self.viewer.set_image(display, attention=attention, label=label)
        self.preset_box.clear()
        for p in self.viewer.presets():
            self.preset_box.addItem(preset_label(p), p.name)
        self._select_current_preset()
        has_planes = self.viewer.has_overlay_planes()
        self.planes_box.setEnabled(has_planes or self.planes_box.isChecked())

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

    def step_preset(self, step: int = 1) -> None:
        """Next / previous window preset (the View menu's actions)."""
        if self.viewer.has_image():
            self.viewer.step_preset(step)

    def toggle_overlay_planes(self) -> None:
        self.planes_box.toggle()

    def _select_current_preset(self) -> None:
        i = self.preset_box.findData(self.viewer.current_preset().name)
        self.preset_box.setCurrentIndex(i)  # -1 (blank) for a dragged window

    # ------------------------------------------------------------------ slots
    def _on_window_changed(self, *_args) -> None:
        self._select_current_preset()

    def _on_viewer_planes_toggled(self, enabled: bool) -> None:
        if self.planes_box.isChecked() != enabled:
            self.planes_box.setChecked(enabled)

    def _on_viewer_overlay_toggled(self, enabled: bool) -> None:
        if self.overlay_box.isChecked() != enabled:
            self.overlay_box.setChecked(enabled)

    def _on_preset_activated(self, index: int) -> None:
        name = self.preset_box.itemData(index)
        if name:
            self.viewer.apply_preset(name)


__all__ = ["ImagePanel", "attention_map", "display_notes", "preset_label"]
