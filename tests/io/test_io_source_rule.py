"""The source-array rule (what the models consume) and the display form, on synthetic images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from engine import imageio

# ---------------------------------------------------------------------------- source: DICOM


@pytest.mark.parametrize(
    ("bits_stored", "dtype"), [(8, np.uint8), (12, np.uint16), (15, np.uint16), (16, np.uint16)]
)
def test_monochrome2_unsigned_kept_as_written(write, make_ramp, bits_stored, dtype):
    px = make_ramp((40, 48), 0, 2**bits_stored - 1, dtype)
    path = write("m2.dcm", px, bits_stored=bits_stored)
    src = imageio.read_source(path)
    assert src.dtype == dtype
    np.testing.assert_array_equal(src, px)


@pytest.mark.parametrize(
    ("bits_stored", "dtype"), [(8, np.uint8), (12, np.uint16), (16, np.uint16)]
)
def test_monochrome1_unsigned_inverted_over_stored_range(write, make_ramp, bits_stored, dtype):
    px = make_ramp((40, 48), 10, 200, dtype)
    path = write("m1.dcm", px, bits_stored=bits_stored, photometric="MONOCHROME1")
    src = imageio.read_source(path)
    hi = 2**bits_stored - 1  # lo = 0: the inversion spans the possible range, not the data's
    assert src.dtype == dtype
    np.testing.assert_array_equal(src, (hi - px.astype(np.int64)).astype(dtype))


def test_signed_negative_values_decode_and_shift_to_unsigned(write, make_ramp):
    px = make_ramp((40, 48), -2048, 2047, np.int16)
    path = write("signed.dcm", px, bits_stored=12)
    src = imageio.read_source(path)
    # No modality LUT: integer kept as uint16, signed range [-2048, 2047] shifted by +2048.
    assert src.dtype == np.uint16
    np.testing.assert_array_equal(src.astype(np.int64), px.astype(np.int64) + 2048)
    disp = imageio.read_display(path)
    np.testing.assert_array_equal(disp.modality, px.astype(np.float32))  # true signed values
    assert disp.modality.min() == -2048


def test_signed_monochrome1_inverted(write, make_ramp):
    px = make_ramp((40, 48), -1000, 1000, np.int16)
    path = write("signed_m1.dcm", px, photometric="MONOCHROME1")
    src = imageio.read_source(path)
    # (lo + hi) - v with lo=-32768, hi=32767 gives -1 - v; shifted by -lo: 32767 - v.
    np.testing.assert_array_equal(src.astype(np.int64), 32767 - px.astype(np.int64))


def test_rescale_gives_float64_modality_values(write, make_ramp):
    px = make_ramp((40, 48), 0, 4095, np.uint16)
    path = write("rescale.dcm", px, bits_stored=12, rescale=(0.5, -100.0))
    src = imageio.read_source(path)
    assert src.dtype == np.float64
    np.testing.assert_allclose(src, px * 0.5 - 100.0)


def test_negative_rescale_slope_monochrome1(write, make_ramp):
    px = make_ramp((40, 48), 0, 4095, np.uint16)
    path = write(
        "negslope.dcm", px, bits_stored=12, photometric="MONOCHROME1", rescale=(-2.0, 1000.0)
    )
    src = imageio.read_source(path)
    # Range [0, 4095] through v*-2+1000 is [-7190, 1000]; MONOCHROME1: (lo + hi) - m.
    modality = px * -2.0 + 1000.0
    np.testing.assert_allclose(src, (-7190.0 + 1000.0) - modality)
    # Hand check of two pixels: stored 0 -> m 1000 -> -7190; stored 4095 -> m -7190 -> 1000.
    assert src.flat[0] == -7190.0 and src.flat[-1] == 1000.0


def test_negative_rescale_slope_monochrome2_header_ok(write, make_ramp):
    px = make_ramp((300, 300), 0, 1023, np.uint16)
    path = write("negslope2.dcm", px, bits_stored=10, rescale=(-1.0, 1023.0))
    info = imageio.read_header(path)
    assert info.ok, info.reason
    np.testing.assert_allclose(imageio.read_source(path), 1023.0 - px)


def test_modality_lut_sequence(dataset, tmp_path, make_ramp):
    px = make_ramp((32, 32), 0, 255, np.uint8).astype(np.uint16)
    ds = dataset(px, bits_stored=8, photometric="MONOCHROME1")
    ds.BitsAllocated = 16
    item = Dataset()
    # 256 entries starting at stored value 0, 16-bit output: m = 3 * v + 7.
    item.LUTDescriptor = [256, 0, 16]
    item.ModalityLUTType = "US"
    item.add_new(0x00283006, "US", [3 * v + 7 for v in range(256)])  # LUTData
    ds.ModalityLUTSequence = Sequence([item])
    path = tmp_path / "mlut.dcm"
    ds.save_as(path, enforce_file_format=True)
    src = imageio.read_source(path)
    assert src.dtype == np.float64
    # Stored range 0..255 maps to 7..772; MONOCHROME1: 779 - m.
    np.testing.assert_allclose(src, 779.0 - (3.0 * px + 7.0))


def test_rgb_dicom_becomes_grey_with_rgb2gray(write):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    path = write("rgb.dcm", rgb, modality="DX")
    src = imageio.read_source(path)
    assert src.dtype == np.uint8 and src.shape == (32, 40)
    np.testing.assert_array_equal(src, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


# ---------------------------------------------------------------------------- source: PNG/JPEG/TIFF


def _imwrite(path, img, params=()):
    ok, buf = cv2.imencode(path.suffix, img, list(params))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_grey_8_and_16_bit(tmp_path, make_ramp, dtype):
    px = make_ramp((300, 260), 0, int(np.iinfo(dtype).max), dtype)
    path = _imwrite(tmp_path / "x.png", px)
    info = imageio.read_header(path)
    assert info.ok and not info.is_dicom and info.format == "png"
    assert (info.meta["Rows"], info.meta["Columns"]) == (300, 260)
    assert info.meta["BitsAllocated"] == np.dtype(dtype).itemsize * 8
    src = imageio.read_source(path)
    assert src.dtype == dtype
    np.testing.assert_array_equal(src, px)


def test_colour_png_uses_bgr2gray(tmp_path):
    rng = np.random.default_rng(2)
    bgr = rng.integers(0, 65536, size=(30, 20, 3), dtype=np.uint16)
    path = _imwrite(tmp_path / "c.png", bgr)
    src = imageio.read_source(path)
    assert src.dtype == np.uint16
    np.testing.assert_array_equal(src, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    assert "colour image converted to grey" in imageio.read_header(path).warnings


def test_jpeg_and_tiff(tmp_path, make_ramp):
    px = make_ramp((64, 80), 0, 255, np.uint8)
    jpg = _imwrite(tmp_path / "x.jpg", px, (cv2.IMWRITE_JPEG_QUALITY, 95))
    src = imageio.read_source(jpg)
    assert src.shape == px.shape and src.dtype == np.uint8
    assert np.abs(src.astype(int) - px).mean() < 3  # lossy but close
    assert imageio.read_header(jpg).format == "jpeg"
    assert (imageio.read_header(jpg).meta["Rows"], imageio.read_header(jpg).meta["Columns"]) == (
        64,
        80,
    )
    px16 = make_ramp((64, 80), 0, 65535, np.uint16)
    tif = _imwrite(tmp_path / "x.tif", px16)
    np.testing.assert_array_equal(imageio.read_source(tif), px16)
    info = imageio.read_header(tif)
    assert info.ok and info.format == "tiff" and info.meta["BitsAllocated"] == 16
    # Tiny PNG/JPEG are accepted (no header to judge) but noted.
    assert imageio.read_header(jpg).warnings == ["small image (80 x 64 pixels)"]


def test_dicom_named_jpg_is_read_as_dicom(write, make_ramp):
    px = make_ramp((20, 20), 0, 4095, np.uint16)
    path = write("looks_like.jpg", px, bits_stored=12)
    assert imageio.read_header(path).is_dicom
    np.testing.assert_array_equal(imageio.read_source(path), px)


# ---------------------------------------------------------------------------- display


def test_apply_window_hand_computed():
    m = np.array([[0.0, 50.0, 99.5, 100.0, 150.0, 300.0]], dtype=np.float32)
    # c=100, w=101: y = ((x - 99.5) / 100 + 0.5) * 255
    out = imageio.apply_window(m, 100.0, 101.0)
    expected = np.clip(np.rint(((m - 99.5) / 100.0 + 0.5) * 255.0), 0, 255)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    # By hand: 50 -> 1.275, 99.5 -> 127.5, 100 -> 128.775, 150 -> 256.3 (clipped).
    assert out.tolist() == [[0, 1, 128, 129, 255, 255]]
    np.testing.assert_array_equal(imageio.apply_window(m, 100.0, 101.0, True), 255 - out)
    # Width 1 is a threshold at c - 0.5.
    assert imageio.apply_window(m, 100.0, 1.0).tolist() == [[0, 0, 0, 255, 255, 255]]


def test_display_all_window_pairs_become_presets(write, make_ramp):
    px = make_ramp((40, 40), 0, 4095, np.uint16)
    path = write(
        "win.dcm",
        px,
        bits_stored=12,
        rescale=(1.0, -1024.0),
        window=([40.0, 400.0], [400.0, 2000.0]),
        extra={"WindowCenterWidthExplanation": ["SOFT", "BONE"]},
    )
    disp = imageio.read_display(path)
    assert disp.window == (40.0, 400.0)
    assert disp.presets[:2] == [("SOFT", 40.0, 400.0), ("BONE", 400.0, 2000.0)]
    assert disp.invert is False
    np.testing.assert_allclose(disp.modality, px - 1024.0)
    np.testing.assert_array_equal(disp.pixels, imageio.apply_window(px - 1024.0, 40.0, 400.0))


def test_display_percentile_window_without_header_window(write):
    px = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100)
    disp = imageio.read_display(write("nowin.dcm", px, bits_stored=14))
    lo, hi = np.percentile(px, [0.5, 99.5])
    assert disp.window == pytest.approx(((lo + hi) / 2, hi - lo))
    assert disp.pixels.min() == 0 and disp.pixels.max() == 255


def test_display_presentation_lut_inverse(write, make_ramp):
    px = make_ramp((40, 40), 0, 1023, np.uint16)
    path = write(
        "inv.dcm",
        px,
        bits_stored=10,
        window=(512.0, 1024.0),
        extra={"PresentationLUTShape": "INVERSE"},
    )
    disp = imageio.read_display(path)
    assert disp.invert is True
    np.testing.assert_array_equal(disp.pixels, 255 - imageio.apply_window(px, 512.0, 1024.0))
    # The source array is not inverted: PresentationLUTShape is a display matter (MONOCHROME2).
    np.testing.assert_array_equal(imageio.read_source(path), px)


def test_display_voi_lut_sequence(dataset, tmp_path):
    px = np.tile(np.arange(0, 256, dtype=np.uint16), (8, 1))
    ds = dataset(px, bits_stored=8)
    ds.BitsAllocated = 16
    item = Dataset()
    # VOI LUT: 128 entries from value 64, 8-bit output, entry i = 2 * i (so 64 -> 0, 191 -> 254).
    item.LUTDescriptor = [128, 64, 8]
    item.add_new(0x00283006, "US", [2 * i for i in range(128)])  # LUTData
    item.LUTExplanation = "LINEAR-ISH"
    ds.VOILUTSequence = Sequence([item])
    path = tmp_path / "voi.dcm"
    ds.save_as(path, enforce_file_format=True)
    disp = imageio.read_display(path)
    row = disp.pixels[0].astype(int)
    expected = np.clip(2 * (np.arange(256) - 64), 0, 254)  # clamped to first/last entries
    np.testing.assert_array_equal(row, expected)
    assert disp.presets[0][0] == "LINEAR-ISH (as linear window)"
    assert disp.window == (128.0, 128.0)


def test_png_display_uses_percentile_window(tmp_path):
    px = np.arange(200 * 200, dtype=np.uint16).reshape(200, 200)
    disp = imageio.read_display(_imwrite(tmp_path / "p.png", px))
    assert disp.invert is False
    assert disp.modality.dtype == np.float32
    np.testing.assert_array_equal(disp.modality, px.astype(np.float32))
    assert disp.pixels.dtype == np.uint8 and disp.pixels.max() == 255


def test_palette_colour_dicom_becomes_grey(testdata):
    import pydicom
    from pydicom.pixels import apply_color_lut

    path = testdata("OT-PAL-8-face.dcm")  # also a real file without preamble or file meta
    ds = pydicom.dcmread(path, force=True)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    rgb = apply_color_lut(ds.pixel_array, ds)
    src = imageio.read_source(path)
    assert src.shape == ds.pixel_array.shape and src.ndim == 2
    np.testing.assert_array_equal(src, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    info = imageio.read_header(path)
    assert info.is_dicom and info.meta["TransferSyntaxUID"] == "1.2.840.10008.1.2"
    # OT without a chest body part or description: decodable, but not accepted.
    assert info.reason.startswith("secondary capture (Modality=OT)")


def test_ybr_full_dicom_converted_to_rgb_then_grey(testdata):
    import pydicom

    ybr = imageio.read_source(testdata("SC_ybr_full_uncompressed.dcm"))
    rgb = pydicom.dcmread(testdata("SC_rgb.dcm")).pixel_array
    # Same picture stored as YBR_FULL: after YBR -> RGB -> grey it matches within rounding.
    assert np.abs(ybr.astype(int) - cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)).max() <= 2
