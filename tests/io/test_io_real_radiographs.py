"""Real chest radiographs from pydicom-data: RG1 is CR chest PA, 15-bit, MONOCHROME1."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from engine import imageio

RG1 = ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm"]


@pytest.mark.parametrize("name", RG1)
def test_rg1_header_accepted(testdata, name):
    info = imageio.read_header(testdata(name))
    assert info.ok, info.reason
    assert info.reason is None
    assert info.warnings == []
    assert info.is_dicom and info.format == "dicom"
    meta = info.meta
    assert meta["Modality"] == "CR"
    assert meta["BodyPartExamined"] == "CHEST"
    assert meta["ViewPosition"] == "PA"
    assert (meta["Rows"], meta["Columns"]) == (1955, 1841)
    assert (meta["BitsAllocated"], meta["BitsStored"]) == (16, 15)
    assert meta["PhotometricInterpretation"] == "MONOCHROME1"
    assert set(imageio.META_KEYWORDS) <= set(meta)
    assert info.size == testdata(name).stat().st_size


@pytest.mark.parametrize("name", RG1)
def test_rg1_source_is_inverted_bright_mediastinum(testdata, regions, name):
    source = imageio.read_source(testdata(name))
    assert source.dtype == np.uint16  # no rescale attributes: integer dtype kept
    assert source.shape == (1955, 1841)
    mid, left, right = regions(source)
    # After MONOCHROME1 inversion bone/mediastinum is bright and the aerated lungs dark; without
    # the inversion the order flips.
    assert mid > left + 3000 and mid > right + 3000, (mid, left, right)


def test_rg1_source_matches_exact_rule(testdata):
    # Independent computation of the rule: 15-bit unsigned, MONOCHROME1 -> (0 + 32767) - v.
    ds = pydicom.dcmread(testdata("RG1_UNCR.dcm"))
    stored = ds.pixel_array.astype(np.int64)
    expected = (32767 - stored).astype(np.uint16)
    np.testing.assert_array_equal(imageio.read_source(testdata("RG1_UNCR.dcm")), expected)


def test_rg1_j2k_lossless_equals_uncompressed_bit_for_bit(testdata):
    unc = imageio.read_source(testdata("RG1_UNCR.dcm"))
    j2kr = imageio.read_source(testdata("RG1_J2KR.dcm"))
    assert unc.dtype == j2kr.dtype
    np.testing.assert_array_equal(unc, j2kr)


def test_rg1_j2k_lossy_is_close(testdata):
    unc = imageio.read_source(testdata("RG1_UNCR.dcm")).astype(np.float64)
    j2ki = imageio.read_source(testdata("RG1_J2KI.dcm")).astype(np.float64)
    diff = np.abs(unc - j2ki)
    # Lossy: not identical, but the mean error is under 1 % of the image's value range.
    assert 0 < diff.mean() < 0.01 * (unc.max() - unc.min())
    assert np.corrcoef(unc.ravel(), j2ki.ravel())[0, 1] > 0.999


def test_rg1_display_uses_header_window_and_inverts(testdata, regions):
    disp = imageio.read_display(testdata("RG1_UNCR.dcm"))
    assert disp.pixels.dtype == np.uint8 and disp.pixels.shape == (1955, 1841)
    assert disp.modality.dtype == np.float32
    assert disp.window == (15000.0, 30000.0)
    assert disp.invert is True
    assert disp.presets[0] == ("Window 1", 15000.0, 30000.0)
    names = [p[0] for p in disp.presets]
    assert any(n.startswith("Auto") for n in names) and "Full range" in names
    # Screen shows bone bright like the source array.
    mid, left, right = regions(disp.pixels)
    assert mid > left and mid > right
    np.testing.assert_array_equal(
        disp.pixels, imageio.apply_window(disp.modality, 15000.0, 30000.0, True)
    )


def test_read_image_decodes_once_consistently(testdata):
    path = testdata("RG1_J2KR.dcm")
    image = imageio.read_image(path)
    assert image.header.ok
    np.testing.assert_array_equal(image.source, imageio.read_source(path))
    np.testing.assert_array_equal(image.display.pixels, imageio.read_display(path).pixels)


def test_non_chest_radiograph_rejected_with_body_part(testdata):
    # RG3 is a CR of an extremity: decodable, but not a chest radiograph.
    info = imageio.read_header(testdata("RG3_UNCR.dcm"))
    assert not info.ok
    assert info.reason == "not a chest radiograph (BodyPartExamined=EXTREMITY)"
    # It still decodes (read_source does not judge usability).
    assert imageio.read_source(testdata("RG3_UNCR.dcm")).shape == (1760, 1760)
