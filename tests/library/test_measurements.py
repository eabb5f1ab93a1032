"""Measurement geometry against hand-computed values, calibration labels from real headers, and
stored measurements on both dialects (add, edit, delete, survive a reopen, audit trail)."""

from __future__ import annotations

import math

import pytest
from pydicom.dataset import Dataset

from cxrlt_desktop.library.measure_geometry import (
    PIXELS,
    Calibration,
    MeasurementError,
    calibration_of,
    measure,
)


def _ds(**kw) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


# a 3-4-5 triangle: 30 columns right, 40 rows down
A, B = (10.0, 20.0), (40.0, 60.0)


def test_distance_with_pixel_spacing_is_mm():
    cal = calibration_of(_ds(PixelSpacing=[0.2, 0.1], ImagerPixelSpacing=[0.5, 0.5]))
    r = measure("distance", [A, B], cal)
    # rows 0.2 mm, columns 0.1 mm: sqrt((30*0.1)^2 + (40*0.2)^2) = sqrt(9 + 64)
    assert r.value == pytest.approx(math.sqrt(73))
    assert r.unit == "mm" and r.text == "8.5 mm"


def test_distance_with_only_imager_pixel_spacing_is_at_detector():
    cal = calibration_of(_ds(ImagerPixelSpacing=[0.1, 0.1]))
    r = measure("distance", [A, B], cal)
    assert r.value == pytest.approx(5.0)  # 50 px * 0.1 mm
    assert r.unit == "mm at detector" and r.text == "5.0 mm at detector"


def test_distance_corrected_by_magnification_factor():
    cal = calibration_of(
        _ds(ImagerPixelSpacing=[0.1, 0.1], EstimatedRadiographicMagnificationFactor=1.25)
    )
    r = measure("distance", [A, B], cal)
    assert r.value == pytest.approx(4.0)  # 5.0 mm at the detector / 1.25
    assert "magnification-corrected" in r.unit and "1.25" in r.unit
    # PixelSpacing is already in the patient: the factor is not applied again
    cal2 = calibration_of(
        _ds(PixelSpacing=[0.1, 0.1], EstimatedRadiographicMagnificationFactor=1.25)
    )
    assert measure("distance", [A, B], cal2).value == pytest.approx(5.0)


def test_distance_without_spacing_is_pixels():
    for header in (_ds(), {"PixelSpacing": None}, {"ImagerPixelSpacing": ["0", "0.1"]}, None):
        cal = calibration_of(header)
        assert cal == PIXELS
        r = measure("distance", [A, B], cal)
        assert r.value == pytest.approx(50.0) and r.text == "50 px"


def test_stored_header_mapping_gives_the_same_calibration():
    # the library's image.meta is a keyword -> JSON value mapping
    assert calibration_of({"ImagerPixelSpacing": [0.15, 0.15]}) == Calibration(
        (0.15, 0.15), "detector"
    )


def test_angle_of_a_right_angle_and_of_known_slopes():
    assert measure("angle", [(10, 0), (0, 0), (0, 10)]).value == pytest.approx(90.0)
    # arms along slopes 0 and 1: 45 degrees
    assert measure("angle", [(10, 0), (0, 0), (7, 7)]).value == pytest.approx(45.0)
    # non-square pixels: the geometric angle, not the pixel one. Arm (10, 10) px with columns
    # 0.1 mm and rows 0.2 mm is (1, 2) mm: atan2(2, 1) = 63.43 degrees from the x arm.
    cal = Calibration((0.2, 0.1), "patient")
    assert measure("angle", [(10, 0), (0, 0), (10, 10)], cal).value == pytest.approx(
        math.degrees(math.atan2(2, 1))
    )


