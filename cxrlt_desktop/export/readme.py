"""The export's ``README.txt``: options, counts, de-identification, models, thresholds, problems.

It is written last, so its presence marks a complete export; problems are listed by ImageID,
never by path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from cxrlt_desktop.export.deid import MAX_SHIFT_DAYS
from cxrlt_desktop.export.files import DISAGREEMENTS_CSV, IMAGES_DIR, LABELS_CSV, SR_DIR
from engine.classes import DEFAULT_THRESHOLDS

if TYPE_CHECKING:
    from cxrlt_desktop.export.feedback import ExportResult


def _left_out_lines(result: ExportResult) -> list[str]:
    """What images/ lacks or holds unchecked because of burned-in text, with why."""
    lines = []
    if result.n_images_burned_in:
        lines += [
            f"    Left out: {result.n_images_burned_in} images whose pixels may show burned-in text",
            "    (BurnedInAnnotation YES, or a secondary capture without the flag); their labels are",
            "    exported. Export with --allow-burned-in to copy them (then check them by eye).",
        ]
    if result.n_images_unflagged:
        lines += [
            f"    {result.n_images_unflagged} images came from PNG/JPEG/TIFF files, which carry no",
            "    burned-in-text flag: look at them before sharing.",
        ]
    return lines


def readme_text(
    result: ExportResult,
    thresholds: Mapping[str, float],
    models: list[dict[str, Any]],
    problems: list[str],
) -> str:
    """The README of an export that wrote ``result``."""
    from cxrlt_desktop import __version__

    o = result.options
    n = result.n_measured_only
    measured_only = f" and {n} measured, not reviewed" if n else ""
    lines = []
    if result.demo:
        lines += [
            "*** DEMO EXPORT: the predictions come from DEMO models trained on synthetic phantoms. ***",
            "*** Do not use these labels or disagreements for clinical work.                       ***",
            "",
        ]
    lines += [
        "CXR-LT Desktop feedback export",
        "==============================",
        f"Created: {date.today().isoformat()} by CXR-LT Desktop {__version__}",
        "",
        "Options",
        f"  include PHI ........ {'YES: this export CONTAINS patient identifiers' if o['include_phi'] else 'no (de-identified)'}",
        f"  shift dates ........ {'yes (per-patient offset of 1-' + str(MAX_SHIFT_DAYS) + ' days into the past)' if o['shift_dates'] else 'no'}",
        f"  copy images ........ {'yes' if o['copy_images'] else 'no'}",
        f"  burned-in text ..... {'allowed (images with burned-in text copied too)' if o.get('allow_burned_in') else 'images that may show it are left out'}",
        f"  DICOM SR ........... {'yes' if o['sr'] else 'no'}",
        f"  DEMO models ........ {'yes' if result.demo else 'no'}",
        "",
        "Contents",
        f"  {LABELS_CSV}: {result.n_images} reviewed images{measured_only} of {result.n_patients} patients; "
        f"{result.n_positive} present, {result.n_negative} absent, {result.n_uncertain} uncertain (empty cells).",
        "    CXR-LT format: ImageID, StudyDate_DICOM, PatientID, then 36 class columns;",
        "    1 = present, 0 = absent, empty = not reviewed or uncertain. Radiologist verdicts only.",
        "    Then the measurements: Cobb_angle_deg, Cardiothoracic_ratio (the latest of each) and",
        "    Measurements (all, with units). An image measured but not reviewed has every class",
        "    cell empty: training reads it as unknown for every class.",
        f"  {DISAGREEMENTS_CSV}: {result.n_disagreements} findings where the verdict disagrees with the model",
        "    at its operating threshold (present while p < t, absent while p >= t), largest |p - t| first.",
    ]
    if o["copy_images"]:
        lines += [
            f"  {IMAGES_DIR}/: {result.n_images_copied} images named <ImageID>.png: the source array the models read.",
            "    uint8 and uint16 sources (and integer modality values in 0..65535) are stored unchanged;",
            "    other modality-LUT values are mapped linearly from their min..max onto 0..65535",
            f"    ({result.n_images_scaled} images), which leaves the models' input unchanged up to rounding.",
            f"    Train with: cxrlt train --labels {LABELS_CSV} --images {IMAGES_DIR} ...",
        ]
        lines += _left_out_lines(result)
    if o["sr"]:
        lines += [
            f"  {SR_DIR}/: {result.n_sr} DICOM Structured Reports (TID 1500): <ImageID>_ai.dcm, the",
            "    models' calls (UNVERIFIED, not for diagnostic use), and <ImageID>_review.dcm, the",
            "    radiologists' verdicts (VERIFIED), which references it.",
        ]
    if not o["include_phi"]:
        lines += [
            "",
            "De-identification",
            "  ImageID and PatientID are salted SHA-256 pseudonyms (the salt stays on the exporting",
            "  machine, so the same patient keeps the same pseudonym in later exports). No patient name,",
            "  birth date, accession number, institution, file path or original UID is included; UIDs in",
            "  the SR files are new pseudonymous UIDs. Reviewers appear by their pseudonyms too. Every name,",
            "  ID, address, place, date and UID of the store and of the image's own header, and every",
            "  reviewer's name, is removed from notes, but free text can hold anything: read the notes",
            "  before sharing. The SR files declare this (PatientIdentityRemoved YES, De-identification",
            "  Method and its codes: the Basic Profile and the options used).",
        ]
        if result.n_notes_withheld:
            lines += [
                f"  {result.n_notes_withheld} notes were withheld: their image's header could not be read (the",
                "  file is gone, unreadable or changed since the scan), so they could not be checked.",
            ]
    lines += ["", "Models (role: sha256)"]
    if models:
        lines += [
            f"  {m.get('role', '?')}: {m.get('sha256', '?')}  ({m.get('arch') or ''})"
            for m in models
        ]
    else:
        lines += ["  (no scored predictions among the exported images)"]
    if models:
        from cxrlt_desktop.models.cards import model_facts_text

        lines += ["", "Model facts (what made the predictions; cards in docs/models.md)"]
        lines += [model_facts_text(models)]
    changed = {k: v for k, v in thresholds.items() if DEFAULT_THRESHOLDS.get(k) != v}
    lines += [
        "",
        "Operating thresholds: the defaults"
        + (f", except {json.dumps(changed)}" if changed else ""),
    ]
    if problems:
        lines += ["", f"Problems ({len(problems)})"] + [f"  {p}" for p in problems]
    return "\n".join(lines) + "\n"
