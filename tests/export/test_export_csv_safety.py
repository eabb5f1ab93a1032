"""CSV injection in the export: notes and reviewer names that start like a formula are written
with a leading ``'`` in disagreements.csv; the probabilities and thresholds stay numbers."""

from __future__ import annotations

import csv

import pytest

from cxrlt_desktop.export import export_feedback
from cxrlt_desktop.library.pseudonym import pseudonym
from cxrlt_desktop.library.reviews import set_verdict
from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS

from .conftest import insert_prediction, probs_with


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on PostgreSQL (``library`` scans into it)."""
    return any_store


PLANTED = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


@pytest.mark.parametrize("include_phi", [False, True])
def test_notes_and_reviewers_are_neutralised(store, library, tmp_path, include_phi):
    image = library.image_ids[library.paths[0]]
    findings = ALL_CLASSES[1 : 1 + len(PLANTED)]  # not Normal: a finding sets Normal absent
    insert_prediction(store, image, probs_with(dict.fromkeys(findings, 0.0), default=0.0))
    for finding, text in zip(findings, PLANTED, strict=True):
        set_verdict(store, image, finding, "present", reviewer=text, note=text)
    res = export_feedback(store, tmp_path / "out", include_phi=include_phi)
    with open(res.disagreements_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    got = {r["finding"]: r for r in rows if r["finding"] in findings}
    assert len(got) == len(PLANTED)
    for finding, text in zip(findings, PLANTED, strict=True):
        row = got[finding]
        assert row["note"] == "'" + text.replace("\r", "\n")
        # the store keeps reviewer names stripped: "\tx" is saved as "x"; a de-identified
        # export shows the name's pseudonym (hex digits: no formula)
        name = text.strip()
        if include_phi:
            assert row["reviewer"] == ("'" + name if name[0] in "=+-@" else name)
        else:
            assert row["reviewer"] == pseudonym(name, kind="reviewer")
        assert float(row["probability"]) == 0.0
        assert float(row["threshold"]) == pytest.approx(DEFAULT_THRESHOLDS[finding], abs=1e-6)
