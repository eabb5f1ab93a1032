"""What the two SR documents share: the subject they report on, its evidence dataset, names,
UIDs derived from content, the Measurement Report document, times, the de-identification
declaration and the file bytes.

The caller pseudonymises; this module only builds what it is given. In a de-identified export
the :class:`SRSubject` carries the pseudonymous PatientID (also as PatientName), no birth date,
accession number or institution, the (optionally shifted) study date and pseudonymous study,
series and SOP instance UIDs, so no original value reaches an SR.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cxrlt_desktop.export.deid import DeidDeclaration

MANUFACTURER = "CXR-LT Desktop"
# SNOMED CT 399208008 "Plain chest X-ray" (the procedure every SR reports on).
PROCEDURE = ("399208008", "SCT", "Plain chest X-ray")
# A fixed namespace for the UUIDs (RFC 9562 version 5) the documents derive from their content:
# the device observer UID of a model set and the tracking UIDs of findings.
UID_NAMESPACE = uuid.UUID("5b0f5c8e-6a57-4d0e-9d6a-0c7c3a9e2b41")
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@dataclass(frozen=True)
class SRSubject:
    """The patient, study and image an SR reports on, as exported (pseudonymised or not)."""

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


def derived_uid(name: str) -> str:
    """A ``2.25.`` UID from a name-based UUID (PS3.5 B.2): the same name, the same UID."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}"


def tracking_uid(sop_uid: str, key: str) -> str:
    """The Tracking UID of finding ``key`` in the image ``sop_uid`` (the exported UID).

    The AI-result SR and the review SR give the same finding of the same image the same
    Tracking UID (TID 4108), so a reader can pair each verdict with the AI's call.
    """
    return derived_uid(f"tracking:{sop_uid}:{key}")


def person_name(name: str) -> str:
    """A DICOM PN from free text: a name without ``^`` becomes the family name (``"Smith^"``)."""
    name = name.strip()
    return name if not name or "^" in name else name + "^"


def evidence_dataset(subject: SRSubject) -> Any:
    """A header-only dataset standing for the image: highdicom copies the SR's patient and
    study attributes from it and records it as evidence."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID = subject.sop_class_uid
    ds.SOPInstanceUID = subject.sop_uid
    ds.StudyInstanceUID = subject.study_uid
    ds.SeriesInstanceUID = subject.series_uid
    ds.PatientID = subject.patient_id
    ds.PatientName = person_name(subject.patient_name)
    ds.PatientBirthDate = subject.birth_date
    ds.PatientSex = subject.patient_sex if subject.patient_sex in ("M", "F", "O") else ""
    ds.AccessionNumber = subject.accession
    ds.StudyID = ""
    ds.StudyDate = subject.study_date
    ds.StudyTime = subject.study_time
    ds.ReferringPhysicianName = ""
    ds.Modality = subject.modality
    return ds


def measurement_report_sr(
    subject: SRSubject,
    observation_context: Any,
    groups: list[Any],
    *,
    series_number: int,
    series_description: str,
    **verification: Any,
) -> Any:
    """A Comprehensive SR holding a TID 1500 Measurement Report of ``groups`` on the chest
    X-ray of ``subject``, observed by ``observation_context``: a new series and instance,
    instance 1, complete and not final; ``verification`` is highdicom's ``is_verified`` (with
    the verifying observer and organization when True)."""
    import highdicom as hd
    from highdicom.sr import ComprehensiveSR, MeasurementReport
    from pydicom.sr.coding import Code

    report = MeasurementReport(
        observation_context=observation_context,
        procedure_reported=Code(*PROCEDURE),
        imaging_measurements=groups,
    )
    return ComprehensiveSR(
        evidence=[evidence_dataset(subject)],
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        series_description=series_description,
        **verification,
    )


def shifted(ts: datetime | None, days: int) -> datetime:
    """``ts`` (now when None) in UTC, moved by ``days``."""
    ts = ts or datetime.now(UTC)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC) + timedelta(days=days)


def set_content_time(ds: Any, when: datetime) -> None:
    """Content, instance-creation, series, verification and contribution date/time of an SR:
    ``when`` (UTC).

    highdicom stamps the time of building; the export sets the time of the event the document
    records (scoring, review), shifted like every other date of the patient when dates are
    shifted, so no unshifted date sits beside the shifted ones.
    """
    da, tm = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.ContentDate, ds.ContentTime = da, tm
    ds.InstanceCreationDate, ds.InstanceCreationTime = da, tm
    ds.SeriesDate, ds.SeriesTime = da, tm
    ds.TimezoneOffsetFromUTC = "+0000"
    dt = when.strftime("%Y%m%d%H%M%S")
    for item in ds.get("VerifyingObserverSequence", []):
        item.VerificationDateTime = dt
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = dt


def declare_private_scheme(ds: Any) -> None:
    """Identify the private coding scheme in the Coding Scheme Identification Sequence
    (PS3.3 C.12.1.1.4) when a code of it is used anywhere in ``ds``."""
    from pydicom.dataset import Dataset

    from cxrlt_desktop.export.codes import PRIVATE_SCHEME

    def uses(items: Any) -> bool:
        for it in items:
            for name in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
                if any(c.CodingSchemeDesignator == PRIVATE_SCHEME for c in it.get(name, [])):
                    return True
            if uses(it.get("ContentSequence", [])):
                return True
        return False

    if not uses([ds]):
        return
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "CXR-LT Desktop findings"
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    ds.CodingSchemeIdentificationSequence = [item]


def finish(ds: Any, deid: DeidDeclaration | None) -> Any:
    """Identify the private scheme and declare the de-identification (for a de-identified
    export) on a built SR."""
    declare_private_scheme(ds)
    if deid is not None:
        deid.apply(ds)
    return ds


def sr_bytes(sr: Any) -> bytes:
    """The SR as DICOM Part 10 file bytes."""
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
