"""The two DICOM SR documents of one image, from the store: the public API.

- :func:`build_ai_sr` - the AI-result SR (:mod:`.ai_sr`): the models' calls and
  probabilities, UNVERIFIED, the model set as device observer, the models in Contributing
  Equipment.
- :func:`build_review_sr` - the review SR (:mod:`.review_sr`): the radiologists' verdicts as
  their own observations, VERIFIED, referencing the AI-result SR; None without a verdict.

Both are de-identified unless ``include_phi``: pseudonymous PatientID (also as PatientName),
no birth date, accession number or institution, pseudonymous study, series and image UIDs
(:func:`.deid.export_uid`: the same on every export of this installation), reviewers'
pseudonyms as person observers, every date moved by the patient's offset when
``shift_dates`` (the default when de-identified), and the de-identification declared in the
header (:class:`.deid.DeidDeclaration`). With ``include_phi`` the original identifiers, UIDs
and reviewer names are kept and nothing is declared.

Operating thresholds: the prediction's model set's own thresholds (``model_set_threshold``),
then ``thresholds``, then :data:`engine.classes.DEFAULT_THRESHOLDS`.

The feedback export (:mod:`.feedback`) writes the same documents from its snapshot through
:func:`ai_sr_of` and :func:`review_sr_of`; a DICOM sender calls :func:`build_ai_sr` and
:func:`build_review_sr` and saves each with :func:`sr_bytes` or sends the dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cxrlt_desktop.export.ai_sr import AIResult, build_ai_result_sr, device_uid
from cxrlt_desktop.export.deid import (
    DeidDeclaration,
    date_shift_days,
    export_uid,
    patient_pseudonym,
    reviewer_pseudonym,
    shift_da,
)
from cxrlt_desktop.export.records import ImageRecord, PredictionRecord, read_image
from cxrlt_desktop.export.review_sr import Review, Verdict, build_review_sr_document
from cxrlt_desktop.export.sr_common import SECONDARY_CAPTURE, SRSubject, sr_bytes
from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS

__all__ = [
    "build_ai_sr",
    "build_review_sr",
    "ai_sr_of",
    "review_sr_of",
    "device_uid",
    "effective_thresholds",
    "sr_bytes",
    "sr_subject",
]


def effective_thresholds(
    pred: PredictionRecord | None, thresholds: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The operating threshold of each finding for ``pred``: its model set's own, then
    ``thresholds``, then the defaults."""
    out = dict(DEFAULT_THRESHOLDS)
    out.update({k: float(v) for k, v in (thresholds or {}).items() if k in ALL_CLASSES})
    if pred is not None:
        out.update(pred.thresholds)
    return out


def deid_declaration(
    rec: ImageRecord, include_phi: bool, shift_dates: bool
) -> DeidDeclaration | None:
    """What a de-identified SR of ``rec`` declares; None with PHI."""
    if include_phi:
        return None
    return DeidDeclaration(
        dates_shifted=shift_dates,
        sex_kept=(rec.sex or "") in ("M", "F", "O"),
        structured_content=True,
    )


def sr_subject(
    rec: ImageRecord,
    *,
    include_phi: bool,
    shift_days: int,
    salt: bytes | None = None,
    patient_id: str | None = None,
    study_date: str | None = None,
) -> SRSubject:
    """The patient, study and image as the SRs of ``rec`` carry them.

    ``patient_id`` and ``study_date`` default to what the export writes in labels.csv
    (the pseudonym and the shifted date when de-identified)."""
    if patient_id is None:
        patient_id = (
            (rec.patient_id or "")
            if include_phi
            else patient_pseudonym(rec.patient_id, rec.patient_key, salt=salt)
        )
    if study_date is None:
        study_date = shift_da(rec.study_date, shift_days) if shift_days else (rec.study_date or "")
    return SRSubject(
        patient_id=patient_id,
        patient_name=(rec.patient_name or "") if include_phi else patient_id,
        patient_sex=rec.sex or "",
        birth_date=(rec.birth_date or "") if include_phi else "",
        study_uid=export_uid(rec.study_uid, include_phi, salt),
        series_uid=export_uid(rec.series_uid, include_phi, salt),
        sop_uid=export_uid(rec.sop_uid or rec.image_key, include_phi, salt),
        sop_class_uid=rec.sop_class_uid or SECONDARY_CAPTURE,
        modality=rec.modality or "OT",
        study_date=study_date,
        study_time=(rec.study_time or "") if include_phi else "",
        accession=(rec.accession or "") if include_phi else "",
    )


