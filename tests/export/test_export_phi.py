"""De-identification against planted PHI: every identifier of an image's header scrubbed from a
note, burned-in text kept out of the PNG copies, header values never becoming file names
outside the export folder, files readable by their owner only.

Everything is real: DICOMs written with pydicom, a real scan into SQLite, the real export; the
expected values come from the headers as the test wrote them (read back with pydicom), never
from the export's own identifier lists.
"""

from __future__ import annotations

import csv
import os
import re
import stat
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from sqlalchemy import select

from cxrlt_desktop.export import NOTE_WITHHELD, ExportError, export_feedback, inside
from cxrlt_desktop.library.reviews import set_verdict
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.store.models import Image

from .conftest import _pixels, insert_prediction, probs_with, scan_folder

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
REVIEWER = "Dr Quillon Marchetti"  # a reviewer's name: in no byte of a de-identified export


@pytest.fixture
def store(any_store):
    """Every test of this module on SQLite and on PostgreSQL."""
    return any_store


# Every identifying attribute a note could quote, with distinctive values.
HEADER = {
    "PatientName": "Smith-Jones^Mary-Ann^Quentina^Dr^III",
    "PatientID": "MRN-123456",
    "OtherPatientIDs": "OPID778899",  # no separator: its digits alone too
    "AccessionNumber": "ACC-24680",
    "ReferringPhysicianName": "Hawthorne^Gideon",
    "PatientAddress": "12 Quillfeather Lane^Brackenridge^ZX 90210",
    "StationName": "XRAYROOM7",
    "InstitutionName": "Saint Ottoline Infirmary",
    "PatientBirthDate": "19470315",
    "StudyDate": "20240305",
}
SEQ_PATIENT_ID = "SEQID-445566"  # inside OtherPatientIDsSequence: found at any depth


def _write(path: Path, seed: int = 0, **attrs) -> Path:
    """A 256 x 256 CR (or what ``attrs`` make it) with the HEADER identifiers."""
    from engine.dicomwrite import make_dataset

    ds = make_dataset(
        _pixels(seed),
        patient_id=HEADER["PatientID"],
        patient_name=HEADER["PatientName"],
        patient_birth_date=HEADER["PatientBirthDate"],
        accession_number=HEADER["AccessionNumber"],
        institution_name=HEADER["InstitutionName"],
        study_date=HEADER["StudyDate"],
    )
    ds.ReferringPhysicianName = HEADER["ReferringPhysicianName"]
    ds.OtherPatientIDs = HEADER["OtherPatientIDs"]
    ds.PatientAddress = HEADER["PatientAddress"]
    ds.StationName = HEADER["StationName"]
    item = Dataset()
    item.PatientID = SEQ_PATIENT_ID
    item.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([item])
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _planted_note() -> str:
    """A note quoting every header value in the forms people write them."""
    return (
        "Pt Mary-Ann Smith-Jones (smith-jones, mary-ann; SMITH JONES Mary Ann; Quentina), "
        "MRN-123456 aka 123456 / mrn123456, other id OPID778899 and 778899, seq SEQID-445566, "
        "acc ACC-24680 (24680), ref by Dr. Gideon Hawthorne / HAWTHORNE, lives 12 Quillfeather "
        "Lane, Brackenridge, ZX 90210; station xrayroom7 at Saint Ottoline Infirmary. "
        "Study 20240305, 2024-03-05, 05/03/2024, 03/05/2024, 05.03.2024, 5 March 2024, "
        "March 5, 2024, March 2024. Born 19470315, 1947-03-15, 15/03/1947, 03/15/1947, "
        "15.03.1947, 15 March 1947, March 15, 1947. "
        "RUL nodule 12 mm, compare prior; Dr review."
    )


