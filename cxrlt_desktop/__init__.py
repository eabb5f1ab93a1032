"""CXR-LT Desktop: chest X-ray triage with the CXR-LT 2026 first-place method."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cxrlt-desktop")
except PackageNotFoundError:  # running from a source tree or a frozen app without metadata
    __version__ = "0.1.0"
