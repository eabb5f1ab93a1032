"""Every claimed transfer syntax decodes what was written (lossless) or something close (lossy).

Files are written by the tests: uncompressed and deflated by pydicom, RLE / JPEG-LS / JPEG 2000
by pydicom's encoders (``Dataset.compress``), JPEG baseline and lossless by GDCM's encoder
(python-gdcm is a runtime dependency). The reference for each case is the same pixels written
uncompressed (Explicit VR Little Endian), whose source array the rule tests check by hand.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom import uid

from engine import imageio
from engine.dicomwrite import make_dataset

# name -> (pixels builder args, header kwargs)
VARIANTS = {
    "u8-mono2": ((0, 255, np.uint8), {"bits_stored": 8}),
    "u12-mono1": ((0, 4095, np.uint16), {"bits_stored": 12, "photometric": "MONOCHROME1"}),
    "u16-mono2": ((0, 65535, np.uint16), {"bits_stored": 16}),
    "s12-signed": ((-2048, 2047, np.int16), {"bits_stored": 12}),
    "u12-rescaled": ((0, 4095, np.uint16), {"bits_stored": 12, "rescale": (2.0, -1000.0)}),
}

LOSSLESS = [
    uid.ImplicitVRLittleEndian,
    uid.ExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.RLELossless,
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
]

_GDCM_TS = {
    uid.JPEGLossless: "JPEGLosslessProcess14",
    uid.JPEGLosslessSV1: "JPEGLosslessProcess14_1",
    uid.JPEGBaseline8Bit: "JPEGBaselineProcess1",
    uid.JPEGExtended12Bit: "JPEGExtendedProcess2_4",
}


def _pixels(make_ramp, variant):
    (lo, hi, dtype), header = VARIANTS[variant]
    return make_ramp((48, 56), lo, hi, dtype), header


def _smooth(variant):
    """A smooth image (gradient plus a bright disc) for lossy codecs, which drop fine noise."""
    (lo, hi, dtype), header = VARIANTS[variant]
    yy, xx = np.mgrid[0:64, 0:64]
    frac = 0.3 * xx / 63 + 0.4 * ((xx - 32) ** 2 + (yy - 28) ** 2 < 15**2)
    return (lo + frac * (hi - lo)).round().astype(dtype), header


def _gdcm_transcode(src, dst, ts):
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, _GDCM_TS[ts])))
    change.SetInput(reader.GetImage())
    assert change.Change(), f"GDCM could not encode {ts.name}"
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(dst))
    assert writer.Write()


def write_as(tmp_path, pixels, ts, name="x.dcm", **header):
    """Write ``pixels`` with transfer syntax ``ts``; returns the path."""
    path = tmp_path / name
    ds = make_dataset(pixels, **header)
    if ts in _GDCM_TS:
        plain = tmp_path / f"plain_{name}"
        ds.save_as(plain, enforce_file_format=True)
        _gdcm_transcode(plain, path, ts)
        return path
    if ts == uid.ExplicitVRBigEndian:
        # pydicom writes the element bytes as given: swap 16-bit samples ourselves.
        if pixels.dtype.itemsize == 2:
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
        ds.file_meta.TransferSyntaxUID = ts
    elif ts.is_compressed:
        kwargs = {}
        if ts == uid.JPEGLSNearLossless:
            kwargs = {"jls_error": 2}
        elif ts == uid.JPEG2000:
            kwargs = {"j2k_cr": [4]}
        ds.compress(ts, **kwargs)
    else:
        ds.file_meta.TransferSyntaxUID = ts
    ds.save_as(path, enforce_file_format=True)
    return path


def _reference(tmp_path, pixels, header):
    return imageio.read_source(
        write_as(tmp_path, pixels, uid.ExplicitVRLittleEndian, "ref.dcm", **header)
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("ts", LOSSLESS, ids=lambda t: t.name)
def test_lossless_transfer_syntax_round_trip(tmp_path, make_ramp, ts, variant):
    pixels, header = _pixels(make_ramp, variant)
    path = write_as(tmp_path, pixels, ts, **header)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == ts
    info = imageio.read_header(path)
    assert info.meta["TransferSyntaxUID"] == ts
    src = imageio.read_source(path)
    written = pydicom.dcmread(path, stop_before_pixels=True)
    if "RescaleSlope" in written and "rescale" not in header:
        # GDCM's writer adds Rescale Slope 1 / Intercept 0, which by the rule makes the source
        # float64 modality values; compare with the same header written uncompressed.
        header = {**header, "rescale": (1.0, 0.0)}
        assert src.dtype == np.float64
    ref = _reference(tmp_path, pixels, header)
    assert src.dtype == ref.dtype
    np.testing.assert_array_equal(src, ref)
    # The stored values themselves, through the display's modality array (rescale undone).
    disp = imageio.read_display(path)
    slope, intercept = header.get("rescale", (1.0, 0.0))
    np.testing.assert_allclose((disp.modality - intercept) / slope, pixels, atol=1e-3)


# Signed data is left out: pydicom's JPEG-LS near-lossless encoding of signed samples lets the
# extreme values wrap around (an encoder limitation, not a decoding one).
@pytest.mark.parametrize("variant", ["u8-mono2", "u12-mono1", "u16-mono2"])
def test_jpeg_ls_near_lossless_within_error_bound(tmp_path, make_ramp, variant):
    pixels, header = _pixels(make_ramp, variant)
    path = write_as(tmp_path, pixels, uid.JPEGLSNearLossless, **header)
    disp = imageio.read_display(path)
    err = np.abs(disp.modality.astype(np.int64) - pixels.astype(np.int64))
    assert err.max() <= 2  # NEAR = 2


@pytest.mark.parametrize("variant", ["u8-mono2", "u12-mono1", "u16-mono2", "s12-signed"])
def test_jpeg2000_lossy_is_close(tmp_path, variant):
    pixels, header = _smooth(variant)
    path = write_as(tmp_path, pixels, uid.JPEG2000, **header)
    src = imageio.read_source(path).astype(np.float64)
    ref = _reference(tmp_path, pixels, header).astype(np.float64)
    span = ref.max() - ref.min()
    assert not np.array_equal(src, ref)  # really lossy
    assert np.abs(src - ref).mean() < 0.02 * span
    assert np.corrcoef(src.ravel(), ref.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("ts", [uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit], ids=lambda t: t.name)
def test_jpeg_baseline_and_extended_8_bit_are_close(tmp_path, ts):
    pixels, header = _smooth("u8-mono2")
    path = write_as(tmp_path, pixels, ts, **header)
    info = imageio.read_header(path)
    assert info.reason == "image too small (64 x 64 pixels; need at least 256 x 256)"
    assert info.meta["TransferSyntaxUID"] == ts
    src = imageio.read_source(path)
    assert src.shape == pixels.shape
    assert np.abs(src.astype(np.int64) - pixels).mean() < 2


def test_jpeg_baseline_rgb_from_pydicom(testdata):
    # pydicom's own DCMTK-encoded YBR baseline JPEG against its uncompressed RGB original.
    import cv2

    src = imageio.read_source(testdata("SC_rgb_jpeg_dcmtk.dcm"))
    rgb = pydicom.dcmread(testdata("SC_rgb.dcm")).pixel_array
    ref = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert src.shape == ref.shape == (100, 100)
    assert np.abs(src.astype(int) - ref).mean() < 3


def test_jpeg_lossless_from_pydicom_data(testdata):
    # A real 8-bit JPEG lossless SV1 file (US) decodes with GDCM.
    src = imageio.read_source(testdata("JPGLosslessP14SV1_1s_1f_8b.dcm"))
    assert src.dtype == np.uint8 and src.shape == (768, 1024)
    assert src.max() > src.min()


def test_jpeg_extended_12_bit_reported_not_decodable(testdata):
    path = testdata("JPEG-lossy.dcm")
    info = imageio.read_header(path)
    assert not info.ok
    assert info.reason == (
        "JPEG Extended with 12-bit samples cannot be decoded: no permissively licensed 12-bit "
        "JPEG decoder is installed (pylibjpeg-libjpeg is GPLv3, not used)"
    )
    with pytest.raises(imageio.ImageReadError, match="JPEG Extended with 12-bit samples"):
        imageio.read_source(path)


# HTJ2K: no encoder ships with the project, so these 16 x 16 lossless codestreams were made once
# with OpenJPH 0.26.3 (imagecodecs.htj2k_encode, an encoder independent of the OpenJPEG decoder
# under test) from the pattern below, 16-bit precision, unsigned and signed (pattern - 2000).
_HTJ2K_UNSIGNED = bytes.fromhex(
    "ff4fff5100294000000000100000001000000000000000000000001000000010000000000000000000010f0101"
    "ff50000800020000000aff52000c00020001000504044001ff5c00132088909090909090909090909090888888"
    "ff64001700014f70656e4a50482056657220302e32362e332eff90000a0000000000770001ff93c00026d1f605"
    "07740000c0001340001280d8f103877400fe00877400c00013c0001280e840c703027400be00035400c0001550"
    "0004e06490410619aa72827500deddc1c9ecb500c0002d08000558f2f2f2f2f2f2f2f2e7ca7a7a718278004c92"
    "24fd927bf649ecb800ffd9"
)
_HTJ2K_SIGNED = bytes.fromhex(
    "ff4fff5100294000000000100000001000000000000000000000001000000010000000000000000000018f0101"
    "ff50000800020000000aff52000c00020001000504044001ff5c00132088909090909090909090909090888888"
    "ff64001700014f70656e4a50482056657220302e32362e332eff90000a0000000000770001ff93c0002671fe02"
    "87740000c0001340001280d8f103877400fe00877400c00013c0001280e840c703027400be00035400c0001550"
    "0004e06490410619aa72827500deddc1c9ecb500c0002d08000558f2f2f2f2f2f2f2f2e7ca7a7a718278004c92"
    "24fd927bf649ecb800ffd9"
)


def _htj2k_pattern():
    yy, xx = np.mgrid[0:16, 0:16]
    return (xx * 250 + yy * 7).astype(np.uint16)


@pytest.mark.parametrize("ts", [uid.HTJ2KLossless, uid.HTJ2K], ids=lambda t: t.name)
@pytest.mark.parametrize(
    ("signed", "photometric"),
    [(False, "MONOCHROME2"), (False, "MONOCHROME1"), (True, "MONOCHROME2")],
)
def test_htj2k_decodes_with_openjpeg(tmp_path, ts, signed, photometric):
    from pydicom.encaps import encapsulate

    pattern = _htj2k_pattern()
    pixels = (pattern.astype(np.int16) - 2000) if signed else pattern
    ds = make_dataset(pixels, bits_stored=16, photometric=photometric)
    ds.PixelData = encapsulate([_HTJ2K_SIGNED if signed else _HTJ2K_UNSIGNED])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = ts
    path = tmp_path / "htj2k.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert imageio.read_header(path).meta["TransferSyntaxUID"] == ts
    ref = _reference(tmp_path, pixels, {"bits_stored": 16, "photometric": photometric})
    np.testing.assert_array_equal(imageio.read_source(path), ref)
    np.testing.assert_array_equal(imageio.read_display(path).modality, pixels.astype(np.float32))
