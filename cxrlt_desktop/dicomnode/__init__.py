"""The DICOM node: receive studies pushed over the DICOM network into the library.

- :mod:`.receiver` - :class:`DicomNode` (a pynetdicom SCP: C-ECHO and C-STORE of projection
  radiographs into the inbox and the library), :class:`NodeConfig`, :func:`node_config`,
  :func:`tls_context`, :class:`AllowList`, the accepted SOP classes and the DIMSE statuses.
- :mod:`.inbox` - :class:`Inbox` (atomic writes under ``<Study>/<Series>/<SOP>.dcm``),
  :func:`valid_uid` (the UI VR grammar), :class:`NoSpace`.

Details: docs/dicom-node.md.
"""

from cxrlt_desktop.dicomnode.inbox import Inbox, NoSpace, Outcome, valid_uid
from cxrlt_desktop.dicomnode.receiver import (
    CANNOT_UNDERSTAND,
    DATA_SET_MISMATCH,
    IMAGE_SOP_CLASSES,
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    AllowList,
    DicomNode,
    NodeConfig,
    NodeStats,
    Received,
    image_transfer_syntaxes,
    node_config,
    tls_context,
)

__all__ = [
    "CANNOT_UNDERSTAND",
    "DATA_SET_MISMATCH",
    "IMAGE_SOP_CLASSES",
    "OUT_OF_RESOURCES",
    "SOP_CLASS_NOT_SUPPORTED",
    "SUCCESS",
    "AllowList",
    "DicomNode",
    "Inbox",
    "NoSpace",
    "NodeConfig",
    "NodeStats",
    "Outcome",
    "Received",
    "image_transfer_syntaxes",
    "node_config",
    "tls_context",
    "valid_uid",
]

# Priors and results back to the PACS (docs/dicom-node.md, "Priors" and "Sending results"):
# - .destinations - Destination, destination(settings, name): the [pacs.NAME] tables.
# - .qr - find_studies (C-FIND / QIDO-RS), retrieve_study (C-GET / WADO-RS into the inbox),
#   move_study (C-MOVE to this node), add_to_library, StudyMatch, RetrieveResult, QRError.
# - .priors - fetch_priors (the GUI's "Fetch priors"; priors in the library: library.priors).
# - .send - send_results, retry_failed, select_images, send_status (C-STORE / STOW-RS, each
#   send recorded in dicom_send).
# - .heatmap - build_heatmap: the attention map as a Secondary Capture image.
from cxrlt_desktop.dicomnode.destinations import (  # noqa: E402
    Destination,
    DestinationError,
    destination,
    local_aet,
)
from cxrlt_desktop.dicomnode.heatmap import HeatmapError, build_heatmap  # noqa: E402
from cxrlt_desktop.dicomnode.priors import PriorsProgress, fetch_priors  # noqa: E402
from cxrlt_desktop.dicomnode.qr import (  # noqa: E402
    QRError,
    RetrieveResult,
    StudyMatch,
    add_to_library,
    find_studies,
    move_study,
    retrieve_study,
)
from cxrlt_desktop.dicomnode.send import (  # noqa: E402
    SendError,
    SendReport,
    SendRow,
    retry_failed,
    select_images,
    send_results,
    send_status,
)

__all__ += [  # noqa: PLE0604
    "Destination",
    "DestinationError",
    "HeatmapError",
    "PriorsProgress",
    "QRError",
    "RetrieveResult",
    "SendError",
    "SendReport",
    "SendRow",
    "StudyMatch",
    "add_to_library",
    "build_heatmap",
    "destination",
    "fetch_priors",
    "find_studies",
    "local_aet",
    "move_study",
    "retrieve_study",
    "retry_failed",
    "select_images",
    "send_results",
    "send_status",
]
