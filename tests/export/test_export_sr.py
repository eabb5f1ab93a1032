"""The SR builder on its own: verification follows the presence of a radiologist verdict."""

from __future__ import annotations

import io

import numpy as np
import pydicom

from cxrlt_desktop.export.sr import SRInput, build_sr, sr_bytes
from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS


def _input(verdicts, probs=None, demo=False) -> SRInput:
    return SRInput(
        image_id="0123456789abcdef",
        patient_id="fedcba9876543210",
        patient_name="fedcba9876543210",
        patient_sex="F",
        birth_date="",
        study_uid="2.25.11",
        series_uid="2.25.12",
        sop_uid="2.25.13",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1",
        modality="CR",
        study_date="20200101",
        study_time="",
        accession="",
        verdicts=verdicts,
        probabilities=probs,
        thresholds=DEFAULT_THRESHOLDS,
        models=[{"role": "task1-csra", "sha256": "cd" * 32}],
        settings={"mode": "fast"},
        app_version="9.9.9",
        demo=demo,
    )


def _codes(ds) -> dict[str, str]:
    """finding -> coded value over the whole content tree (plain pydicom walk)."""
    out = {}

    def walk(items):
        for it in items:
            c = it.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in it else None
            if c is not None and it.ValueType == "CODE" and c.CodingSchemeDesignator == "99CXRLT":
                out[c.CodeMeaning] = it.ConceptCodeSequence[0].CodeValue
            if "ContentSequence" in it:
                walk(it.ContentSequence)

    walk(ds.ContentSequence)
    return out


def test_unverified_without_a_verdict():
    probs = np.full(len(ALL_CLASSES), np.nan)
    probs[ALL_CLASSES.index("Hernia")] = 0.99
    probs[ALL_CLASSES.index("Mass")] = 0.0
    ds = pydicom.dcmread(io.BytesIO(sr_bytes(build_sr(_input({}, probs, demo=True)))))
    assert ds.VerificationFlag == "UNVERIFIED" and "VerifyingObserverSequence" not in ds
    assert _codes(ds) == {"Hernia": "52101004", "Mass": "272519000"}  # only scored findings
    assert ds.SeriesDescription.endswith("(DEMO)")
    assert ds.StudyInstanceUID == "2.25.11" and ds.PatientID == "fedcba9876543210"


def test_verified_by_the_latest_reviewer():
    from datetime import datetime

    ds = pydicom.dcmread(
        io.BytesIO(
            sr_bytes(
                build_sr(
                    _input(
                        {
                            "Hernia": ("absent", "Early^Eve", datetime(2024, 1, 1, 9)),
                            "Mass": ("uncertain", "Late^Larry", datetime(2024, 1, 2, 9)),
                        }
                    )
                )
            )
        )
    )
    assert ds.VerificationFlag == "VERIFIED"
    assert str(ds.VerifyingObserverSequence[0].VerifyingObserverName) == "Late^Larry"
    assert _codes(ds) == {"Hernia": "272519000", "Mass": "64957009"}
