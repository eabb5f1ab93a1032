"""The image viewer on a real radiograph (RG1, MONOCHROME1) and on hand-made arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from gui_helpers import drag, move, wheel
from PySide6.QtCore import QPoint

from engine.imageio import apply_window, read_display


@dataclass
class _Display:
    """A DisplayImage-shaped record for hand-made arrays."""

    modality: np.ndarray
    window: tuple[float, float]
    presets: list
    invert: bool
    pixels: np.ndarray | None = None


@pytest.fixture
def viewer(qtbot):
    from cxrlt_desktop.ui.viewer import ImageViewer

    v = ImageViewer()
    v.resize(600, 700)
    qtbot.addWidget(v)
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.fixture
def ramp():
    # 40 x 30 ramp: value = 100 * row + col, so every pixel's value names its position.
    rows, cols = np.mgrid[0:40, 0:30]
    return (100.0 * rows + cols).astype(np.float32)


def test_rg1_default_window_matches_the_input_layer(viewer, rg1_uncr):
    d = read_display(rg1_uncr)
    viewer.set_image(d)
    np.testing.assert_array_equal(viewer.displayed_pixels(), d.pixels)
    names = [p.name for p in viewer.presets()]
    assert names[0] == "Header"
    assert {"Lung", "Mediastinum", "Bone"} <= set(names)
    # Header presets of the file are offered too (RG1 has a window and the reader's extras).
    assert any(n not in ("Header", "Lung", "Mediastinum", "Bone") for n in names)


def test_window_level_drag_changes_window_and_pixels(viewer, qtbot, ramp):
    viewer.set_image(_Display(ramp, (2000.0, 4000.0), [], False))
    before = viewer.displayed_pixels().copy()
    c0, w0 = viewer.window()
    gv = viewer._graphics
    center = QPoint(gv.width() // 2, gv.height() // 2)
    with qtbot.waitSignal(viewer.windowChanged, timeout=2000):
        drag(gv, center, center + QPoint(60, -40))
    qtbot.waitUntil(lambda: not viewer._render_timer.isActive(), timeout=2000)
    c1, w1 = viewer.window()
    span = float(ramp.max() - ramp.min())
    scale = span / max(gv.width(), 100)
    # Right widens the window, up raises the level, in proportion to the drag.
    assert w1 == pytest.approx(w0 + 60 * scale, rel=1e-6)
    assert c1 == pytest.approx(c0 + 40 * scale, rel=1e-6)
    after = viewer.displayed_pixels()
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, apply_window(ramp, c1, w1, False))
    viewer.reset_window()
    qtbot.waitUntil(lambda: not viewer._render_timer.isActive(), timeout=2000)
    np.testing.assert_array_equal(viewer.displayed_pixels(), before)


def test_presets_invert_rotate_flip(viewer, qtbot, ramp):
    viewer.set_image(_Display(ramp, (2000.0, 4000.0), [("Soft", 1000.0, 500.0)], False))
    base = viewer.displayed_pixels().copy()
    viewer.apply_preset("soft")
    qtbot.waitUntil(lambda: not viewer._render_timer.isActive(), timeout=2000)
    assert viewer.window() == (1000.0, 500.0)
    np.testing.assert_array_equal(viewer.displayed_pixels(), apply_window(ramp, 1000, 500, False))
    lung = next(p for p in viewer.presets() if p.name == "Lung")
    lo, hi = np.percentile(ramp, (2.0, 75.0))
    assert lung.center == pytest.approx((lo + hi) / 2)
    assert lung.width == pytest.approx(hi - lo)
    viewer.reset_window()
    viewer.set_inverted(True)
    qtbot.waitUntil(lambda: not viewer._render_timer.isActive(), timeout=2000)
    np.testing.assert_array_equal(viewer.displayed_pixels(), 255 - base)
    viewer.set_inverted(False)
    viewer.rotate(1)
    np.testing.assert_array_equal(viewer.displayed_pixels(), np.rot90(base, -1))
    # Display (column 0, row 0) of the clockwise-rotated image is the source's bottom-left.
    assert viewer.value_at(0, 0) == ramp[39, 0]
    assert viewer.source_coords(0, 0) == (0, 39)
    viewer.flip_horizontal()
    np.testing.assert_array_equal(viewer.displayed_pixels(), np.rot90(base, -1)[:, ::-1])
    for x, y in ((0, 0), (5, 7), (39, 29)):
        sx, sy = viewer.source_coords(x, y)
        assert viewer.value_at(x, y) == ramp[sy, sx]
    viewer.reset_orientation()
    np.testing.assert_array_equal(viewer.displayed_pixels(), base)


def test_pixel_readout_names_the_value_under_the_mouse(viewer, qtbot, ramp):
    viewer.set_image(_Display(ramp, (2000.0, 4000.0), [], False))
    vb = viewer._view
    # Centre of pixel (col 12, row 25), mapped to the widget.
    scene = vb.mapViewToScene(
        vb.mapToView(vb.mapFromView(__import__("pyqtgraph").Point(12.5, 25.5)))
    )
    pos = viewer._graphics.mapFromScene(scene)
    with qtbot.waitSignal(viewer.pixelReadout, timeout=2000) as blocker:
        move(viewer._graphics, pos)
    assert blocker.args[0] == "x 12, y 25: 2512"


def test_zoom_fit_and_one_to_one(viewer, qtbot, ramp):
    viewer.set_image(_Display(ramp, (2000.0, 4000.0), [], False))
    fit = viewer.view_rect()
    assert fit.contains(0.5, 0.5) and fit.contains(29.5, 39.5)
    gv = viewer._graphics
    wheel(gv, QPoint(gv.width() // 2, gv.height() // 2), steps=3)
    zoomed = viewer.view_rect()
    assert zoomed.width() < fit.width() and zoomed.height() < fit.height()
    viewer.one_to_one()
    assert viewer.view_rect().width() == pytest.approx(viewer._view.width(), rel=0.02)
    viewer.fit()
    assert viewer.view_rect().contains(29.5, 39.5)


def test_overlay_hidden_by_default_toggles_with_opacity(viewer, qtbot, ramp):
    att = np.zeros((4, 3), np.float32)
    att[1, 2] = 1.0
    viewer.set_image(_Display(ramp, (2000.0, 4000.0), [], False), attention=att)
    assert not viewer.overlay_enabled() and not viewer.overlay_visible()
    with qtbot.waitSignal(viewer.overlayToggled, timeout=1000) as blocker:
        viewer.toggle_overlay()
    assert blocker.args == [True]
    assert viewer.overlay_visible()
    item = viewer._overlay_item
    # Stretched over the whole image.
    assert item.mapRectToParent(item.boundingRect()).width() == pytest.approx(30)
    assert item.mapRectToParent(item.boundingRect()).height() == pytest.approx(40)
    viewer.set_overlay_opacity(0.8)
    assert item.opacity() == pytest.approx(0.8)
    viewer.set_attention(None)
    assert not viewer.overlay_visible()
    viewer.set_attention(att)
    assert viewer.overlay_visible()
    viewer.toggle_overlay()
    assert not viewer.overlay_visible()
