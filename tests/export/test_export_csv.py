"""labels.csv and disagreements.csv on hand-built cases with known verdicts and probabilities."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cxrlt_desktop.export import (
    DISAGREEMENT_COLUMNS,
    LABEL_COLUMNS,
    ExportError,
    date_shift_days,
    export_feedback,
)
from cxrlt_desktop.library.pseudonym import pseudonym
from cxrlt_desktop.library.reviews import set_verdict
from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS

from .conftest import PHI, SECOND_PATIENT, insert_prediction, probs_with


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on PostgreSQL (``library`` scans into it)."""
    return any_store


def test_labels_csv_hand_built(store, library, tmp_path):
    a, b, c, d = (library.image_ids[p] for p in library.paths)
    set_verdict(store, a, "cardiomegaly", "present", reviewer="Dr One")
    set_verdict(store, a, "Nodule", "absent", reviewer="Dr One")
    set_verdict(store, a, "Pneumothorax", "uncertain", reviewer="Dr One")
    set_verdict(store, a, "Scoliosis", "present", reviewer="Dr One")  # a zero-shot class
    set_verdict(store, d, "Normal", "present", reviewer="Dr Two")
    set_verdict(store, d, "Mass", "absent", reviewer="Dr Two")
    set_verdict(store, d, "Mass", "present", reviewer="Dr Two")  # changed mind: the last wins
    set_verdict(store, c, "Hernia", "present", reviewer="Dr Two")
    set_verdict(store, c, "Hernia", None, reviewer="Dr Two")  # cleared: c is not reviewed
    # b has no verdict at all: not exported

    res = export_feedback(store, tmp_path / "out", shift_dates=False)
    header, rows = read_csv(res.labels_csv)
    assert tuple(header) == LABEL_COLUMNS
    assert header[3:39] == list(ALL_CLASSES) and len(header) == 3 + 36 + 3
    assert header[39:] == ["Cobb_angle_deg", "Cardiothoracic_ratio", "Measurements"]

    exp_a = pseudonym(library.sop_uids[0], kind="image")
    exp_d = pseudonym(library.sop_uids[3], kind="image")
    assert [r["ImageID"] for r in rows] == sorted([exp_a, exp_d])
    by_id = {r["ImageID"]: r for r in rows}
    ra, rd = by_id[exp_a], by_id[exp_d]
    assert ra["PatientID"] == pseudonym(PHI["patient_id"], kind="patient")
    assert rd["PatientID"] == pseudonym(SECOND_PATIENT["patient_id"], kind="patient")
    assert ra["StudyDate_DICOM"] == PHI["study_date"] and rd["StudyDate_DICOM"] == "20221230"
    expected_a = {"cardiomegaly": "1", "Nodule": "0", "Scoliosis": "1"}  # uncertain: empty
    expected_d = {"Normal": "1", "Mass": "1"}
    assert {k: v for k, v in ra.items() if k in ALL_CLASSES and v != ""} == expected_a
    assert {k: v for k, v in rd.items() if k in ALL_CLASSES and v != ""} == expected_d
    assert ra["Pneumothorax"] == ""
    assert (res.n_images, res.n_patients, res.n_positive, res.n_negative, res.n_uncertain) == (
        2,
        2,
        4,
        1,
        1,
    )
    # no prediction anywhere: no disagreement, but the file is there with its header
    header, rows = read_csv(res.disagreements_csv)
    assert tuple(header) == DISAGREEMENT_COLUMNS and rows == []
    assert sorted(p.name for p in res.out_dir.iterdir()) == [
        "README.txt",
        "disagreements.csv",
        "labels.csv",
    ]


