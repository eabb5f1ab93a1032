"""Every bad input gets a one-line reason naming the file, and nothing crashes."""

from __future__ import annotations

import os
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import JPEG2000Lossless
from unprivileged import run_unprivileged

from engine import imageio


def _assert_rejected(path, reason_start):
    """read_header says ok=False with the reason; read_source raises with the same text."""
    info = imageio.read_header(path)
    assert not info.ok
    assert info.reason.startswith(reason_start), info.reason
    assert "\n" not in info.reason
    with pytest.raises(imageio.ImageReadError) as err:
        imageio.read_source(path)
    assert err.value.path == path
    assert str(err.value) == f"{path}: {err.value.reason}"
    assert err.value.reason.startswith(reason_start)
    return info


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    info = _assert_rejected(path, "empty file (0 bytes)")
    assert info.size == 0


def test_truncated_native_pixel_data(write, make_ramp):
    path = write("trunc.dcm", make_ramp((300, 300), 0, 4095, np.uint16), bits_stored=12)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    info = _assert_rejected(path, "truncated pixel data: the file ends ")
    assert "needs 180000 bytes" in info.reason


@pytest.mark.parametrize("cut", [300, 700, 1200])
def test_file_cut_inside_the_header(tmp_path, testdata, cut):
    # RG1_UNCR cut after the file meta (300), inside the value of (0008,0080) (700), and 4 bytes
    # into the header of the element after (0018,1708) (1200). pydicom reads all three without
    # an error; they used to be reported as "no pixel data: not an image".
    path = tmp_path / f"cut{cut}.dcm"
    path.write_bytes(testdata("RG1_UNCR.dcm").read_bytes()[:cut])
    _assert_rejected(
        path,
        f"truncated file: it ends inside the DICOM header ({cut} bytes), before the pixel data",
    )


