"""The review SR: the radiologists' verdicts on one image as their own observations.

A Comprehensive SR with a TID 1500 Measurement Report, made with highdicom, kept apart from
the AI-result SR (:mod:`.ai_sr`), which it references:

- Observers: each reviewer whose verdict it holds, as a person observer (TID 1003), the latest
  first; the name is the reviewer's pseudonym in a de-identified export
  (:func:`.deid.reviewer_pseudonym`) and the name as entered in an identified one.
- VERIFIED (CompletionFlag ``COMPLETE``) with the same reviewers in the Verifying Observer
  Sequence; a document is built only when a verdict exists, so it is never VERIFIED without
  one (and the AI-result SR never is).
- One measurement group (TID 1501) per reviewed finding: the finding (code from :mod:`.codes`),
  the image, and the verdict as a qualitative evaluation: finding = ``Present`` (SCT
  52101004), ``Absent`` (SCT 272519000) or ``Uncertain`` (SCT 64957009). Its Tracking UID is
  the one the AI-result SR gives the same finding (:func:`.sr_common.tracking_uid`).
- One measurement group per measurement the reader drew on the image
  (:mod:`cxrlt_desktop.library.measurements`), its points as SCOORD in the image's pixel
  coordinates referencing the image: a distance or an angle as a planar ROI group (TID 1410)
  whose region is the drawn POLYLINE; a Cobb angle or a CTR (two lines) as a group (TID 1501)
  whose measurement is inferred from two POLYLINEs. The value: Length (SCT
  410668003) in mm, or in ``{pixels}`` for an image without spacing; Angle (SCT 1483009) and
  Cobb angle (SCT 285285000) in degrees; the cardiothoracic ratio (a code of this application's
  scheme: no standard code names the diameter ratio) without unit. The finding it informs is its
  finding type (Scoliosis, Cardiomegaly); its tracking identifier says what a length is measured
  at ("mm at detector", "magnification-corrected").
- The AI-result SR is referenced in the Pertinent Other Evidence Sequence (PS3.3 C.17.2.3:
  other composite instances the creator considered pertinent): TID 1500 has no content item
  for another document, and the review does not include the AI's content, so the Predecessor
  Documents Sequence (for a document whose content this one includes or revises) does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cxrlt_desktop.export.codes import finding_code
from cxrlt_desktop.export.deid import DeidDeclaration
from cxrlt_desktop.export.sr_common import (
    SRSubject,
    finish,
    measurement_report_sr,
    person_name,
    set_content_time,
    shifted,
    tracking_uid,
)
from engine.classes import ALL_CLASSES

SERIES_NUMBER = 9002
SERIES_DESCRIPTION = "Radiologist review of AI results"
VERIFYING_ORGANIZATION = "CXR-LT Desktop reviewer"


@dataclass(frozen=True)
class Verdict:
    """One verdict as exported: ``reviewer`` is already the pseudonym where it must be."""

    verdict: str  # "present" | "absent" | "uncertain"
    reviewer: str
    reviewed_at: datetime | None


@dataclass
class Review:
    """Everything the review SR of one image needs."""

    subject: SRSubject
    verdicts: Mapping[str, Verdict]  # class key -> verdict
    ai_sr: Any | None = None  # the AI-result SR it reviews (pydicom Dataset)
    demo: bool = False
    date_shift_days: int = 0
    deid: DeidDeclaration | None = None  # None: an identified export
    # library.measurements.StoredMeasurement-like: kind, points, value, unit, finding, id
    measurements: Sequence[Any] = ()


def verdict_code(verdict: str) -> Any:
    """SNOMED CT code of a verdict: Present, Absent or Uncertain."""
    from pydicom.sr.codedict import codes

    return {
        "present": codes.SCT.Present,
        "absent": codes.SCT.Absent,
        "uncertain": codes.SCT.Uncertain,
    }[verdict]


def reviewers(verdicts: Mapping[str, Verdict]) -> list[str]:
    """The distinct reviewers, the one of the latest verdict first (no time counts earliest)."""
    order = sorted(
        verdicts.values(),
        key=lambda v: v.reviewed_at.timestamp() if v.reviewed_at else -math.inf,
        reverse=True,
    )
    out: list[str] = []
    for v in order:
        if v.reviewer not in out:
            out.append(v.reviewer)
    return out


def build_review_sr_document(rev: Review) -> Any | None:
    """The review SR (a :class:`highdicom.sr.ComprehensiveSR`), or None without a verdict."""
    from pydicom.dataset import Dataset

    reviewed = [(k, v) for k, v in rev.verdicts.items() if k in ALL_CLASSES]
    if not reviewed:
        return None
    reviewed.sort(key=lambda kv: ALL_CLASSES.index(kv[0]))
    names = [person_name(r) for r in reviewers(dict(reviewed))]
    sr = measurement_report_sr(
        rev.subject,
        _observation_context(names),
        [_group(rev.subject, k, v) for k, v in reviewed]
        + [_measurement_group(rev.subject, m) for m in rev.measurements],
        series_number=SERIES_NUMBER,
        series_description=SERIES_DESCRIPTION + (" (DEMO)" if rev.demo else ""),
        is_verified=True,
        verifying_observer_name=names[0],
        verifying_organization=VERIFYING_ORGANIZATION,
    )
    first = sr.VerifyingObserverSequence[0]
    for name in names[1:]:
        item = Dataset()
        item.VerifyingObserverName = name
        item.VerifyingOrganization = VERIFYING_ORGANIZATION
        item.VerificationDateTime = first.VerificationDateTime
        item.VerifyingObserverIdentificationCodeSequence = []
        sr.VerifyingObserverSequence.append(item)
    if rev.ai_sr is not None:
        sr.PertinentOtherEvidenceSequence = [_reference(rev.ai_sr)]
    latest = max((v.reviewed_at for _, v in reviewed if v.reviewed_at), default=None)
    set_content_time(sr, shifted(latest, rev.date_shift_days))
    return finish(sr, rev.deid)


def _reference(doc: Any) -> Any:
    """A Hierarchical SOP Instance Reference (PS3.3 C.17.2.1) to ``doc``."""
    from pydicom.dataset import Dataset

    sop = Dataset()
    sop.ReferencedSOPClassUID = doc.SOPClassUID
    sop.ReferencedSOPInstanceUID = doc.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = doc.SeriesInstanceUID
    series.ReferencedSOPSequence = [sop]
    study = Dataset()
    study.StudyInstanceUID = doc.StudyInstanceUID
    study.ReferencedSeriesSequence = [series]
    return study


def _group(subject: SRSubject, key: str, v: Verdict) -> Any:
    import highdicom as hd
    from highdicom.sr import (
        MeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        SourceImageForMeasurementGroup,
        TrackingIdentifier,
    )

    code = finding_code(key)
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=hd.UID(tracking_uid(subject.sop_uid, key)),
            identifier=f"Review: {code.meaning}",
        ),
        finding_type=code.concept(),
        qualitative_evaluations=[QualitativeEvaluation(code.concept(), verdict_code(v.verdict))],
        source_images=[SourceImageForMeasurementGroup(subject.sop_class_uid, subject.sop_uid)],
    )


MEASUREMENT_NAMES = {
    "distance": ("410668003", "SCT", "Length"),
    "angle": ("1483009", "SCT", "Angle"),
    "cobb": ("285285000", "SCT", "Cobb angle"),
    "ctr": ("CTR", "99CXRLT", "Cardiothoracic ratio"),
}


def measurement_unit(m: Any) -> Any:
    """The UCUM unit of a stored measurement."""
    from pydicom.sr.coding import Code

    if m.kind in ("angle", "cobb"):
        return Code("deg", "UCUM", "degree")
    if m.kind == "ctr":
        return Code("1", "UCUM", "no units")
    if m.unit == "px":
        return Code("{pixels}", "UCUM", "pixels")
    return Code("mm", "UCUM", "millimeter")


def _measurement_group(subject: SRSubject, m: Any) -> Any:
    """A distance or an angle: a planar ROI group (TID 1410) whose region is the drawn
    POLYLINE. A Cobb angle or a CTR (two lines): a measurement group (TID 1501) whose
    measurement is inferred from both lines (two POLYLINE SCOORDs, TID 300), as a TID 1410
    region holds one graphic only."""
    import highdicom as hd
    import numpy as np
    from highdicom.sr import (
        CoordinatesForMeasurement,
        GraphicTypeValues,
        ImageRegion,
        Measurement,
        MeasurementsAndQualitativeEvaluations,
        PlanarROIMeasurementsAndQualitativeEvaluations,
        SourceImageForMeasurementGroup,
        SourceImageForRegion,
        TrackingIdentifier,
    )
    from pydicom.sr.coding import Code

    from cxrlt_desktop.library.measure_geometry import KIND_NAMES

    points = np.asarray(m.points, dtype=float)
    what = KIND_NAMES[m.kind]
    if m.kind == "distance":
        what += f" ({m.unit})"
    finding = finding_code(m.finding).concept() if m.finding in ALL_CLASSES else None
    tracking = TrackingIdentifier(
        uid=hd.UID(tracking_uid(subject.sop_uid, f"measurement-{m.id}")),
        identifier=f"Measurement: {what}",
    )

    def source() -> Any:
        return SourceImageForRegion(subject.sop_class_uid, subject.sop_uid)

    name, unit = Code(*MEASUREMENT_NAMES[m.kind]), measurement_unit(m)
    if m.kind in ("distance", "angle"):
        region = ImageRegion(
            graphic_type=GraphicTypeValues.POLYLINE, graphic_data=points, source_image=source()
        )
        return PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            referenced_region=region,
            finding_type=finding,
            measurements=[Measurement(name=name, value=float(m.value), unit=unit)],
        )
    lines = [
        CoordinatesForMeasurement(
            graphic_type=GraphicTypeValues.POLYLINE,
            graphic_data=points[i : i + 2],
            source_image=source(),
        )
        for i in (0, 2)
    ]
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        finding_type=finding,
        measurements=[
            Measurement(name=name, value=float(m.value), unit=unit, referenced_coordinates=lines)
        ],
        source_images=[SourceImageForMeasurementGroup(subject.sop_class_uid, subject.sop_uid)],
    )


def _observation_context(names: list[str]) -> Any:
    """Each reviewer as a person observer (TID 1002 repeated), the latest first."""
    from highdicom.sr import (
        ObservationContext,
        ObserverContext,
        PersonObserverIdentifyingAttributes,
    )
    from pydicom.sr.codedict import codes

    def person(name: str) -> Any:
        return ObserverContext(
            observer_type=codes.cid270.Person,
            observer_identifying_attributes=PersonObserverIdentifyingAttributes(name=name),
        )

    ctx = ObservationContext(observer_person_context=person(names[0]))
    for name in names[1:]:
        ctx.extend(person(name))
    return ctx
