"""Reading tools with real mouse events: measurements drawn on a scanned radiograph and stored,
the prior viewport beside the current image with linked window/level, zoom and pan."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gui_helpers import _mouse, drag
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtWidgets import QApplication

from cxrlt_desktop.ui.display import DisplayPipeline, read_header


def click(view, pos: QPoint) -> None:
    """A real left click (press and release) on a pyqtgraph view."""
    vp = view.viewport()
    b = Qt.MouseButton.LeftButton
    QApplication.sendEvent(vp, _mouse(QEvent.Type.MouseButtonPress, vp, pos, b, b))
    QApplication.sendEvent(
        vp, _mouse(QEvent.Type.MouseButtonRelease, vp, pos, b, Qt.MouseButton.NoButton)
    )


def slow_drag(view, qtbot, start: QPoint, end: QPoint, steps: int = 4) -> None:
    """A left drag in steps 40 ms apart (pyqtgraph drops move events closer than its rate
    limit, as a real mouse never sends them)."""
    vp = view.viewport()
    b = Qt.MouseButton.LeftButton
    QApplication.sendEvent(vp, _mouse(QEvent.Type.MouseButtonPress, vp, start, b, b))
    for i in range(1, steps + 1):
        qtbot.wait(40)
        p = start + (end - start) * i / steps
        QApplication.sendEvent(vp, _mouse(QEvent.Type.MouseMove, vp, p, Qt.MouseButton.NoButton, b))
    qtbot.wait(40)
    QApplication.sendEvent(
        vp, _mouse(QEvent.Type.MouseButtonRelease, vp, end, b, Qt.MouseButton.NoButton)
    )


def widget_pos(viewer, x: float, y: float) -> QPoint:
    """Where the view point (x, y) of the viewer is on its graphics view's viewport."""
    scene = viewer.view_box().mapViewToScene(QPointF(x, y))
    return viewer._graphics.mapFromScene(scene)


def clicked_point(viewer, x: float, y: float) -> tuple[float, float]:
    """The view point a click aimed at (x, y) lands on (screen pixels are coarser than the
    image's): the measurement must be computed from these."""
    p = widget_pos(viewer, x, y)
    v = viewer.view_box().mapSceneToView(viewer._graphics.mapToScene(p))
    return v.x(), v.y()


@pytest.fixture
def scanned_image(store, tmp_path):
    """A 400 x 300 CR with ImagerPixelSpacing 0.2 mm and a magnification factor of 1.25, in
    the library: (image id, path)."""
    from sqlalchemy import select

    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.store.models import Image
    from engine.dicomwrite import write_dicom

    rng = np.random.default_rng(1)
    px = (rng.integers(0, 4000, (300, 400))).astype(np.uint16)
    path = (
        write_dicom(
            tmp_path / "cr" / "a.dcm",
            px,
            pixel_spacing=(0.2, 0.2),
            extra={"EstimatedRadiographicMagnificationFactor": 1.25},
        )
        if (tmp_path / "cr").mkdir() is None
        else None
    )
    for _ in scan(store, [tmp_path / "cr"]):
        pass
    with store.session() as s, s.begin():
        image_id = s.scalar(select(Image.id))
    return image_id, str(path)


@pytest.fixture
def measuring(qtbot, store, scanned_image):
    from cxrlt_desktop.library.measure_geometry import calibration_of
    from cxrlt_desktop.ui.measure_layer import MeasureLayer
    from cxrlt_desktop.ui.viewer import ImageViewer
    from engine.imageio import read_display

    image_id, path = scanned_image
    viewer = ImageViewer()
    viewer.resize(800, 640)
    qtbot.addWidget(viewer)
    viewer.show()
    qtbot.waitExposed(viewer)
    header = read_header(path)
    viewer.set_image(DisplayPipeline.from_display(read_display(path), header))
    layer = MeasureLayer(viewer, lambda: store, lambda: "dr test")
    layer.set_image(image_id, calibration_of(header))
    return viewer, layer, image_id


def flat(points):
    return [c for p in points for c in p]


