"""Live measurements: another reader (a store of its own on the same database, PostgreSQL:
LISTEN/NOTIFY, SQLite: PRAGMA data_version) adds, edits and deletes a measurement on the image
an open window shows; the window shows each change without a restart and without a refresh
called by the test, keeping (and then dropping) the point selected for keyboard editing."""

from __future__ import annotations

import pytest
from gui_helpers import shared_library
from PySide6.QtCore import Qt
from sqlalchemy import select

from cxrlt_desktop.library.measure_geometry import PIXELS
from cxrlt_desktop.library.measurements import (
    add_measurement,
    delete_measurement,
    update_measurement,
)
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.models import Study

WAIT_MS = 20_000  # an upper bound for a failing test, not a timing claim


@pytest.fixture(params=["sqlite", "postgresql"])
def library_url(request, tmp_path):
    """A library with one phantom study, on each dialect."""
    return shared_library(request, tmp_path, 1)


@pytest.fixture
def reader_window(qtbot, tmp_path, library_url):
    """(window of "dr A" over a store of its own, showing the study's image; image id)."""
    from cxrlt_desktop.settings import Settings
    from cxrlt_desktop.ui.app import create_main_window

    store = open_store(library_url)
    window = create_main_window(
        store,
        Settings(reviewer="dr A"),
        settings_path=tmp_path / "a.toml",
        first_start_dialog=False,
    )
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)  # window shortcuts need it
    with store.session() as s, s.begin():
        uid = s.scalar(select(Study.study_uid))
    with qtbot.waitSignal(window.imageDisplayed, timeout=WAIT_MS) as shown:
        assert window.select_study(uid)
    yield window, shown.args[0]
    window.close()
    store.close()


def test_another_readers_measurements_appear_change_and_go(qtbot, library_url, reader_window):
    window, image_id = reader_window
    layer = window.reading.measure
    assert layer.measurements() == []
    other = open_store(library_url)  # dr B's workstation
    try:
        # added elsewhere: drawn here (its line and its label), and listed by the finding
        m = add_measurement(
            other, image_id, "distance", [(10, 10), (40, 50)], PIXELS, reader="dr B"
        )
        qtbot.waitUntil(lambda: [x.id for x in layer.measurements()] == [m.id], timeout=WAIT_MS)
        assert layer.measurements()[0].text == "50 px"  # a 30-40-50 triangle
        assert len(layer._items) == 2
        # dr A selects its second point for keyboard editing
        qtbot.keyClick(window, Qt.Key.Key_Tab)
        qtbot.keyClick(window, Qt.Key.Key_Tab)
        assert (layer.selected, layer.selected_point) == (m.id, 1)

        # edited elsewhere: the new points and length here, the selection kept
        update_measurement(other, m.id, [(10, 10), (70, 90)], reader="dr B")
        qtbot.waitUntil(lambda: layer.measurements()[0].text == "100 px", timeout=WAIT_MS)
        assert layer.measurements()[0].points == ((10.0, 10.0), (70.0, 90.0))
        assert (layer.selected, layer.selected_point) == (m.id, 1)
        assert not window.actions_by_id["next_image"].isEnabled()  # the arrows still edit

        # deleted elsewhere: gone here, and so is the keyboard editing of it
        assert delete_measurement(other, m.id, reader="dr B")
        qtbot.waitUntil(lambda: layer.measurements() == [], timeout=WAIT_MS)
        assert layer._items == []
        assert layer.selected is None and layer.selected_point is None
        assert window.actions_by_id["next_image"].isEnabled()
    finally:
        other.close()
