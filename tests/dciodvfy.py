"""Run ``dciodvfy`` (dicom3tools' IOD verifier) on a DICOM file and read its findings.

Shared by every test that checks an object the app writes (SR documents, heatmaps):

    from dciodvfy import verify  # tests/ is on sys.path (rootdir conftest)
    result = verify(path_or_bytes, tmp_path)
    assert result.errors == [], result.output

When dciodvfy is not installed the test is skipped naming what is missing, unless
``CXRLT_REQUIRE_PEERS=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

PROGRAM = "dciodvfy"


@dataclass
class Result:
    """What dciodvfy said about one file."""

    path: Path
    returncode: int
    output: str  # stdout and stderr together
    errors: list[str]  # lines "Error - ..."
    warnings: list[str]  # lines "Warning - ..." (with any attribute prefix)
    iod: str  # the IOD it recognised (its first non-message line), "" if none


def program() -> str:
    """dciodvfy's path, or skip (fail with ``CXRLT_REQUIRE_PEERS=1``) saying it is missing."""
    found = shutil.which(PROGRAM) or (
        "/usr/bin/dciodvfy" if Path("/usr/bin/dciodvfy").is_file() else None
    )
    if found:
        return found
    reason = "dciodvfy (Debian package dicom3tools) is not installed"
    if os.environ.get("CXRLT_REQUIRE_PEERS") == "1":
        pytest.fail(f"CXRLT_REQUIRE_PEERS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def verify(obj: bytes | str | os.PathLike[str], tmp_path: Path | None = None) -> Result:
    """Run dciodvfy on a file (or on bytes, written to ``tmp_path`` first)."""
    exe = program()
    if isinstance(obj, bytes):
        if tmp_path is None:
            raise ValueError("bytes need a tmp_path to be written to")
        path = Path(tmp_path) / f"dciodvfy-{len(list(Path(tmp_path).glob('dciodvfy-*')))}.dcm"
        path.write_bytes(obj)
    else:
        path = Path(obj)
    proc = subprocess.run(
        [exe, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    output = proc.stdout + proc.stderr
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "Error - " in line]
    warnings = [line for line in lines if "Warning - " in line]
    iod = next((line for line in lines if " - " not in line), "")
    return Result(path, proc.returncode, output, errors, warnings, iod)
