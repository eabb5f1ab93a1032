"""DICOM Structured Reports of the review (TID 1500 Measurement Report), made with highdicom.

One Comprehensive SR per image, holding two measurement groups (TID 1501) that both reference
the image:

- "AI findings": for every finding the model scored, a qualitative evaluation (the finding,
  coded ``Present``/``Absent`` at the operating threshold) and the probability as a
  measurement (UCUM ``1``), with the algorithm identified (TID 4019: name ``CXR-LT Desktop``,
  the app version, and as parameters each model's ``role:sha256`` and the scoring settings).
- "Radiologist review": for every finding with a verdict, a qualitative evaluation coded
  ``Present`` (SCT 52101004), ``Absent`` (SCT 272519000) or ``Uncertain`` (SCT 64957009).

Findings have no standard codes that cover all 36 CXR-LT classes, so they are coded in the
private scheme ``99CXRLT``: code value ``F<nn>`` (``P<nn>`` for the probability) with ``nn`` the
class's index in :data:`engine.classes.ALL_CLASSES` and the class name as code meaning.

Verification: VERIFIED (with COMPLETE) when a radiologist verdict exists, the latest reviewer
being the verifying observer and the person observer of the observation context; otherwise
UNVERIFIED with the app as the only (device) observer.

De-identification: the SR must reference the image it reports on, and the image's real UIDs
would identify it, so the export builds a *pseudonymous evidence dataset*: a header-only
dataset standing for the image, with the pseudonymous PatientID (also as PatientName), no
birth date, accession number or institution, the (optionally shifted) study date, and study,
series and SOP instance UIDs replaced by salted-hash UIDs (``2.25.<int>``, stable per
installation, see :func:`cxrlt_desktop.export.deid.pseudonymous_uid`). highdicom takes the SR's
patient and study attributes from it and records it as evidence, so no original value reaches
the SR. The SR itself gets new random UIDs. The caller does all the pseudonymising; this
module only builds what it is given.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from engine.classes import ALL_CLASSES

ALGORITHM_NAME = "CXR-LT Desktop"
MANUFACTURER = "CXR-LT Desktop"
CODING_SCHEME = "99CXRLT"
# A fixed UID for the app as a device observer (a 2.25 UUID-derived UID, generated once).
DEVICE_UID = "2.25.187465307405207938431207493416468935218"
VERIFYING_ORGANIZATION = "CXR-LT Desktop reviewer"


@dataclass
class SRInput:
    """Everything one SR needs, already de-identified by the caller when it must be."""

    image_id: str
    patient_id: str
    patient_name: str
    patient_sex: str
    birth_date: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    study_date: str
    study_time: str
    accession: str
    # finding -> (verdict, reviewer, reviewed_at)
    verdicts: Mapping[str, tuple[str, str, datetime | None]]
    probabilities: np.ndarray | None
    thresholds: Mapping[str, float]
    models: Sequence[Mapping[str, Any]] = field(default_factory=list)
    settings: Mapping[str, Any] = field(default_factory=dict)
    app_version: str = "0"
    demo: bool = False
    date_shift_days: int = 0


def finding_code(finding: str) -> Any:
    """The coded concept of a finding (private scheme, class name as meaning)."""
    from highdicom.sr import CodedConcept

    return CodedConcept(f"F{ALL_CLASSES.index(finding):02d}", CODING_SCHEME, finding)


def probability_code(finding: str) -> Any:
    """The coded concept of a finding's probability."""
    from highdicom.sr import CodedConcept

    return CodedConcept(
        f"P{ALL_CLASSES.index(finding):02d}", CODING_SCHEME, f"{finding} probability"
    )


def verdict_code(verdict: str) -> Any:
    """SNOMED CT code of a verdict: Present, Absent or Uncertain."""
    from pydicom.sr.codedict import codes

    return {
        "present": codes.SCT.Present,
        "absent": codes.SCT.Absent,
        "uncertain": codes.SCT.Uncertain,
    }[verdict]


def person_name(name: str) -> str:
    """A DICOM PN from free text: a name without ``^`` becomes the family name (``"Smith^"``)."""
    name = name.strip()
    return name if not name or "^" in name else name + "^"


def _evidence(inp: SRInput) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID = inp.sop_class_uid
    ds.SOPInstanceUID = inp.sop_uid
    ds.StudyInstanceUID = inp.study_uid
    ds.SeriesInstanceUID = inp.series_uid
    ds.PatientID = inp.patient_id
    ds.PatientName = person_name(inp.patient_name)
    ds.PatientBirthDate = inp.birth_date
    ds.PatientSex = inp.patient_sex if inp.patient_sex in ("M", "F", "O") else ""
    ds.AccessionNumber = inp.accession
    ds.StudyID = ""
    ds.StudyDate = inp.study_date
    ds.StudyTime = inp.study_time
    ds.ReferringPhysicianName = ""
    ds.Modality = inp.modality
    return ds


