"""The AI-result SR: what the models said about one image, never verified by anyone.

A Comprehensive SR with a TID 1500 Measurement Report, made with highdicom:

- VerificationFlag ``UNVERIFIED`` always, CompletionFlag ``COMPLETE``, PreliminaryFlag
  ``PRELIMINARY``; the series description says the document is not for diagnostic use.
- The observer is the model set as a device (TID 1004): its Device Observer UID is derived
  from the model-set key (the sha256 of the models, their weights and every setting that
  changes the output: prompts, calibration, mode, views), so any change of a model, the
  prompts, the weights or the calibration gives a new UID (IHE AI Results).
- Contributing Equipment Sequence: one item per model, Manufacturer ``CXR-LT Desktop``, its
  role and architecture as Manufacturer's Model Name, the app version and the model file's
  sha256 as Software Versions, purpose of reference (99IHE, 1630, "Processing Algorithm");
  highdicom adds its own item (the library that encoded the document).
- One measurement group (TID 1501) per scored finding: the finding (code from
  :mod:`.codes`), the algorithm (TID 4019: name, app version, model-set key and the operating
  threshold as parameters), the image, the call at the threshold as a qualitative evaluation
  (finding = ``Present`` SCT 52101004 / ``Absent`` SCT 272519000) and the probability
  (DCM 122157 "Probability", UCUM ``1``). Its Tracking UID is derived from the image and the
  finding, the same as in the review SR (:func:`.sr_common.tracking_uid`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from cxrlt_desktop.export.codes import finding_code
from cxrlt_desktop.export.deid import DeidDeclaration
from cxrlt_desktop.export.sr_common import (
    MANUFACTURER,
    SRSubject,
    derived_uid,
    finish,
    measurement_report_sr,
    set_content_time,
    shifted,
    tracking_uid,
)
from engine.classes import ALL_CLASSES

ALGORITHM_NAME = "CXR-LT Desktop"
SERIES_NUMBER = 9001
SERIES_DESCRIPTION = "AI results - NOT FOR DIAGNOSTIC USE"
# IHE AI Results: the purpose of reference of an algorithm in Contributing Equipment.
PROCESSING_ALGORITHM = ("1630", "99IHE", "Processing Algorithm")


@dataclass
class AIResult:
    """Everything the AI-result SR of one image needs (pseudonymised by the caller)."""

    subject: SRSubject
    probabilities: np.ndarray  # 36, ALL_CLASSES order, NaN where not scored
    thresholds: Mapping[str, float]  # the model set's operating thresholds
    model_set_key: str
    models: Sequence[Mapping[str, Any]] = field(default_factory=list)  # {"role","sha256",...}
    app_version: str = "0"
    demo: bool = False
    scored_at: datetime | None = None
    date_shift_days: int = 0
    deid: DeidDeclaration | None = None  # None: an identified export


def device_uid(model_set_key: str) -> str:
    """The Device Observer UID of a model set: ``2.25.`` + a UUID derived from its key."""
    if not model_set_key:
        raise ValueError("a model set key is needed for the device observer UID")
    return derived_uid(f"model-set:{model_set_key}")


def build_ai_result_sr(res: AIResult) -> Any:
    """The AI-result SR (a :class:`highdicom.sr.ComprehensiveSR`, a pydicom Dataset).

    Raises
    ------
    ValueError
        No finding was scored (every probability NaN) or no model set key.
    """
    groups = _groups(res)
    if not groups:
        raise ValueError("no finding was scored: nothing for an AI-result SR")
    sr = measurement_report_sr(
        res.subject,
        _observation_context(res),
        groups,
        series_number=SERIES_NUMBER,
        series_description=SERIES_DESCRIPTION + (" (DEMO)" if res.demo else ""),
        is_verified=False,
    )
    sr.ContributingEquipmentSequence = [
        *sr.get("ContributingEquipmentSequence", []),
        *(_equipment(m, res.app_version) for m in res.models),
    ]
    sr.SoftwareVersions = res.app_version
    set_content_time(sr, shifted(res.scored_at, res.date_shift_days))
    return finish(sr, res.deid)


def _equipment(model: Mapping[str, Any], app_version: str) -> Any:
    """A Contributing Equipment item naming one model (IHE AI Results)."""
    from pydicom.dataset import Dataset

    role, arch = str(model.get("role") or "model"), str(model.get("arch") or "")
    sha = str(model.get("sha256") or "")
    item = Dataset()
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = PROCESSING_ALGORITHM
    item.PurposeOfReferenceCodeSequence = [purpose]
    item.Manufacturer = MANUFACTURER
    item.ManufacturerModelName = f"{role} {arch}".strip()[:64]
    item.SoftwareVersions = [app_version[:64], sha[:64]] if sha else app_version[:64]
    desc = f"model {role}, architecture {arch or '?'}, file sha256 {sha or '?'}"
    if model.get("weight") is not None:
        desc += f", ensemble weight {model['weight']}"
    from cxrlt_desktop.models.cards import contribution_facts  # the model card, in one line

    item.ContributionDescription = f"{desc}. {contribution_facts(model)}"[:1024]
    return item


def _algorithm(res: AIResult, threshold: float) -> Any:
    from highdicom.sr import AlgorithmIdentification

    params = [f"model set {res.model_set_key}", f"operating threshold {threshold:.6g}"]
    if res.demo:
        params.append("DEMO models")
    return AlgorithmIdentification(name=ALGORITHM_NAME, version=res.app_version, parameters=params)


def _groups(res: AIResult) -> list[Any]:
    """One TID 1501 group per scored finding, in ALL_CLASSES order."""
    import highdicom as hd
    from highdicom.sr import (
        Measurement,
        MeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        SourceImageForMeasurementGroup,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes

    subject = res.subject
    probs = np.asarray(res.probabilities, dtype=np.float64)
    groups = []
    for i, key in enumerate(ALL_CLASSES):
        p = float(probs[i])
        if math.isnan(p):
            continue
        code = finding_code(key)
        t = float(res.thresholds[key])
        call = codes.SCT.Present if p >= t else codes.SCT.Absent
        groups.append(
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(
                    uid=hd.UID(tracking_uid(subject.sop_uid, key)),
                    identifier=f"AI: {code.meaning}",
                ),
                finding_type=code.concept(),
                algorithm_id=_algorithm(res, t),
                qualitative_evaluations=[QualitativeEvaluation(code.concept(), call)],
                measurements=[
                    Measurement(name=codes.DCM.Probability, value=p, unit=codes.UCUM.NoUnits)
                ],
                source_images=[
                    SourceImageForMeasurementGroup(subject.sop_class_uid, subject.sop_uid)
                ],
            )
        )
    return groups


def _observation_context(res: AIResult) -> Any:
    """The model set as the only observer (a device)."""
    from highdicom.sr import (
        DeviceObserverIdentifyingAttributes,
        ObservationContext,
        ObserverContext,
    )
    from pydicom.sr.codedict import codes

    device = ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=device_uid(res.model_set_key),
            name=ALGORITHM_NAME,
            manufacturer_name=MANUFACTURER,
            model_name=f"{ALGORITHM_NAME} {res.app_version}",
            serial_number=res.model_set_key[:64],
        ),
    )
    return ObservationContext(observer_device_context=device)