def test_truncated_jpeg2000_pixel_data(write, make_ramp):
    px = make_ramp((300, 300), 0, 4095, np.uint16)
    path = write("trunc_j2k.dcm", px, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    # The header is intact, so the problem shows when decoding.
    with pytest.raises(imageio.ImageReadError) as err:
        imageio.read_source(path)
    assert err.value.reason == (
        "truncated pixel data: the pixel data element ends before its end marker"
    )
    # Cut inside the last fragment but keep the end marker: the decoder itself complains.
    frag = data[: len(data) * 2 // 3] + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    path.write_bytes(frag)
    with pytest.raises(imageio.ImageReadError) as err:
        imageio.read_source(path)
    reason = err.value.reason
    assert reason.startswith(
        "cannot decode JPEG 2000 Image Compression (Lossless Only) pixel data (damaged or "
        "unsupported compressed data): pylibjpeg: "
    ), reason
    assert " at 0x" not in reason  # no object reprs with memory addresses


def test_wrong_magic(tmp_path):
    path = tmp_path / "noise.dcm"
    path.write_bytes(bytes(range(256)) * 2)
    _assert_rejected(
        path,
        "not an image: unknown format (no 'DICM' marker at byte 128, found b'\\x80\\x81\\x82\\x83'",
    )
    path2 = tmp_path / "preamble_wrong_marker.dcm"
    path2.write_bytes(b"\0" * 128 + b"DICN" + b"\x02\x00\x00\x00UL\x04\x00" * 10)
    _assert_rejected(
        path2, "not an image: unknown format (no 'DICM' marker at byte 128, found b'DICN'"
    )


def test_directory_named_dcm(tmp_path):
    path = tmp_path / "series.dcm"
    path.mkdir()
    info = imageio.read_header(path)
    assert not info.ok and info.reason == "is a directory, not an image file"
    with pytest.raises(imageio.ImageReadError, match="is a directory"):
        imageio.read_source(path)


def test_dangling_symlink_cannot_be_opened(tmp_path):
    path = tmp_path / "gone.dcm"
    path.symlink_to(tmp_path / "deleted.dcm")
    _assert_rejected(path, "cannot open: broken symbolic link (target ")


_READ_AS_USER = """
import json
from engine import imageio

out = {}
for path in sys.argv[1:]:
    info = imageio.read_header(path)
    try:
        imageio.read_source(path)
        err = None
    except imageio.ImageReadError as e:
        err = {"str": str(e), "path": str(e.path), "reason": e.reason}
    out[path] = {"ok": info.ok, "reason": info.reason, "error": err}
print(json.dumps(out))
"""


def test_permission_denied(write, make_ramp):
    """A file its reader may not open, checked in a process that file modes apply to (root
    reads mode-000 files, so as root the check runs without root's file capabilities)."""
    readable = write("open.dcm", make_ramp((300, 300), 0, 255, np.uint8))
    secret = write("secret.dcm", make_ramp((20, 20), 0, 255, np.uint8))
    secret.chmod(0)
    try:
        got = run_unprivileged(_READ_AS_USER, str(readable), str(secret))
    finally:
        secret.chmod(0o644)
    assert got[str(readable)] == {"ok": True, "reason": None, "error": None}  # the control
    r = got[str(secret)]
    assert not r["ok"] and r["reason"].startswith("cannot open: permission denied"), r
    assert "\n" not in r["reason"]
    assert r["error"] == {
        "str": f"{secret}: {r['reason']}",
        "path": str(secret),
        "reason": r["reason"],
    }


def test_non_ascii_path_works(tmp_path, make_ramp):
    import cv2

    from engine.dicomwrite import write_dicom

    folder = tmp_path / "Bücher Ωμέγα 胸部"
    px = make_ramp((300, 300), 0, 4095, np.uint16)
    path = write_dicom(folder / "Röntgen 胸部 ✓.dcm", px, bits_stored=12)
    info = imageio.read_header(path)
    assert info.ok, info.reason
    np.testing.assert_array_equal(imageio.read_source(path), px)
    png = folder / "Thorax ü 胸.png"
    ok, buf = cv2.imencode(".png", px)
    assert ok
    png.write_bytes(buf.tobytes())
    assert imageio.read_header(png).ok
    np.testing.assert_array_equal(imageio.read_source(png), px)


def test_png_that_is_text(tmp_path):
    path = tmp_path / "scan.png"
    path.write_text("hello, this is not a picture\n" * 10)
    info = _assert_rejected(path, "not an image: the file holds text, not DICOM")
    assert "hello" not in info.reason  # the content itself is never quoted


def test_dicom_without_pixel_data(dataset, tmp_path, make_ramp):
    ds = dataset(make_ramp((300, 300), 0, 255, np.uint8))
    del ds.PixelData
    path = tmp_path / "nopix.dcm"
    ds.save_as(path, enforce_file_format=True)
    _assert_rejected(
        path, "no pixel data: not an image (SOP class Computed Radiography Image Storage)"
    )


def test_structured_report_rejected(dataset, tmp_path, make_ramp):
    ds = dataset(make_ramp((300, 300), 0, 255, np.uint8))
    del ds.PixelData
    for key in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation"):
        delattr(ds, key)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.Modality = "SR"
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    _assert_rejected(path, "no pixel data: not an image (SOP class Basic Text SR Storage)")


def test_bits_stored_over_bits_allocated(dataset, tmp_path, make_ramp):
    ds = dataset(make_ramp((300, 300), 0, 4095, np.uint16), bits_stored=12)
    ds.BitsStored = 17
    path = tmp_path / "bits.dcm"
    ds.save_as(path, enforce_file_format=True)
    _assert_rejected(path, "BitsStored (17) exceeds BitsAllocated (16)")


def test_signed_negative_pixels_work(write, make_ramp):
    px = make_ramp((300, 300), -3000, 3000, np.int16)
    path = write("signed.dcm", px)
    info = imageio.read_header(path)
    assert info.ok, info.reason
    assert info.meta["PixelRepresentation"] == 1
    src = imageio.read_source(path)
    np.testing.assert_array_equal(src.astype(np.int64), px.astype(np.int64) + 32768)


def test_negative_rescale_slope_works(write, make_ramp):
    px = make_ramp((300, 300), 0, 4095, np.uint16)
    path = write("neg.dcm", px, bits_stored=12, rescale=(-1.0, 0.0))
    assert imageio.read_header(path).ok
    np.testing.assert_allclose(imageio.read_source(path), -px.astype(np.float64))


def test_huge_declared_dimensions_refused_before_allocation(dataset, tmp_path, make_ramp):
    ds = dataset(make_ramp((8, 8), 0, 4095, np.uint16), bits_stored=12)
    ds.Rows = 40000
    ds.Columns = 30000
    path = tmp_path / "huge.dcm"
    ds.save_as(path, enforce_file_format=True)
    tracemalloc.start()
    try:
        info = _assert_rejected(
            path,
            "declared image size 30000 x 40000 at 16 bits needs 2.2 GiB, over the 512.0 MiB limit "
            "per image (max_image_bytes)",
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    assert info.meta["Rows"] == 40000


def test_max_image_bytes_is_configurable(write, make_ramp):
    path = write("normal.dcm", make_ramp((300, 300), 0, 4095, np.uint16), bits_stored=12)
    assert imageio.read_header(path).ok
    info = imageio.read_header(path, max_image_bytes=100_000)
    assert info.reason == (
        "declared image size 300 x 300 at 16 bits needs 175.8 KiB, over the 97.7 KiB limit per "
        "image (max_image_bytes)"
    )
    with pytest.raises(imageio.ImageReadError, match="over the 97.7 KiB limit"):
        imageio.read_source(path, max_image_bytes=100_000)


def test_huge_png_refused_before_decoding(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 100_000, 90_000, 16, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )
    path = tmp_path / "bomb.png"
    path.write_bytes(png + b"\0" * 64)
    _assert_rejected(path, "declared image size 100000 x 90000 at 16 bits needs 16.8 GiB")


def test_symlink_loop_in_folder_walk(tmp_path, write, make_ramp):
    root = tmp_path / "root"
    write("root/a/img.dcm", make_ramp((20, 20), 0, 255, np.uint8))
    (root / "a" / "back").symlink_to(root)
    items = list(imageio.iter_image_files([root]))
    files = [i for i in items if isinstance(i, os.PathLike)]
    problems = [i for i in items if isinstance(i, imageio.WalkProblem)]
    assert files == [root / "a" / "img.dcm"]
    assert len(problems) == 1
    assert problems[0].path == root / "a" / "back"
    assert problems[0].reason == f"symbolic link loop: leads back to {root}, not walked again"
    assert str(problems[0]).startswith(str(root / "a" / "back") + ": symbolic link loop")


def test_self_referencing_symlink_file(tmp_path):
    loop = tmp_path / "self.dcm"
    loop.symlink_to(loop)
    items = list(imageio.iter_image_files([tmp_path]))
    assert items == [loop]
    info = imageio.read_header(loop)
    assert not info.ok and info.reason.startswith("cannot open: Too many levels of symbolic links")


def test_dicom_without_preamble_or_file_meta(dataset, tmp_path, make_ramp):
    px = make_ramp((300, 300), 0, 4095, np.uint16)
    ds = dataset(px, bits_stored=12)
    ds.file_meta = FileMetaDataset()
    ds.preamble = None
    path = tmp_path / "bare.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    head = path.read_bytes()[:4]
    assert head == b"\x08\x00\x16\x00"  # starts right at (0008,0016), no preamble
    info = imageio.read_header(path)
    assert info.ok, info.reason
    assert info.meta["TransferSyntaxUID"] == "1.2.840.10008.1.2"
    np.testing.assert_array_equal(imageio.read_source(path), px)


# ------------------------------------------------------ is it a chest radiograph the models can score


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"modality": "CT"}, "not a radiograph (Modality=CT; need CR, DX or DR)"),
        ({"modality": "MR"}, "not a radiograph (Modality=MR; need CR, DX or DR)"),
        ({"body_part": "KNEE"}, "not a chest radiograph (BodyPartExamined=KNEE)"),
        (
            {"modality": "SC", "body_part": None, "study_description": "HAND"},
            "secondary capture (Modality=SC) without a chest BodyPartExamined or StudyDescription",
        ),
    ],
)
def test_unusable_headers(write, make_ramp, header, reason):
    path = write("x.dcm", make_ramp((300, 300), 0, 255, np.uint8), **header)
    info = imageio.read_header(path)
    assert (info.ok, info.reason) == (False, reason)
    assert imageio.read_source(path).shape == (300, 300)  # still decodable


