"""Scanning: hierarchy, duplicates, unusable files, incremental rescans, missing and moved files."""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest
from library_helpers import write_bad_inputs
from sqlalchemy import func, select

from cxrlt_desktop.library.reviews import set_verdict
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.store.models import DuplicateFile, Image, Patient, Review, Series, Study


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on PostgreSQL."""
    return any_store


def _run(store, folders, **kw):
    progs = list(scan(store, folders, **kw))
    assert progs[-1].done or progs[-1].cancelled
    return progs


def _images(store):
    with store.session() as s, s.begin():
        # keyed by "folder/name" (the test studies reuse file names)
        return {"/".join(i.path.split(os.sep)[-2:]): i for i in s.scalars(select(Image)).all()}


def test_mixed_folder(store, tmp_path, write_study):
    root = tmp_path / "in"
    a = write_study(root / "a", 3, patient_id="P1")
    write_study(root / "b", 2, patient_id="P2", study_date="20230505")
    shutil.copy(a[0], root / "a" / "copy_of_im000.dcm")
    pngdir = root / "png"
    pngdir.mkdir()
    cv2.imwrite(
        str(pngdir / "x.png"),
        np.random.default_rng(0).integers(0, 255, (300, 300)).astype(np.uint8),
    )
    expected = write_bad_inputs(root / "bad")

    progs = _run(store, [root])
    last = progs[-1]
    assert last.seen == 3 + 2 + 1 + 1 + len(expected)
    assert last.duplicates == 1
    assert last.unusable == len(expected) - 1  # trunc_j2k's header is fine
    reasons = {os.path.basename(p): r for pr in progs for p, r in pr.problems}
    for name, start in expected.items():
        if start is None:
            assert name not in reasons
        else:
            assert reasons[name].startswith(start), (name, reasons[name])

    imgs = _images(store)
    # The walk is sorted: the copy comes first and holds the UID; the original is the duplicate.
    assert "a/im000.dcm" not in imgs and "a/copy_of_im000.dcm" in imgs
    for name, start in expected.items():
        name = f"bad/{name}"
        assert imgs[name].usable is (start is None)
        if start:
            assert imgs[name].reason.startswith(start) and imgs[name].series_id is None
    with store.session() as s, s.begin():
        dup = s.scalars(select(DuplicateFile)).one()
        assert dup.path == str(a[0])
        assert s.get(Image, dup.image_id).path.endswith("copy_of_im000.dcm")
        studies = {st.description: st for st in s.scalars(select(Study)).all()}
        # 2 DICOM studies + the synthetic PNG study (named by its folder) + trunc_j2k's study
        assert studies["png"].synthetic and studies["png"].n_images == 1
        assert studies["png"].study_uid.startswith("2.25.")
        pats = s.scalars(select(Patient.key)).all()
        assert "id:P1" in pats and "id:P2" in pats and f"folder:{pngdir}" in pats
        n_p1 = s.scalar(
            select(Study.n_images)
            .join(Patient, Patient.id == Study.patient_id)
            .where(Patient.key == "id:P1")
        )
        assert n_p1 == 3


def test_duplicate_points_at_original(store, tmp_path, write_study):
    paths = write_study(tmp_path / "d", 1)
    shutil.copy(paths[0], tmp_path / "d" / "zz_copy.dcm")
    _run(store, [tmp_path / "d"])
    with store.session() as s, s.begin():
        dup = s.scalars(select(DuplicateFile)).one()
        orig = s.get(Image, dup.image_id)
        assert orig.path == str(paths[0]) and dup.path == str(tmp_path / "d" / "zz_copy.dcm")
        assert s.scalar(select(func.count(Image.id))) == 1


def test_incremental_rescan(store, tmp_path, write_study):
    paths = write_study(tmp_path / "s", 4)
    first = _run(store, [tmp_path / "s"])[-1]
    assert first.read == 4 and first.new == 4
    again = _run(store, [tmp_path / "s"])[-1]
    assert again.read == 0 and again.unchanged == 4 and again.new == 0
    st = os.stat(paths[1])
    os.utime(paths[1], (st.st_atime, st.st_mtime + 10))
    third = _run(store, [tmp_path / "s"])[-1]
    assert third.read == 1 and third.updated == 1 and third.unchanged == 3
    assert _images(store)["s/im001.dcm"].version == 2
    assert _images(store)["s/im000.dcm"].version == 1


def test_missing_keeps_reviews_and_returns(store, tmp_path, write_study):
    paths = write_study(tmp_path / "m", 2)
    _run(store, [tmp_path / "m"])
    img = _images(store)["m/im000.dcm"]
    set_verdict(store, img.id, "Pneumothorax", "absent", reviewer="dr")
    keep = tmp_path / "keep.bin"
    shutil.copy2(paths[0], keep)
    paths[0].unlink()
    last = _run(store, [tmp_path / "m"])[-1]
    assert last.missing == 1
    imgs = _images(store)
    assert imgs["m/im000.dcm"].missing and not imgs["m/im001.dcm"].missing
    with store.session() as s, s.begin():
        assert s.scalar(select(func.count(Review.id)).where(Review.image_id == img.id)) == 1
        assert s.scalar(select(Study.n_images)) == 1
    shutil.copy2(keep, paths[0])  # same size and mtime: found again without a re-read
    back = _run(store, [tmp_path / "m"])[-1]
    assert back.returned == 1 and back.read == 0
    assert not _images(store)["m/im000.dcm"].missing


def test_moved_file_keeps_its_image(store, tmp_path, write_study):
    paths = write_study(tmp_path / "r" / "old", 1)
    _run(store, [tmp_path / "r"])
    before = _images(store)["old/im000.dcm"]
    set_verdict(store, before.id, "Mass", "present", reviewer="dr")
    (tmp_path / "r" / "new").mkdir()
    moved = tmp_path / "r" / "new" / "renamed.dcm"
    os.rename(paths[0], moved)
    last = _run(store, [tmp_path / "r"])[-1]
    assert last.moved == 1 and last.missing == 0 and last.duplicates == 0
    after = _images(store)["new/renamed.dcm"]
    assert after.id == before.id and not after.missing
    with store.session() as s, s.begin():
        assert s.scalar(select(Review.verdict).where(Review.image_id == before.id)) == "present"


def test_cancel_between_batches(store, tmp_path, write_study):
    write_study(tmp_path / "s", 6)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return True

    progs = _run(store, [tmp_path / "s"], should_stop=stop, batch_files=2)
    assert progs[-1].cancelled and not progs[-1].done
    with store.session() as s, s.begin():
        assert s.scalar(select(func.count(Image.id))) == 2
    rest = _run(store, [tmp_path / "s"])[-1]
    assert rest.unchanged == 2 and rest.new == 4 and rest.missing == 0


def test_real_radiographs(store):
    from pydicom.data import get_testdata_file

    files = [get_testdata_file(n, download=False) for n in ("RG1_UNCR.dcm", "RG1_J2KR.dcm")]
    last = _run(store, files)[-1]
    assert last.unusable == 0 and last.new + last.duplicates == 2
    with store.session() as s, s.begin():
        series = s.scalars(select(Series)).all()
        assert {x.modality for x in series} == {"CR"}


def test_worker_processes_give_the_same_library(store, tmp_path, write_study, monkeypatch):
    import cxrlt_desktop.library.scanning as library
    from cxrlt_desktop.store import open_store

    monkeypatch.setattr(library, "POOL_MIN_FILES", 1)  # use the pool even for a few files

    write_study(tmp_path / "w" / "a", 12, patient_id="W1")
    write_bad_inputs(tmp_path / "w" / "bad")
    results = []
    # The reference: one process into a SQLite file; then two worker processes into the store
    # under test (SQLite or PostgreSQL).
    reference = open_store(f"sqlite:///{tmp_path / 'w1.db'}")
    for workers, st in ((1, reference), (2, store)):
        last = _run(st, [tmp_path / "w"], workers=workers, batch_files=10)[-1]
        with st.session() as s, s.begin():
            rows = s.execute(
                select(Image.path, Image.usable, Image.reason, Image.sop_uid).order_by(Image.path)
            ).all()
        results.append((last.new, last.unusable, sorted(tuple(r) for r in rows)))
    reference.close()
    assert results[0] == results[1]


def test_file_name_not_utf8_recorded_not_fatal(store, tmp_path, write_study):
    # On POSIX a Latin-1 file name reaches Python as a lone surrogate, which the database
    # cannot store: it used to abort the whole scan with UnicodeEncodeError.
    good = write_study(tmp_path / "enc", 1, patient_id="E1")[0]
    bad = os.path.join(os.fsencode(tmp_path / "enc"), b"caf\xe9.dcm")
    try:
        shutil.copy(good, bad)
    except (UnicodeEncodeError, OSError):  # a filesystem that refuses such names
        pytest.skip("the file system does not accept a non-UTF-8 file name")
    # A broken link whose target's name is not UTF-8: the reason quotes that name.
    os.symlink(b"gon\xe9.dcm", os.path.join(os.fsencode(tmp_path / "enc"), b"link.dcm"))
    progs = _run(store, [tmp_path / "enc"])
    reasons = {p: r for pr in progs for p, r in pr.problems}
    shown = str(tmp_path / "enc" / "caf\\xe9.dcm")
    link = reasons.pop(str(tmp_path / "enc" / "link.dcm"))
    assert reasons == {
        shown: "file name is not valid UTF-8 (shown with \\x escapes): rename the file or "
        "folder to read it",
    }
    # The input layer escapes the target's undecodable byte (its escape form is its own); the
    # reason is one storable, printable line.
    assert link.startswith("cannot open: broken symbolic link (target gon\\")
    assert link.endswith(".dcm does not exist)") and link.isprintable()
    link.encode("utf-8")
    imgs = _images(store)
    assert imgs["enc/im000.dcm"].usable and not imgs["enc/caf\\xe9.dcm"].usable
    again = _run(store, [tmp_path / "enc"])[-1]  # stable: not re-inserted, not missing
    assert (again.new, again.missing) == (0, 0)
    assert len(_images(store)) == 3


@pytest.mark.parametrize("copy_name", ["0_copy.dcm", "z_copy.dcm"])  # walked before / after
def test_fixed_file_and_its_copy_in_one_batch(store, tmp_path, write_study, copy_name):
    # A file first scanned half-copied (unusable, no UID) is complete at the next scan, and a
    # copy with the same SOPInstanceUID arrived meanwhile: one holds the UID, the other is its
    # duplicate. This used to fail the whole scan on the unique SOPInstanceUID constraint.
    folder = tmp_path / "fix"
    good = write_study(folder, 1, patient_id="F1")[0]
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    first = _run(store, [folder])[-1]
    assert first.unusable == 1 and first.new == 1
    good.write_bytes(data)
    (folder / copy_name).write_bytes(data)
    last = _run(store, [folder])[-1]
    assert last.done and last.updated == 1
    with store.session() as s, s.begin():
        rows = s.execute(select(Image.path, Image.usable, Image.reason, Image.sop_uid)).all()
        dups = s.scalars(select(DuplicateFile.path)).all()
    holders = [r for r in rows if r.usable]
    assert len(holders) == 1 and holders[0].sop_uid is not None
    others = [os.path.basename(r.path) for r in rows if not r.usable] + [
        os.path.basename(p) for p in dups
    ]
    assert len(others) == 1 and others[0] in {good.name, copy_name}
    assert holders[0].path.endswith(good.name if others[0] == copy_name else copy_name)
    again = _run(store, [folder])[-1]  # and the next scan changes nothing
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)


def test_overlapping_roots_read_each_file_once(store, tmp_path, write_study):
    # A folder, a folder inside it and a file inside that: each file once. This used to fail
    # the whole scan on the unique path constraint (nothing was written).
    files = write_study(tmp_path / "top" / "sub", 2, patient_id="O1")
    write_study(tmp_path / "top" / "other", 1, patient_id="O2")
    roots = [tmp_path / "top" / "sub", files[0], tmp_path / "top"]
    last = _run(store, roots)[-1]
    assert (last.seen, last.new, last.duplicates, last.unusable) == (3, 3, 0, 0)
    assert sorted(_images(store)) == ["other/im000.dcm", "sub/im000.dcm", "sub/im001.dcm"]
    again = _run(store, roots)[-1]
    assert (again.seen, again.unchanged, again.new, again.missing) == (3, 3, 0, 0)


def _sop_patient(store, image_id):
    with store.session() as s, s.begin():
        img = s.get(Image, image_id)
        study = s.get(Study, s.get(Series, img.series_id).study_id)
        return img.sop_uid, s.get(Patient, study.patient_id).patient_id


def _verdicts(store, image_id):
    with store.session() as s, s.begin():
        rows = s.scalars(select(Review).where(Review.image_id == image_id)).all()
        return {r.finding: r.verdict for r in rows}


def test_reused_path_holding_another_image_is_a_new_image(store, tmp_path, write_study):
    # A PACS export folder reuses IM names: patient A's file is overwritten with patient B's
    # image. A's verdict must stay with A's image, never become B's.
    paths = write_study(tmp_path / "x", 2, patient_id="PAT-A")
    other = write_study(tmp_path / "elsewhere", 1, patient_id="PAT-B")[0]
    _run(store, [tmp_path / "x"])
    a = _images(store)["x/im000.dcm"]
    set_verdict(store, a.id, "Pneumothorax", "present", reviewer="dr")
    shutil.copyfile(other, paths[0])
    os.utime(paths[0], (a.mtime + 10, a.mtime + 10))
    last = _run(store, [tmp_path / "x"])[-1]
    assert last.replaced == 1 and last.new == 1 and last.updated == 0 and last.duplicates == 0
    b = _images(store)["x/im000.dcm"]
    assert b.id != a.id and b.usable and not b.missing
    assert _sop_patient(store, b.id)[1] == "PAT-B" and _verdicts(store, b.id) == {}
    # A's image: same id, same SOP UID and patient, its verdict, missing under a marked path
    assert _sop_patient(store, a.id) == (a.sop_uid, "PAT-A")
    assert _verdicts(store, a.id) == {"Pneumothorax": "present"}
    with store.session() as s, s.begin():
        old = s.get(Image, a.id)
        assert old.missing and old.path == f"{paths[0]} (replaced image {a.id})"
    # a second rescan changes nothing
    again = _run(store, [tmp_path / "x"])[-1]
    assert again.read == 0 and again.replaced == 0 and again.missing == 0


def test_swapped_file_names_keep_each_image_its_verdicts(store, tmp_path, write_study):
    paths = write_study(tmp_path / "w", 2)
    _run(store, [tmp_path / "w"])
    imgs = _images(store)
    first, second = imgs["w/im000.dcm"], imgs["w/im001.dcm"]
    set_verdict(store, first.id, "Mass", "present", reviewer="dr")
    set_verdict(store, second.id, "Mass", "absent", reviewer="dr")
    tmp = tmp_path / "swap.dcm"
    os.rename(paths[0], tmp)
    os.rename(paths[1], paths[0])
    os.rename(tmp, paths[1])
    for p in paths:
        st = os.stat(p)
        os.utime(p, (st.st_mtime + 10, st.st_mtime + 10))
    last = _run(store, [tmp_path / "w"])[-1]
    assert last.duplicates == 0 and last.unusable == 0
    imgs = _images(store)
    # each image followed its content to the other name, verdicts included
    assert imgs["w/im001.dcm"].id == first.id and imgs["w/im000.dcm"].id == second.id
    assert imgs["w/im001.dcm"].sop_uid == first.sop_uid
    assert _verdicts(store, first.id) == {"Mass": "present"}
    assert _verdicts(store, second.id) == {"Mass": "absent"}
    assert not any(i.missing for i in imgs.values() if i.path.endswith(".dcm"))


@pytest.mark.parametrize("batch_files", [500, 2, 1])
def test_names_shifted_down_keep_every_image_and_verdict(store, tmp_path, batch_files):
    """A re-export after a deletion shifts every file one name down; with the new path read in an
    earlier batch than the old one, the moved file first looks like a duplicate."""
    from pydicom.uid import generate_uid

    from engine.dicomwrite import write_dicom

    folder = tmp_path / "shift"
    folder.mkdir()
    for i in range(6):
        px = np.random.default_rng(i).integers(0, 4000, (256, 256)).astype(np.uint16)
        write_dicom(
            folder / f"im{i:03d}.dcm",
            px,
            patient_id=f"P{i}",
            study_uid=generate_uid(),
            series_uid=generate_uid(),
        )
    _run(store, [folder], batch_files=batch_files)
    before = {k.split("/")[-1]: v for k, v in _images(store).items()}
    for name, img in before.items():
        verdict = "present" if name != "im003.dcm" else "absent"
        set_verdict(store, img.id, "Mass", verdict, reviewer="dr")
    (folder / "im000.dcm").unlink()
    for i in range(1, 6):
        dst = folder / f"im{i - 1:03d}.dcm"
        os.rename(folder / f"im{i:03d}.dcm", dst)
        st = os.stat(dst)
        os.utime(dst, (st.st_mtime + 10, st.st_mtime + 10))
    last = _run(store, [folder], batch_files=batch_files)[-1]
    assert (last.moved, last.replaced, last.duplicates, last.new) == (5, 1, 0, 0)
    now = _images(store)
    for i in range(1, 6):  # each image followed its file, with its verdict
        img = now[f"shift/im{i - 1:03d}.dcm"]
        assert img.id == before[f"im{i:03d}.dcm"].id and not img.missing
        want = "absent" if i == 3 else "present"
        assert _verdicts(store, img.id) == {"Mass": want}
    with store.session() as s, s.begin():
        assert s.scalar(select(func.count(DuplicateFile.id))) == 0
        gone = s.get(Image, before["im000.dcm"].id)  # the deleted file's image: kept, missing
        assert gone.missing and _verdicts(store, gone.id) == {"Mass": "present"}
    again = _run(store, [folder], batch_files=batch_files)[-1]
    assert again.read == 0 and again.moved == 0 and again.missing == 0


def test_replaced_image_does_not_move_to_a_deleted_duplicate(store, tmp_path, write_study):
    folder = tmp_path / "d"
    first = write_study(folder, 1, patient_id="PAT-A")[0]
    shutil.copy2(first, folder / "zcopy.dcm")  # a duplicate of the same image
    other = write_study(tmp_path / "elsewhere", 1, patient_id="PAT-B")[0]
    _run(store, [folder])
    a = _images(store)["d/im000.dcm"]
    (folder / "zcopy.dcm").unlink()
    shutil.copyfile(other, first)
    os.utime(first, (a.mtime + 10, a.mtime + 10))
    last = _run(store, [folder])[-1]
    assert (last.moved, last.replaced, last.duplicates, last.missing) == (0, 1, 0, 1)
    with store.session() as s, s.begin():
        old = s.get(Image, a.id)
        assert old.missing and old.path.endswith(f"(replaced image {a.id})")
        assert s.scalar(select(DuplicateFile.missing)) is True


def test_header_values_longer_than_their_columns_do_not_stop_the_scan(store, tmp_path):
    """Non-conformant headers (a PatientName of 400 characters, a 40-character ViewPosition):
    SQLite stores any length, PostgreSQL refuses a value longer than its VARCHAR column, which
    stopped the whole scan. Descriptive values are shortened with a warning; an identifier too
    long to keep makes the file unusable with its reason (shortening it could merge patients)."""
    from engine.dicomwrite import write_dicom

    px = np.random.default_rng(0).integers(0, 4000, (256, 256)).astype(np.uint16)
    long_text = dict(
        patient_name="N" * 400,
        study_description="D" * 300,
        institution_name="I" * 300,
        accession_number="A" * 100,
        patient_sex="F" * 20,
        view_position="V" * 40,
    )
    long = write_dicom(tmp_path / "in" / "long.dcm", px, patient_id="P" * 200, **long_text)
    wordy = write_dicom(tmp_path / "in" / "wordy.dcm", px, patient_id="W1", **long_text)
    good = write_dicom(tmp_path / "in" / "ok.dcm", px, patient_id="OK1")
    last = _run(store, [tmp_path / "in"])[-1]
    assert last.done and last.new == 3
    imgs = _images(store)
    assert imgs["in/ok.dcm"].usable and imgs["in/ok.dcm"].path == str(good)
    assert imgs["in/long.dcm"].path == str(long) and not imgs["in/long.dcm"].usable
    assert imgs["in/long.dcm"].reason == "PatientID has 200 characters (at most 128 are kept)"
    w = imgs["in/wordy.dcm"]
    assert w.usable and w.path == str(wordy)
    assert w.view_position == "V" * 15 + "\u2026"
    assert "ViewPosition has 40 characters: shortened to 16" in w.warnings
    assert "PatientName has 400 characters: shortened to 256" in w.warnings
    with store.session() as s:
        study = s.get(Study, s.get(Series, w.series_id).study_id)
        assert len(study.description) == 256 and study.description.startswith("D" * 255)
        assert len(study.patient.patient_name) == 256
