"""The image library: what is in it, how it is scored, sorted and reviewed.

Every function takes a :class:`cxrlt_desktop.store.Store` and works in short transactions, so the
GUI, the command line and (later) worker processes share one database safely.

- :mod:`.scanning` - :func:`scan`: walk folders, read headers, record images, series, studies and
  problems (a generator of :class:`ScanProgress`).
- :mod:`.scoring` - :func:`score_library`: run a predictor over unscored images and store the
  predictions of one model set (a generator of :class:`ScoreProgress`); :func:`retry_failed`.
- :mod:`.queue` - the scoring work queue shared by any number of workers: :func:`enqueue`,
  :func:`enqueue_for_active_sets`, :func:`claim`, :func:`extend_lease`, :func:`heartbeat`,
  :func:`queue_status`; :mod:`.worker` - :class:`ScoringWorker`, the claim-score-write loop
  (``cxrlt worker``; ``score_library`` runs one in process).
- :mod:`.identity` - is the file at an image's path still the scanned one
  (:func:`read_checked`: what the scorer, the viewer and the export decode through).
- :mod:`.triage` - rare-finding score, finding hits and study ordering; :func:`retriage` after a
  threshold change; FOR PROCESSING images and the library's :func:`set_flag_for_processing`.
- :mod:`.thresholds` - operating thresholds per model set (:func:`thresholds_for`), the
  migration of the settings' thresholds and Settings changes.
- :mod:`.reviews` - the radiologist's verdicts and notes.
- :mod:`.claims` - "being read by NAME": soft study claims with a lease (never a lock).
- :mod:`.worklist` - the sorted, filtered worklist and a study's images, read-only.
- :mod:`.pseudonym` - the per-installation salted pseudonyms shown instead of patient IDs.
- :mod:`.priors` - a study's priors: the patient's earlier chest studies, the one to compare.
- :mod:`.measure_geometry`, :mod:`.measurements` - distance, angle, Cobb angle, CTR with the
  header's calibration; measurements stored per image.
"""

from cxrlt_desktop.library.claims import (
    Reader,
    being_read_text,
    claim_study,
    readers_of,
    release,
    renew,
)
from cxrlt_desktop.library.identity import (
    CHANGED_SINCE_SCAN,
    FileChanged,
    ScannedFile,
    changed_since_scan,
    read_checked,
    scanned_file,
)
from cxrlt_desktop.library.measure_geometry import (
    Calibration,
    MeasurementError,
    calibration_of,
    measure,
)
from cxrlt_desktop.library.measurements import (
    StoredMeasurement,
    add_measurement,
    delete_measurement,
    image_measurements,
    measurements_of,
    update_measurement,
)
from cxrlt_desktop.library.priors import (
    PriorCandidate,
    choose_prior,
    interval_text,
    prior_studies,
)
from cxrlt_desktop.library.pseudonym import get_salt, pseudonym
from cxrlt_desktop.library.queue import (
    ClaimedJob,
    active_model_sets,
    claim,
    enqueue,
    enqueue_for_active_sets,
    extend_lease,
    heartbeat,
    queue_status,
    release_stale,
    requeue_failed,
)
from cxrlt_desktop.library.reviews import (
    ReviewError,
    ReviewResult,
    Verdict,
    agree_with_all,
    image_note,
    image_verdicts,
    set_image_note,
    set_verdict,
)
from cxrlt_desktop.library.scanning import ScanProgress, scan
from cxrlt_desktop.library.scoring import (
    ScoreProgress,
    current_predictions,
    model_set_description,
    model_set_key,
    retry_failed,
    score_library,
)
from cxrlt_desktop.library.thresholds import (
    ThresholdSet,
    migrate_settings_thresholds,
    prediction_thresholds,
    thresholds_for,
)
from cxrlt_desktop.library.triage import (
    FOR_PROCESSING_NOTE,
    TriageSummary,
    is_for_processing,
    mark_retriage_pending,
    rare_score,
    retriage,
    retriage_pending,
    set_flag_for_processing,
    summarize,
    threshold_vector,
)
from cxrlt_desktop.library.worker import ScoringWorker
from cxrlt_desktop.library.worklist import (
    ImageRow,
    WorklistRow,
    count_worklist,
    patient_label,
    problem_files,
    query_worklist,
    resolve_finding,
    study_images,
)

__all__ = [
    "FOR_PROCESSING_NOTE",
    "ThresholdSet",
    "is_for_processing",
    "migrate_settings_thresholds",
    "prediction_thresholds",
    "set_flag_for_processing",
    "thresholds_for",
    "Reader",
    "being_read_text",
    "claim_study",
    "readers_of",
    "release",
    "renew",
    "ClaimedJob",
    "ScoringWorker",
    "active_model_sets",
    "claim",
    "enqueue",
    "enqueue_for_active_sets",
    "extend_lease",
    "heartbeat",
    "queue_status",
    "release_stale",
    "requeue_failed",
    "CHANGED_SINCE_SCAN",
    "FileChanged",
    "ImageRow",
    "ReviewError",
    "ReviewResult",
    "ScanProgress",
    "ScannedFile",
    "ScoreProgress",
    "TriageSummary",
    "Verdict",
    "WorklistRow",
    "agree_with_all",
    "changed_since_scan",
    "count_worklist",
    "current_predictions",
    "get_salt",
    "image_note",
    "image_verdicts",
    "mark_retriage_pending",
    "model_set_description",
    "model_set_key",
    "patient_label",
    "problem_files",
    "pseudonym",
    "query_worklist",
    "rare_score",
    "read_checked",
    "resolve_finding",
    "retriage",
    "retriage_pending",
    "retry_failed",
    "scan",
    "scanned_file",
    "score_library",
    "set_image_note",
    "set_verdict",
    "study_images",
    "summarize",
    "threshold_vector",
    "Calibration",
    "MeasurementError",
    "PriorCandidate",
    "StoredMeasurement",
    "add_measurement",
    "calibration_of",
    "choose_prior",
    "delete_measurement",
    "image_measurements",
    "interval_text",
    "measure",
    "measurements_of",
    "prior_studies",
    "update_measurement",
]
