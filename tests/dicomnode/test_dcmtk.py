"""DCMTK's echoscu and storescu (software no one here wrote) against ``cxrlt listen``.

Skipped with the reason when DCMTK is missing, failed instead with CXRLT_REQUIRE_PEERS=1 (CI)."""

from __future__ import annotations

import subprocess
import time

import pydicom
from node_helpers import sample
from peers import require_program

from cxrlt_desktop.library import problem_files, query_worklist

RG1_STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_echoscu(listen):
    echoscu = require_program("echoscu")
    lst = listen("--allow", "DCMTKSCU")
    p = _run([echoscu, "-v", "-aet", "DCMTKSCU", "-aec", "CXRLT", "127.0.0.1", str(lst.port)])
    assert p.returncode == 0, p.stderr
    assert "Received Echo Response (Success)" in p.stdout + p.stderr
    # an AE title not on the allow-list: DCMTK sees the association rejected
    p = _run([echoscu, "-v", "-aet", "STRANGER", "-aec", "CXRLT", "127.0.0.1", str(lst.port)])
    assert p.returncode != 0
    assert "Association Rejected" in p.stdout + p.stderr
    assert "Calling AE Title Not Recognized" in p.stdout + p.stderr


def test_storescu_push_reaches_the_worklist(listen, open_library):
    storescu = require_program("storescu")
    lst = listen()
    files = [str(sample("RG1_UNCR.dcm")), str(sample("RG1_J2KR.dcm"))]
    # -xv: propose JPEG 2000 lossless, so the compressed file travels as it is
    p = _run([storescu, "-v", "-xv", "-aec", "CXRLT", "127.0.0.1", str(lst.port), *files])
    assert p.returncode == 0, p.stdout + p.stderr
    assert (p.stdout + p.stderr).count("Received Store Response (Success)") == 2
    lst.wait_for(r"library: ")
    for f in files:
        orig = pydicom.dcmread(f)
        got = pydicom.dcmread(
            lst.inbox
            / orig.StudyInstanceUID
            / orig.SeriesInstanceUID
            / f"{orig.SOPInstanceUID}.dcm"
        )
        assert got.file_meta.TransferSyntaxUID == orig.file_meta.TransferSyntaxUID
        assert got.PixelData == orig.PixelData
    store = open_library(lst.db)
    deadline = time.monotonic() + 30
    while not query_worklist(store) and time.monotonic() < deadline:
        time.sleep(0.1)
    [row] = query_worklist(store)
    assert row.study_uid == RG1_STUDY and row.n_images == 2


def test_storescu_ct_is_refused_sop_class_not_supported(listen, open_library):
    storescu = require_program("storescu")
    lst = listen()
    p = _run(
        [storescu, "-v", "-aec", "CXRLT", "127.0.0.1", str(lst.port), str(sample("CT_small.dcm"))]
    )
    out = p.stdout + p.stderr
    assert "Received Store Response (Refused: SOPClassNotSupported)" in out, out
    lst.wait_for(r"refused: SOP class CT Image Storage")
    store = open_library(lst.db)
    deadline = time.monotonic() + 30
    while not problem_files(store) and time.monotonic() < deadline:
        time.sleep(0.1)
    [(path, reason)] = problem_files(store)
    assert path.startswith("dicom://STORESCU@127.0.0.1/") and "CT Image Storage" in reason
