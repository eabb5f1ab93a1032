"""De-identified feedback export: the radiologist's verdicts as labels the training code reads.

- :mod:`.feedback` - :func:`export_feedback` / :func:`iter_export` run an export: labels.csv,
  disagreements.csv, optional PNG copies and DICOM SR, a README, written atomically into one
  folder; :class:`ExportProgress` and :class:`ExportResult`.
- :mod:`.errors` - :class:`ExportError` and :class:`ExportCancelled`.
- :mod:`.records` - :func:`read_store`: the reviewed images, predictions and model paths as
  typed records.
- :mod:`.deid` - pseudonyms, pseudonymous UIDs, date shifts and :func:`scrub_text` for notes.
- :mod:`.files` - the export folder's file names, :func:`atomic_write` and clean-up.
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
    ExportProgress,
    ExportResult,
    export_feedback,
    iter_export,
)
from cxrlt_desktop.export.files import atomic_write
from cxrlt_desktop.export.images import encode_png, source_to_png_array
from cxrlt_desktop.export.sr import SRInput, build_sr, sr_bytes

__all__ = [
    "DISAGREEMENT_COLUMNS",
    "LABEL_COLUMNS",
    "ExportCancelled",
    "ExportError",
    "ExportProgress",
    "ExportResult",
    "SRInput",
    "atomic_write",
    "build_sr",
    "date_shift_days",
    "encode_png",
    "export_feedback",
    "image_pseudonym",
    "iter_export",
    "patient_pseudonym",
    "pseudonymous_uid",
    "scrub_text",
    "source_to_png_array",
    "sr_bytes",
]
