"""No network at run time: switch off every third-party library's downloads and telemetry.

The app reads local files only (DICOM peers and model fetches happen only where the user asks for
them). Some libraries it uses phone home on their own:

- OpenVINO: ``import openvino`` imports ``openvino.tools.ovc``, which starts
  ``openvino_telemetry``: it writes ``~/intel/openvino_ga_cid`` and ``~/intel/stats`` and forks a
  child that resolves ``www.google-analytics.com`` and posts an "import" event over HTTPS. That
  package honours no environment variable other than CI markers, but OpenVINO falls back to its
  own no-op stub (``openvino.tools.ovc.telemetry_stub``) when ``openvino_telemetry`` cannot be
  imported: :func:`go_offline` makes it unimportable (``sys.modules[name] = None``, Python's
  documented way to block an import).
- Hugging Face Hub (open_clip and timm load through it): ``HF_HUB_OFFLINE`` (no requests at all),
  ``HF_HUB_DISABLE_TELEMETRY``, ``HF_HUB_DISABLE_UPDATE_CHECK``, ``HF_HUB_DISABLE_IMPLICIT_TOKEN``;
  ``TRANSFORMERS_OFFLINE`` and ``HF_DATASETS_OFFLINE`` for the libraries of the same family;
  ``DO_NOT_TRACK`` (https://donottrack.sh) for any other that honours it.

torch, timm (``pretrained=False``), open_clip (``local-dir:`` models), matplotlib, pydicom and Qt
open no connection by themselves.

Environment variables set here are inherited by child processes (the scan and decode workers are
started with ``spawn``, after the entry point called :func:`go_offline`); a child that imports
OpenVINO goes through :mod:`engine.onnx_backend`, which calls :func:`go_offline` first.
"""

from __future__ import annotations

import os
import sys

#: Environment variables forced (not defaulted: a value left in the user's shell by another
#: tool does not switch the network back on).
OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
}

#: Modules whose only job is to send telemetry; their users fall back to no-op stubs without them.
BLOCKED_MODULES: tuple[str, ...] = ("openvino_telemetry",)


def go_offline() -> None:
    """Set :data:`OFFLINE_ENV` and block :data:`BLOCKED_MODULES` (idempotent, cheap).

    Call it before the first import of huggingface_hub, open_clip, timm or openvino: the entry
    points (``cxrlt``, the GUI) do so on import, :mod:`engine.onnx_backend` before it imports
    OpenVINO.
    """
    os.environ.update(OFFLINE_ENV)
    for name in BLOCKED_MODULES:
        # Also over a module imported earlier: as long as openvino.tools.ovc has not been
        # imported yet, it then takes its stub.
        sys.modules[name] = None  # type: ignore[assignment]


__all__ = ["BLOCKED_MODULES", "OFFLINE_ENV", "go_offline"]
