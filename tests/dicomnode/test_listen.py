"""``cxrlt listen`` against a pynetdicom SCU: C-ECHO, C-STORE of real radiographs (JPEG 2000
included), the allow-list, refused SOP classes, duplicates, a full disk, bad UIDs, the worklist
and scoring, TLS. Each test runs the real command in a subprocess on a free port."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time

import pydicom
import pytest
from node_helpers import sample
from pydicom.uid import JPEG2000Lossless

from cxrlt_desktop.library import problem_files, query_worklist

RG1_STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"
RG1_SERIES = "1.3.6.1.4.1.5962.1.3.9.1.20040826185059.5457"


def _send(port: int, paths, *, aet: str = "TESTSCU", called: str = "CXRLT", tls=None):
    """C-STORE each file (each in the transfer syntax it is encoded in) in one association;
    returns the list of (status, error comment) answers."""
    from pynetdicom import AE

    datasets = [p if isinstance(p, pydicom.Dataset) else pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for ds in datasets:
        ctx = (ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        if ctx not in [(c.abstract_syntax, c.transfer_syntax[0]) for c in ae.requested_contexts]:
            ae.add_requested_context(*ctx)
    kw = {"tls_args": (tls, "127.0.0.1")} if tls is not None else {}
    assoc = ae.associate("127.0.0.1", port, ae_title=called, **kw)
    assert assoc.is_established, "association not accepted"
    out = []
    try:
        for ds in datasets:
            rsp = assoc.send_c_store(ds)
            out.append((int(rsp.Status), str(rsp.get("ErrorComment", ""))))
    finally:
        assoc.release()
    return out


def _echo(port: int, aet: str = "TESTSCU", tls=None):
    """(established, echo status or None, the association) of a C-ECHO as ``aet``."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=aet)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    kw = {"tls_args": (tls, "127.0.0.1")} if tls is not None else {}
    assoc = ae.associate("127.0.0.1", port, ae_title="CXRLT", **kw)
    if not assoc.is_established:
        return False, None, assoc
    status = assoc.send_c_echo()
    assoc.release()
    return True, int(status.Status), assoc


def _images(store):
    from sqlalchemy import select

    from cxrlt_desktop.store.models import Image

    with store.session() as s, s.begin():
        return s.execute(
            select(Image.path, Image.sop_uid, Image.usable, Image.version, Image.reason).order_by(
                Image.id
            )
        ).all()


