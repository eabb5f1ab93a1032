"""The viewer shows an image under a patient only if its file is still the one the scan filed
there: a file swapped for another patient's radiograph after the scan is refused with the
reason, in the image panel and the Problems list. Real window, real loader, real scan and
scoring, the real RG1 radiograph of pydicom-data as the other patient's image."""

from __future__ import annotations

import shutil
from pathlib import Path

from cxrlt_desktop.library.identity import CHANGED_SINCE_SCAN
from cxrlt_desktop.ui.store_access import study_images


def _unopened_row(window) -> int:
    model = window.worklist_model
    rows = [r for r in range(model.rowCount()) if model.study_uid(r) != window.current_study_uid()]
    assert rows
    return rows[-1]


def test_the_viewer_refuses_a_file_swapped_for_another_patients_radiograph(
    qtbot, make_scored_window, store, rg1_uncr
):
    window = make_scored_window(3)
    row = _unopened_row(window)
    first = study_images(store, window.worklist_model.study_uid(row))[0]
    assert not window.image_loader.cached(first.image_id)
    shutil.copyfile(rg1_uncr, first.path)  # patient 9RG1's radiograph under this patient's file
    problems = []
    window.view.problemFound.connect(problems.append)
    window.tags_dock.show()  # the tag browser reads headers only while it is open
    with qtbot.waitSignal(window.image_loader.failed, timeout=60_000) as failed:
        window.select_row(row)
    assert window.current_image().image_id == first.image_id
    image_id, error = failed.args
    assert image_id == first.image_id
    assert error.startswith(f"{first.path}: {CHANGED_SINCE_SCAN} (size ")
    assert "another PatientID" in error and "another SOPInstanceUID" in error
    assert not window.viewer.has_image()
    assert [(p.path, p.reason, p.phase) for p in problems] == [(first.path, error, "view")]
    assert (first.path, "view", error) in window.problems_dock.rows()
    # The tag browser does not show the other patient's header either.
    tags = window.tags_dock.browser
    assert tags.message.text().startswith(f"{Path(first.path).name}: {CHANGED_SINCE_SCAN} (size ")
    assert tags.tree.topLevelItemCount() == 0
    assert tags.value_of("PatientID") is None


def test_an_unchanged_file_is_shown(qtbot, make_scored_window, store):
    window = make_scored_window(2)
    row = _unopened_row(window)
    first = study_images(store, window.worklist_model.study_uid(row))[0]
    with qtbot.waitSignal(window.imageDisplayed, timeout=60_000) as shown:
        window.select_row(row)
    assert shown.args == [first.image_id] and window.viewer.has_image()