def test_cobb_angle_from_two_lines_of_known_slopes():
    # upper end plate rising at slope tan(10 deg), lower falling at slope tan(-25 deg) (image
    # rows grow downwards; the sign does not matter): Cobb = 35 degrees
    t1, t2 = math.tan(math.radians(10)), math.tan(math.radians(-25))
    line1 = [(100.0, 200.0), (300.0, 200.0 + 200 * t1)]
    line2 = [(100.0, 800.0), (300.0, 800.0 + 200 * t2)]
    r = measure("cobb", line1 + line2)
    assert r.value == pytest.approx(35.0)
    assert r.text == "Cobb 35.0\u00b0" and r.unit == "deg"
    # drawn in the other direction, the same angle; parallel plates 0
    assert measure("cobb", line1[::-1] + line2).value == pytest.approx(35.0)
    assert measure("cobb", line1 + [(0, 500), (200, 500 + 200 * t1)]).value == pytest.approx(0)
    # beyond 90 degrees between the drawn directions: the acute angle
    assert measure("cobb", [(0, 0), (10, 0), (0, 0), (-10, 10)]).value == pytest.approx(45.0)


def test_ctr_from_two_known_widths():
    heart = [(300.0, 500.0), (420.0, 505.0)]  # 120 px wide (the rows do not count)
    thorax = [(150.0, 450.0), (550.0, 450.0)]  # 400 px wide
    r = measure("ctr", heart + thorax, Calibration((0.1, 0.1), "detector"))
    assert r.value == pytest.approx(0.3)
    assert r.extra == pytest.approx({"heart": 12.0, "thorax": 40.0})
    assert r.text == "CTR 0.30 (heart 12.0 / thorax 40.0 mm at detector)"


def test_bad_points_are_refused():
    with pytest.raises(MeasurementError, match="takes 2 points"):
        measure("distance", [A])
    with pytest.raises(MeasurementError, match="no length"):
        measure("cobb", [A, A, A, B])
    with pytest.raises(MeasurementError, match="thorax width is zero"):
        measure("ctr", [A, B, (5, 5), (5, 9)])
    with pytest.raises(MeasurementError, match="unknown"):
        measure("area", [A, B])


# ---------------------------------------------------------------------------------- the store
@pytest.fixture
def scanned(any_store, tmp_path, write_study):
    from cxrlt_desktop.library.scanning import scan

    write_study(tmp_path / "s1", 2, patient_id="P1", study_date="20240301")
    for _ in scan(any_store, [tmp_path / "s1"]):
        pass
    from sqlalchemy import select

    from cxrlt_desktop.store.models import Image

    with any_store.session() as s, s.begin():
        ids = sorted(s.scalars(select(Image.id)))
    return any_store, ids


def test_measurements_are_stored_edited_deleted_and_survive_reopen(scanned):
    from cxrlt_desktop.library.measurements import (
        add_measurement,
        delete_measurement,
        image_calibration,
        image_measurements,
        measurements_of,
        update_measurement,
    )
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import AuditEvent

    store, (im1, im2) = scanned
    # engine.dicomwrite writes ImagerPixelSpacing 0.15: the library's own calibration
    cal = image_calibration(store, im1)
    assert cal == Calibration((0.15, 0.15), "detector")
    d = add_measurement(store, im1, "distance", [(0, 0), (30, 40)], cal, reader="dr a")
    assert d.value == pytest.approx(7.5) and d.text == "7.5 mm at detector"
    c = add_measurement(store, im1, "cobb", [(0, 0), (10, 0), (0, 50), (10, 60)], cal)
    assert c.finding == "Scoliosis" and c.value == pytest.approx(45.0)
    t = add_measurement(store, im2, "ctr", [(10, 5), (40, 5), (0, 9), (100, 9)], cal)
    assert t.finding == "cardiomegaly" and t.value == pytest.approx(0.3)

    moved = update_measurement(store, d.id, [(0, 0), (60, 80)], reader="dr b")
    assert moved.value == pytest.approx(15.0) and moved.version == 2
    assert moved.calibration == cal  # the edit keeps the measurement's calibration

    reopened = open_store(store.url)  # a restart: a new engine on the same database
    try:
        got = image_measurements(reopened, im1)
        assert [(m.kind, m.points, round(m.value, 6)) for m in got] == [
            ("distance", ((0.0, 0.0), (60.0, 80.0)), 15.0),
            ("cobb", ((0.0, 0.0), (10.0, 0.0), (0.0, 50.0), (10.0, 60.0)), 45.0),
        ]
        assert got[0].reader == "dr b"
        assert set(measurements_of(reopened, [im1, im2])) == {im1, im2}
        assert delete_measurement(reopened, c.id, reader="dr a") is True
        assert delete_measurement(reopened, c.id) is False
        assert [m.kind for m in image_measurements(reopened, im1)] == ["distance"]
        from sqlalchemy import select

        with reopened.session() as s, s.begin():
            actions = list(
                s.scalars(
                    select(AuditEvent.action)
                    .where(AuditEvent.action.like("measurement%"))
                    .order_by(AuditEvent.id)
                )
            )
        assert actions == [
            "measurement_add",
            "measurement_add",
            "measurement_add",
            "measurement_edit",
            "measurement_delete",
        ]
    finally:
        reopened.close()


