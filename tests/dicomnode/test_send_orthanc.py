"""``cxrlt send`` against a real Orthanc: the AI-result SR, the review SR and the attention
heatmap stored over C-STORE and over STOW-RS, read back through Orthanc's REST API
(/instances/{id}/file) and checked (SOP class, references to the source image, content), each
passing dciodvfy; repeats send nothing; a failed send is recorded and sent again on request.

The library holds two real radiographs (pydicom-data RG1, uncompressed and JPEG 2000), which
Orthanc holds too, scored by the engine with a random-weight CSRA model (real attention maps)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dciodvfy import verify
from orthanc_peer import start_orthanc
from pydicom.data import get_testdata_file

from cxrlt_desktop.cli import main
from engine.imageio import read_display

RG1_STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"
FILES = ("RG1_UNCR.dcm", "RG1_J2KR.dcm")
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
FINDING = "cardiomegaly"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    o = start_orthanc(tmp_path_factory.mktemp("orthanc"), {"cxrlt": ("CXRLT", 1)})
    try:
        for n in FILES:
            o.upload(Path(get_testdata_file(n, download=False)))
        yield o
    finally:
        o.stop()


@pytest.fixture
def library(request, tmp_path, predictor, monkeypatch):
    """A scored library of the two RG1 images (one with a verdict); returns (db URL, {sop:
    image id}). SQLite, or PostgreSQL with ``indirect`` parameter "postgresql". The outbox
    lives in the test's data folder."""
    from sqlalchemy import select

    from cxrlt_desktop.library import scan, score_library, set_verdict
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Image

    monkeypatch.setenv("CXRLT_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "images"
    folder.mkdir()
    for n in FILES:
        shutil.copy(get_testdata_file(n, download=False), folder / n)
    if getattr(request, "param", "sqlite") == "postgresql":
        db = request.getfixturevalue("postgres_url")
    else:
        db = f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    st = open_store(db)
    try:
        for _ in scan(st, [folder]):
            pass
        for _ in score_library(st, predictor):
            pass
        with st.session() as s, s.begin():
            ids = dict(s.execute(select(Image.sop_uid, Image.id)).all())
            assert all(
                s.scalars(select(Image.current_prediction_id).where(Image.id.in_(ids.values())))
            )
        first = str(pydicom.dcmread(folder / FILES[0]).SOPInstanceUID)
        set_verdict(st, ids[first], FINDING, "present", reviewer="Dr Test Reader")
    finally:
        st.close()
    return db, ids


def _settings(tmp_path: Path, orthanc, port: int | None = None, url: str | None = None) -> Path:
    s = tmp_path / "settings.toml"
    s.write_text(
        '[dicom_node]\naet = "CXRLT"\n'
        f'[pacs.orthanc]\naet = "{orthanc.aet}"\nhost = "127.0.0.1"\n'
        f"port = {port or orthanc.dicom_port}\n"
        f'[pacs.web]\nurl = "{url or orthanc.dicomweb_url}"\n'
    )
    return s


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _rows(db: str):
    from sqlalchemy import select

    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.tables_dicom import DicomSend

    st = open_store(db, create=False)
    try:
        with st.session() as s, s.begin():
            return [
                (r.image_id, r.what, r.destination, r.sop_uid, r.status, r.error, r.attempts)
                for r in s.scalars(select(DicomSend).order_by(DicomSend.id))
            ]
    finally:
        st.close()


def _probabilities(db: str, image_id: int) -> np.ndarray:
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Image, Prediction

    st = open_store(db, create=False)
    try:
        with st.session() as s, s.begin():
            return s.get(Prediction, s.get(Image, image_id).current_prediction_id).probabilities()
    finally:
        st.close()


def _source_file(sop_uid: str) -> Path:
    for n in FILES:
        path = Path(get_testdata_file(n, download=False))
        if str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) == sop_uid:
            return path
    raise AssertionError(sop_uid)


def _attention(db: str, image_id: int, derivation: str) -> np.ndarray:
    """The stored attention map of the finding the heatmap's Derivation Description names."""
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Image, Prediction
    from engine.classes import DISPLAY_NAMES, TASK1_CLASSES

    finding = next(
        c for c in TASK1_CLASSES if f"attention map of {DISPLAY_NAMES.get(c, c)} (" in derivation
    )
    st = open_store(db, create=False)
    try:
        with st.session() as s, s.begin():
            pred = s.get(Prediction, s.get(Image, image_id).current_prediction_id)
            return np.asarray(pred.attention_maps()[TASK1_CLASSES.index(finding)], np.float32)
    finally:
        st.close()