def _wait(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _dx_study(folder):
    import numpy as np
    from pydicom.uid import JPEGLSLossless

    from engine.dicomwrite import write_dicom

    yy, xx = np.mgrid[0:300, 0:280]
    px = (xx * 7 + yy * 3).astype(np.uint16)
    return write_dicom(
        folder / "dx.dcm",
        px,
        patient_id="OTHER1",
        modality="DX",
        transfer_syntax=JPEGLSLossless,
    )


def test_echo_and_store_real_radiographs(listen, open_library, tmp_path):
    lst = listen()
    ok, status, _ = _echo(lst.port)
    assert ok and status == 0x0000
    other = _dx_study(tmp_path)  # another patient's study: DX, JPEG-LS lossless
    files = [sample("RG1_UNCR.dcm"), sample("RG1_J2KR.dcm"), other]
    answers = _send(lst.port, files)
    assert [a[0] for a in answers] == [0, 0, 0], answers
    for f in files:
        orig = pydicom.dcmread(f)
        got_path = (
            lst.inbox
            / orig.StudyInstanceUID
            / orig.SeriesInstanceUID
            / f"{orig.SOPInstanceUID}.dcm"
        )
        got = pydicom.dcmread(got_path)
        # kept as sent: same transfer syntax, same (compressed) pixel bytes, same header
        assert got.file_meta.TransferSyntaxUID == orig.file_meta.TransferSyntaxUID
        assert got.PixelData == orig.PixelData
        assert got.PatientID == orig.PatientID
    assert (
        pydicom.dcmread(
            lst.inbox
            / RG1_STUDY
            / RG1_SERIES
            / "1.3.6.1.4.1.5962.1.1.9.1.2.20040826185059.5457.dcm"
        ).file_meta.TransferSyntaxUID
        == JPEG2000Lossless
    )
    store = open_library(lst.db)
    _wait(lambda: len(_images(store)) == 3, what="three images in the library")
    rows = {r.study_uid: r for r in query_worklist(store)}
    assert rows[RG1_STUDY].n_images == 2
    assert len(rows) == 2
    assert all(img.usable for img in _images(store))
    assert not list(lst.inbox.glob(".incoming/*")), "a temporary file was left behind"


def test_calling_ae_not_on_the_allow_list_is_rejected(listen):
    lst = listen("--allow", "GOODSCU", "HOSTSCU@127.0.0.1", "FARSCU@192.0.2.7")
    ok, status, _ = _echo(lst.port, "GOODSCU")
    assert ok and status == 0
    ok, _, _ = _echo(lst.port, "HOSTSCU")
    assert ok  # allowed from this host
    for bad in ("BADSCU", "FARSCU"):  # FARSCU: allowed from another host only
        ok, _, assoc = _echo(lst.port, bad)
        assert not ok and assoc.is_rejected, bad
    # rejected at association: nothing stored, and the rejections are logged
    lst.wait_for(r"BADSCU@127\.0\.0\.1: association rejected")
    lst.wait_for(r"FARSCU@127\.0\.0\.1: association rejected")


def test_non_image_sop_class_is_refused_and_recorded(listen, open_library, tmp_path):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    lst = listen()
    sr = pydicom.Dataset()
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    sr.SOPInstanceUID = generate_uid()
    sr.StudyInstanceUID, sr.SeriesInstanceUID = generate_uid(), generate_uid()
    sr.Modality, sr.PatientID = "SR", "P1"
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    answers = _send(lst.port, [sample("CT_small.dcm"), sr])
    assert [a[0] for a in answers] == [0x0122, 0x0122], answers
    assert "CT Image Storage" in answers[0][1]
    store = open_library(lst.db)
    probs = _wait(lambda: dict(problem_files(store)) if len(problem_files(store)) == 2 else None)
    ct_key = "dicom://TESTSCU@127.0.0.1/sop-class/1.2.840.10008.5.1.4.1.1.2"
    assert ct_key in probs
    assert "CT Image Storage" in probs[ct_key] and "not a projection radiograph" in probs[ct_key]
    assert any("Basic Text SR" in r for r in probs.values())
    files = [p for p in lst.inbox.rglob("*") if p.is_file()]
    assert files == [], files
    assert query_worklist(store) == []


def test_unusable_radiograph_is_kept_recorded_and_answered_cannot_understand(listen, open_library):
    ds = pydicom.dcmread(sample("RG1_UNCR.dcm"))
    ds.Modality = "CT"  # a CR object that says it is a CT: the input layer refuses it
    lst = listen()
    [(status, comment)] = _send(lst.port, [ds])
    assert status == 0xC000 and "not a radiograph" in comment, comment
    store = open_library(lst.db)
    [row] = _wait(lambda: _images(store), what="the image row")
    assert not row.usable and "not a radiograph" in row.reason
    assert row.path.endswith(f"{ds.SOPInstanceUID}.dcm")
    assert dict(problem_files(store))[row.path] == row.reason


def test_the_same_sop_instance_twice_is_one_image(listen, open_library):
    lst = listen()
    rg1 = sample("RG1_UNCR.dcm")
    assert _send(lst.port, [rg1])[0][0] == 0
    target = (
        lst.inbox / RG1_STUDY / RG1_SERIES / "1.3.6.1.4.1.5962.1.1.9.1.1.20040826185059.5457.dcm"
    )
    store = open_library(lst.db)
    _wait(lambda: len(_images(store)) == 1)
    before = target.stat()
    assert _send(lst.port, [rg1, rg1])[0][0] == 0  # again, twice in one association
    lst.wait_for(r"unchanged .*\.dcm", count=2)
    assert target.stat().st_mtime_ns == before.st_mtime_ns  # identical: not rewritten
    # RG1_J2KI and RG1_UNCI carry one SOPInstanceUID in two encodings: still one image
    answers = _send(lst.port, [sample("RG1_J2KI.dcm")])
    answers += _send(lst.port, [sample("RG1_UNCI.dcm")])
    assert [a[0] for a in answers] == [0, 0]
    lst.wait_for(r"library: 0 new, 1 changed")
    rows = _images(store)
    assert len(rows) == 2 and len({r.sop_uid for r in rows}) == 2
    j2ki = [r for r in rows if r.sop_uid.endswith(".1.3.20040826185059.5457")][0]
    assert j2ki.version == 2 and j2ki.usable
    assert len(query_worklist(store)) == 1


def test_full_disk_refuses_with_out_of_resources_and_writes_nothing(listen, open_library, tmp_path):
    free_mb = shutil.disk_usage(tmp_path).free // (1024 * 1024)
    lst = listen("--min-free-mb", str(free_mb + 1024))
    [(status, comment)] = _send(lst.port, [sample("RG1_UNCR.dcm")])
    assert status == 0xA700, (hex(status), comment)
    assert "free space" in comment
    assert [p for p in lst.inbox.rglob("*") if p.is_file()] == []
    time.sleep(0.5)
    assert _images(open_library(lst.db)) == []


def test_uids_that_are_no_uids_never_become_path_parts(listen, open_library, tmp_path):
    ds = pydicom.dcmread(sample("RG1_UNCR.dcm"))
    ds.StudyInstanceUID = "../../../../escaped"
    lst = listen()
    [(status, comment)] = _send(lst.port, [ds])
    assert status == 0xA900 and "not a valid UID" in comment, (hex(status), comment)
    assert not (tmp_path / "escaped").exists()
    assert [p for p in tmp_path.rglob("escaped*")] == []
    assert [p for p in lst.inbox.rglob("*") if p.is_file()] == []
    store = open_library(lst.db)
    probs = _wait(lambda: problem_files(store))
    assert "StudyInstanceUID is not a valid UID: '../../../../escaped'" in probs[0][1]


def test_received_study_is_scored_on_the_worklist(listen, open_library, tiny_model_args):
    lst = listen(*tiny_model_args)
    lst.wait_for(r"models loaded", timeout=120)
    answers = _send(lst.port, [sample("RG1_UNCR.dcm"), sample("RG1_J2KR.dcm")])
    assert [a[0] for a in answers] == [0, 0]
    store = open_library(lst.db)

    def scored():
        rows = query_worklist(store)
        return rows if rows and rows[0].n_scored == 2 else None

    [row] = _wait(scored, timeout=180, what="the study scored")
    assert row.study_uid == RG1_STUDY and row.n_images == 2 and row.n_failed == 0
    assert row.rare_score is not None


@pytest.fixture
def self_signed(tmp_path):
    from peers import require_program

    openssl = require_program("openssl")
    key, cert = tmp_path / "node.key", tmp_path / "node.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls(listen, self_signed):
    cert, key = self_signed
    lst = listen("--tls-cert", str(cert), "--tls-key", str(key))
    assert "(TLS)" in lst.output()
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    ok, status, _ = _echo(lst.port, tls=client)
    assert ok and status == 0
    assert _send(lst.port, [sample("RG1_UNCR.dcm")], tls=client)[0][0] == 0
    ok, _, _ = _echo(lst.port)  # plain TCP to a TLS port: no association
    assert not ok
    untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # system CAs only
    ok, _, _ = _echo(lst.port, tls=untrusting)
    assert not ok


def test_bad_options_are_usage_errors(tmp_path):
    import sys

    (tmp_path / "none.toml").write_text("")
    for args, text in (
        (["--aet", "A" * 17], "--aet"),
        (["--allow", "OK", "BAD@"], "--allow"),
        (["--port", "70000"], "--port"),
        (["--tls-cert", str(tmp_path / "c.pem")], "TLS needs both"),
    ):
        p = subprocess.run(
            [sys.executable, "-m", "cxrlt_desktop", "listen", "--db",
             f"sqlite:///{tmp_path / 'x.db'}", "--settings", str(tmp_path / "none.toml"), *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert p.returncode == 2 and text in p.stderr, (args, p.stderr)


def test_received_images_are_queued_for_the_active_model_sets(
    listen, open_library, tiny_model_args, tmp_path
):
    """A node without a scorer (department mode: workers score) queues each received image
    for every model set in use."""
    from sqlalchemy import select

    from cxrlt_desktop.store.models import Image
    from cxrlt_desktop.store.tables_department import ScoreJob

    db = f"sqlite:///{(tmp_path / 'dept.db').as_posix()}"
    first = listen(*tiny_model_args, db=db)
    first.wait_for(r"models loaded", timeout=120)
    assert _send(first.port, [sample("RG1_UNCR.dcm")])[0][0] == 0
    first.wait_for(r"scored 1 image", timeout=180)  # the model set is now in use
    assert first.stop() == 0
    node = listen(db=db)  # --no-score
    assert _send(node.port, [sample("RG1_J2KR.dcm")])[0][0] == 0
    node.wait_for(r"library: 1 new")
    store = open_library(db)
    with store.session() as s, s.begin():
        new_id = s.scalar(
            select(Image.id).where(Image.sop_uid.endswith(".1.2.20040826185059.5457"))
        )
        jobs = s.execute(select(ScoreJob.image_id, ScoreJob.state)).all()
    assert (new_id, "queued") in jobs
