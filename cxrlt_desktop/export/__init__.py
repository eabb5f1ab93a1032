"""De-identified feedback export: the radiologist's verdicts as labels the training code reads.

- :mod:`.feedback` - :func:`export_feedback` / :func:`iter_export` run an export: labels.csv,
  disagreements.csv, optional PNG copies and DICOM SR, a README, written atomically into one
  folder; :class:`ExportProgress` and :class:`ExportResult`.
- :mod:`.errors` - :class:`ExportError` and :class:`ExportCancelled`.
- :mod:`.records` - :func:`read_store`: the reviewed images, predictions and model paths as
  typed records.
- :mod:`.deid` - pseudonyms (patients, images, reviewers), pseudonymous UIDs, date shifts,
  :func:`scrub_text` for notes and :class:`DeidDeclaration` (what de-identified DICOM
  declares: PatientIdentityRemoved, DeidentificationMethod and its code sequence).
- :mod:`.header_phi` - :func:`read_header_facts`: every identifier in an image's own header,
  and whether its pixels may show burned-in text.
- :mod:`.files` - the export folder's file names, :func:`atomic_write` (mode 0600),
  :func:`inside` (no path outside the folder) and clean-up.
- :mod:`.safe_csv` - the app's one CSV writer: cells a spreadsheet would run are neutralised.
- :mod:`.images` - the PNG copies: :func:`source_to_png_array` and :func:`encode_png`.
- :mod:`.sr` - the two SR documents of an image from the store: :func:`build_ai_sr` (the
  AI-result SR, UNVERIFIED, :mod:`.ai_sr`) and :func:`build_review_sr` (the radiologists'
  verdicts, VERIFIED, referencing it, :mod:`.review_sr`), :func:`sr_bytes`; shared pieces in
  :mod:`.sr_common`.
- :mod:`.codes` - the findings' codes (``resources/finding_codes.csv``: SNOMED CT where
  pydicom's dictionary has the concept, else the private scheme 99CXRLT keyed by class name).
- :mod:`.readme` - the text of README.txt.
"""

from cxrlt_desktop.export.codes import FindingCode, finding_code, finding_codes
from cxrlt_desktop.export.deid import (
    DeidDeclaration,
    date_shift_days,
    image_pseudonym,
    patient_pseudonym,
    pseudonymous_uid,
    reviewer_pseudonym,
    scrub_text,
)
from cxrlt_desktop.export.errors import ExportCancelled, ExportError
from cxrlt_desktop.export.feedback import (
    DISAGREEMENT_COLUMNS,
    LABEL_COLUMNS,
    NOTE_WITHHELD,
    ExportProgress,
    ExportResult,
    default_shift_dates,
    export_feedback,
    iter_export,
)
from cxrlt_desktop.export.files import atomic_write, inside, is_file_uid
from cxrlt_desktop.export.header_phi import HeaderFacts, burned_in_reason, read_header_facts
from cxrlt_desktop.export.images import encode_png, source_to_png_array
from cxrlt_desktop.export.safe_csv import Numeric, SafeWriter, csv_bytes, csv_text, safe_cell
from cxrlt_desktop.export.sr import build_ai_sr, build_review_sr, device_uid, sr_bytes

__all__ = [
    "DISAGREEMENT_COLUMNS",
    "LABEL_COLUMNS",
    "NOTE_WITHHELD",
    "ExportCancelled",
    "DeidDeclaration",
    "ExportError",
    "ExportProgress",
    "ExportResult",
    "FindingCode",
    "HeaderFacts",
    "Numeric",
    "SafeWriter",
    "atomic_write",
    "build_ai_sr",
    "build_review_sr",
    "burned_in_reason",
    "csv_bytes",
    "csv_text",
    "date_shift_days",
    "default_shift_dates",
    "device_uid",
    "encode_png",
    "export_feedback",
    "finding_code",
    "finding_codes",
    "image_pseudonym",
    "inside",
    "is_file_uid",
    "iter_export",
    "patient_pseudonym",
    "pseudonymous_uid",
    "read_header_facts",
    "reviewer_pseudonym",
    "safe_cell",
    "scrub_text",
    "source_to_png_array",
    "sr_bytes",
]