def _walk(items):
    for item in items or []:
        yield item
        yield from _walk(item.get("ContentSequence"))


def _referenced_sops(ds) -> set[str]:
    """Every ReferencedSOPInstanceUID anywhere in the dataset."""
    out: set[str] = set()

    def visit(d):
        for elem in d:
            if elem.keyword == "ReferencedSOPInstanceUID":
                out.add(str(elem.value))
            elif elem.VR == "SQ":
                for item in elem.value:
                    visit(item)

    visit(ds)
    return out


def _check_objects(orthanc, db, ids, rows, tmp_path) -> None:
    """Each sent object is in Orthanc, as the app recorded it, and is right."""
    sop_of_image = {v: k for k, v in ids.items()}
    ai_uids = {r[0]: r[3] for r in rows if r[1] == "ai-sr"}
    for image_id, what, _dest, sop_uid, status, error, _attempts in rows:
        assert status == "sent", (what, error)
        oid = orthanc.instance_by_sop(sop_uid)
        assert oid is not None, f"{what} {sop_uid} is not in Orthanc"
        data = orthanc.file(oid)
        result = verify(data, tmp_path)
        assert result.errors == [], result.output
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        source = sop_of_image[image_id]
        assert ds.StudyInstanceUID == RG1_STUDY and ds.PatientID == "9RG1"
        if what == "heatmap":
            assert ds.SOPClassUID == SECONDARY_CAPTURE
            assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source
            assert ds.PhotometricInterpretation == "RGB"
            assert (ds.Rows, ds.Columns) == (1955, 1841)
            px = ds.pixel_array.astype(int)
            grey = (px[..., 0] == px[..., 1]) & (px[..., 1] == px[..., 2])
            # Low attention is left as the radiograph (grey), high attention is coloured.
            assert 0.05 < grey.mean() < 0.995, grey.mean()
            # The grey part is the radiograph at its default window, as the input layer shows
            # it; the strongest attention cell of the stored map is coloured.
            display = read_display(_source_file(source)).pixels
            assert np.array_equal(px[..., 0][grey], display[grey])
            att = _attention(db, image_id, ds.DerivationDescription)
            r, c = np.unravel_index(np.argmax(att), att.shape)
            cy = int((r + 0.5) * ds.Rows / att.shape[0])
            cx = int((c + 0.5) * ds.Columns / att.shape[1])
            assert not grey[cy, cx], (r, c)
            continue
        assert ds.SOPClassUID == COMPREHENSIVE_SR
        assert source in _referenced_sops(ds)
        if what == "ai-sr":
            probs = _probabilities(db, image_id)
            values = [
                float(i.MeasuredValueSequence[0].NumericValue)
                for i in _walk(ds.ContentSequence)
                if i.get("ValueType") == "NUM" and i.get("MeasuredValueSequence")
            ]
            finite = probs[np.isfinite(probs)]
            assert len(values) == len(finite)
            assert np.allclose(sorted(values), sorted(finite), atol=1e-3)
            assert ds.VerificationFlag == "UNVERIFIED"
        else:
            assert ds.VerificationFlag == "VERIFIED"
            assert ai_uids[image_id] in _referenced_sops(ds)
            meanings = {
                i.ConceptCodeSequence[0].CodeMeaning
                for i in _walk(ds.ContentSequence)
                if i.get("ValueType") == "CODE"
            }
            assert "Present" in meanings