def test_bad_measurements_store_nothing(scanned):
    from cxrlt_desktop.library.measurements import add_measurement, image_measurements

    store, (im1, _) = scanned
    with pytest.raises(MeasurementError, match="no image"):
        add_measurement(store, 10_000, "distance", [(0, 0), (1, 1)])
    with pytest.raises(MeasurementError):
        add_measurement(store, im1, "angle", [(0, 0), (0, 0), (1, 1)])
    assert image_measurements(store, im1) == []


def test_a_keyboard_move_of_one_point():
    from cxrlt_desktop.library.measure_geometry import moved

    # a distance: only the moved point changes
    assert moved("distance", [(100, 100), (129, 140)], 1, 1, 0) == [(100, 100), (130, 140)]
    # a CTR width stays horizontal: a move down of the heart's left edge takes its right edge
    # along; a move sideways does not
    ctr_points = [(80, 150), (170, 150), (30, 160), (230, 160)]
    assert moved("ctr", ctr_points, 1, 0, 10) == [(80, 160), (170, 160), (30, 160), (230, 160)]
    assert moved("ctr", ctr_points, 2, -10, 0) == [(80, 150), (170, 150), (20, 160), (230, 160)]
    with pytest.raises(MeasurementError, match="no point 3"):
        moved("distance", [(0, 0), (1, 1)], 2, 1, 0)


def test_measurement_changes_reach_another_stores_change_feed(scanned):
    """Add, edit and delete through one store are heard by a change feed on another: on
    PostgreSQL as "measurement" changes of the image's study, on SQLite as "all"."""
    import queue

    from sqlalchemy import select

    from cxrlt_desktop.library.measurements import (
        add_measurement,
        delete_measurement,
        update_measurement,
    )
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Image, Series
    from cxrlt_desktop.store.notify import Change, ChangeFeed

    writer, (im1, _) = scanned
    with writer.session() as s, s.begin():
        study = s.scalar(
            select(Series.study_id).join(Image, Image.series_id == Series.id).where(Image.id == im1)
        )
    listener = open_store(writer.url)
    got: queue.Queue = queue.Queue()
    feed = ChangeFeed(listener).start(got.put)
    try:
        assert feed.connected.wait(20)
        expected = Change("all") if writer.is_sqlite else Change("measurement", frozenset({study}))
        m = add_measurement(writer, im1, "distance", [(0, 0), (30, 40)])
        assert got.get(timeout=20) == expected
        update_measurement(writer, m.id, [(0, 0), (60, 80)])
        assert got.get(timeout=20) == expected
        delete_measurement(writer, m.id)
        assert got.get(timeout=20) == expected
    finally:
        feed.stop()
        listener.close()
