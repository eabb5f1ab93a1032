"""De-identified feedback export: the radiologist's verdicts as labels the training code reads.

- :mod:`.feedback` - :func:`export_feedback` / :func:`iter_export`: labels.csv, disagreements.csv,
  optional PNG copies and DICOM SR, a README, written atomically into one folder.
- :mod:`.sr` - :func:`build_sr`: one Comprehensive SR per image (highdicom).
"""

from cxrlt_desktop.export.feedback import (
    ExportCancelled,
    ExportError,
    ExportProgress,
    ExportResult,
    atomic_write,
    export_feedback,
    iter_export,
    scrub_text,
)
from cxrlt_desktop.export.sr import SRInput, build_sr, sr_bytes

__all__ = [
    "ExportCancelled",
    "ExportError",
    "ExportProgress",
    "ExportResult",
    "SRInput",
    "atomic_write",
    "build_sr",
    "export_feedback",
    "iter_export",
    "scrub_text",
    "sr_bytes",
]
