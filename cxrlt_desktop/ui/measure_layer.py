"""Measurements drawn on the viewer: the tools (distance, angle, Cobb angle, CTR), the stored
measurements of the image as pyqtgraph ROIs that can be dragged (an edit) and deleted.

State lives in the store (:mod:`cxrlt_desktop.library.measurements`); this layer draws what is
stored and turns clicks and drags into store calls. Points are kept in the stored image's
coordinates and mapped through the viewer's rotation and flip (:meth:`ImageViewer.to_source`).

Tools: choose one (View menu, keys), then click its points on the image: distance 2, angle 3
(the vertex second), Cobb angle 4 (two points along each end plate), CTR 4 (the heart's right
and left edges, then the thorax's: each pair is held horizontal). Esc cancels the points so far.
Clicking a measurement selects it; Delete measurement removes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, QTimer, Signal

from cxrlt_desktop.library.measure_geometry import (
    KIND_NAMES,
    N_POINTS,
    PIXELS,
    Calibration,
    MeasurementError,
)
from cxrlt_desktop.ui.viewer import ImageViewer

# Saturated colours that stay visible on bright bone and dark lung alike; the selected
# measurement is drawn thicker, in yellow.
COLOURS = {"distance": "#ff9100", "angle": "#00b0ff", "cobb": "#00e676", "ctr": "#ff4081"}
SELECTED = "#ffea00"
PEN_WIDTH = 3


class MeasureLayer(QObject):
    """Signals: ``changed()`` after a measurement was added, edited or deleted, or the image's
    set was loaded; ``message(str)`` what the reader should do next, or what went wrong."""

    changed = Signal()
    message = Signal(str)
    toolChanged = Signal(bool)  # a tool is in use (its points are being clicked) or not

    def __init__(
        self,
        viewer: ImageViewer,
        store: Callable[[], Any],
        reader: Callable[[], str | None] = lambda: None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._store = store
        self._reader = reader
        self.image_id: int | None = None
        self.calibration: Calibration = PIXELS
        self._items: list[Any] = []
        self._pending_items: list[Any] = []
        self._stored: list[Any] = []
        self.kind: str | None = None
        self.pending: list[tuple[float, float]] = []
        self.selected: int | None = None
        viewer.orientationChanged.connect(self.redraw)

    # ------------------------------------------------------------------ image
    def set_image(self, image_id: int | None, calibration: Calibration = PIXELS) -> None:
        """The image shown now and its calibration: loads and draws its measurements."""
        self.cancel()
        self.image_id = image_id
        self.calibration = calibration
        self.selected = None
        self.reload()

    def reload(self) -> None:
        from cxrlt_desktop.library.measurements import image_measurements

        store = self._store()
        self._stored = (
            []
            if store is None or self.image_id is None
            else image_measurements(store, self.image_id)
        )
        self.redraw()
        self.changed.emit()

    def measurements(self) -> list[Any]:
        """The image's stored measurements (``StoredMeasurement``), oldest first."""
        return list(self._stored)

    # ------------------------------------------------------------------ tools
    def start(self, kind: str) -> None:
        """Use a tool: the next clicks on the image are its points."""
        if kind not in N_POINTS:
            raise KeyError(kind)
        self.cancel()
        if self.image_id is None or not self.viewer.has_image():
            self.message.emit("Open an image to measure on it")
            return
        self.kind = kind
        self.viewer.click_tool = self._on_click
        self.toolChanged.emit(True)
        self.message.emit(self._prompt())

    def cancel(self) -> None:
        """Drop the points clicked so far and leave the tool."""
        was = self.kind is not None
        self.kind = None
        self.pending = []
        self.viewer.click_tool = None
        self._clear(self._pending_items)
        if was:
            self.toolChanged.emit(False)

    def delete_selected(self) -> bool:
        """Delete the selected measurement (the last one clicked or drawn)."""
        from cxrlt_desktop.library.measurements import delete_measurement

        store = self._store()
        if self.selected is None or store is None:
            self.message.emit("Click a measurement to select it first")
            return False
        delete_measurement(store, self.selected, reader=self._reader())
        self.selected = None
        self.reload()
        return True

    def _prompt(self) -> str:
        n = N_POINTS[self.kind]
        name = KIND_NAMES[self.kind]
        hints = {
            "angle": ["first arm", "vertex", "second arm"],
            "cobb": ["upper end plate, first", "upper end plate, second"]
            + ["lower end plate, first", "lower end plate, second"],
            "ctr": ["heart, right edge", "heart, left edge", "thorax, right", "thorax, left"],
        }
        hint = hints.get(self.kind, ["first point", "second point"])[len(self.pending)]
        return f"{name}: click point {len(self.pending) + 1} of {n} ({hint}); Esc cancels"

    def _on_click(self, x: float, y: float) -> bool:
        if self.kind is None:
            return False
        sx, sy = self.viewer.to_source(x, y)
        if self.kind == "ctr" and len(self.pending) in (1, 3):
            sy = self.pending[-1][1]  # each width is horizontal in the stored image
        self.pending.append((sx, sy))
        self._draw_pending()
        if len(self.pending) < N_POINTS[self.kind]:
            self.message.emit(self._prompt())
            return True
        kind, points = self.kind, list(self.pending)
        self.cancel()
        self._add(kind, points)
        return True

    def _add(self, kind: str, points: list[tuple[float, float]]) -> None:
        from cxrlt_desktop.library.measurements import add_measurement

        store = self._store()
        if store is None or self.image_id is None:
            return
        try:
            m = add_measurement(
                store, self.image_id, kind, points, self.calibration, reader=self._reader()
            )
        except MeasurementError as exc:
            self.message.emit(f"{KIND_NAMES[kind]} not stored: {exc}")
            return
        self.selected = m.id
        self.message.emit(f"{KIND_NAMES[kind]}: {m.text}")
        self.reload()

    def _edit(self, mid: int, kind: str, points: list[tuple[float, float]]) -> None:
        from cxrlt_desktop.library.measurements import update_measurement

        store = self._store()
        if store is None:
            return
        if kind == "ctr":
            points = [
                points[0],
                (points[1][0], points[0][1]),
                points[2],
                (points[3][0], points[2][1]),
            ]
        self.selected = mid
        try:
            m = update_measurement(store, mid, points, reader=self._reader())
            self.message.emit(f"{KIND_NAMES[kind]}: {m.text}")
        except MeasurementError as exc:
            self.message.emit(f"{KIND_NAMES[kind]} not changed: {exc}")
        self.reload()

    # ------------------------------------------------------------------ drawing
    def _clear(self, items: list[Any]) -> None:
        box = self.viewer.view_box()
        for item in items:
            box.removeItem(item)
        items.clear()

    def _disp(self, p: tuple[float, float]) -> tuple[float, float]:
        return self.viewer.to_display(*p)

    def _draw_pending(self) -> None:
        self._clear(self._pending_items)
        if not self.pending:
            return
        pts = [self._disp(p) for p in self.pending]
        scatter = pg.ScatterPlotItem(
            [p[0] for p in pts],
            [p[1] for p in pts],
            size=9,
            pen=pg.mkPen("w"),
            brush=pg.mkBrush(COLOURS[self.kind]),
        )
        scatter.setZValue(30)
        self.viewer.view_box().addItem(scatter)
        self._pending_items.append(scatter)

    def redraw(self) -> None:
        self._clear(self._items)
        if not self.viewer.has_image():
            return
        box = self.viewer.view_box()
        for m in self._stored:
            colour = SELECTED if m.id == self.selected else COLOURS.get(m.kind, "y")
            pen = pg.mkPen(colour, width=PEN_WIDTH + (m.id == self.selected))
            pts = [self._disp(p) for p in m.points]
            rois = []
            if m.kind == "angle":
                rois.append(pg.PolyLineROI(pts, closed=False, pen=pen, movable=False))
            else:
                for i in range(0, len(pts), 2):
                    rois.append(pg.LineSegmentROI([pts[i], pts[i + 1]], pen=pen, movable=False))
            for roi in rois:
                roi.setZValue(20)
                roi.setAcceptedMouseButtons(pg.QtCore.Qt.MouseButton.LeftButton)
                roi.sigClicked.connect(lambda _r, _ev, mid=m.id: self._select(mid))
                # after the drag's own handling: the edit redraws (removes) this ROI
                roi.sigRegionChangeFinished.connect(
                    lambda _r, m=m, rois=rois: QTimer.singleShot(
                        0, lambda: self._on_roi_moved(m, rois)
                    )
                )
                box.addItem(roi)
                self._items.append(roi)
            # below the last point, ending there: clear of the lines drawn before it
            label = pg.TextItem(
                m.text, color=colour, anchor=(1, -0.4), fill=pg.mkBrush(0, 0, 0, 170)
            )
            label.setPos(*pts[-1])
            label.setZValue(21)
            box.addItem(label)
            self._items.append(label)
        self._draw_pending()

    def _select(self, mid: int) -> None:
        self.selected = mid
        self.redraw()

    @staticmethod
    def roi_points(roi: Any) -> list[tuple[float, float]]:
        """An ROI's handle positions in view (display) coordinates."""
        out = []
        for h in roi.getHandles():
            p: QPointF = roi.mapToParent(h.pos())
            out.append((p.x(), p.y()))
        return out

    def _on_roi_moved(self, m: Any, rois: list[Any]) -> None:
        disp = [p for roi in rois for p in self.roi_points(roi)]
        if len(disp) != len(m.points):
            return
        self._edit(m.id, m.kind, [self.viewer.to_source(*p) for p in disp])


__all__ = ["MeasureLayer"]