def _clicks(viewer, points):
    landed = []
    for x, y in points:
        landed.append(clicked_point(viewer, x, y))
        click(viewer._graphics, widget_pos(viewer, x, y))
    return landed


def test_distance_drawn_with_the_mouse_is_magnification_corrected_and_stored(measuring, store):
    from cxrlt_desktop.library.measurements import image_measurements

    viewer, layer, image_id = measuring
    w0 = viewer.window()
    layer.start("distance")
    a, b = _clicks(viewer, [(100, 50), (160, 130)])
    assert viewer.window() == w0  # the clicks were the tool's, not a window change
    [m] = image_measurements(store, image_id)
    assert m.kind == "distance"
    assert flat(m.points) == pytest.approx(flat((a, b)))  # stored in image coordinates
    # 0.2 mm at the detector / 1.25 = 0.16 mm per pixel; the aimed 60 x 80 px is 16 mm
    assert m.value == pytest.approx(math.dist(a, b) * 0.16)
    assert m.value == pytest.approx(16.0, abs=0.5)
    assert "magnification-corrected" in m.unit and "1.25" in m.unit
    # drawn: one line ROI and its label
    assert len(layer._items) == 2
    assert viewer.click_tool is None  # the tool is done after its points


def test_cobb_and_ctr_with_the_mouse_rotated_display(measuring, store):
    from cxrlt_desktop.library.measurements import image_measurements

    viewer, layer, image_id = measuring
    viewer.rotate(1)  # display turned a quarter; points are still stored as the file has them
    layer.start("cobb")
    t1 = math.tan(math.radians(20))
    # in the stored image: plate 1 horizontal, plate 2 at 20 degrees; drawn on the rotated view
    src = [(50, 100), (250, 100), (50, 200), (250, 200 + 200 * t1)]
    landed = _clicks(viewer, [viewer.to_display(*p) for p in src])
    [m] = image_measurements(store, image_id)
    assert m.finding == "Scoliosis"
    assert flat(m.points) == pytest.approx(flat(viewer.to_source(*p) for p in landed), abs=1e-6)
    assert m.value == pytest.approx(20.0, abs=1.0)

    layer.start("ctr")
    src = [(150, 150), (240, 157), (60, 170), (360, 170)]  # heart 90 px, thorax 300 px
    _clicks(viewer, [viewer.to_display(*p) for p in src])
    ctr = image_measurements(store, image_id)[-1]
    assert ctr.kind == "ctr" and ctr.finding == "cardiomegaly"
    # each width held horizontal: the second point takes the first's row
    assert ctr.points[1][1] == ctr.points[0][1] and ctr.points[3][1] == ctr.points[2][1]
    assert ctr.value == pytest.approx(90 / 300, abs=0.02)


def test_escape_cancels_and_delete_removes(measuring, store):
    from cxrlt_desktop.library.measurements import image_measurements

    viewer, layer, image_id = measuring
    layer.start("angle")
    _clicks(viewer, [(100, 100), (150, 150)])
    layer.cancel()
    assert image_measurements(store, image_id) == [] and viewer.click_tool is None
    layer.start("angle")
    _clicks(viewer, [(100, 100), (150, 150), (250, 150)])
    [m] = image_measurements(store, image_id)
    assert m.value == pytest.approx(135.0, abs=1.0)
    assert layer.selected == m.id
    assert layer.delete_selected() is True
    assert image_measurements(store, image_id) == []
    assert layer._items == []


def test_dragging_a_handle_edits_the_measurement(measuring, store, qtbot):
    from cxrlt_desktop.library.measurements import image_measurements

    viewer, layer, image_id = measuring
    layer.start("distance")
    a, b = _clicks(viewer, [(100, 100), (200, 100)])
    before = image_measurements(store, image_id)[0]
    # drag the second end point 50 px down (in image pixels)
    start = widget_pos(viewer, *b)
    end = widget_pos(viewer, b[0], b[1] + 50)
    slow_drag(viewer._graphics, qtbot, start, end)
    qtbot.waitUntil(lambda: image_measurements(store, image_id)[0].version == 2, timeout=3000)
    after = image_measurements(store, image_id)[0]
    assert after.id == before.id
    assert after.points[0] == pytest.approx(before.points[0])
    assert after.points[1][1] == pytest.approx(b[1] + 50, abs=2)
    assert after.value == pytest.approx(math.dist(after.points[0], after.points[1]) * 0.16)