@pytest.mark.parametrize("body_part", ["CHEST", "thorax", "Lung", "PORT CHEST", None])
def test_chest_body_parts_accepted(write, make_ramp, body_part):
    info = imageio.read_header(
        write("x.dcm", make_ramp((300, 300), 0, 255, np.uint8), body_part=body_part)
    )
    assert info.ok, info.reason


def test_secondary_capture_with_chest_description_accepted(write, make_ramp):
    path = write(
        "sc.dcm",
        make_ramp((300, 300), 0, 255, np.uint8),
        modality="OT",
        body_part=None,
        study_description="XR THORAX 2 VIEWS",
    )
    assert imageio.read_header(path).ok


def test_small_dicom_rejected(write, make_ramp):
    info = imageio.read_header(write("s.dcm", make_ramp((200, 300), 0, 255, np.uint8)))
    assert info.reason == "image too small (300 x 200 pixels; need at least 256 x 256)"


def test_multiframe_rejected(write, make_ramp):
    frames = np.stack([make_ramp((300, 300), 0, 255, np.uint8)] * 2)
    path = write("mf.dcm", frames[0])
    import pydicom

    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)
    info = imageio.read_header(path)
    assert info.reason == "multi-frame image (2 frames; need a single radiograph)"
    with pytest.raises(imageio.ImageReadError, match="multi-frame image"):
        imageio.read_source(path)


@pytest.mark.parametrize("view", ["LL", "RL", "LAT", "LATERAL"])
def test_lateral_view_is_a_warning(write, make_ramp, view):
    info = imageio.read_header(
        write("lat.dcm", make_ramp((300, 300), 0, 255, np.uint8), view_position=view)
    )
    assert info.ok
    assert info.warnings == [f"lateral view (ViewPosition={view}); the models expect PA/AP"]


def test_fast_header_values_equal_pydicom_conversion(testdata, write, make_ramp):
    # The header read converts simple raw values itself for speed; it must agree with pydicom.
    import pydicom

    from engine.imageio.meta import dicom_meta, dicom_meta_slow

    latin = write(
        "latin.dcm",
        make_ramp((20, 20), 0, 255, np.uint8),
        patient_name="Müller^Jürgen",
        extra={"SpecificCharacterSet": "ISO_IR 100", "StudyDescription": "THORAX p.a."},
    )
    names = ["RG1_UNCR.dcm", "RG1_J2KI.dcm", "CT_small.dcm", "MR_small_bigendian.dcm"]
    for path in [*(testdata(n) for n in names), latin]:
        fast = dicom_meta(pydicom.dcmread(path, stop_before_pixels=True))
        slow = dicom_meta_slow(pydicom.dcmread(path, stop_before_pixels=True))
        assert fast == slow, path
    assert imageio.read_header(latin).meta["PatientName"] == "Müller^Jürgen"
