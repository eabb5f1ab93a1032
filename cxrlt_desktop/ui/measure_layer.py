"""Measurements drawn on the viewer: the tools (distance, angle, Cobb angle, CTR), the stored
measurements of the image as pyqtgraph ROIs that can be dragged (an edit) and deleted.

State lives in the store (:mod:`cxrlt_desktop.library.measurements`); this layer draws what is
stored and turns clicks and drags into store calls. Points are kept in the stored image's
coordinates and mapped through the viewer's rotation and flip (:meth:`ImageViewer.to_source`).

Tools: choose one (View menu, keys), then click its points on the image: distance 2, angle 3
(the vertex second), Cobb angle 4 (two points along each end plate), CTR 4 (the heart's right
and left edges, then the thorax's: each pair is held horizontal). Esc cancels the points so far.
Clicking a measurement selects it; Delete measurement removes it.

Keyboard editing: :meth:`MeasureLayer.step_point` selects the next (or previous) point of the
image's measurements (Tab, Shift+Tab), :meth:`MeasureLayer.nudge` moves it by display pixels
(the arrows, as the reader sees the image: the rotation and flip are undone) and stores the
edit the way a drag does; :meth:`MeasureLayer.leave_point` ends it. :meth:`MeasureLayer.refresh`
re-reads the image's measurements when another workstation changed them.
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
    moved,
)
from cxrlt_desktop.ui.viewer import ImageViewer

# Saturated colours that stay visible on bright bone and dark lung alike; the selected
# measurement is drawn thicker, in yellow.
COLOURS = {"distance": "#ff9100", "angle": "#00b0ff", "cobb": "#00e676", "ctr": "#ff4081"}
SELECTED = "#ffea00"
PEN_WIDTH = 3


class MeasureLayer(QObject):
    """Signals: ``changed()`` after a measurement was added, edited or deleted, or the image's
    set was loaded; ``message(str)`` what the reader should do next, or what went wrong;
    ``toolChanged(bool)`` a tool is in use (its points are being clicked) or not;
    ``pointChanged(bool)`` a point is selected for keyboard editing or not."""

    changed = Signal()
    message = Signal(str)
    toolChanged = Signal(bool)
    pointChanged = Signal(bool)

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
        self.selected_point: int | None = None  # index into the selected measurement's points
        viewer.orientationChanged.connect(self.redraw)

    # ------------------------------------------------------------------ image
    def set_image(self, image_id: int | None, calibration: Calibration = PIXELS) -> None:
        """The image shown now and its calibration: loads and draws its measurements."""
        self.cancel()
        self.image_id = image_id
        self.calibration = calibration
        self.selected = None
        self._set_point(None)
        self.reload()

    def reload(self) -> None:
        self._stored = self._read()
        self._keep_selection()
        self.redraw()
        self.changed.emit()

    def refresh(self) -> bool:
        """Re-read the image's measurements (another workstation may have changed them) and
        redraw when they differ; not while a handle is being dragged (the drag's edit re-reads
        them when it ends). True when something changed."""
        if self.dragging():
            return False
        stored = self._read()
        if stored == self._stored:
            return False
        self._stored = stored
        self._keep_selection()
        self.redraw()
        self.changed.emit()
        return True

    def _read(self) -> list[Any]:
        from cxrlt_desktop.library.measurements import image_measurements

        store = self._store()
        if store is None or self.image_id is None:
            return []
        return image_measurements(store, self.image_id)

    def _keep_selection(self) -> None:
        """Drop a selection whose measurement (or point) is gone."""
        m = self._by_id(self.selected)
        if m is None:
            self.selected = None
        if m is None or (self.selected_point or 0) >= len(m.points):
            self._set_point(None)

    def _by_id(self, mid: int | None) -> Any | None:
        return next((m for m in self._stored if m.id == mid), None)

    def dragging(self) -> bool:
        """A measurement or one of its handles is being dragged with the mouse."""
        for item in self._items:
            if getattr(item, "isMoving", False):
                return True
            if any(h.isMoving for h in getattr(item, "getHandles", list)()):
                return True
        return False

    def measurements(self) -> list[Any]:
        """The image's stored measurements (``StoredMeasurement``), oldest first."""
        return list(self._stored)

    # ------------------------------------------------------------------ tools
    def start(self, kind: str) -> None:
        """Use a tool: the next clicks on the image are its points."""
        if kind not in N_POINTS:
            raise KeyError(kind)
        self.cancel()
        self.leave_point()
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
        self._set_point(None)
        self.reload()
        return True

    # ------------------------------------------------------------------ keyboard editing
    def _set_point(self, index: int | None) -> None:
        was = self.selected_point is not None
        self.selected_point = index
        if was != (index is not None):
            self.pointChanged.emit(index is not None)

    def step_point(self, step: int) -> bool:
        """Select the next (``step`` 1) or previous (-1) point of the image's measurements,
        oldest measurement first, wrapping around; from a measurement selected by a click, its
        first (last) point. False when there is none or a tool is in use."""
        order = [(m.id, i) for m in self._stored for i in range(len(m.points))]
        if not order or self.kind is not None:
            return False
        if self.selected_point is not None and (self.selected, self.selected_point) in order:
            pos = (order.index((self.selected, self.selected_point)) + step) % len(order)
        elif self._by_id(self.selected) is not None:
            ids = [mid for mid, _ in order]
            pos = (
                ids.index(self.selected)
                if step > 0
                else len(ids) - 1 - ids[::-1].index(self.selected)
            )
        else:
            pos = 0 if step > 0 else len(order) - 1
        self.selected = order[pos][0]
        self._set_point(order[pos][1])
        self.redraw()
        m = self._by_id(self.selected)
        self.message.emit(
            f"{KIND_NAMES[m.kind]} {m.text}, point {self.selected_point + 1} of {len(m.points)}:"
            " arrows move it (Shift: 10 px), Del deletes, Esc ends"
        )
        return True

    def leave_point(self) -> None:
        """End keyboard editing (the measurement stays selected)."""
        if self.selected_point is not None:
            self._set_point(None)
            self.redraw()

    def nudge(self, dx: int, dy: int) -> bool:
        """Move the selected point by (dx, dy) pixels as displayed (right and down positive):
        the same number of image pixels, in the direction the reader sees. Stored like a drag."""
        m = self._by_id(self.selected)
        if m is None or self.selected_point is None or not self.viewer.has_image():
            self.message.emit("Select a measurement point first (Tab)")
            return False
        x, y = m.points[self.selected_point]
        vx, vy = self.viewer.to_display(x, y)
        rows, cols = self.viewer.image_shape()  # as displayed: the point stays on the image
        tx, ty = min(max(vx + dx, 0.0), float(cols)), min(max(vy + dy, 0.0), float(rows))
        sx, sy = self.viewer.to_source(tx, ty)
        # quarter turns and flips map a pixel step onto a pixel step (rounding noise dropped)
        step = (round(sx - x, 6), round(sy - y, 6))
        if step == (0, 0):
            self.message.emit(f"{KIND_NAMES[m.kind]}: the point is at the image's edge")
            return False
        try:
            points = moved(m.kind, m.points, self.selected_point, *step)
        except MeasurementError as exc:
            self.message.emit(f"{KIND_NAMES[m.kind]} not changed: {exc}")
            return False
        self._edit(m.id, m.kind, points)
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
        if mid != self.selected:
            self._set_point(None)
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
            if m.id == self.selected and self.selected_point is not None:
                x, y = pts[self.selected_point]
                mark = pg.ScatterPlotItem(
                    [x], [y], size=13, symbol="s", pen=pg.mkPen(SELECTED, width=2), brush=None
                )
                mark.setZValue(22)
                box.addItem(mark)
                self._items.append(mark)
        self._draw_pending()

    def _select(self, mid: int) -> None:
        if mid != self.selected:
            self._set_point(None)
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
