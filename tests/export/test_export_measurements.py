"""Measurements in the exports (SQLite and PostgreSQL): the labels export's measurement columns,
and the review SR's TID 1410 planar ROI groups whose SCOORD points are the drawn points in the
image's coordinates, referencing the image, with the values in UCUM units; dciodvfy passes.

The SR is read back with plain pydicom, not highdicom."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pydicom
import pytest
from dciodvfy import verify

from cxrlt_desktop.export import build_review_sr, export_feedback, sr_bytes
from cxrlt_desktop.library.measure_geometry import Calibration
from cxrlt_desktop.library.measurements import add_measurement
from cxrlt_desktop.library.reviews import set_verdict

SALT = b"s" * 32
DETECTOR = Calibration((0.2, 0.2), "detector")
COBB_LINES = [(10.5, 20.0), (110.5, 20.0), (10.0, 120.0), (110.0, 120.0 + 100 * math.tan(0.5))]
CTR_POINTS = [(80.0, 150.0), (170.0, 150.0), (30.0, 160.0), (230.0, 160.0)]


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def measured(store, library):
    ids = [library.image_ids[p] for p in library.paths]
    set_verdict(store, ids[0], "Scoliosis", "present", reviewer="Dr Reader")
    d = add_measurement(store, ids[0], "distance", [(0.0, 0.0), (30.0, 40.0)], DETECTOR)
    c = add_measurement(store, ids[0], "cobb", COBB_LINES, DETECTOR)
    t = add_measurement(store, ids[0], "ctr", CTR_POINTS, DETECTOR)
    return ids, (d, c, t)


def _content(ds):
    for item in ds.ContentSequence:
        yield item
        yield from _content(item) if "ContentSequence" in item else ()


def _roi_groups(ds) -> list[dict]:
    """Each measurement group with image coordinates: its SCOORDs (the group's region, or
    those the measurement is inferred from), the referenced image, the measurement's name,
    value and unit, and its finding type."""
    out = []
    for item in _content(ds):
        if item.get("ValueType") != "CONTAINER" or "ContentSequence" not in item:
            continue
        children = item.ContentSequence
        nums = [c for c in children if c.ValueType == "NUM"]
        if not nums:
            continue
        num = nums[0]
        scoords = [c for c in children if c.ValueType == "SCOORD"] + [
            c for c in num.get("ContentSequence", []) if c.ValueType == "SCOORD"
        ]
        if not scoords:
            continue
        mv = num.MeasuredValueSequence[0]
        finding = [
            c.ConceptCodeSequence[0].CodeMeaning
            for c in children
            if c.ConceptNameCodeSequence[0].CodeValue == "121071"  # Finding
        ]
        points, graphics, images = [], [], set()
        for sc in scoords:
            data = [float(v) for v in sc.GraphicData]
            points += list(zip(data[0::2], data[1::2], strict=True))
            graphics.append(sc.GraphicType)
            images.add(sc.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        out.append(
            {
                "graphics": graphics,
                "points": points,
                "images": images,
                "name": num.ConceptNameCodeSequence[0].CodeMeaning,
                "value": float(mv.NumericValue),
                "unit": mv.MeasurementUnitsCodeSequence[0].CodeValue,
                "finding": finding[0] if finding else None,
            }
        )
    return out


def test_review_sr_measurements_have_the_drawn_points_and_pass_dciodvfy(
    store, measured, library, tmp_path
):
    ids, (d, c, t) = measured
    doc = build_review_sr(store, ids[0], None, include_phi=True, salt=SALT)
    ds = pydicom.dcmread(io.BytesIO(sr_bytes(doc)))
    groups = _roi_groups(ds)
    assert [g["name"] for g in groups] == ["Length", "Cobb angle", "Cardiothoracic ratio"]
    sop = library.sop_uids[0]
    assert all(g["images"] == {sop} for g in groups)  # each SCOORD references the image
    # SCOORD points are the drawn points in image coordinates (column, row)
    assert groups[0]["graphics"] == ["POLYLINE"]
    assert [x for p in groups[0]["points"] for x in p] == pytest.approx([0.0, 0.0, 30.0, 40.0])
    assert groups[1]["graphics"] == ["POLYLINE", "POLYLINE"]  # the two end plates
    flat = [x for p in groups[1]["points"] for x in p]
    assert flat == pytest.approx([x for p in COBB_LINES for x in p])
    flat = [x for p in groups[2]["points"] for x in p]
    assert flat == pytest.approx([x for p in CTR_POINTS for x in p])
    # values, by hand: 50 px * 0.2 mm = 10 mm (at the detector); Cobb = 0.5 rad; CTR 90 / 200
    assert groups[0]["value"] == pytest.approx(10.0) and groups[0]["unit"] == "mm"
    assert groups[1]["value"] == pytest.approx(math.degrees(0.5), abs=1e-3)
    assert groups[1]["unit"] == "deg" and groups[1]["finding"] == "Scoliosis"
    assert groups[2]["value"] == pytest.approx(0.45) and groups[2]["unit"] == "1"
    assert groups[2]["finding"] == "Cardiomegaly"
    # the tracking identifier says what the length is measured at
    idents = [
        i.TextValue
        for i in _content(ds)
        if i.get("ValueType") == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == "112039"
    ]
    assert "Measurement: Distance (mm at detector)" in idents

    result = verify(sr_bytes(doc), tmp_path)
    assert result.iod == "ComprehensiveSR", result.output
    assert result.errors == [], result.output
    # allowed, as for every review SR: the private scheme, and no Study ID (a DICOMDIR hint)
    unexpected = [
        w
        for w in result.warnings
        if "Unrecognized defined term <99CXRLT>" not in w
        and "needed to build DICOMDIR - Study ID" not in w
    ]
    assert unexpected == [], result.output


def test_review_sr_of_a_deidentified_export_references_the_exported_uid(store, measured):
    ids, _ = measured
    doc = build_review_sr(store, ids[0], None, include_phi=False, salt=SALT)
    groups = _roi_groups(pydicom.dcmread(io.BytesIO(sr_bytes(doc))))
    assert {i for g in groups for i in g["images"]} == {
        doc.CurrentRequestedProcedureEvidenceSequence[0]
        .ReferencedSeriesSequence[0]
        .ReferencedSOPSequence[0]
        .ReferencedSOPInstanceUID
    }


def test_labels_export_has_the_measurement_columns(store, measured, tmp_path):
    ids, _ = measured
    export_feedback(store, tmp_path / "out", include_phi=True)
    with open(tmp_path / "out" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    [row] = rows
    assert row["Scoliosis"] == "1"
    assert row["Cobb_angle_deg"] == f"{math.degrees(0.5):.1f}"
    assert row["Cardiothoracic_ratio"] == "0.450"
    assert row["Measurements"].startswith("distance 10.0 mm at detector; Cobb 28.6")


def test_an_image_measured_but_not_reviewed_is_exported_with_empty_labels(store, library, tmp_path):
    """A CTR drawn on an image nobody gave a verdict: its row has every class cell empty ("not
    reviewed") and the measurement cells; training reads the row as unknown for every class."""
    from cxrlt_desktop.export.feedback import LABEL_COLUMNS, MEASUREMENT_COLUMNS
    from engine.classes import ALL_CLASSES
    from training.data import read_labels_csv

    reviewed, measured = (library.image_ids[p] for p in library.paths[:2])
    set_verdict(store, reviewed, "Hernia", "present", reviewer="Dr Reader")
    add_measurement(store, measured, "ctr", CTR_POINTS, DETECTOR)
    out = tmp_path / "out"
    res = export_feedback(store, out, include_phi=True)
    assert (res.n_images, res.n_measured_only, res.n_positive) == (1, 1, 1)
    with open(out / "labels.csv", newline="") as fh:
        rows = {r["ImageID"]: r for r in csv.DictReader(fh)}
    assert len(rows) == 2
    [only] = [r for r in rows.values() if r["Hernia"] == ""]
    assert list(only) == list(LABEL_COLUMNS)
    assert all(only[c] == "" for c in ALL_CLASSES)
    # heart 170 - 80 = 90 px over thorax 230 - 30 = 200 px
    assert only["Cardiothoracic_ratio"] == "0.450" and only["Cobb_angle_deg"] == ""
    assert only["Measurements"].startswith("CTR 0.45")
    [other] = [r for r in rows.values() if r is not only]
    assert other["Hernia"] == "1" and all(other[c] == "" for c in MEASUREMENT_COLUMNS)
    assert "1 reviewed images and 1 measured, not reviewed" in (out / "README.txt").read_text()

    table = read_labels_csv(out / "labels.csv")
    assert table.problems == []  # the measurement columns are known, not "ignored"
    i = table.image_ids.index(only["ImageID"])
    assert np.isnan(table.labels[i]).all()
    j = table.image_ids.index(other["ImageID"])
    assert table.labels[j][ALL_CLASSES.index("Hernia")] == 1.0
