"""The display pipeline in the window: a FOR PROCESSING image with windows, a VOI LUT, padding,
a shutter and an overlay plane, scanned, scored and opened like any other; its presets, shutter
and overlay plane on screen, the FOR PROCESSING marks and the thresholds line."""

from __future__ import annotations

import os

import numpy as np
from pydicom.dataset import Dataset
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from engine.dicomwrite import make_dataset

SIZE = 320
STUDY = "1.2.826.0.1.3680043.8.498.77"


def _overlay_plane() -> np.ndarray:
    """A box outline 60 px in from the edges and a diagonal: easy to find on screen."""
    plane = np.zeros((SIZE, SIZE), dtype=np.uint8)
    plane[60, 60:260] = plane[259, 60:260] = 1
    plane[60:260, 60] = plane[60:260, 259] = 1
    idx = np.arange(80, 240)
    plane[idx, idx] = 1
    return plane


def _write_display_file(path) -> dict:
    """A 320 x 320 chest-like image exercising every display step; returns what was written."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    lungs = 1200 * np.exp(-(((xx - 100) / 60.0) ** 2 + ((yy - 170) / 110.0) ** 2))
    lungs += 1200 * np.exp(-(((xx - 220) / 60.0) ** 2 + ((yy - 170) / 110.0) ** 2))
    px = (3000 - lungs + 2 * yy).astype(np.uint16)
    px[:, :12] = 0  # padding strip (outside the detector)
    lut = Dataset()
    lut.add_new(0x00283002, "US", [4096, 0, 12])  # LUT Descriptor
    lut.add_new(0x00283006, "US", [int(v) for v in (np.arange(4096) ** 0.5 * 64).clip(0, 4095)])
    lut.LUTExplanation = "SQRT LUT"
    ds = make_dataset(
        px,
        bits_stored=12,
        patient_id="DISP1",
        study_uid=STUDY,
        extra={
            "PresentationIntentType": "FOR PROCESSING",
            "WindowCenter": [2400, 2000],
            "WindowWidth": [1600, 4000],
            "WindowCenterWidthExplanation": ["NARROW", "WIDE"],
            "VOILUTFunction": "SIGMOID",
            "ShutterShape": "RECTANGULAR",
            "ShutterLeftVerticalEdge": 30,
            "ShutterRightVerticalEdge": 300,
            "ShutterUpperHorizontalEdge": 20,
            "ShutterLowerHorizontalEdge": 310,
            "ShutterPresentationValue": 0x8000,
        },
    )
    ds.VOILUTSequence = [lut]
    ds.add_new(0x00280120, "US", 0)  # Pixel Padding Value
    plane = _overlay_plane()
    for elem, vr, value in (
        (0x60000010, "US", SIZE),
        (0x60000011, "US", SIZE),
        (0x60000040, "CS", "G"),
        (0x60000050, "SS", [1, 1]),
        (0x60000100, "US", 1),
        (0x60000102, "US", 0),
        (0x60003000, "OW", np.packbits(plane.ravel(), bitorder="little").tobytes()),
    ):
        ds.add_new(elem, vr, value)
    ds.save_as(path, enforce_file_format=True)
    shutter = np.ones((SIZE, SIZE), bool)
    shutter[19:310, 29:300] = False  # rows 20..310, columns 30..300 (1-based) are shown
    return {"pixels": px, "plane": plane.astype(bool), "shutter": shutter}


def test_display_pipeline_in_the_window(qtbot, make_window, model_settings, tmp_path):
    folder = tmp_path / "disp"
    folder.mkdir()
    written = _write_display_file(folder / "disp.dcm")
    window = make_window(model_settings)
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(window.jobFinished, timeout=600_000):
        window.open_paths([folder])
    with qtbot.waitSignal(window.imageDisplayed, timeout=30_000):
        window.select_study(STUDY)
    viewer, panel = window.viewer, window.image_panel
    assert window.current_image().probs is not None  # FOR PROCESSING: accepted and scored

    # Presets: the VOI LUT item and both windows, named by the file, first; the default is
    # the VOI LUT.
    names = [panel.preset_box.itemData(i) for i in range(panel.preset_box.count())]
    assert names[:3] == ["SQRT LUT", "NARROW", "WIDE"]
    assert viewer.current_preset().name == "SQRT LUT"
    assert "SIGMOID" not in panel.preset_box.itemText(1) and "sigmoid" in panel.preset_box.itemText(
        1
    )
    shown = viewer.displayed_pixels()
    pad = written["pixels"] == 0
    shutter = written["shutter"]
    assert (shown[shutter] == 128).all()  # Shutter Presentation Value 0x8000 -> grey 128
    assert (shown[pad & ~shutter] == 0).all()  # padding: background
    # The LUT by hand on the shown pixels: sqrt(v) * 64 clipped to 4095, scaled to 0..255.
    lut = (np.arange(4096) ** 0.5 * 64).clip(0, 4095).astype(int)
    expected = np.rint(lut[written["pixels"].astype(int)] * 255.0 / 4095).astype(np.uint8)
    inside = ~shutter & ~pad
    np.testing.assert_array_equal(shown[inside], expected[inside])
    # Graphics (overlay planes) off by default; G shows them, white, exactly the plane's bits.
    plane = written["plane"]
    assert not (shown[plane & inside] == 255).all()
    QTest.keyClick(window, Qt.Key.Key_G)
    qtbot.waitUntil(lambda: not viewer._render_timer.isActive(), timeout=2000)
    with_planes = viewer.displayed_pixels()
    assert panel.planes_box.isChecked()
    assert (with_planes[plane] == 255).all()
    np.testing.assert_array_equal(with_planes[~plane], shown[~plane])
    # W: next preset, the NARROW window with the file's SIGMOID function.
    QTest.keyClick(window, Qt.Key.Key_W)
    qtbot.waitUntil(lambda: not viewer._render_timer.isActive(), timeout=2000)
    assert viewer.current_preset().name == "NARROW"
    assert panel.preset_box.currentData() == "NARROW"
    x = written["pixels"].astype(np.float64)
    sig = np.rint(255.0 / (1 + np.exp(-4 * (x - 2400) / 1600))).astype(np.uint8)
    got = viewer.displayed_pixels()
    np.testing.assert_array_equal(got[inside & ~plane], sig[inside & ~plane])

    # FOR PROCESSING marked: image line, findings panel, worklist; thresholds line.
    info = viewer._info.text()
    assert "FOR PROCESSING" in info and "shutter rectangular" in info and "1 overlay plane" in info
    f = window.findings
    assert f.notice.isVisible()
    assert f.notice.text() == (
        "For processing image: the models were trained on images for presentation"
    )
    assert f.thresholds_line.text().startswith("Thresholds of model set ")
    assert "default" in f.thresholds_line.text()
    model = window.worklist_model
    row = next(r for r in range(model.rowCount()) if model.rows()[r].study_uid == STUDY)
    from cxrlt_desktop.ui.worklist_model import COLUMNS, is_flagged

    # Its findings are above threshold (random models), but a FOR PROCESSING image does not
    # flag the study (flag_for_processing is off).
    assert f.highlighted()
    assert not is_flagged(model.rows()[row])
    images = model.index(row, COLUMNS.index("images"))
    assert "for processing" in model.data(images)
    assert "trained on images for presentation" in model.data(images, Qt.ItemDataRole.ToolTipRole)

    # Settings > Thresholds: "FOR PROCESSING images may raise the rare-finding flag" accepted:
    # the library option changes off the GUI thread and the study is flagged after the refresh.
    import dataclasses
    from types import SimpleNamespace

    on = dataclasses.replace(window.settings, flag_for_processing=True)
    window._on_settings_accepted(SimpleNamespace(result_settings=on, loaded_predictor=None))

    def flagged() -> bool:
        rows = window.worklist_model.rows()
        return any(r.study_uid == STUDY and is_flagged(r) for r in rows)

    qtbot.waitUntil(flagged, timeout=20_000)
    shot = os.environ.get("CXRLT_SCREENSHOT")
    if shot:  # a look at the result: CXRLT_SCREENSHOT=/tmp/x.png
        window.grab().save(shot)
