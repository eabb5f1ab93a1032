"""Series navigation: Ctrl+Right / Ctrl+Left jump to the first image of the next / previous series."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine.dicomwrite import write_dicom


def _two_series_study(folder):
    """One study, two series of two images each, series 1 before series 2 in reading order."""
    rng = np.random.default_rng(0)
    for s in (1, 2):
        for i in (1, 2):
            write_dicom(
                folder / f"s{s}i{i}.dcm",
                rng.integers(0, 4096, size=(320, 256)).astype(np.uint16),
                bits_stored=12,
                patient_id="NAV1",
                study_uid="1.2.826.0.1.3680043.8.498.1",
                series_uid=f"1.2.826.0.1.3680043.8.498.1.{s}",
                sop_uid=f"1.2.826.0.1.3680043.8.498.1.{s}.{i}",
                extra={"SeriesNumber": s, "InstanceNumber": i},
            )


def test_series_keys_jump_between_series(qtbot, make_window, model_settings, tmp_path):
    from cxrlt_desktop.ui.store_access import study_images

    folder = tmp_path / "nav"
    folder.mkdir()
    _two_series_study(folder)
    window = make_window(model_settings)
    window.show()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(window.jobFinished, timeout=600_000):
        window.open_paths([folder])
    uid = "1.2.826.0.1.3680043.8.498.1"
    images = study_images(window.store, uid)
    series = [e.series_uid for e in images]
    assert series == sorted(series) and len(set(series)) == 2

    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        window.select_study(uid)
    assert window.current_image().image_id == images[0].image_id
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        QTest.keyClick(window.worklist, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    assert window.current_image().image_id == images[2].image_id  # first of series 2
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        QTest.keyClick(window.worklist, Qt.Key.Key_Right)
    assert window.current_image().image_id == images[3].image_id
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        QTest.keyClick(window.worklist, Qt.Key.Key_Left, Qt.KeyboardModifier.ControlModifier)
    assert window.current_image().image_id == images[0].image_id  # first of series 1
    # At the last series, Ctrl+Right has nowhere to go: the image stays.
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        QTest.keyClick(window.worklist, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(window.worklist, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    assert window.current_image().image_id == images[2].image_id