def ai_sr_of(
    rec: ImageRecord,
    pred: PredictionRecord,
    subject: SRSubject,
    *,
    deid: DeidDeclaration | None,
    shift_days: int,
    thresholds: Mapping[str, float] | None = None,
    demo: bool = False,
) -> Any:
    """The AI-result SR of ``rec``'s prediction ``pred`` (see :func:`build_ai_sr`)."""
    from cxrlt_desktop import __version__

    return build_ai_result_sr(
        AIResult(
            subject=subject,
            probabilities=pred.probs,
            thresholds=effective_thresholds(pred, thresholds),
            model_set_key=pred.model_set_key or f"model-set-{pred.model_set_id}",
            models=pred.models,
            app_version=__version__,
            demo=demo,
            scored_at=pred.created_at,
            date_shift_days=shift_days,
            deid=deid,
        )
    )


def review_sr_of(
    rec: ImageRecord,
    subject: SRSubject,
    ai_sr: Any | None,
    *,
    include_phi: bool,
    deid: DeidDeclaration | None,
    shift_days: int,
    salt: bytes | None = None,
    demo: bool = False,
) -> Any | None:
    """The review SR of ``rec``'s verdicts (see :func:`build_review_sr`); None without one."""
    verdicts = {
        k: Verdict(
            v.verdict,
            v.reviewer if include_phi else reviewer_pseudonym(v.reviewer, salt=salt),
            v.reviewed_at,
        )
        for k, v in rec.verdicts.items()
    }
    return build_review_sr_document(
        Review(
            subject=subject,
            verdicts=verdicts,
            ai_sr=ai_sr,
            demo=demo,
            date_shift_days=shift_days,
            deid=deid,
            measurements=rec.measurements,
        )
    )


def _prepare(
    store: Any, image_id: int, include_phi: bool, shift_dates: bool | None, salt: bytes | None
) -> tuple[ImageRecord, PredictionRecord | None, SRSubject, DeidDeclaration | None, int]:
    rec, pred = read_image(store, image_id)
    shift = (not include_phi) if shift_dates is None else shift_dates
    days = date_shift_days(rec.patient_key, salt=salt) if shift else 0
    subject = sr_subject(rec, include_phi=include_phi, shift_days=days, salt=salt)
    return rec, pred, subject, deid_declaration(rec, include_phi, shift), days


def build_ai_sr(
    store: Any,
    image_id: int,
    *,
    include_phi: bool = False,
    shift_dates: bool | None = None,
    thresholds: Mapping[str, float] | None = None,
    demo: bool = False,
    salt: bytes | None = None,
) -> Any:
    """The AI-result SR of image ``image_id``'s current prediction.

    Parameters
    ----------
    store : cxrlt_desktop.store.Store
    image_id : int
        The store's image id.
    include_phi : bool
        Keep the original identifiers and UIDs (an identified document); default de-identified.
    shift_dates : bool, optional
        Move the patient's dates by the per-patient offset; default: when de-identified.
    thresholds : mapping, optional
        Thresholds for findings the model set has none for (else the defaults).
    demo : bool
        Mark the series description DEMO.
    salt : bytes, optional
        Override the installation's pseudonym salt (tests).

    Returns
    -------
    highdicom.sr.ComprehensiveSR
        A pydicom Dataset; :func:`sr_bytes` gives its file bytes.

    Raises
    ------
    LookupError
        No such image, or it has no current prediction.
    ValueError
        The prediction scored no finding.
    """
    rec, pred, subject, deid, days = _prepare(store, image_id, include_phi, shift_dates, salt)
    if pred is None:
        raise LookupError(f"image {image_id}: not scored, no AI result to report")
    return ai_sr_of(
        rec, pred, subject, deid=deid, shift_days=days, thresholds=thresholds, demo=demo
    )


def build_review_sr(
    store: Any,
    image_id: int,
    ai_sr: Any | None,
    *,
    include_phi: bool = False,
    shift_dates: bool | None = None,
    demo: bool = False,
    salt: bytes | None = None,
) -> Any | None:
    """The review SR of image ``image_id``: its verdicts, referencing ``ai_sr`` (the
    AI-result SR made with the same options; None when the image has no prediction).

    Returns None when the image has no verdict. Parameters as :func:`build_ai_sr`.

    Raises
    ------
    LookupError
        No such image.
    """
    rec, _pred, subject, deid, days = _prepare(store, image_id, include_phi, shift_dates, salt)
    return review_sr_of(
        rec,
        subject,
        ai_sr,
        include_phi=include_phi,
        deid=deid,
        shift_days=days,
        salt=salt,
        demo=demo,
    )
