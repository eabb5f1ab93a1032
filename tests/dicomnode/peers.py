"""Third-party DICOM programs for the tests: "require or skip".

``require_program(name)`` returns the program's path. When it is missing the test skips with the
reason (what to install), unless ``CXRLT_REQUIRE_PEERS=1`` (CI installs the programs and sets
it), where the test fails instead: a CI run never passes by skipping its real peers.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ENV = "CXRLT_REQUIRE_PEERS"
# Debian package of each program the tests use.
PACKAGES = {
    "echoscu": "dcmtk",
    "storescu": "dcmtk",
    "storescp": "dcmtk",
    "findscu": "dcmtk",
    "getscu": "dcmtk",
    "movescu": "dcmtk",
    "dciodvfy": "dicom3tools",
    "Orthanc": "orthanc",
    "openssl": "openssl",
}


def peers_required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def missing(reason: str) -> None:
    """Skip with ``reason``, or fail when the peers are required."""
    if peers_required():
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_program(name: str, what: str | None = None) -> str:
    """The path of program ``name`` (a name on PATH, /usr/sbin included, or a path)."""
    if os.path.isfile(name) and os.access(name, os.X_OK):
        return name
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    pkg = PACKAGES.get(os.path.basename(name))
    hint = f"; install it (Debian: apt-get install -y {pkg})" if pkg else ""
    missing(f"{what or name} not found{hint}")
    raise AssertionError("unreachable")
