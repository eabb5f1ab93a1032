"""``cxrlt pacs find`` / ``pacs get`` against a real Orthanc: C-FIND + C-GET, QIDO-RS + WADO-RS,
and C-MOVE to a running ``cxrlt listen``; the retrieved objects are byte-for-byte the pixel data
Orthanc was given (and decode to the same pixels), in the transfer syntax they were sent in.

Orthanc holds a study of patient 9RG1 with three real radiographs (pydicom-data RG1: uncompressed,
JPEG 2000 lossless, JPEG 2000 lossy) and a CT slice (not a radiograph: skipped on retrieval),
an earlier study of the same patient (a copy of RG1_UNCR under new UIDs, dated 2002) and a study
of another patient (RG3)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc_peer import start_orthanc
from pydicom.data import get_testdata_file

from cxrlt_desktop.cli import main

RG1_STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"
PRIOR_STUDY = "1.2.826.0.1.3680043.8.498.77001"
PRIOR_SERIES = "1.2.826.0.1.3680043.8.498.77002"
PRIOR_SOP = "1.2.826.0.1.3680043.8.498.77003"
RG1_FILES = ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm")


def _sample(name: str) -> Path:
    return Path(get_testdata_file(name, download=False))


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    """SOPInstanceUID -> file of every radiograph given to Orthanc, plus the CT."""
    folder = tmp_path_factory.mktemp("originals")
    out = {str(pydicom.dcmread(_sample(n)).SOPInstanceUID): _sample(n) for n in RG1_FILES}
    prior = pydicom.dcmread(_sample("RG1_UNCR.dcm"))
    prior.StudyInstanceUID, prior.SeriesInstanceUID = PRIOR_STUDY, PRIOR_SERIES
    prior.SOPInstanceUID = prior.file_meta.MediaStorageSOPInstanceUID = PRIOR_SOP
    prior.StudyDate, prior.SeriesDate, prior.AccessionNumber = "20020314", "20020314", "PRIOR1"
    prior.save_as(folder / "prior.dcm", enforce_file_format=True)
    out[PRIOR_SOP] = folder / "prior.dcm"
    out["rg3"] = _sample("RG3_UNCR.dcm")
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    rg1 = pydicom.dcmread(_sample("RG1_UNCR.dcm"), stop_before_pixels=True)
    for kw in (
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
    ):
        setattr(ct, kw, rg1.get(kw, ""))
    ct.save_as(folder / "ct.dcm", enforce_file_format=True)
    out["ct"] = folder / "ct.dcm"
    return out


def _load(orthanc, originals) -> None:
    for path in originals.values():
        orthanc.upload(path)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, originals):
    """One Orthanc for the module, knowing this node's AE title CXRLT (C-FIND and C-GET only:
    nothing listens on its port)."""
    folder = tmp_path_factory.mktemp("orthanc")
    o = start_orthanc(folder, {"cxrlt": ("CXRLT", 1)})
    try:
        _load(o, originals)
        yield o
    finally:
        o.stop()


def _settings(tmp_path: Path, orthanc, *, aet: str = "CXRLT", port: int | None = None) -> Path:
    s = tmp_path / "settings.toml"
    s.write_text(
        f'[dicom_node]\naet = "{aet}"\ninbox = "{(tmp_path / "inbox").as_posix()}"\n'
        "min_free_mb = 1\n"
        f'[pacs.orthanc]\naet = "{orthanc.aet}"\nhost = "127.0.0.1"\n'
        f"port = {port or orthanc.dicom_port}\n"
        f'[pacs.web]\nurl = "{orthanc.dicomweb_url}"\n'
    )
    return s


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _check_identical(files: list[Path], originals: dict[str, Path]) -> None:
    """Each retrieved file holds the original's pixel data bytes, in its transfer syntax, and
    decodes to the same pixels."""
    for f in files:
        got = pydicom.dcmread(f)
        orig = pydicom.dcmread(originals[str(got.SOPInstanceUID)])
        assert got.file_meta.TransferSyntaxUID == orig.file_meta.TransferSyntaxUID, f
        assert got.PixelData == orig.PixelData, f
        assert np.array_equal(got.pixel_array, orig.pixel_array), f


def _library_sops(db: str) -> dict[str, tuple[str, bool]]:
    from sqlalchemy import select

    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Image

    st = open_store(db, create=False)
    try:
        with st.session() as s, s.begin():
            return {
                sop: (p, ok)
                for p, sop, ok in s.execute(select(Image.path, Image.sop_uid, Image.usable))
            }
    finally:
        st.close()


@pytest.mark.parametrize("name", ["orthanc", "web"], ids=["cfind", "qido"])
def test_find_lists_the_patients_studies(tmp_path, capsys, orthanc, name):
    settings = _settings(tmp_path, orthanc)
    rc, out, err = _cli(
        capsys,
        "pacs",
        "find",
        name,
        "--settings",
        settings,
        "--patient-id",
        "9RG1",
        "--modality",
        "CR,DX",
        "--json",
    )
    assert rc == 0, err
    studies = json.loads(out)
    assert [s["StudyInstanceUID"] for s in studies] == [RG1_STUDY, PRIOR_STUDY]  # newest first
    first, prior = studies
    assert first["PatientID"] == prior["PatientID"] == "9RG1"
    assert (first["StudyDate"], prior["StudyDate"]) == ("20040826", "20020314")
    assert "CR" in first["ModalitiesInStudy"] and "CT" in first["ModalitiesInStudy"]
    assert prior["ModalitiesInStudy"] == ["CR"]
    assert (first["NumberOfStudyRelatedInstances"], prior["NumberOfStudyRelatedInstances"]) == (
        4,
        1,
    )

    # A date range: only the earlier study; another modality: nothing; another patient: RG3.
    rc, out, err = _cli(
        capsys,
        "pacs",
        "find",
        name,
        "--settings",
        settings,
        "--patient-id",
        "9RG1",
        "--study-date",
        "-20031231",
        "--json",
    )
    assert rc == 0, err
    assert [s["StudyInstanceUID"] for s in json.loads(out)] == [PRIOR_STUDY]
    rc, out, _ = _cli(
        capsys,
        "pacs",
        "find",
        name,
        "--settings",
        settings,
        "--patient-id",
        "9RG1",
        "--modality",
        "MG",
        "--json",
    )
    assert rc == 0 and json.loads(out) == []
    rc, out, _ = _cli(capsys, "pacs", "find", name, "--settings", settings, "--patient-id", "11RG3")
    assert rc == 0 and "1.3.6.1.4.1.5962.1.2.11.20040826185059.5457" in out and RG1_STUDY not in out


@pytest.mark.parametrize("name", ["orthanc", "web"], ids=["cget", "wado"])
def test_get_retrieves_pixel_identical_radiographs_into_the_library(
    tmp_path, capsys, orthanc, originals, name
):
    settings = _settings(tmp_path, orthanc)
    db = f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    rc, out, err = _cli(
        capsys, "pacs", "get", name, RG1_STUDY, PRIOR_STUDY, "--db", db, "--settings", settings
    )
    assert rc == 0, err
    assert (
        f"{RG1_STUDY}: 3 new, 0 already in the inbox, 1 skipped (not radiographs), 0 failed" in out
    )
    assert f"{PRIOR_STUDY}: 1 new" in out
    files = sorted((tmp_path / "inbox").rglob("*.dcm"))
    assert {f.relative_to(tmp_path / "inbox").parts[0] for f in files} == {RG1_STUDY, PRIOR_STUDY}
    for f in files:  # <Study>/<Series>/<SOP>.dcm
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert f.relative_to(tmp_path / "inbox").parts == (
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            f"{ds.SOPInstanceUID}.dcm",
        )
    radiographs = {k: v for k, v in originals.items() if k not in ("rg3", "ct")}
    assert {pydicom.dcmread(f).SOPInstanceUID for f in files} == set(radiographs)
    _check_identical(files, radiographs)
    lib = _library_sops(db)
    assert set(lib) == set(radiographs)
    assert all(ok for _p, ok in lib.values())

    # Again: nothing new, the library unchanged (one image per SOP instance).
    rc, out, err = _cli(capsys, "pacs", "get", name, RG1_STUDY, "--db", db, "--settings", settings)
    assert rc == 0, err
    assert f"{RG1_STUDY}: 0 new, 3 already in the inbox" in out
    assert _library_sops(db) == lib


def test_get_by_move_goes_through_cxrlt_listen(tmp_path, capsys, originals, listen):
    """C-MOVE: Orthanc pushes the study to a running ``cxrlt listen`` (the DICOM node's receiver), which
    files it into its inbox and library."""
    lst = listen()
    o = start_orthanc(tmp_path / "orthanc", {"cxrlt": ("CXRLT", lst.port)})
    try:
        _load(o, originals)
        settings = _settings(tmp_path, o)
        rc, out, err = _cli(
            capsys, "pacs", "get", "orthanc", RG1_STUDY, "--move", "--settings", settings
        )
        assert (
            f"{RG1_STUDY}: 3 object(s) moved to CXRLT, 1 skipped (not radiographs), 0 failed" in out
        ), out + err
        assert rc == 0
        lst.wait_for(r"library: \d+ new", count=1)
        files = sorted(lst.inbox.rglob("*.dcm"))
        radiographs = {k: v for k, v in originals.items() if k not in ("rg3", "ct", PRIOR_SOP)}
        assert {pydicom.dcmread(f).SOPInstanceUID for f in files} == set(radiographs)
        _check_identical(files, radiographs)
        import time

        deadline = time.monotonic() + 60
        while set(_library_sops(lst.db)) & set(radiographs) != set(radiographs):
            assert time.monotonic() < deadline, lst.output()
            time.sleep(0.2)
    finally:
        o.stop()


def test_move_to_a_web_destination_is_refused(tmp_path, capsys, orthanc):
    settings = _settings(tmp_path, orthanc)
    rc, _, err = _cli(capsys, "pacs", "get", "web", RG1_STUDY, "--move", "--settings", settings)
    assert rc == 2 and "--move needs a DIMSE destination" in err


def test_usage_errors_name_the_problem(tmp_path, capsys, orthanc):
    settings = _settings(tmp_path, orthanc)
    rc, _, err = _cli(capsys, "pacs", "find", "nowhere", "--settings", settings)
    assert rc == 2 and "no PACS destination 'nowhere'" in err and "orthanc, web" in err
    rc, _, err = _cli(capsys, "pacs", "get", "orthanc", "../../etc", "--settings", settings)
    assert rc == 2 and "not a valid StudyInstanceUID" in err
    assert not (tmp_path / "inbox").exists()
    rc, _, err = _cli(
        capsys, "pacs", "find", "orthanc", "--settings", settings, "--study-date", "2004-08-26"
    )
    assert rc == 2 and "not a study date or range" in err
    rc, _, err = _cli(
        capsys, "pacs", "find", "orthanc", "--settings", settings, "--patient-id", "a\\b"
    )
    assert rc == 2 and "not a usable patient ID" in err


@pytest.mark.parametrize("name", ["orthanc", "web"], ids=["dimse", "dicomweb"])
def test_a_study_the_pacs_does_not_hold_is_an_error(tmp_path, capsys, orthanc, name):
    settings = _settings(tmp_path, orthanc)
    db = f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    for move in ([], ["--move"]) if name == "orthanc" else ([],):
        rc, out, err = _cli(
            capsys,
            "pacs",
            "get",
            name,
            "1.2.826.0.1.3680043.8.498.4040",
            *move,
            "--db",
            db,
            "--settings",
            settings,
        )
        assert rc == 1 and "no study 1.2.826.0.1.3680043.8.498.4040 on the PACS" in err, err


def test_unknown_calling_aet_and_closed_port_fail_in_one_line(tmp_path, capsys, orthanc):
    # Orthanc checks the calling AE title against its modalities: a stranger is rejected.
    settings = _settings(tmp_path, orthanc, aet="STRANGER")
    rc, _, err = _cli(capsys, "pacs", "find", "orthanc", "--settings", settings)
    assert rc == 1
    assert "association rejected" in err and "'STRANGER'" in err
    assert len(err.strip().splitlines()) == 1

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = _settings(tmp_path, orthanc, port=closed)
    db = f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    rc, out, err = _cli(
        capsys, "pacs", "get", "orthanc", RG1_STUDY, "--db", db, "--settings", settings
    )
    assert rc == 1 and "association" in err and f"127.0.0.1:{closed}" in err


EVIL_STUDY = "1.2.826.0.1.3680043.8.498.999.10"


@pytest.fixture
def hostile_orthanc(tmp_path):
    """An Orthanc holding UIDs that try to become paths: a valid study whose series UID climbs
    out of the inbox, and a study whose own UID does (Orthanc stores them as given)."""
    import warnings

    o = start_orthanc(tmp_path / "orthanc", {"cxrlt": ("CXRLT", 1)})
    try:
        for study, series, sop in (
            (EVIL_STUDY, "../../../evil-series", "1.2.826.0.1.3680043.8.498.999.11"),
            (
                "1.2.3/../../evil-study",
                "1.2.826.0.1.3680043.8.498.999.12",
                "1.2.826.0.1.3680043.8.498.999.13",
            ),
        ):
            ds = pydicom.dcmread(_sample("RG1_UNCR.dcm"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # pydicom: invalid UI, on purpose
                ds.PatientID = "EVIL1"
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
                ds.file_meta.MediaStorageSOPInstanceUID = sop
                path = tmp_path / "hostile" / f"{sop}.dcm"
                path.parent.mkdir(exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
            o.upload(path)
        yield o
    finally:
        o.stop()


@pytest.mark.parametrize("name", ["orthanc", "web"], ids=["dimse", "dicomweb"])
def test_uids_from_a_hostile_pacs_never_become_paths(tmp_path, capsys, hostile_orthanc, name):
    settings = _settings(tmp_path, hostile_orthanc)
    rc, out, err = _cli(
        capsys, "pacs", "find", name, "--settings", settings, "--patient-id", "EVIL1", "--json"
    )
    assert rc == 0, err
    assert [s["StudyInstanceUID"] for s in json.loads(out)] == [EVIL_STUDY]
    assert "without a valid StudyInstanceUID ('1.2.3/../../evil-study') was skipped" in err

    db = f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    rc, out, err = _cli(capsys, "pacs", "get", name, EVIL_STUDY, "--db", db, "--settings", settings)
    assert rc == 1
    assert "invalid series or SOP instance UID ('../../../evil-series'" in err
    assert (
        f"{EVIL_STUDY}: 0 new, 0 already in the inbox, 0 skipped (not radiographs), 1 failed" in out
    )
    written = [p for p in tmp_path.rglob("*") if "evil" in p.name]
    assert written == []
    inbox = tmp_path / "inbox"
    assert not inbox.exists() or not list(inbox.rglob("*.dcm"))


@pytest.mark.parametrize("name", ["orthanc", "web"], ids=["cget", "wado"])
def test_retrieval_cancels_between_objects_and_keeps_what_came(tmp_path, orthanc, originals, name):
    from cxrlt_desktop.dicomnode.destinations import destination
    from cxrlt_desktop.dicomnode.inbox import Inbox
    from cxrlt_desktop.dicomnode.qr import retrieve_study
    from cxrlt_desktop.settings import Settings

    dest = destination(Settings.load(_settings(tmp_path, orthanc)), name)
    inbox = Inbox(tmp_path / "inbox")
    seen = []

    def should_stop() -> bool:  # stop once the first object is in the inbox
        seen.append(1)
        return any((tmp_path / "inbox").rglob("*.dcm"))

    r = retrieve_study(dest, "CXRLT", RG1_STUDY, inbox, should_stop=should_stop)
    assert r.cancelled and seen
    files = sorted((tmp_path / "inbox").rglob("*.dcm"))
    assert len(files) == 1 == r.n_new
    _check_identical(files, originals)
    assert not list((tmp_path / "inbox" / ".incoming").iterdir())  # no partial file left
