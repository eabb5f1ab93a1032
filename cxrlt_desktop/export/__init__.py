"""De-identified feedback export: the radiologist's verdicts as labels the training code reads.

- :mod:`.feedback` - :func:`export_feedback` / :func:`iter_export` run an export: labels.csv,
  disagreements.csv, optional PNG copies and DICOM SR, a README, written atomically into one
  folder; :class:`ExportProgress` and :class:`ExportResult`.
- :mod:`.errors` - :class:`ExportError` and :class:`ExportCancelled`.
- :mod:`.records` - :func:`read_store`: the reviewed images, predictions and model paths as
  typed records.
- :mod:`.deid` - pseudonyms, pseudonymous UIDs, date shifts and :func:`scrub_text` for notes.
- :mod:`.header_phi` - :func:`read_header_facts`: every identifier in an image's own header,
  and whether its pixels may show burned-in text.
- :mod:`.files` - the export folder's file names, :func:`atomic_write` (mode 0600),
  :func:`inside` (no path outside the folder) and clean-up.
- :mod:`.safe_csv` - the app's one CSV writer: cells a spreadsheet would run are neutralised.
- :mod:`.images` - the PNG copies: :func:`source_to_png_array` and :func:`encode_png`.
- :mod:`.sr` - :func:`build_sr`: one Comprehensive SR per image (highdicom).
- :mod:`.readme` - the text of README.txt.
"""

from cxrlt_desktop.export.deid import (
    date_shift_days,
    image_pseudonym,
    patient_pseudonym,
    pseudonymous_uid,
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
from cxrlt_desktop.export.sr import SRInput, build_sr, sr_bytes

__all__ = [
    "DISAGREEMENT_COLUMNS",
    "LABEL_COLUMNS",
    "NOTE_WITHHELD",
    "ExportCancelled",
    "ExportError",
    "ExportProgress",
    "ExportResult",
    "HeaderFacts",
    "Numeric",
    "SRInput",
    "SafeWriter",
    "atomic_write",
    "build_sr",
    "burned_in_reason",
    "csv_bytes",
    "csv_text",
    "date_shift_days",
    "default_shift_dates",
    "encode_png",
    "export_feedback",
    "image_pseudonym",
    "inside",
    "is_file_uid",
    "iter_export",
    "patient_pseudonym",
    "pseudonymous_uid",
    "read_header_facts",
    "safe_cell",
    "scrub_text",
    "source_to_png_array",
    "sr_bytes",
]
