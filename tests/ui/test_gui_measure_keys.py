"""Keyboard editing of measurements in the main window, with real key events: Tab selects a
point, the arrows move it by 1 image pixel (Shift: 10) as the reader sees the image, each move
is stored as an edit with its value computed again; Esc ends the editing (the arrows change the
image again), Backspace deletes the measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import Qt

# 0.2 mm at the detector / magnification factor 1.25: 0.16 mm per image pixel
MM_PER_PX = 0.2 / 1.25


@pytest.fixture
def measured_cr(store, tmp_path):
    """A 400 x 300 CR (ImagerPixelSpacing 0.2 mm, magnification factor 1.25) in the library
    with one distance from (100, 100) to (129, 140): (image id, study uid, measurement id)."""
    from sqlalchemy import select

    from cxrlt_desktop.library.measure_geometry import calibration_of
    from cxrlt_desktop.library.measurements import add_measurement
    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.store.models import Image, Study
    from cxrlt_desktop.ui.display import read_header
    from engine.dicomwrite import write_dicom

    (tmp_path / "cr").mkdir()
    px = np.random.default_rng(1).integers(0, 4000, (300, 400)).astype(np.uint16)
    path = write_dicom(
        tmp_path / "cr" / "a.dcm",
        px,
        pixel_spacing=(0.2, 0.2),
        extra={"EstimatedRadiographicMagnificationFactor": 1.25},
    )
    for _ in scan(store, [tmp_path / "cr"]):
        pass
    with store.session() as s, s.begin():
        image_id = s.scalar(select(Image.id))
        uid = s.scalar(select(Study.study_uid))
    cal = calibration_of(read_header(str(path)))
    m = add_measurement(store, image_id, "distance", [(100.0, 100.0), (129.0, 140.0)], cal)
    return image_id, uid, m.id


def _stored(store, image_id):
    from cxrlt_desktop.library.measurements import image_measurements

    return image_measurements(store, image_id)


def test_arrows_move_the_selected_point_and_the_length_follows(
    qtbot, make_window, store, measured_cr
):
    from cxrlt_desktop.settings import Settings

    image_id, uid, mid = measured_cr
    window = make_window(Settings(reviewer="Dr Keys"))
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)  # window shortcuts need it
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        assert window.select_study(uid)
    layer, actions = window.reading.measure, window.actions_by_id
    assert [m.id for m in layer.measurements()] == [mid]
    # no point selected: the arrows are the navigation's
    qtbot.waitUntil(lambda: not actions["nudge_right"].isEnabled(), timeout=5000)
    assert actions["next_image"].isEnabled() and actions["next_finding"].isEnabled()

    # Tab, Tab: the distance's second point; the arrows now move it
    qtbot.keyClick(window, Qt.Key.Key_Tab)
    qtbot.keyClick(window, Qt.Key.Key_Tab)
    assert (layer.selected, layer.selected_point) == (mid, 1)
    assert actions["nudge_right"].isEnabled() and not actions["next_image"].isEnabled()
    assert not actions["next_finding"].isEnabled()

    qtbot.keyClick(window, Qt.Key.Key_Right)
    [m] = _stored(store, image_id)
    assert m.points == ((100.0, 100.0), (130.0, 140.0)) and m.version == 2
    assert m.value == pytest.approx(50 * MM_PER_PX)  # a 30-40-50 triangle: 8.0 mm
    assert m.text == "8.0 mm (magnification-corrected, x1.25)"
    assert layer.measurements()[0].text == m.text  # shown as stored

    qtbot.keyClick(window, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    [m] = _stored(store, image_id)
    assert m.points == ((100.0, 100.0), (130.0, 150.0)) and m.version == 3
    assert m.value == pytest.approx(math.hypot(30, 50) * MM_PER_PX)

    # Shift+Tab: back to the first point; Left moves it one pixel left
    qtbot.keyClick(window, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert layer.selected_point == 0
    qtbot.keyClick(window, Qt.Key.Key_Left)
    [m] = _stored(store, image_id)
    assert m.points == ((99.0, 100.0), (130.0, 150.0))
    assert m.value == pytest.approx(math.hypot(31, 50) * MM_PER_PX)

    # Ctrl+R turns the display a quarter clockwise: the image's top is on the screen's right,
    # so Right moves the point up in the stored image (one row less)
    qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert layer.selected_point == 0
    qtbot.keyClick(window, Qt.Key.Key_Right)
    [m] = _stored(store, image_id)
    assert m.points == ((99.0, 99.0), (130.0, 150.0))
    assert m.value == pytest.approx(math.hypot(31, 51) * MM_PER_PX)

    # Esc ends the editing: the arrows navigate again and move nothing
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert layer.selected_point is None
    assert actions["next_image"].isEnabled() and not actions["nudge_right"].isEnabled()
    qtbot.keyClick(window, Qt.Key.Key_Right)
    assert _stored(store, image_id)[0].points == ((99.0, 99.0), (130.0, 150.0))

    # Tab selects it again; Backspace deletes the measurement
    qtbot.keyClick(window, Qt.Key.Key_Tab)
    assert layer.selected == mid
    qtbot.keyClick(window, Qt.Key.Key_Backspace)
    assert _stored(store, image_id) == [] and layer.measurements() == []
    assert layer.selected_point is None and actions["next_image"].isEnabled()
    assert not actions["next_measure_point"].isEnabled()  # nothing left: Tab moves the focus


def test_escape_cancels_a_drawing_in_progress(qtbot, make_window, store, measured_cr):
    from test_gui_reading_tools import click, widget_pos

    from cxrlt_desktop.settings import Settings

    image_id, uid, mid = measured_cr
    window = make_window(Settings(reviewer="Dr Keys"))
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        assert window.select_study(uid)
    layer = window.reading.measure
    qtbot.keyClick(window, Qt.Key.Key_M)
    assert layer.kind == "distance"
    click(window.viewer._graphics, widget_pos(window.viewer, 200, 200))
    assert len(layer.pending) == 1
    assert not window.actions_by_id["next_measure_point"].isEnabled()  # Tab: not while drawing
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert layer.kind is None and layer.pending == []
    assert [m.id for m in _stored(store, image_id)] == [mid]


def test_a_point_stops_at_the_image_edge(qtbot, store, measured_cr):
    """Shift+Up from row 5 of a point: 5 pixels up, to the image's top edge (row 0), not off it;
    once there, no edit is stored."""
    from test_gui_reading_tools import _viewer

    from cxrlt_desktop.library.measure_geometry import PIXELS
    from cxrlt_desktop.library.measurements import add_measurement
    from cxrlt_desktop.ui.display import DisplayPipeline
    from cxrlt_desktop.ui.measure_layer import MeasureLayer

    image_id, _uid, _first = measured_cr
    viewer = _viewer(qtbot)
    viewer.set_image(DisplayPipeline.from_values(np.zeros((300, 400), np.float32)))
    m = add_measurement(store, image_id, "distance", [(50.0, 5.0), (50.0, 45.0)], PIXELS)
    layer = MeasureLayer(viewer, lambda: store)
    layer.set_image(image_id, PIXELS)
    assert layer.step_point(-1) and (layer.selected, layer.selected_point) == (m.id, 1)
    assert layer.step_point(-1) and (layer.selected, layer.selected_point) == (m.id, 0)
    assert layer.nudge(0, -10)
    got = next(x for x in _stored(store, image_id) if x.id == m.id)
    assert got.points == ((50.0, 0.0), (50.0, 45.0)) and got.text == "45 px"
    assert not layer.nudge(0, -1)
    assert next(x for x in _stored(store, image_id) if x.id == m.id).version == 2