def test_disagreements_hand_built(store, library, tmp_path):
    a, b, c, d = (library.image_ids[p] for p in library.paths)
    t = DEFAULT_THRESHOLDS
    models = [
        {"sha256": "11" * 32, "role": "task1-csra", "arch": "convnextv2_atto", "weight": 1.5},
        {"sha256": "22" * 32, "role": "task1-mlp", "arch": "convnextv2_atto", "weight": 1.0},
    ]
    settings = {"mode": "paper", "normal_alpha": 0.5, "prompts_hash": "cafe"}
    pa = probs_with(
        {
            "cardiomegaly": 0.97,  # verdict absent: disagrees by 0.97 - t
            "Nodule": 0.001,  # verdict present: disagrees by t - 0.001
            "atelectasis": 0.99,  # verdict present: agrees, no row
            "Mass": 0.02,  # verdict absent: agrees
            "Pneumothorax": 0.99,  # uncertain: never a disagreement
        },
        default=0.0,
    )
    pa[ALL_CLASSES.index("Scoliosis")] = np.nan  # zero-shot model not configured
    insert_prediction(store, a, pa, models=models, settings=settings)
    set_verdict(store, a, "cardiomegaly", "absent", reviewer="Dr One", note="clearly normal heart")
    set_verdict(
        store, a, "Nodule", "present", reviewer="Dr One", note="RUL nodule, Zyxwvut follow-up"
    )
    set_verdict(store, a, "atelectasis", "present", reviewer="Dr One")
    set_verdict(store, a, "Mass", "absent", reviewer="Dr One")
    set_verdict(store, a, "Pneumothorax", "uncertain", reviewer="Dr One")
    set_verdict(store, a, "Scoliosis", "present", reviewer="Dr One")
    # The threshold itself counts as "model present": p == t with verdict absent disagrees (0 margin).
    pd = probs_with({"Hernia": t["Hernia"], "Emphysema": t["Emphysema"]}, default=0.0)
    insert_prediction(store, d, pd, models=models, settings=settings)
    set_verdict(store, d, "Hernia", "absent", reviewer="Dr Two")
    set_verdict(store, d, "Emphysema", "present", reviewer="Dr Two")  # p >= t: agrees

    res = export_feedback(store, tmp_path / "out", shift_dates=False)
    header, rows = read_csv(res.disagreements_csv)
    assert tuple(header) == DISAGREEMENT_COLUMNS
    ida = pseudonym(library.sop_uids[0], kind="image")
    idd = pseudonym(library.sop_uids[3], kind="image")
    got = [(r["ImageID"], r["finding"], r["verdict"]) for r in rows]
    margins = {
        "cardiomegaly": 0.97 - t["cardiomegaly"],
        "Nodule": t["Nodule"] - 0.001,
        "Hernia": 0.0,
    }
    order = sorted(margins, key=lambda k: -margins[k])
    who = {"cardiomegaly": (ida, "absent"), "Nodule": (ida, "present"), "Hernia": (idd, "absent")}
    assert got == [(who[f][0], f, who[f][1]) for f in order]
    assert res.n_disagreements == 3
    r = {row["finding"]: row for row in rows}
    assert float(r["cardiomegaly"]["probability"]) == pytest.approx(0.97, abs=1e-6)
    assert float(r["cardiomegaly"]["threshold"]) == pytest.approx(t["cardiomegaly"], abs=1e-6)
    assert r["cardiomegaly"]["note"] == "clearly normal heart"
    assert r["Nodule"]["note"] == "RUL nodule, [removed] follow-up"  # the patient's name part
    # de-identified: the reviewer's salted pseudonym, never the name
    assert r["Nodule"]["reviewer"] == pseudonym("Dr One", kind="reviewer")
    assert "Dr One" not in res.disagreements_csv.read_text(encoding="utf-8")
    assert r["cardiomegaly"]["model_sha256s"] == f"task1-csra:{'11' * 32};task1-mlp:{'22' * 32}"
    assert json.loads(r["cardiomegaly"]["scoring_settings"]) == settings
    reviewed = datetime.fromisoformat(r["Hernia"]["reviewed_at"])
    assert abs(reviewed.replace(tzinfo=None) - datetime.now(UTC).replace(tzinfo=None)) < timedelta(
        minutes=10
    )

    # An operating threshold from the settings changes what counts as a disagreement.
    res2 = export_feedback(
        store, tmp_path / "out2", thresholds={"cardiomegaly": 0.98, "Hernia": 0.99}
    )
    _, rows2 = read_csv(res2.disagreements_csv)
    assert sorted(row["finding"] for row in rows2) == ["Nodule"]
    with pytest.raises(ExportError, match="unknown finding"):
        export_feedback(store, tmp_path / "out3", thresholds={"Dragons": 0.5})
    assert not (tmp_path / "out3").exists()


def test_disagreement_uses_prediction_the_verdict_was_made_against(store, library, tmp_path):
    a = library.image_ids[library.paths[0]]
    insert_prediction(store, a, probs_with({"Hernia": 0.9}, default=0.0), key="old")
    set_verdict(store, a, "Hernia", "absent", reviewer="Dr One")
    # A newer model agrees with the radiologist; the verdict was made against the old one.
    insert_prediction(store, a, probs_with({"Hernia": 0.0}, default=0.0), key="new")
    res = export_feedback(store, tmp_path / "out")
    _, rows = read_csv(res.disagreements_csv)
    assert [(r["finding"], float(r["probability"])) for r in rows] == [
        ("Hernia", pytest.approx(0.9))
    ]


def test_include_phi_and_shift_dates(store, library, tmp_path):
    a, _, _, d = (library.image_ids[p] for p in library.paths)
    set_verdict(store, a, "Hernia", "present", reviewer="Dr One")
    set_verdict(store, d, "Hernia", "absent", reviewer="Dr One")

    res = export_feedback(store, tmp_path / "phi", include_phi=True)
    _, rows = read_csv(res.labels_csv)
    assert {(r["ImageID"], r["PatientID"], r["StudyDate_DICOM"]) for r in rows} == {
        (library.sop_uids[0], PHI["patient_id"], PHI["study_date"]),
        (library.sop_uids[3], SECOND_PATIENT["patient_id"], "20221230"),
    }
    assert "CONTAINS patient identifiers" in (res.out_dir / "README.txt").read_text()

    res = export_feedback(store, tmp_path / "shift", shift_dates=True)
    _, rows = read_csv(res.labels_csv)
    by_id = {r["ImageID"]: r for r in rows}
    for uid, pid, orig in (
        (library.sop_uids[0], PHI["patient_id"], PHI["study_date"]),
        (library.sop_uids[3], SECOND_PATIENT["patient_id"], "20221230"),
    ):
        shift = date_shift_days(f"id:{pid}")
        assert -730 <= shift <= -1
        expected = (datetime.strptime(orig, "%Y%m%d") + timedelta(days=shift)).strftime("%Y%m%d")
        assert by_id[pseudonym(uid, kind="image")]["StudyDate_DICOM"] == expected
    # Deterministic: a second export shifts by the same offsets.
    res2 = export_feedback(store, tmp_path / "shift2", shift_dates=True)
    assert res2.labels_csv.read_bytes() == res.labels_csv.read_bytes()
    assert "shift dates ........ yes" in (res.out_dir / "README.txt").read_text()
    # A de-identified export shifts dates unless told not to; one with PHI keeps them.
    default = export_feedback(store, tmp_path / "default")
    assert default.options["shift_dates"] is True
    assert default.labels_csv.read_bytes() == res.labels_csv.read_bytes()
    kept = export_feedback(store, tmp_path / "kept", shift_dates=False)
    assert PHI["study_date"] in kept.labels_csv.read_text()
    assert "shift dates ........ no" in (kept.out_dir / "README.txt").read_text()