def _header_needles(path: Path) -> list[str]:
    """Every identifying value of the file's header as pydicom reads it back, with its pieces:
    name parts (split at ^, -, spaces), IDs and their digits, address parts, and both dates
    in each form the note uses."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    needles: set[str] = set()
    for key in ("PatientName", "ReferringPhysicianName"):
        comps = str(ds[key].value).split("^")[:3]  # prefix and suffix identify nobody
        for comp in comps:
            needles.add(comp)
            needles.update(w for w in re.split(r"[-\s]+", comp) if len(w) >= 2)
    ids = [ds.PatientID, ds.OtherPatientIDs, ds.AccessionNumber]
    ids.append(ds.OtherPatientIDsSequence[0].PatientID)
    for v in ids:
        needles.add(str(v))
        needles.update(re.findall(r"\d{4,}", str(v)))
    for v in (ds.StationName, ds.InstitutionName):
        needles.add(str(v))
    needles.update(p for p in str(ds.PatientAddress).split("^"))
    for da in (ds.StudyDate, ds.PatientBirthDate):
        y, m, d = da[:4], da[4:6], da[6:8]
        month = ["January", "February", "March", "April", "May", "June", "July", "August",
                 "September", "October", "November", "December"][int(m) - 1]  # fmt: skip
        needles |= {
            da,
            f"{y}-{m}-{d}",
            f"{d}/{m}/{y}",
            f"{m}/{d}/{y}",
            f"{d}.{m}.{y}",
            f"{int(d)} {month} {y}",
            f"{month} {int(d)}, {y}",
        }
    return sorted(needles)


def _disagreement_note(out: Path) -> str:
    with open(out / "disagreements.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    return rows[0]["note"]


@pytest.fixture
def planted(store, tmp_path):
    """One scanned image with every identifier in its header, a prediction and a verdict
    that disagrees with it, with the planted note."""
    path = _write(tmp_path / "in" / "Smith-Jones_Mary" / "img.dcm")
    ids = scan_folder(store, tmp_path / "in")
    image_id = ids[path.resolve()]
    insert_prediction(store, image_id, probs_with({"Nodule": 0.001}, default=0.0))
    set_verdict(store, image_id, "Nodule", "present", reviewer="Dr One", note=_planted_note())
    return path


def test_note_loses_every_identifier_of_the_header(store, planted, tmp_path):
    res = export_feedback(store, tmp_path / "out")
    note = _disagreement_note(res.out_dir)
    lowered = note.lower()
    needles = _header_needles(planted)
    assert len(needles) > 30
    left = [n for n in needles if n.lower() in lowered]
    assert not left, (left, note)
    # The clinical words stay: prefixes ("Dr") and measurements are not identifiers.
    assert "RUL nodule 12 mm, compare prior; Dr review." in note
    assert res.n_notes_withheld == 0
    # Control: the same needles are in the note as it was written.
    assert all(n.lower() in _planted_note().lower() for n in needles)


def test_note_is_withheld_when_the_header_cannot_be_checked(store, planted, tmp_path):
    planted.unlink()  # moved away since the scan: its header cannot be read again
    res = export_feedback(store, tmp_path / "gone")
    assert _disagreement_note(res.out_dir) == NOTE_WITHHELD
    assert res.n_notes_withheld == 1
    assert "1 notes were withheld" in (res.out_dir / "README.txt").read_text()
    # With PHI the note is exported as written.
    res = export_feedback(store, tmp_path / "phi", include_phi=True)
    assert _disagreement_note(res.out_dir) == _planted_note()


def test_note_is_withheld_when_the_file_is_another_one(store, planted, tmp_path):
    # Another image now at the path, with the same size and modification time (its UID
    # differs in the last digit): its header says nothing about the scanned one.
    st = planted.stat()
    ds = pydicom.dcmread(planted)
    uid = ds.SOPInstanceUID
    ds.SOPInstanceUID = uid[:-1] + ("1" if uid[-1] != "1" else "2")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(planted, enforce_file_format=True)
    os.utime(planted, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert planted.stat().st_size == st.st_size
    res = export_feedback(store, tmp_path / "other")
    assert _disagreement_note(res.out_dir) == NOTE_WITHHELD and res.n_notes_withheld == 1


# ----------------------------------------------------------------------------------------------
# burned-in text


@pytest.fixture
def burned(store, tmp_path):
    """Four images: BurnedInAnnotation YES, a secondary capture without the flag, a CR
    without it and a CR with NO; every one reviewed."""
    folder = tmp_path / "burned"
    paths = {
        "yes": _write(folder / "yes.dcm", 1, BurnedInAnnotation="YES"),
        "sc": _write(folder / "sc.dcm", 2, SOPClassUID=SECONDARY_CAPTURE, Modality="OT"),
        "cr": _write(folder / "cr.dcm", 3),
        "no": _write(folder / "no.dcm", 4, BurnedInAnnotation="NO"),
    }
    ids = scan_folder(store, folder)
    for p in paths.values():
        set_verdict(store, ids[p.resolve()], "Hernia", "present", reviewer="Dr One")
    return paths


def test_burned_in_text_stays_out_of_a_deidentified_export(store, burned, tmp_path):
    from cxrlt_desktop.export import image_pseudonym

    uid = {
        k: str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        for k, p in burned.items()
    }
    res = export_feedback(store, tmp_path / "deid", copy_images=True)
    pngs = {p.stem for p in (res.out_dir / "images").iterdir()}
    assert pngs == {image_pseudonym(uid["cr"]), image_pseudonym(uid["no"])}
    assert res.n_images == 4 and res.n_images_copied == 2 and res.n_images_burned_in == 2
    readme = (res.out_dir / "README.txt").read_text()
    assert "Left out: 2 images whose pixels may show burned-in text" in readme
    assert f"{image_pseudonym(uid['yes'])}: image not copied: burned-in text" in readme
    assert f"{image_pseudonym(uid['sc'])}: image not copied: secondary capture" in readme
    # their labels are still exported
    with open(res.labels_csv, newline="") as f:
        assert len(list(csv.DictReader(f))) == 4

    allowed = export_feedback(store, tmp_path / "allowed", copy_images=True, allow_burned_in=True)
    assert allowed.n_images_copied == 4 and allowed.n_images_burned_in == 0
    assert "allowed" in (allowed.out_dir / "README.txt").read_text()
    phi = export_feedback(store, tmp_path / "phi", copy_images=True, include_phi=True)
    assert phi.n_images_copied == 4


def test_cli_allow_burned_in(store, burned, tmp_path, monkeypatch, capsys):
    from cxrlt_desktop.cli import main

    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    url = store.url
    assert main(["export", "--db", url, "--out", str(tmp_path / "a"), "--copy-images", "-q"]) == 0
    captured = capsys.readouterr()
    assert "2 images, 2 left out for burned-in text" in captured.out
    assert captured.err.count("--allow-burned-in copies it") == 2
    rc = main(
        ["export", "--db", url, "--out", str(tmp_path / "b"), "--copy-images", "--allow-burned-in"]
    )
    assert rc == 0 and "4 images" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# header values as file names


BAD_UIDS = ["../../x", "/tmp/abs", "1.2.3/../.."]


def test_header_uids_never_write_outside_the_export(store, tmp_path):
    import warnings

    folder = tmp_path / "deep" / "in"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UIDs it writes
        paths = [
            _write(folder / f"b{i}.dcm", i, SOPInstanceUID=uid) for i, uid in enumerate(BAD_UIDS)
        ]
    ids = scan_folder(store, folder)
    for p in paths:
        set_verdict(store, ids[p.resolve()], "Hernia", "present", reviewer="Dr One")
    out = tmp_path / "deep" / "export"
    # A UID over 64 characters never reaches the export: the scan refuses the file, naming it.
    over = _write(tmp_path / "deep" / "long" / "b.dcm", 9, SOPInstanceUID="1." + "2" * 63)
    for _ in scan(store, [over.parent]):
        pass
    with store.session() as s:
        refused = s.scalars(select(Image).where(Image.path == str(over))).one()
    assert not refused.usable
    assert refused.reason == "SOPInstanceUID has 65 characters (DICOM allows at most 64)"
    before = {p for p in tmp_path.rglob("*")}
    res = export_feedback(store, out, include_phi=True, copy_images=True, sr=True)
    assert res.n_images_copied == res.n_sr == len(BAD_UIDS), res.problems
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p == out or out in p.parents for p in created), created
    assert not Path("/tmp/abs.png").exists() and not Path("/tmp/abs.dcm").exists()
    for name in ("images", "sr"):
        stems = {p.stem.removesuffix("_review") for p in (out / name).iterdir()}
        assert len(stems) == len(BAD_UIDS), stems
        assert all(re.fullmatch(r"[0-9a-f]{16}", s) for s in stems), stems
    with open(res.labels_csv, newline="") as f:
        image_ids = {r["ImageID"] for r in csv.DictReader(f)}
    assert image_ids == {p.stem for p in (out / "images").iterdir()}


def test_inside_refuses_every_way_out(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    assert inside(root, "images", "1.2.3.png") == root / "images" / "1.2.3.png"
    for parts in (("..", "x"), ("../../x",), ("/tmp/abs",), ("images", "1.2.3/../.."), (".",),
                  ("a\0b",), ("",)):  # fmt: skip
        with pytest.raises(ExportError, match="refused"):
            inside(root, *parts)
    (root / "link").symlink_to(tmp_path)  # a link out of the folder
    with pytest.raises(ExportError, match="resolves outside"):
        inside(root, "link", "x.png")


# ----------------------------------------------------------------------------------------------
# modes


def test_export_files_are_private_whatever_the_umask(store, planted, tmp_path):
    old = os.umask(0o022)
    try:
        res = export_feedback(store, tmp_path / "new" / "out", copy_images=True, sr=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(res.out_dir.stat().st_mode) == 0o700
    for p in res.out_dir.rglob("*"):
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == want, p
    assert len(res.files) == 6  # README, labels, disagreements, one PNG, AI and review SR


# ----------------------------------------------------------------------------------------------
# reviewers


def test_reviewer_names_are_pseudonymised_and_scrubbed(store, tmp_path):
    from cxrlt_desktop.export import reviewer_pseudonym
    from cxrlt_desktop.library.pseudonym import pseudonym

    path = _write(tmp_path / "in" / "img.dcm")
    image_id = scan_folder(store, tmp_path / "in")[path.resolve()]
    insert_prediction(store, image_id, probs_with({"Nodule": 0.001}, default=0.0))
    note = (
        "RUL nodule, discussed with Dr. Quillon Marchetti (Marchetti, Quillon) and one "
        "colleague; Dr review."
    )
    set_verdict(store, image_id, "Nodule", "present", reviewer=REVIEWER, note=note)
    res = export_feedback(store, tmp_path / "out", sr=True)
    with open(res.out_dir / "disagreements.csv", newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    # the reviewer column holds the pseudonym (computed here from its definition)
    assert row["reviewer"] == pseudonym(REVIEWER, kind="reviewer") == reviewer_pseudonym(REVIEWER)
    assert "Quillon" not in row["note"] and "Marchetti" not in row["note"]
    assert (
        "RUL nodule, discussed with" in row["note"] and "one colleague; Dr review." in row["note"]
    )
    needles = [w.encode(enc) for w in ("Quillon", "Marchetti") for enc in ("utf-8", "utf-16-le")]
    needles += [w.lower().encode() for w in ("Quillon", "Marchetti")]
    for p in res.out_dir.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert not [n for n in needles if n in data], p
    review = pydicom.dcmread(next((res.out_dir / "sr").glob("*_review.dcm")))
    assert str(review.VerifyingObserverSequence[0].VerifyingObserverName) == row["reviewer"] + "^"
    # Control: with identifiers the name is there, in the CSV and the review SR.
    phi = export_feedback(store, tmp_path / "phi", sr=True, include_phi=True)
    assert REVIEWER.encode() in (phi.out_dir / "disagreements.csv").read_bytes()
    assert REVIEWER.encode() in next((phi.out_dir / "sr").glob("*_review.dcm")).read_bytes()
