"""A real Orthanc PACS for the tests: started on free 127.0.0.1 ports with its own configuration
and storage folder under the test's tmp folder, the DICOMweb plugin on, and stopped at the end.

Without Orthanc or its DICOMweb plugin the tests skip with the reason, unless
``CXRLT_REQUIRE_PEERS=1`` (CI), where they fail (``peers.py``'s require-or-skip).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from peers import missing, require_program

ORTHANC = os.environ.get("CXRLT_ORTHANC", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = os.environ.get(
    "CXRLT_ORTHANC_DICOMWEB", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
)
ORTHANC_AET = "ORTHANCTEST"


def _require_plugin(path: str) -> str:
    """The DICOMweb plugin's path, or skip/fail (peers.missing) naming the package."""
    if os.path.isfile(path):
        return path
    missing(
        f"Orthanc's DICOMweb plugin not found ({path}); install it (Debian: apt-get install "
        "-y orthanc-dicomweb)"
    )
    raise AssertionError("unreachable")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    """A running Orthanc: its AE title, DICOM port, REST base URL and DICOMweb root."""

    aet: str
    dicom_port: int
    http_url: str
    process: subprocess.Popen
    folder: Path

    @property
    def dicomweb_url(self) -> str:
        return self.http_url + "/dicom-web"

    def rest(self, method: str, path: str, data: bytes | None = None) -> bytes:
        req = urllib.request.Request(self.http_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/dicom")
        with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - the test's own Orthanc
            return r.read()

    def json(self, path: str):
        return json.loads(self.rest("GET", path))

    def upload(self, path: Path) -> str:
        """POST a DICOM file to /instances; returns Orthanc's instance id."""
        answer = json.loads(self.rest("POST", "/instances", Path(path).read_bytes()))
        assert answer["Status"] in ("Success", "AlreadyStored"), answer
        return answer["ID"]

    def instance_by_sop(self, sop_uid: str) -> str | None:
        """Orthanc's id of the instance with this SOPInstanceUID (None when absent)."""
        body = json.dumps(
            {"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}, "Expand": False}
        ).encode()
        req = urllib.request.Request(self.http_url + "/tools/find", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310
            ids = json.loads(r.read())
        return ids[0] if ids else None

    def file(self, instance_id: str) -> bytes:
        """The stored DICOM file of an instance (/instances/{id}/file)."""
        return self.rest("GET", f"/instances/{instance_id}/file")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_orthanc(folder: Path, modalities: dict[str, tuple[str, int]] | None = None) -> Orthanc:
    """Start Orthanc with its configuration and storage in ``folder``. ``modalities``: name ->
    (AE title, port) of peers on 127.0.0.1 it may answer and send to (C-FIND, C-GET, C-MOVE,
    C-STORE)."""
    exe = require_program(ORTHANC, "Orthanc")
    plugin = _require_plugin(DICOMWEB_PLUGIN)
    folder.mkdir(parents=True, exist_ok=True)
    storage = folder / "storage"
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "cxrlt-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": ORTHANC_AET,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
        "DicomModalities": {
            name: {
                "AET": aet,
                "Host": "127.0.0.1",
                "Port": port,
                "AllowEcho": True,
                "AllowFind": True,
                "AllowGet": True,
                "AllowMove": True,
                "AllowStore": True,
            }
            for name, (aet, port) in (modalities or {}).items()
        },
        # Only the configured peers, from their configured host.
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomCheckModalityHost": True,
        "DicomCheckCalledAet": True,
        "UnknownSopClassAccepted": False,
        "StorageCompression": False,
        "SaveJobs": False,
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=1))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([exe, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    orthanc = Orthanc(ORTHANC_AET, dicom_port, f"http://127.0.0.1:{http_port}", proc, folder)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(
                f"Orthanc exited with status {proc.returncode}: "
                + (folder / "orthanc.log").read_text(errors="replace")[-2000:],
                pytrace=False,
            )
        try:
            system = orthanc.json("/system")
            plugins = orthanc.json("/plugins")
            if "dicom-web" not in plugins:
                orthanc.stop()
                pytest.fail(f"Orthanc started without its DICOMweb plugin: {plugins}")
            assert system["DicomPort"] == dicom_port
            break
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                orthanc.stop()
                pytest.fail("Orthanc did not answer on its HTTP port within 60 s", pytrace=False)
            time.sleep(0.2)
    log.close()
    return orthanc