@pytest.mark.parametrize("name", ["orthanc", "web"], ids=["c-store", "stow-rs"])
def test_send_stores_srs_and_heatmap_in_orthanc(tmp_path, capsys, orthanc, library, name):
    db, ids = library
    settings = _settings(tmp_path, orthanc)
    rc, out, err = _cli(
        capsys, "send", name, "--db", db, "--settings", settings, "--study", RG1_STUDY
    )
    assert rc == 0, out + err
    assert "5 sent, 0 failed, 0 already sent" in out
    rows = _rows(db)
    assert sorted(r[1] for r in rows) == ["ai-sr", "ai-sr", "heatmap", "heatmap", "review-sr"]
    assert {r[2] for r in rows} == {name} and all(r[6] == 1 for r in rows)
    _check_objects(orthanc, db, ids, rows, tmp_path)

    # Again: nothing changed, nothing sent.
    rc, out, err = _cli(capsys, "send", name, "--db", db, "--settings", settings, "--all-scored")
    assert rc == 0 and "0 sent, 0 failed, 5 already sent" in out, out + err
    assert len(_rows(db)) == 5

    # A new verdict: only a new review SR, referencing the AI-result SR the PACS already has.
    from cxrlt_desktop.library import set_verdict
    from cxrlt_desktop.store import open_store

    reviewed = next(r[0] for r in rows if r[1] == "review-sr")
    st = open_store(db, create=False)
    set_verdict(st, reviewed, "pleural effusion", "absent", reviewer="Dr Test Reader")
    st.close()
    rc, out, err = _cli(
        capsys,
        "send",
        name,
        "--db",
        db,
        "--settings",
        settings,
        "--all-reviewed",
        "--what",
        "review-sr",
    )
    assert rc == 0 and "1 sent, 0 failed" in out, out + err
    new = _rows(db)[-1]
    assert new[1] == "review-sr" and new[4] == "sent"
    ds = pydicom.dcmread(
        pydicom.filebase.DicomBytesIO(orthanc.file(orthanc.instance_by_sop(new[3])))
    )
    ai_uid = next(r[3] for r in rows if r[1] == "ai-sr" and r[0] == reviewed)
    assert ai_uid in _referenced_sops(ds)


@pytest.mark.parametrize("library", ["sqlite", "postgresql"], indirect=True)
def test_failed_send_is_recorded_and_retried(tmp_path, capsys, orthanc, library):
    db, ids = library
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = _settings(tmp_path, orthanc, port=closed)
    rc, out, err = _cli(
        capsys,
        "send",
        "orthanc",
        "--db",
        db,
        "--settings",
        settings,
        "--study",
        RG1_STUDY,
        "--what",
        "ai-sr",
    )
    assert rc == 1 and "association" in err and "--retry-failed" in err
    rows = _rows(db)
    assert len(rows) == 1 and rows[0][4] == "failed" and rows[0][6] == 1
    assert "association" in rows[0][5]
    failed_uid = rows[0][3]
    assert orthanc.instance_by_sop(failed_uid) is None

    # Still down: retried, failed again, attempts counted.
    rc, out, err = _cli(
        capsys, "send", "orthanc", "--db", db, "--settings", settings, "--retry-failed"
    )
    assert rc == 1
    assert _rows(db)[0][4:] == ("failed", rows[0][5], 2)

    # Up again: the same object (the same SOP instance) is sent.
    settings = _settings(tmp_path, orthanc)
    rc, out, err = _cli(
        capsys, "send", "orthanc", "--db", db, "--settings", settings, "--retry-failed"
    )
    assert rc == 0 and "1 sent, 0 failed" in out, out + err
    row = _rows(db)[0]
    assert row[3] == failed_uid and row[4] == "sent" and row[5] is None and row[6] == 3
    assert orthanc.instance_by_sop(failed_uid) is not None
    # The rest of the study's AI-result SRs; the one retried is not sent twice.
    rc, out, err = _cli(
        capsys,
        "send",
        "orthanc",
        "--db",
        db,
        "--settings",
        settings,
        "--study",
        RG1_STUDY,
        "--what",
        "ai-sr",
    )
    assert rc == 0 and "1 sent, 0 failed, 1 already sent" in out, out + err


def test_stow_to_a_closed_port_is_recorded(tmp_path, capsys, orthanc, library):
    db, _ids = library
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = _settings(tmp_path, orthanc, url=f"http://127.0.0.1:{closed}/dicom-web")
    rc, _out, err = _cli(
        capsys,
        "send",
        "web",
        "--db",
        db,
        "--settings",
        settings,
        "--all-scored",
        "--what",
        "heatmap",
    )
    assert rc == 1 and "cannot connect" in err
    assert [(r[1], r[4]) for r in _rows(db)] == [("heatmap", "failed")]


def test_send_usage_errors(tmp_path, capsys, orthanc, library):
    db, _ = library
    settings = _settings(tmp_path, orthanc)
    rc, _, err = _cli(capsys, "send", "orthanc", "--db", db, "--settings", settings)
    assert rc == 2 and "choose what to send" in err
    rc, _, err = _cli(
        capsys,
        "send",
        "orthanc",
        "--db",
        db,
        "--settings",
        settings,
        "--all-scored",
        "--what",
        "pdf",
    )
    assert rc == 2 and "unknown result kind 'pdf'" in err
    rc, _, err = _cli(
        capsys, "send", "orthanc", "--db", db, "--settings", settings, "--study", "1.2.3;rm"
    )
    assert rc == 2 and "not a valid StudyInstanceUID" in err
    assert _rows(db) == []
