"""The image viewer: window/level, zoom, pan, invert, display-only rotate/flip, readout, overlays.

Built on pyqtgraph's ImageItem inside a ViewBox. The viewer shows a
:class:`~cxrlt_desktop.ui.display.DisplayPipeline` (modality values from the engine's decode
plus the file's display header) and renders it through the pipeline: the VOI step (a window
with the header's VOI LUT Function, or an item of the VOI LUT Sequence), inversion, padding as
background, display shutters and, when switched on, the file's overlay planes (60xx). Every
window the header carries and every VOI LUT item is a preset, named by the file. The engine's
own display form (``engine.imageio.DisplayImage``) is accepted too and shown through the same
pipeline, without a header.

Mouse: left drag changes window/level (horizontal = width, vertical = level), middle drag or
Ctrl + left drag pans, the wheel zooms, right drag zooms too.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from cxrlt_desktop.ui.display import RELATIVE_PRESETS, DisplayPipeline, Preset

OVERLAY_RESOLUTION = 256  # the attention map is upsampled (bilinear) to this long side


WindowPreset = Preset  # the name presets had before the display pipeline


def _heat_lut() -> np.ndarray:
    """A 256-entry RGBA lookup table: the 'turbo' colours with alpha rising from 0."""
    cmap = pg.colormap.get("turbo")
    lut = cmap.getLookupTable(0.0, 1.0, 256, alpha=True).astype(np.uint8)
    # Low attention stays transparent so the anatomy shows through.
    lut[:, 3] = np.clip(np.linspace(-60, 255, 256), 0, 255).astype(np.uint8)
    return lut


class _ViewBox(pg.ViewBox):
    """A ViewBox whose left drag is window/level instead of pan."""

    def __init__(self, viewer: ImageViewer) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._viewer = viewer

    def mouseClickEvent(self, ev):  # noqa: N802 - Qt override
        # A measurement tool in use takes the left clicks (its points).
        tool = self._viewer.click_tool
        if tool is not None and ev.button() == Qt.MouseButton.LeftButton:
            p = self.mapSceneToView(ev.scenePos())
            if tool(p.x(), p.y()):
                ev.accept()
                return
        super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 - Qt override
        if ev.button() == Qt.MouseButton.LeftButton and not (
            ev.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            ev.accept()
            if ev.isStart():
                self._viewer._on_window_drag_start()
            delta = ev.screenPos() - ev.buttonDownScreenPos()
            self._viewer._on_window_drag(delta.x(), delta.y())
            return
        if ev.button() == Qt.MouseButton.LeftButton:
            # Ctrl + left: pan, as ViewBox does for a plain left drag.
            super().mouseDragEvent(ev, axis)
            return
        super().mouseDragEvent(ev, axis)


class ImageViewer(QWidget):
    """Shows one radiograph with window/level, zoom, pan, invert, rotate/flip and an overlay.

    Signals
    -------
    windowChanged(float, float)
        New window centre and width (modality units) after any change.
    pixelReadout(str)
        "x, y: value" under the mouse, or "" when outside the image.
    overlayToggled(bool)
        The attention overlay was switched on or off.
    overlayPlanesToggled(bool)
        The file's overlay planes (60xx graphics) were switched on or off.
    imageShown()
        A new image was put on screen (after :meth:`set_image`).
    """

    windowChanged = Signal(float, float)
    pixelReadout = Signal(str)
    overlayToggled = Signal(bool)
    overlayPlanesToggled = Signal(bool)
    imageShown = Signal()
    orientationChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._modality: np.ndarray | None = None  # oriented (rotated/flipped) view
        self._raw_modality: np.ndarray | None = None
        self._raw_attention: np.ndarray | None = None
        self._pipeline: DisplayPipeline | None = None
        self._default: Preset = Preset("Header", 0.5, 1.0)
        self._current: Preset = self._default  # what the VOI step applies now
        self._user_invert = False
        self._planes_enabled = False
        self._rotation = 0  # quarter turns clockwise
        self._flip_h = False
        self._flip_v = False
        self._drag_origin: tuple[float, float] = (0.5, 1.0)
        self._value_span = 1.0
        self._overlay_enabled = False
        self._overlay_opacity = 0.45
        # Called with a left click's view (display) coordinates while a measurement tool is in
        # use; returns True when it took the click.
        self.click_tool = None

        self._graphics = pg.GraphicsLayoutWidget()
        self._graphics.setBackground("k")
        self._graphics.ci.setContentsMargins(0, 0, 0, 0)
        self._view = _ViewBox(self)
        self._graphics.addItem(self._view)
        self._image_item = pg.ImageItem(axisOrder="row-major")
        # No auto-downsampling: pyqtgraph would average the full image on every paint (~50 ms
        # at 2500 x 2000); Qt scales the 8-bit image itself when it draws.
        self._image_item.setAutoDownsample(False)
        self._view.addItem(self._image_item)
        self._overlay_item = pg.ImageItem(axisOrder="row-major")
        self._overlay_item.setLookupTable(_heat_lut())
        self._overlay_item.setZValue(10)
        self._overlay_item.setVisible(False)
        self._view.addItem(self._overlay_item)

        self._info = QLabel("")
        self._info.setObjectName("viewerInfo")
        self._readout = QLabel("")
        self._readout.setObjectName("pixelReadout")
        self._readout.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 0, 4, 0)
        bar.addWidget(self._info, 1)
        bar.addWidget(self._readout)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self._graphics, 1)
        layout.addLayout(bar)

        # Drags arrive faster than a large image re-windows; coalesce to one render per turn of
        # the event loop so the GUI never queues up stale renders.
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self._render)

        self._graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._empty_message()

    # ------------------------------------------------------------------ public API
    def set_image(self, display, *, attention: np.ndarray | None = None, label: str = "") -> None:
        """Show a decoded image.

        Parameters
        ----------
        display
            A :class:`~cxrlt_desktop.ui.display.DisplayPipeline`, or an
            ``engine.imageio.DisplayImage`` (``modality``, ``window``, ``presets``, ``invert``),
            shown through a pipeline without a header.
        attention
            Optional attention map (h x w, any float) for the overlay; stretched over the image.
        label
            Text shown under the image (series / image number, size).
        """
        pipeline = display if isinstance(display, DisplayPipeline) else None
        if pipeline is None:
            pipeline = DisplayPipeline.from_display(display)
        self._pipeline = pipeline
        self._raw_modality = pipeline.modality
        self._default = pipeline.default or Preset("Header", 0.5, 1.0)
        self._current = self._default
        sample = pipeline.sample()
        span = float(sample.max() - sample.min()) if sample.size else 1.0
        self._value_span = max(span, 1.0)
        self._info.setText(label)
        self._raw_attention = None if attention is None else np.asarray(attention, np.float32)
        self._reorient()
        self._render()
        self.fit()
        self.imageShown.emit()

    def clear(self) -> None:
        """Remove the image (for example when a study has no decodable image)."""
        self._pipeline = None
        self._raw_modality = None
        self._modality = None
        self._raw_attention = None
        self._image_item.clear()
        self._overlay_item.clear()
        self._overlay_item.setVisible(False)
        self._empty_message()

    def has_image(self) -> bool:
        return self._modality is not None

    def pipeline(self) -> DisplayPipeline | None:
        """The display pipeline of the image shown (None without one)."""
        return self._pipeline

    def presets(self) -> list[Preset]:
        """The file's VOI LUT items and windows (named by the file) first, then the windows
        computed from the image: auto, lung, mediastinum, bone, full range."""
        return list(self._pipeline.presets) if self._pipeline is not None else []

    def current_preset(self) -> Preset:
        """The VOI choice in force (a preset, or ``"Custom"`` after a drag)."""
        return self._current

    def apply_preset(self, name: str) -> None:
        """Switch to the named preset (case-insensitive); unknown names raise KeyError."""
        for p in self.presets():
            if p.name.lower() == name.lower():
                self._set_voi(p)
                return
        raise KeyError(f"no window preset named {name!r}")

    def step_preset(self, step: int = 1) -> str | None:
        """Go to the next (``step`` 1) or previous (-1) preset, wrapping; returns its name."""
        presets = self.presets()
        if not presets:
            return None
        names = [p.name for p in presets]
        i = names.index(self._current.name) if self._current.name in names else -1
        p = presets[(i + step) % len(presets)]
        self._set_voi(p)
        return p.name

    def window(self) -> tuple[float, float]:
        """Current (centre, width) in modality units (for a VOI LUT: the range it covers)."""
        return (self._current.center, self._current.width)

    def default_window(self) -> tuple[float, float]:
        """(centre, width) of the image's default VOI (what the link between viewports scales
        by)."""
        return (self._default.center, self._default.width)

    def set_window(self, center: float, width: float) -> None:
        """Set a window in modality units, with the header's VOI LUT Function; width is kept
        above a tiny positive floor."""
        function = self._pipeline.header_function if self._pipeline is not None else "LINEAR"
        width = max(float(width), 1e-3 * self._value_span)
        self._set_voi(Preset("Custom", float(center), width, function))

    def at_default_window(self) -> bool:
        """Whether the image shows its default VOI (nothing changed by the reader or a link)."""
        return self._pipeline is not None and self._current == self._default

    def reset_window(self) -> None:
        """Back to the default VOI: the file's first VOI LUT or window, else the auto window."""
        self._set_voi(self._default)

    def _set_voi(self, preset: Preset) -> None:
        self._current = preset
        self._schedule_render()
        self.windowChanged.emit(preset.center, preset.width)

    def set_inverted(self, inverted: bool) -> None:
        """Invert the display on top of what the photometric interpretation asks for (padding
        stays background, shutters keep their value)."""
        self._user_invert = bool(inverted)
        self._schedule_render()

    def is_inverted(self) -> bool:
        return self._user_invert

    def toggle_invert(self) -> None:
        self.set_inverted(not self._user_invert)

    def rotate(self, quarter_turns: int = 1) -> None:
        """Rotate the display clockwise by quarter turns (display only; pixels are untouched)."""
        self._rotation = (self._rotation + quarter_turns) % 4
        self._reorient()
        self._render()
        self.fit()

    def flip_horizontal(self) -> None:
        self._flip_h = not self._flip_h
        self._reorient()
        self._render()

    def flip_vertical(self) -> None:
        self._flip_v = not self._flip_v
        self._reorient()
        self._render()

    def reset_orientation(self) -> None:
        self._rotation, self._flip_h, self._flip_v = 0, False, False
        self._reorient()
        self._render()
        self.fit()

    def fit(self) -> None:
        """Fit the whole image into the view."""
        if self._modality is None:
            return
        h, w = self._modality.shape
        self._view.setRange(QRectF(0, 0, w, h), padding=0.0)

    def one_to_one(self) -> None:
        """One image pixel per screen pixel, centred on the current view centre."""
        if self._modality is None:
            return
        rect = self._view.viewRect()
        size = self._view.size()
        cx, cy = rect.center().x(), rect.center().y()
        w, h = max(size.width(), 1.0), max(size.height(), 1.0)
        self._view.setRange(
            xRange=(cx - w / 2, cx + w / 2), yRange=(cy - h / 2, cy + h / 2), padding=0.0
        )

    def zoom(self, factor: float) -> None:
        """Zoom about the view centre; factor > 1 magnifies."""
        self._view.scaleBy((1.0 / factor, 1.0 / factor))

    def view_rect(self) -> QRectF:
        return self._view.viewRect()

    def displayed_pixels(self) -> np.ndarray | None:
        """The uint8 array now on screen (after windowing, inversion and orientation)."""
        img = self._image_item.image
        return None if img is None else np.asarray(img)

    def value_at(self, x: int, y: int) -> float | None:
        """Modality value at display column x, row y, or None outside the image."""
        if self._modality is None:
            return None
        h, w = self._modality.shape
        if 0 <= x < w and 0 <= y < h:
            return float(self._modality[y, x])
        return None

    def source_coords(self, x: int, y: int) -> tuple[int, int]:
        """Map a display (column, row) back to the stored image's (column, row).

        The readout names pixels as the file stores them, whatever rotation or flip is shown.
        """
        assert self._raw_modality is not None
        h, w = self._raw_modality.shape
        hd, wd = self._modality.shape if self._modality is not None else (h, w)
        r, c = y, x
        if self._flip_v:
            r = hd - 1 - r
        if self._flip_h:
            c = wd - 1 - c
        k = self._rotation
        if k == 1:
            r, c = h - 1 - c, r
        elif k == 2:
            r, c = h - 1 - r, w - 1 - c
        elif k == 3:
            r, c = c, w - 1 - r
        return c, r

    def to_source(self, x: float, y: float) -> tuple[float, float]:
        """A display point (view coordinates, continuous) as the stored image's (column, row)
        with (0, 0) the top-left corner of its top-left pixel (DICOM SCOORD convention)."""
        assert self._raw_modality is not None
        h, w = self._raw_modality.shape
        hd, wd = self._modality.shape if self._modality is not None else (h, w)
        if self._flip_v:
            y = hd - y
        if self._flip_h:
            x = wd - x
        k = self._rotation
        if k == 1:
            return y, h - x
        if k == 2:
            return w - x, h - y
        if k == 3:
            return w - y, x
        return x, y

    def to_display(self, x: float, y: float) -> tuple[float, float]:
        """The inverse of :meth:`to_source`: a stored image point in view coordinates."""
        assert self._raw_modality is not None
        h, w = self._raw_modality.shape
        hd, wd = self._modality.shape if self._modality is not None else (h, w)
        k = self._rotation
        if k == 1:
            x, y = h - y, x
        elif k == 2:
            x, y = w - x, h - y
        elif k == 3:
            x, y = y, w - x
        if self._flip_h:
            x = wd - x
        if self._flip_v:
            y = hd - y
        return x, y

    def view_box(self) -> pg.ViewBox:
        """The ViewBox the image is drawn in (measurement items are added to it)."""
        return self._view

    def image_shape(self) -> tuple[int, int] | None:
        """(rows, columns) of the image as displayed (after rotation)."""
        return None if self._modality is None else self._modality.shape

    # overlay planes (the file's 60xx graphics) ------------------------------
    def has_overlay_planes(self) -> bool:
        return self._pipeline is not None and bool(self._pipeline.overlays)

    def set_overlay_planes_enabled(self, enabled: bool) -> None:
        """Draw the file's overlay planes on the image (white) or not (off by default)."""
        enabled = bool(enabled)
        changed = enabled != self._planes_enabled
        self._planes_enabled = enabled
        self._schedule_render()
        if changed:
            self.overlayPlanesToggled.emit(enabled)

    def toggle_overlay_planes(self) -> None:
        self.set_overlay_planes_enabled(not self._planes_enabled)

    def overlay_planes_enabled(self) -> bool:
        return self._planes_enabled

    # overlay -----------------------------------------------------------------
    def set_attention(self, attention: np.ndarray | None) -> None:
        """Replace the overlay's attention map (h x w); None removes it."""
        self._raw_attention = None if attention is None else np.asarray(attention, np.float32)
        self._update_overlay()

    def has_attention(self) -> bool:
        return self._raw_attention is not None

    def set_overlay_enabled(self, enabled: bool) -> None:
        """Show or hide the heatmap (hidden by default)."""
        enabled = bool(enabled)
        changed = enabled != self._overlay_enabled
        self._overlay_enabled = enabled
        self._update_overlay()
        if changed:
            self.overlayToggled.emit(enabled)

    def toggle_overlay(self) -> None:
        self.set_overlay_enabled(not self._overlay_enabled)

    def overlay_enabled(self) -> bool:
        return self._overlay_enabled

    def overlay_visible(self) -> bool:
        """True when a heatmap is actually drawn (enabled and a map is present)."""
        return self._overlay_item.isVisible()

    def set_overlay_opacity(self, opacity: float) -> None:
        self._overlay_opacity = float(np.clip(opacity, 0.0, 1.0))
        self._overlay_item.setOpacity(self._overlay_opacity)

    def overlay_opacity(self) -> float:
        return self._overlay_opacity

    # ------------------------------------------------------------------ internals
    def _empty_message(self) -> None:
        self._info.setText("No image. Open a folder (File > Open folder) or drop one here.")
        self._readout.setText("")

    def _orient(self, a: np.ndarray) -> np.ndarray:
        if self._rotation:
            a = np.rot90(a, -self._rotation)
        if self._flip_h:
            a = a[:, ::-1]
        if self._flip_v:
            a = a[::-1, :]
        return a

    def _reorient(self) -> None:
        if self._raw_modality is None:
            return
        self._modality = np.ascontiguousarray(self._orient(self._raw_modality))
        self._update_overlay()
        self.orientationChanged.emit()

    def _schedule_render(self) -> None:
        if not self._render_timer.isActive():
            self._render_timer.start()

    def _render(self) -> None:
        if self._modality is None or self._pipeline is None:
            return
        pixels = self._pipeline.render(
            self._current, invert=self._user_invert, overlays=self._planes_enabled
        )
        self._image_item.setImage(
            np.ascontiguousarray(self._orient(pixels)), autoLevels=False, levels=(0, 255)
        )

    def _update_overlay(self) -> None:
        if self._raw_attention is None or self._modality is None or not self._overlay_enabled:
            self._overlay_item.setVisible(False)
            return
        att = self._orient(self._raw_attention)
        top = float(np.nanmax(att)) if att.size else 0.0
        norm = att / top if top > 0 else np.zeros_like(att)
        h, w = self._modality.shape
        # CSRA maps are coarse (16 x 16 at 512 px input): smooth them so the heatmap reads as a
        # region, not as tiles.
        scale = OVERLAY_RESOLUTION / max(norm.shape)
        if scale > 1:
            import cv2

            size = (max(1, round(norm.shape[1] * scale)), max(1, round(norm.shape[0] * scale)))
            norm = cv2.resize(norm.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        self._overlay_item.setImage(np.ascontiguousarray(norm), autoLevels=False, levels=(0, 1))
        # The attention grid covers the whole (resized) model input, which is the whole image.
        self._overlay_item.setRect(QRectF(0, 0, w, h))
        self._overlay_item.setOpacity(self._overlay_opacity)
        self._overlay_item.setVisible(True)

    def _on_window_drag_start(self) -> None:
        self._drag_origin = (self._current.center, self._current.width)

    def _on_window_drag(self, dx: float, dy: float) -> None:
        # One screen width of drag spans the image's whole value range: fine control near the
        # start point, the whole range within reach.
        scale = self._value_span / max(self._graphics.width(), 100)
        c0, w0 = self._drag_origin
        self.set_window(c0 - dy * scale, w0 + dx * scale)

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if self._modality is None:
            return
        p = self._view.mapSceneToView(scene_pos)
        x, y = int(np.floor(p.x())), int(np.floor(p.y()))
        value = self.value_at(x, y)
        if value is None:
            text = ""
        else:
            sx, sy = self.source_coords(x, y)
            text = f"x {sx}, y {sy}: {value:.6g}"
        self._readout.setText(text)
        self.pixelReadout.emit(text)


__all__ = ["ImageViewer", "RELATIVE_PRESETS", "WindowPreset"]