def build_sr(inp: SRInput) -> Any:
    """Build the SR of one image.

    Returns
    -------
    highdicom.sr.ComprehensiveSR
        A pydicom Dataset subclass, ready to save.
    """
    import highdicom as hd
    from highdicom.sr import ComprehensiveSR, MeasurementReport, SourceImageForMeasurementGroup
    from pydicom.sr.coding import Code

    source = [SourceImageForMeasurementGroup(inp.sop_class_uid, inp.sop_uid)]
    reviewed = [(f, v) for f, v in inp.verdicts.items() if f in ALL_CLASSES]
    reviewed.sort(key=lambda fv: ALL_CLASSES.index(fv[0]))
    reviewer = _latest_reviewer(reviewed)
    groups = []
    ai = _ai_findings_group(inp, source)
    if ai is not None:
        groups.append(ai)
    if reviewed:
        groups.append(_review_group(reviewed, source))
    if not groups:
        raise ValueError(f"{inp.image_id}: neither a prediction nor a verdict to report")
    report = MeasurementReport(
        observation_context=_observation_context(inp, reviewer),
        # SNOMED CT 399208008 "Plain X-ray of chest".
        procedure_reported=Code("399208008", "SCT", "Plain chest X-ray"),
        imaging_measurements=groups,
    )
    verified = reviewer is not None
    sr = ComprehensiveSR(
        evidence=[_evidence(inp)],
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=9001,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=verified,
        verifying_observer_name=person_name(reviewer) if verified else None,
        verifying_organization=VERIFYING_ORGANIZATION if verified else None,
        series_description="CXR-LT Desktop review" + (" (DEMO)" if inp.demo else ""),
    )
    return sr


_Reviewed = list[tuple[str, tuple[str, str, datetime | None]]]  # (finding, verdict entry)


def _latest_reviewer(reviewed: _Reviewed) -> str | None:
    """The reviewer of the latest verdict (one without a time counts as earliest)."""
    latest = max(
        (v for _, v in reviewed),
        key=lambda v: v[2].timestamp() if isinstance(v[2], datetime) else -math.inf,
        default=None,
    )
    return latest[1] if latest is not None else None


def _algorithm(inp: SRInput) -> Any:
    """The algorithm identification (TID 4019): the app, its version, the models and settings."""
    from highdicom.sr import AlgorithmIdentification

    params = [f"{m.get('role', '?')}:{m.get('sha256', '?')}" for m in inp.models]
    if inp.settings:
        params.append(
            "settings:" + json.dumps(dict(inp.settings), sort_keys=True, separators=(",", ":"))
        )
    if inp.demo:
        params.append("DEMO models")
    return AlgorithmIdentification(
        name=ALGORITHM_NAME, version=inp.app_version, parameters=params or None
    )


def _ai_findings_group(inp: SRInput, source: list[Any]) -> Any | None:
    """The "AI findings" group: per scored finding its call at threshold and its probability;
    None without a prediction or with every probability NaN."""
    import highdicom as hd
    from highdicom.sr import (
        Measurement,
        MeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes

    if inp.probabilities is None:
        return None
    evals, measurements = [], []
    for i, finding in enumerate(ALL_CLASSES):
        p = float(inp.probabilities[i])
        if math.isnan(p):
            continue
        call = "present" if p >= inp.thresholds[finding] else "absent"
        evals.append(QualitativeEvaluation(finding_code(finding), verdict_code(call)))
        measurements.append(
            Measurement(name=probability_code(finding), value=p, unit=codes.UCUM.NoUnits)
        )
    if not evals:
        return None
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier="AI findings"),
        algorithm_id=_algorithm(inp),
        qualitative_evaluations=evals,
        measurements=measurements,
        source_images=source,
    )


def _review_group(reviewed: _Reviewed, source: list[Any]) -> Any:
    """The "Radiologist review" group: one qualitative evaluation per verdict."""
    import highdicom as hd
    from highdicom.sr import (
        MeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        TrackingIdentifier,
    )

    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier="Radiologist review"),
        qualitative_evaluations=[
            QualitativeEvaluation(finding_code(f), verdict_code(v[0])) for f, v in reviewed
        ],
        source_images=source,
    )


def _observation_context(inp: SRInput, reviewer: str | None) -> Any:
    """The app as device observer, and the latest reviewer as person observer if any."""
    from highdicom.sr import (
        DeviceObserverIdentifyingAttributes,
        ObservationContext,
        ObserverContext,
        PersonObserverIdentifyingAttributes,
    )
    from pydicom.sr.codedict import codes

    device = ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID,
            name=ALGORITHM_NAME,
            manufacturer_name=MANUFACTURER,
            model_name=f"{ALGORITHM_NAME} {inp.app_version}",
        ),
    )
    person = None
    if reviewer:
        person = ObserverContext(
            observer_type=codes.cid270.Person,
            observer_identifying_attributes=PersonObserverIdentifyingAttributes(
                name=person_name(reviewer)
            ),
        )
    return ObservationContext(observer_person_context=person, observer_device_context=device)


def sr_bytes(sr: Any) -> bytes:
    """The SR as DICOM Part 10 file bytes."""
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