# ------------------------------------------------------------------------- comparison layout
def _viewer(qtbot):
    from cxrlt_desktop.ui.viewer import ImageViewer

    v = ImageViewer()
    v.resize(500, 500)
    qtbot.addWidget(v)
    v.show()
    qtbot.waitExposed(v)
    return v


def test_linked_window_level_zoom_and_pan_move_both(qtbot):
    from cxrlt_desktop.ui.comparison import ViewerLink
    from cxrlt_desktop.ui.display import Preset

    a, b = _viewer(qtbot), _viewer(qtbot)
    rows, cols = np.mgrid[0:200, 0:300]
    # current: values 0..3000, default window 1500/3000; prior (another detector, half the
    # size): values 0..12000, default window 6000/12000
    a.set_image(
        DisplayPipeline.from_values(
            (rows * 10 + cols).astype(np.float32), presets=[Preset("Header", 1500, 3000)]
        )
    )
    b.set_image(
        DisplayPipeline.from_values(
            (rows[::2, ::2] * 40 + cols[::2, ::2] * 4).astype(np.float32),
            presets=[Preset("Header", 6000, 12000)],
        )
    )
    link = ViewerLink(a, b)
    # a real window/level drag on the current image
    gv = a._graphics
    centre = QPoint(gv.width() // 2, gv.height() // 2)
    drag(gv, centre, centre + QPoint(50, -30))
    c, w = a.window()
    assert (c, w) != (1500, 3000)
    # the prior moved by the same amount relative to its default window: x4 its span
    assert b.window() == pytest.approx((6000 + (c - 1500) * 4, w * 4))
    # the other way too
    b.set_window(7000, 2000)
    assert a.window() == pytest.approx((1500 + 1000 / 4, 500))
    # zoom and pan: the same part of each image (b is half the size)
    a.zoom(2.0)
    a.view_box().translateBy(x=30, y=20)
    ra, rb = a.view_rect(), b.view_rect()
    assert (rb.x(), rb.y(), rb.width(), rb.height()) == pytest.approx(
        (ra.x() / 2, ra.y() / 2, ra.width() / 2, ra.height() / 2), abs=1e-6
    )
    # unlinked: each on its own
    link.set_enabled(False)
    before = b.window()
    a.set_window(100, 50)
    assert b.window() == before


def test_a_link_leaves_each_default_window_its_own(qtbot):
    """Both images at their defaults: the link does not turn the prior's own default (here a
    window of another function; in a file, possibly a VOI LUT) into a copy of the current's,
    and a reset of the current window resets the prior's too."""
    from cxrlt_desktop.ui.comparison import ViewerLink
    from cxrlt_desktop.ui.display import Preset

    a, b = _viewer(qtbot), _viewer(qtbot)
    values = np.arange(200 * 300, dtype=np.float32).reshape(200, 300) / 10
    a.set_image(DisplayPipeline.from_values(values, presets=[Preset("Header", 3000, 6000)]))
    prior_default = Preset("Lung", 2000, 1000, "SIGMOID", origin="header")
    b.set_image(DisplayPipeline.from_values(values, presets=[prior_default]))
    link = ViewerLink(a, b)
    shown = b._image_item.image.copy()
    link._window(a, b, *a.window())  # what opening the prior does
    assert b.at_default_window() and b._current == prior_default
    np.testing.assert_array_equal(b._image_item.image, shown)
    a.set_window(2500, 3000)
    assert not b.at_default_window()
    a.reset_window()
    assert b.at_default_window() and b._current == prior_default


def test_prior_viewport_shows_the_most_recent_earlier_study(qtbot, store, tmp_path):
    from pydicom.uid import generate_uid

    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.ui.comparison import PriorViewport
    from engine.dicomwrite import write_dicom

    uids = {}
    for name, pid, date, view in (
        ("cur", "P1", "20230515", "PA"),
        ("old", "P1", "20190304", "PA"),
        ("mid", "P1", "20210110", "AP"),
        ("other", "P2", "20230514", "PA"),
    ):
        uids[name] = generate_uid()
        (tmp_path / name).mkdir()
        write_dicom(
            tmp_path / name / "a.dcm",
            np.random.default_rng(len(uids)).integers(0, 4000, (256, 320)).astype(np.uint16),
            patient_id=pid,
            study_uid=uids[name],
            study_date=date,
            view_position=view,
        )
    for _ in scan(store, [tmp_path / n for n in uids]):
        pass
    vp = PriorViewport(lambda: store)
    qtbot.addWidget(vp)
    vp.show()
    with qtbot.waitSignal(vp.priorShown, timeout=5000) as sig:
        vp.set_study(uids["cur"], "PA")
    assert sig.args == [uids["mid"]]
    assert vp.header.text() == "prior: 2021-01-10 AP, 2 years 4 months earlier"
    assert vp.viewer.image_shape() == (256, 320)
    assert [vp.choice.itemData(i) for i in range(vp.choice.count())] == [uids["mid"], uids["old"]]
    # the reader picks the older one from the list
    with qtbot.waitSignal(vp.priorShown, timeout=5000):
        vp.choice.setCurrentIndex(1)
        vp.choice.activated.emit(1)
    assert vp.header.text() == "prior: 2019-03-04 PA, 4 years 2 months earlier"
    # the other patient has no prior
    vp.set_study(uids["other"], "PA")
    assert vp.prior is None and not vp.viewer.has_image()


# ------------------------------------------------------------------------- hanging settings
def test_settings_hanging_tab(qtbot):
    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.ui.settings_dialog import SettingsDialog

    s = Settings(reviewer="Dr Test")
    s.hanging = {"layout": "comparison", "docks": ["priors_dock"]}
    dlg = SettingsDialog(s)
    qtbot.addWidget(dlg)
    tab = dlg.hanging_tab
    assert tab.layout_box.currentData() == "comparison"
    assert [n for n, b in tab.docks.items() if b.isChecked()] == ["priors_dock"]
    tab.layout_box.setCurrentIndex(tab.layout_box.findData("single"))
    tab.docks["tags_dock"].setChecked(True)
    tab.docks["priors_dock"].setChecked(False)
    assert Settings.from_dict(dlg._document()).hanging == {
        "layout": "single",
        "docks": ["tags_dock"],
    }
    # back to the defaults: nothing written
    tab.docks["tags_dock"].setChecked(False)
    tab.docks["problems_dock"].setChecked(True)
    assert "hanging" not in dlg._document()


# ------------------------------------------------------------------------- new findings
def test_prior_column_marks_findings_new_since_the_prior(qtbot):
    from cxrlt_desktop.ui.findings_panel import FindingsPanel, results_from_prediction
    from cxrlt_desktop.ui.reading_tools import FindingsExtras
    from engine.classes import ALL_CLASSES

    panel = FindingsPanel()
    qtbot.addWidget(panel)
    extras = FindingsExtras(panel)
    n = len(ALL_CLASSES)
    thresholds = dict.fromkeys(ALL_CLASSES, 0.5)
    now = np.full(n, 0.1)
    now[ALL_CLASSES.index("cardiomegaly")] = 0.8  # above now
    now[ALL_CLASSES.index("pleural effusion")] = 0.7  # above now, and on the prior too
    panel.set_results(results_from_prediction(now, thresholds, None, False))
    prior = np.full(n, 0.1)
    prior[ALL_CLASSES.index("cardiomegaly")] = 0.3  # below then: new
    prior[ALL_CLASSES.index("pleural effusion")] = 0.6
    prior[ALL_CLASSES.index("Scoliosis")] = np.nan
    extras.set_prior(prior, "prior 2019-03-04")
    assert extras.new_findings() == ["cardiomegaly"]
    lab = extras.prior_labels["cardiomegaly"]
    assert lab.text() == "0.30" and "new" in lab.toolTip()
    assert extras.prior_labels["Scoliosis"].text() == "-"
    extras.set_prior(None)
    assert extras.new_findings() == [] and extras.prior_labels["cardiomegaly"].isHidden()
