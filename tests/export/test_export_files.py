"""Atomic writes, no overwriting, cancellation, per-image problems, the PNG conversion and the CLI."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cxrlt_desktop.export import (
    ExportCancelled,
    ExportError,
    atomic_write,
    encode_png,
    export_feedback,
    image_pseudonym,
    iter_export,
    source_to_png_array,
)
from cxrlt_desktop.library.reviews import set_verdict

from .conftest import PHI, all_bytes, scan_folder


@pytest.fixture
def store(any_store):
    """Every test here runs on SQLite and on PostgreSQL (``library`` scans into it)."""
    return any_store


def test_atomic_write_failure_leaves_nothing(tmp_path):
    target = tmp_path / "labels.csv"

    def half_then_fail(f):
        f.write(b"ImageID,StudyDate_DICOM\n" * 1000)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, half_then_fail)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary

    atomic_write(target, b"first")
    with pytest.raises(ExportError, match="exists already"):
        atomic_write(target, b"second")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]


def test_existing_export_is_never_overwritten(store, library, tmp_path):
    set_verdict(store, library.image_ids[library.paths[0]], "Hernia", "present", reviewer="Dr One")
    out = tmp_path / "out"
    export_feedback(store, out)
    before = all_bytes(out)
    set_verdict(store, library.image_ids[library.paths[1]], "Hernia", "absent", reviewer="Dr One")
    with pytest.raises(ExportError, match="not empty"):
        export_feedback(store, out)
    assert all_bytes(out) == before
    # a file in the way of the folder
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        export_feedback(store, tmp_path / "afile")
    # an empty existing folder is fine
    (tmp_path / "empty").mkdir()
    assert export_feedback(store, tmp_path / "empty").n_images == 2


def test_cancel_mid_export_removes_what_it_wrote(store, library, tmp_path):
    for p in library.paths:
        set_verdict(store, library.image_ids[p], "Hernia", "present", reviewer="Dr One")
    out = tmp_path / "out"
    seen = []

    def stop() -> bool:
        return len(seen) >= 2  # after two images were copied

    gen = iter_export(store, out, copy_images=True, sr=True, should_stop=stop)
    with pytest.raises(ExportCancelled, match="cancelled"):
        for rec in gen:
            if rec.stage == "images":
                seen.append(rec)
    assert len(seen) == 2
    assert not out.exists()  # the export created the folder, so it removed it again
    # and the next try in the same place works
    res = export_feedback(store, out, copy_images=True)
    assert res.n_images_copied == 4 and len(list((out / "images").iterdir())) == 4

    # an existing (empty) folder chosen by the user stays, empty
    kept = tmp_path / "chosen"
    kept.mkdir()
    with pytest.raises(ExportCancelled):
        export_feedback(store, kept, copy_images=True, should_stop=lambda: True)
    assert kept.is_dir() and list(kept.iterdir()) == []


def test_unreadable_image_is_reported_and_the_rest_exported(store, library, tmp_path):
    ids = [library.image_ids[p] for p in library.paths]
    for i in ids:
        set_verdict(store, i, "Hernia", "present", reviewer="Dr One")
    broken = library.paths[1]
    # Damaged after the scan without a change of size or time (a disk error): the decode fails.
    st = broken.stat()
    broken.write_bytes((b"garbage SECRETWORD " * st.st_size)[: st.st_size])
    os.utime(broken, ns=(st.st_atime_ns, st.st_mtime_ns))
    progress = []
    res = export_feedback(store, tmp_path / "out", copy_images=True, progress=progress.append)
    assert res.n_images == 4 and res.n_images_copied == 3
    assert len(res.problems) == 1 and str(broken) in res.problems[0]
    readme = (res.out_dir / "README.txt").read_text()
    bad_id = image_pseudonym(library.sop_uids[1])
    assert f"{bad_id}: image not copied" in readme
    assert str(library.folder) not in readme and "Zyxwvut" not in readme
    # Garbage where the scanned DICOM was: the identity check refuses it as another file.
    assert "file changed since the scan" in res.problems[0] and "DICOM" in res.problems[0]
    # the README says what kind of problem, never quotes the file's bytes
    assert f"{bad_id}: image not copied: file changed since the scan\n" in readme
    assert "SECRETWORD" not in readme
    assert not (res.out_dir / "images" / f"{bad_id}.png").exists()
    stages = [p.stage for p in progress]
    assert stages[0] == "read" and stages[-1] == "done" and stages.count("images") == 4
    assert [p.done for p in progress if p.stage == "images"] == [1, 2, 3, 4]


def test_source_to_png_array():
    import cv2

    u16 = np.arange(256 * 300, dtype=np.uint16).reshape(256, 300)
    out, scaled = source_to_png_array(u16)
    assert out is not None and not scaled and np.array_equal(out, u16)
    png = cv2.imdecode(np.frombuffer(encode_png(out), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and np.array_equal(png, u16)

    u8 = (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)
    out, scaled = source_to_png_array(u8)
    assert out.dtype == np.uint8 and not scaled and np.array_equal(out, u8)

    # integer-valued modality values in 0..65535: lossless
    f = np.array([[0.0, 1.0], [4095.0, 65535.0]])
    out, scaled = source_to_png_array(f)
    assert not scaled and out.dtype == np.uint16 and out.tolist() == [[0, 1], [4095, 65535]]

    # negative / fractional values: min..max onto 0..65535
    f = np.array([[-1024.0, -512.0], [0.5, 1023.0]])
    out, scaled = source_to_png_array(f)
    lo, hi = -1024.0, 1023.0
    expected = np.rint((f - lo) * 65535.0 / (hi - lo)).astype(np.uint16)
    assert scaled and out.dtype == np.uint16 and np.array_equal(out, expected)
    assert out.min() == 0 and out.max() == 65535

    out, scaled = source_to_png_array(np.full((3, 3), -5.0))
    assert scaled and not out.any()


def test_modality_lut_image_exports_the_same_model_input(store, tmp_path):
    from engine.dicomwrite import write_dicom
    from engine.imageio import read_source
    from engine.preprocess import task1_grey

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:256, 0:256]
    px = (xx * 11 + yy * 3 + rng.integers(0, 300, (256, 256))).astype(np.uint16)
    path = write_dicom(tmp_path / "lut" / "a.dcm", px, bits_stored=12, rescale=(0.5, -300.0))
    ids = scan_folder(store, tmp_path / "lut")
    set_verdict(store, ids[path.resolve()], "Hernia", "present", reviewer="Dr One")
    res = export_feedback(store, tmp_path / "out", copy_images=True)
    assert res.n_images_scaled == 1
    png = next((res.out_dir / "images").iterdir())
    src, back = read_source(path), read_source(png)
    assert src.dtype == np.float64 and back.dtype == np.uint16
    # a positive linear map leaves the percentile stretch as it was, up to rounding
    diff = np.abs(task1_grey(src, 64).astype(int) - task1_grey(back, 64).astype(int))
    assert diff.max() <= 1
    assert "(1 images)" in (res.out_dir / "README.txt").read_text()


def test_cli_export(store, store_url, library, tmp_path, monkeypatch, capsys):
    from cxrlt_desktop.cli import main

    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    set_verdict(store, library.image_ids[library.paths[0]], "Hernia", "present", reviewer="Dr One")
    url = store_url  # the command opens the library the fixtures wrote
    out = tmp_path / "cli-out"
    rc = main(["export", "--db", url, "--out", str(out), "--sr", "--shift-dates", "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "1 reviewed images" in captured.out and "1 SR files" in captured.out
    assert (out / "labels.csv").is_file() and len(list((out / "sr").iterdir())) == 1
    readme = (out / "README.txt").read_text()
    assert "DICOM SR ........... yes" in readme and "shift dates ........ yes" in readme
    assert PHI["study_date"] not in (out / "labels.csv").read_text()
    rc = main(["export", "--db", url, "--out", str(out)])
    assert rc == 1 and "not empty" in capsys.readouterr().err


def _image_rec(**fields):
    """An export image record: nothing known about the patient but ``fields``."""
    from cxrlt_desktop.export.records import ImageRecord

    base = dict.fromkeys(
        ("sop_uid", "sop_class_uid", "patient_id", "patient_name", "birth_date", "sex",
         "study_uid", "series_uid", "study_date", "study_time", "accession", "institution",
         "modality", "current_prediction_id")
    )  # fmt: skip
    base.update(id=1, path="/d/x.dcm", is_dicom=True, image_key="k", patient_key="k", meta={})
    return ImageRecord(**{**base, "verdicts": {}, **fields})


def test_scrub_text_removes_known_identifiers_as_words():
    from cxrlt_desktop.export.deid import patient_identifiers, scrub_text

    rec = _image_rec(
        path="/data/Lee_Ann/scan1.dcm",
        sop_uid="1.2.3.4",
        patient_id="MRN123",
        patient_name="Lee^Ann",
        birth_date="19501231",
        sex="F",
        study_uid="1.2.3",
        series_uid="1.2.3.9",
        study_date="20230417",
        accession="ACC1",
        institution="Saint Testington",
        modality="CR",
    )
    ids = patient_identifiers(rec)
    text = "ann lee (mrn123, ACC1) at saint testington 2023-04-17, born 31/12/1950; fleet annular 1.2.34"
    assert scrub_text(text, ids) == (
        "[removed] ([removed], [removed]) at [removed] [removed], born [removed]; "
        "fleet annular 1.2.34"
    )
    assert scrub_text("see /data/Lee_Ann/scan1.dcm", ids) == "see [removed]"
    assert scrub_text(None, ids) == ""
    # "_" separates words (folder and file names people paste), dates in the usual forms
    assert scrub_text("prior in Lee_Ann folder; pt ANN_LEE; mrn123_old", ids) == (
        "prior in [removed]_[removed] folder; pt [removed]_[removed]; [removed]_old"
    )
    for born in (
        "31/12/1950",
        "12/31/50",
        "1950/12/31",
        "31.12.1950",
        "31 Dec 1950",
        "December 31, 1950",
        "31-dec-50",
        "Apr 17 2023",
        "17th April 2023",
        "April 17th, 2023",
        "31st Dec 1950",
        "4/17/2023",
    ):
        assert scrub_text(f"DOB {born};", ids) == "DOB [removed];", born
    assert scrub_text("size 1.2.1950 cm, 12/31 slice", ids) == "size 1.2.1950 cm, 12/31 slice"


def test_scrub_text_name_groups_and_ideographic_parts():
    from dataclasses import replace

    from cxrlt_desktop.export.deid import patient_identifiers, scrub_text

    rec = _image_rec(patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう")
    ids = patient_identifiers(rec)
    assert scrub_text("Tarou Yamada, 山田太郎さん, やまだ たろう; yamadas", ids) == (
        "[removed], [removed][removed]さん, [removed]; yamadas"
    )
    assert scrub_text("x", patient_identifiers(replace(rec, patient_name=None))) == "x"


def test_is_demo_model(tmp_path):
    import json

    from engine.manifest import is_demo_model

    ckpt = tmp_path / "a" / "best.safetensors"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"x")
    assert not is_demo_model(ckpt)
    for name in ("best.json", "best.safetensors.json", "best.manifest.json", "manifest.json"):
        (ckpt.parent / name).write_text(json.dumps({"demo": True}))
        assert is_demo_model(ckpt), name
        (ckpt.parent / name).write_text(json.dumps({"demo": False}))
        assert not is_demo_model(ckpt), name
        (ckpt.parent / name).unlink()
    (ckpt.parent / "manifest.json").write_text("{not json")
    assert not is_demo_model(ckpt)
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "manifest.json").write_text(json.dumps({"demo": True}))
    assert is_demo_model(clip)


def test_closing_the_generator_after_done_keeps_the_export(store, library, tmp_path):
    set_verdict(store, library.image_ids[library.paths[0]], "Hernia", "present", reviewer="Dr One")
    gen = iter_export(store, tmp_path / "out")
    for rec in gen:
        if rec.stage == "done":
            break
    gen.close()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.txt",
        "disagreements.csv",
        "labels.csv",
    ]
    gen = iter_export(store, tmp_path / "out2")
    for rec in gen:
        if rec.stage == "csv" and rec.done == 1:  # labels.csv is written by now
            assert (tmp_path / "out2" / "labels.csv").is_file()
            break
    gen.close()  # abandoned half-way: like a cancellation
    assert not (tmp_path / "out2").exists()


def test_file_replaced_after_the_scan_is_not_copied(store, library, tmp_path):
    """A file overwritten (another patient's image) after the scan: its pixels must not go out
    under the scanned image's labels, even when the replacement has the same size and time."""
    ids = [library.image_ids[p] for p in library.paths]
    for i in ids:
        set_verdict(store, i, "Hernia", "present", reviewer="Dr One")
    target, other = library.paths[0], library.paths[2]
    st = target.stat()
    target.write_bytes(other.read_bytes())
    os.utime(target, (st.st_atime, st.st_mtime + 5))
    res = export_feedback(store, tmp_path / "out", copy_images=True)
    assert res.n_images == 4 and res.n_images_copied == 3
    assert len(res.problems) == 1 and res.problems[0].startswith(
        f"{target}: not copied: file changed since the scan: rescan the folder ("
    )
    bad_id = image_pseudonym(library.sop_uids[0])
    assert not (res.out_dir / "images" / f"{bad_id}.png").exists()
    readme = (res.out_dir / "README.txt").read_text()
    assert f"{bad_id}: image not copied: file changed since the scan\n" in readme

    # Same size and modification time as the scanned file: its SOPInstanceUID gives it away.
    assert target.stat().st_size == st.st_size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = export_feedback(store, tmp_path / "out2", copy_images=True)
    assert res.n_images_copied == 3
    assert "another SOPInstanceUID" in res.problems[0] and str(target) in res.problems[0]
