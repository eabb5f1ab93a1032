"""A reader's work lands on the image it was meant for, at the keyboard, under filters.

Each test reproduces a way a verdict or note used to be lost or to land on another patient's
image: the open study leaving the Unreviewed filter, a note typed then PgDown, the note field
keeping the keyboard after Enter. Real store, real scan and scoring, real widgets and keys.
"""

from __future__ import annotations

import pytest
from gui_helpers import independent_study_scores, stored_verdicts
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from cxrlt_desktop.library.reviews import image_note


@pytest.fixture
def scored_window(make_scored_window):
    window = make_scored_window(5)
    assert window.worklist_model.rowCount() >= 3
    return window


def _one_image_row(window) -> int:
    model = window.worklist_model
    rows = [r for r in range(model.rowCount()) if model.row_data(r).n_images == 1]
    assert rows, "the phantom folder has a one-image study"
    return rows[0]


def _settle(qtbot, window) -> None:
    """Let the queued worklist refresh after a verdict run."""
    qtbot.wait(50)
    window.worklist_model.refresh()
    qtbot.wait(20)


def test_open_study_stays_under_the_unreviewed_filter(qtbot, scored_window, store):
    window = scored_window
    n = window.worklist_model.rowCount()
    window.worklist_panel.status_filter.setCurrentIndex(
        window.worklist_panel.status_filter.findData("unreviewed")
    )
    qtbot.waitUntil(lambda: window.worklist_model.rowCount() == n)
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        window.select_row(_one_image_row(window))
    uid = window.current_study_uid()
    entry = window.current_image()
    assert len(window.study_image_entries()) == 1  # one verdict makes the study reviewed
    window.worklist.setFocus()
    window.findings.select_finding("Pneumothorax")
    QTest.keyClick(window.worklist, Qt.Key.Key_P)
    _settle(qtbot, window)
    # The study is reviewed now, but it stays listed and open while the reader is on it ...
    assert window.current_study_uid() == uid
    assert window.worklist_model.study_uid(window.worklist.currentIndex().row()) == uid
    # ... so the correction lands on the same image, not on another patient's.
    QTest.keyClick(window.worklist, Qt.Key.Key_A)
    _settle(qtbot, window)
    assert window.current_image().image_id == entry.image_id
    assert stored_verdicts(store, entry.image_id) == {"Pneumothorax": "absent"}
    from sqlalchemy import func, select

    from cxrlt_desktop.store.models import Review

    with store.session() as s, s.begin():  # no other image got a verdict
        assert s.scalar(select(func.count(Review.id))) == 1
    # Once the reader moves on, the reviewed study leaves the filtered list.
    QTest.keyClick(window.worklist, Qt.Key.Key_PageDown)
    qtbot.waitUntil(lambda: window.current_study_uid() != uid)
    _settle(qtbot, window)
    assert window.worklist_model.row_for_uid(uid) == -1
    assert window.worklist_model.rowCount() == n - 1


def test_note_typed_then_next_study_is_saved_on_its_image(qtbot, scored_window, store):
    window = scored_window
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        window.select_row(0)
    first = window.current_image().image_id
    window.actions_by_id["note"].trigger()
    assert window.findings.note_edit.hasFocus()
    QTest.keyClicks(window.findings.note_edit, "left apical pneumothorax, call ward")
    # PgDown while the note still has the keyboard (no Enter, no focus change)
    window.actions_by_id["next_study"].trigger()
    qtbot.waitUntil(lambda: window.current_image().image_id != first)
    assert image_note(store, first) == "left apical pneumothorax, call ward"
    assert window.findings.note_edit.text() == ""  # the next image's (empty) note
    assert image_note(store, window.current_image().image_id) is None  # not copied there
    window.actions_by_id["previous_study"].trigger()
    qtbot.waitUntil(lambda: window.current_image().image_id == first)
    assert window.findings.note_edit.text() == "left apical pneumothorax, call ward"


def test_enter_in_the_note_gives_the_keys_back_and_escape_undoes(qtbot, scored_window, store):
    window = scored_window
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        window.select_row(0)
    image = window.current_image().image_id
    window.worklist.setFocus()
    QTest.keyClick(window.worklist, Qt.Key.Key_N)
    assert window.findings.note_edit.hasFocus()
    QTest.keyClicks(window.findings.note_edit, "ett ok")
    QTest.keyClick(window.findings.note_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.findings.note_edit.hasFocus())
    assert window.worklist.hasFocus()  # back where the reader was
    assert image_note(store, image) == "ett ok"
    window.findings.select_finding("Pneumothorax")
    QTest.keyClick(window.focusWidget(), Qt.Key.Key_P)
    assert stored_verdicts(store, image) == {"Pneumothorax": "present"}
    assert window.findings.note_edit.text() == "ett ok" and image_note(store, image) == "ett ok"
    # Escape: the unsaved edit is undone and nothing is stored
    QTest.keyClick(window.worklist, Qt.Key.Key_N)
    QTest.keyClicks(window.findings.note_edit, " -- typo")
    QTest.keyClick(window.findings.note_edit, Qt.Key.Key_Escape)
    assert not window.findings.note_edit.hasFocus()
    assert window.findings.note_edit.text() == "ett ok"
    window.actions_by_id["next_study"].trigger()
    qtbot.wait(50)
    assert image_note(store, image) == "ett ok"


def test_one_export_at_a_time_and_closing_cancels_it(qtbot, scored_window, tmp_path):
    window = scored_window
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        window.select_row(0)
    window.findings.agree_button.click()
    out = tmp_path / "export"
    job = window.export_to(out, copy_images=True, sr=True)
    assert job is not None and window.export_running()
    assert not window.export_action.isEnabled()
    assert window.export_to(tmp_path / "second") is None  # refused while one runs
    window.close()  # returns at once: the export is cancelled, the window closes after it
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert not window.export_running()
    assert not (tmp_path / "second").exists()
    # cancelled exports remove what they wrote; one that finished first is complete
    assert not out.exists() or (out / "README.txt").is_file()


def test_new_thresholds_re_sort_the_worklist(qtbot, scored_window, store):
    """Priority, flags and the finding filter follow thresholds changed in Settings."""

    window = scored_window
    new = {"Mass": 0.001, "Pneumothorax": 0.002}
    dlg = window.open_settings()
    for name, value in new.items():
        dlg._threshold_spins[name].setValue(value)
    with qtbot.waitSignal(window.retriaged, timeout=120_000) as done:
        dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    assert done.args == [""]
    want = independent_study_scores(store, new)
    shown = {r.study_uid: r.rare_score for r in window.worklist_model.rows()}
    assert shown.keys() == want.keys()
    for uid, score in want.items():
        assert shown[uid] == pytest.approx(score, rel=1e-5)
    assert max(shown.values()) > 10  # p / 0.001: the new thresholds are in force


def test_a_re_sort_cut_short_is_finished_at_the_next_start(
    qtbot, scored_window, make_window, model_settings, store
):
    from cxrlt_desktop.library.triage import mark_retriage_pending, retriage_pending

    scored_window.close()
    mark_retriage_pending(store)  # as a close in the middle of a re-sort leaves it
    make_window(model_settings)  # the re-sort runs in the background from the start
    qtbot.waitUntil(lambda: not retriage_pending(store), timeout=60_000)
