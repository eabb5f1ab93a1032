"""The reading tools in the main window: C puts the prior beside the current image (linked, the
prior's scores in a "prior" column), the layout is remembered; B and clicks measure a Cobb angle
shown next to Scoliosis; the DICOM tag dock is hidden at start and T opens it."""

from __future__ import annotations

import shutil

import pytest
from gui_helpers import refile
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from test_gui_reading_tools import click, widget_pos

RG1_STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"
PRIOR = "1.2.826.0.1.3680043.8.498.88001"


@pytest.fixture
def library(store, tmp_path, rg1_uncr, predictor):
    from cxrlt_desktop.library import scan, score_library

    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copy(rg1_uncr, folder / "rg1.dcm")
    refile(rg1_uncr, folder / "old" / "old.dcm", PRIOR, "20010101")
    for _ in scan(store, [folder]):
        pass
    for _ in score_library(store, predictor):
        pass
    return store


def test_comparison_layout_measurements_and_docks(qtbot, make_window, library, tmp_path):
    from cxrlt_desktop.library.measurements import image_measurements
    from cxrlt_desktop.settings import Settings

    window = make_window(Settings(reviewer="Dr Test"))
    window.resize(1500, 900)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)  # window shortcuts need it
    reading = window.reading
    # hanging defaults: single layout, the tag dock hidden
    assert not reading.comparison()
    assert not window.tags_dock.isVisible()
    QTest.keyClick(window, Qt.Key.Key_T)
    assert window.tags_dock.isVisible()
    QTest.keyClick(window, Qt.Key.Key_T)
    assert not window.tags_dock.isVisible()

    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        window.select_study(RG1_STUDY)
    with qtbot.waitSignal(reading.prior.priorShown, timeout=30_000):
        QTest.keyClick(window, Qt.Key.Key_C)
    assert reading.comparison() and reading.prior.isVisible()
    assert reading.prior.header.text().startswith("prior: 2001-01-01")
    assert "earlier" in reading.prior.header.text()
    # the prior's scores beside the current ones (the same pixels: the same scores)
    current = window.current_image().probs
    shown = {n: lab.text() for n, lab in reading.extras.prior_labels.items() if lab.isVisible()}
    assert shown["cardiomegaly"] == f"{current[2]:.2f}"
    assert shown["Scoliosis"] == "-"  # zero-shot, not configured in these models: no score
    assert reading.extras.new_findings() == []  # same image: nothing new
    # linked window: a change on the current image moves the prior's
    viewer = window.viewer
    c, w = viewer.window()
    viewer.set_window(c + 100, w * 0.5)
    pc, pw = reading.prior.viewer.window()
    d0, v0 = reading.prior.viewer.default_window()
    c0, w0 = viewer.default_window()
    assert (pc, pw) == pytest.approx((d0 + (c + 100 - c0) * v0 / w0, w * 0.5 * v0 / w0))
    # remembered
    assert Settings.load(tmp_path / "settings.toml").hanging["layout"] == "comparison"

    # B: a Cobb angle by four clicks on the current image
    QTest.keyClick(window, Qt.Key.Key_B)
    assert reading.measure.kind == "cobb"
    for x, y in ((200, 300), (500, 300), (200, 700), (500, 800)):
        click(viewer._graphics, widget_pos(viewer, x, y))
    image_id = window.current_image().image_id
    [m] = image_measurements(window.store, image_id)
    assert m.kind == "cobb" and m.finding == "Scoliosis"
    assert m.value == pytest.approx(18.43, abs=1.0)  # atan(100 / 300)
    label = reading.extras.measure_labels["Scoliosis"]
    assert label.isVisible() and label.text().startswith("Cobb 18")

    # Esc cancels a tool in use (and only then is it a shortcut: the note keeps its Esc)
    assert not window.actions_by_id["cancel_measure"].isEnabled()
    QTest.keyClick(window, Qt.Key.Key_M)
    assert reading.measure.kind == "distance"
    assert window.actions_by_id["cancel_measure"].isEnabled()
    click(viewer._graphics, widget_pos(viewer, 300, 300))
    QTest.keyClick(window, Qt.Key.Key_Escape)
    assert reading.measure.kind is None and viewer.click_tool is None
    assert len(image_measurements(window.store, image_id)) == 1
    assert not window.actions_by_id["cancel_measure"].isEnabled()

    # C again: single layout, remembered; a new window starts as it was left
    QTest.keyClick(window, Qt.Key.Key_C)
    assert not reading.comparison()
    assert Settings.load(tmp_path / "settings.toml").hanging["layout"] == "single"
    s = Settings.load(tmp_path / "settings.toml")
    s.hanging = {"layout": "comparison", "docks": ["tags_dock"]}
    second = make_window(s)
    second.show()
    assert second.reading.comparison() and second.tags_dock.isVisible()
    assert not second.problems_dock.isVisible()
