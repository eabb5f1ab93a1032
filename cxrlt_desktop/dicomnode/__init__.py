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
