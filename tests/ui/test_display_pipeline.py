"""The display pipeline (cxrlt_desktop.ui.display) without Qt: real files from pydicom-data and
files written here with pydicom, checked against the formulas of PS3.3 written out below."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from cxrlt_desktop.ui.display import AUTO_NAME, DisplayPipeline, Preset


def _data(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.fail(f"pydicom test file {name} missing (pydicom-data)", pytrace=False)
    return path


# ------------------------------------------------------------------ the standard's formulas
def linear(x, c, w, ymin=0.0, ymax=255.0):
    """PS3.3 C.11.2.1.2.1 (LINEAR)."""
    x = np.asarray(x, dtype=np.float64)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * (ymax - ymin) + ymin
    y = np.where(x <= c - 0.5 - (w - 1) / 2, ymin, y)
    return np.where(x > c - 0.5 + (w - 1) / 2, ymax, y)


def linear_exact(x, c, w, ymin=0.0, ymax=255.0):
    """PS3.3 C.11.2.1.3.2 (LINEAR_EXACT)."""
    x = np.asarray(x, dtype=np.float64)
    y = ((x - c) / w + 0.5) * (ymax - ymin) + ymin
    y = np.where(x <= c - w / 2, ymin, y)
    return np.where(x > c + w / 2, ymax, y)


def sigmoid(x, c, w, ymin=0.0, ymax=255.0):
    """PS3.3 C.11.2.1.3.1 (SIGMOID)."""
    x = np.asarray(x, dtype=np.float64)
    return (ymax - ymin) / (1.0 + np.exp(-4.0 * (x - c) / w)) + ymin


def u8(y):
    return np.rint(y).astype(np.uint8)


def write_image(path, pixels, **attrs) -> Dataset:
    """A secondary-capture file with these 16-bit pixels and attributes, read back from disk."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    pixels = np.asarray(pixels)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    signed = pixels.dtype.kind == "i"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


@pytest.fixture
def ramp():
    # 64 x 64, values 0..4095 in steps of one: every value a window might treat differently
    return np.arange(4096, dtype=np.uint16).reshape(64, 64)


# ------------------------------------------------------------------ VOI: windows
@pytest.mark.parametrize(
    ("function", "formula"),
    [("LINEAR", linear), ("LINEAR_EXACT", linear_exact), ("SIGMOID", sigmoid)],
)
def test_window_functions_follow_the_standard(tmp_path, ramp, function, formula):
    ds = write_image(
        tmp_path / "w.dcm",
        ramp,
        WindowCenter=[1000.0, 2600.0],
        WindowWidth=[801.0, 1500.0],
        WindowCenterWidthExplanation=["SOFT", "HARD"],
        VOILUTFunction=function,
    )
    p = DisplayPipeline.from_dataset(ds)
    names = [x.name for x in p.presets]
    assert names[:2] == ["SOFT", "HARD"]  # every window, named by its explanation
    assert p.default.name == "SOFT"
    for preset, (c, w) in zip(p.presets[:2], ((1000.0, 801.0), (2600.0, 1500.0)), strict=True):
        assert preset.function == function
        out = p.render(preset)
        np.testing.assert_array_equal(out, u8(formula(ramp, c, w)))
    # The two windows differ, and the functions differ from each other on the same window.
    assert not np.array_equal(p.render(p.presets[0]), p.render(p.presets[1]))
    if function != "LINEAR":
        np.testing.assert_raises(
            AssertionError,
            np.testing.assert_array_equal,
            p.render(p.presets[0]),
            u8(linear(ramp, 1000.0, 801.0)),
        )


def test_window_on_rescaled_non_integer_values(tmp_path, ramp):
    # Slope 0.25: modality values are not integers, so the window runs on the values directly.
    ds = write_image(
        tmp_path / "r.dcm",
        ramp,
        RescaleSlope=0.25,
        RescaleIntercept=-100.0,
        WindowCenter=300.0,
        WindowWidth=400.0,
        VOILUTFunction="SIGMOID",
    )
    p = DisplayPipeline.from_dataset(ds)
    x = ramp * 0.25 - 100.0
    np.testing.assert_allclose(p.modality, x)
    np.testing.assert_array_equal(p.render(p.default), u8(sigmoid(x, 300.0, 400.0)))


def test_dragged_window_keeps_the_header_function(tmp_path, ramp):
    ds = write_image(tmp_path / "s.dcm", ramp, WindowCenter=2000, WindowWidth=1000)
    ds.VOILUTFunction = "LINEAR_EXACT"
    p = DisplayPipeline.from_dataset(ds)
    auto = p.preset(AUTO_NAME)
    assert auto.function == "LINEAR_EXACT"
    np.testing.assert_array_equal(p.render(auto), u8(linear_exact(ramp, auto.center, auto.width)))


def test_monochrome1_is_inverted_after_the_window():
    ds = pydicom.dcmread(_data("RG1_UNCR.dcm"))
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    p = DisplayPipeline.from_dataset(ds)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    x = ds.pixel_array.astype(np.float64)
    np.testing.assert_array_equal(p.render(p.default), 255 - u8(linear(x, c, w)))
    # The reader's Invert flips it back.
    np.testing.assert_array_equal(p.render(p.default, invert=True), u8(linear(x, c, w)))


# ------------------------------------------------------------------ VOI LUT Sequence
def test_voi_lut_sequence_of_a_real_file():
    ds = pydicom.dcmread(_data("vlut_04.dcm"))
    p = DisplayPipeline.from_dataset(ds)
    assert p.default.kind == "lut"
    item = ds.VOILUTSequence[0]
    n, first, bits = (int(v) for v in item.LUTDescriptor)
    lut = np.asarray(item.LUTData, dtype=np.float64)
    idx = np.clip(ds.pixel_array.astype(np.int64) - first, 0, n - 1)
    expected = u8(lut[idx] * 255.0 / (2**bits - 1))
    np.testing.assert_array_equal(p.render(p.default), expected)


def test_every_voi_lut_item_is_a_named_preset(tmp_path, ramp):
    def item(first, entries, explanation):
        it = Dataset()
        it.add_new(0x00283002, "US", [len(entries), first, 16])  # LUT Descriptor
        it.add_new(0x00283006, "US", [int(v) for v in entries])  # LUT Data
        it.LUTExplanation = explanation
        return it

    up = np.linspace(0, 65535, 2048).astype(int)  # rising over 1000..3047
    down = up[::-1]  # falling over 0..2047
    ds = write_image(
        tmp_path / "v.dcm",
        ramp,
        VOILUTSequence=[item(1000, up, "RISING"), item(0, down, "FALLING")],
        WindowCenter=2048,
        WindowWidth=4096,
        WindowCenterWidthExplanation="WHOLE",
    )
    p = DisplayPipeline.from_dataset(ds)
    assert [x.name for x in p.presets[:3]] == ["RISING", "FALLING", "WHOLE"]
    for preset, first, lut in ((p.presets[0], 1000, up), (p.presets[1], 0, down)):
        idx = np.clip(ramp.astype(np.int64) - first, 0, len(lut) - 1)
        np.testing.assert_array_equal(p.render(preset), u8(lut[idx] * 255.0 / 65535.0))
    np.testing.assert_array_equal(p.render(p.presets[2]), u8(linear(ramp, 2048, 4096)))


def test_modality_lut_sequence_then_window():
    ds = pydicom.dcmread(_data("mlut_18.dcm"))
    p = DisplayPipeline.from_dataset(ds)
    item = ds.ModalityLUTSequence[0]
    n, first, _ = (int(v) for v in item.LUTDescriptor)
    lut = np.asarray(item.LUTData, dtype=np.float64)
    expected = lut[np.clip(ds.pixel_array.astype(np.int64) - first, 0, n - 1)]
    np.testing.assert_array_equal(p.modality, expected.astype(np.float32))
    auto = p.preset(AUTO_NAME)
    np.testing.assert_array_equal(p.render(auto), u8(linear(expected, auto.center, auto.width)))


def test_engine_modality_values_equal_pydicoms():
    # The viewer takes the modality values from the engine's decode: they must be pydicom's.
    from engine.imageio import read_display

    for name in ("mlut_18.dcm", "693_UNCR.dcm", "RG1_UNCR.dcm", "vlut_04.dcm"):
        ds = pydicom.dcmread(_data(name))
        own = DisplayPipeline.from_dataset(ds).modality
        np.testing.assert_array_equal(read_display(_data(name)).modality, own, err_msg=name)


# ------------------------------------------------------------------ padding
def test_padding_is_background_and_out_of_the_auto_window():
    ds = pydicom.dcmread(_data("693_UNCR.dcm"))
    stored = ds.pixel_array
    pad = stored == int(ds.PixelPaddingValue)
    assert pad.sum() > 1000  # the corners outside the CT's circle
    p = DisplayPipeline.from_dataset(ds)
    np.testing.assert_array_equal(p.padding, pad)
    modality = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    lo, hi = np.percentile(modality[~pad], (0.5, 99.5))
    auto = p.preset(AUTO_NAME)
    assert auto.center == pytest.approx((lo + hi) / 2)
    assert auto.width == pytest.approx(hi - lo)
    # Inverted, the padding would be white: it stays black (background).
    out = p.render(auto, invert=True)
    assert (out[pad] == 0).all()
    np.testing.assert_array_equal(
        out[~pad], 255 - u8(linear(modality[~pad], auto.center, auto.width))
    )


def test_padding_range_limit(tmp_path, ramp):
    ds = write_image(tmp_path / "p.dcm", ramp, PixelPaddingValue=4000, PixelPaddingRangeLimit=4095)
    p = DisplayPipeline.from_dataset(ds)
    np.testing.assert_array_equal(p.padding, ramp >= 4000)
    full = p.preset("Full range")
    assert full.center == pytest.approx(3999 / 2)  # 0..3999 without the padding
    out = p.render(Preset("w", 2000, 4000))
    assert (out[ramp >= 4000] == 0).all() and out[ramp == 3999].item() > 200


# ------------------------------------------------------------------ shutters
def _shuttered(tmp_path, ramp, **attrs):
    ds = write_image(tmp_path / "sh.dcm", ramp, WindowCenter=2048, WindowWidth=4096, **attrs)
    p = DisplayPipeline.from_dataset(ds)
    plain = DisplayPipeline.from_values(ds.pixel_array).render(Preset("w", 2048, 4096))
    return p, plain


def test_rectangular_shutter_masks_exactly_outside_its_edges(tmp_path, ramp):
    p, plain = _shuttered(
        tmp_path,
        ramp,
        ShutterShape="RECTANGULAR",
        ShutterLeftVerticalEdge=5,
        ShutterRightVerticalEdge=40,
        ShutterUpperHorizontalEdge=10,
        ShutterLowerHorizontalEdge=30,
        ShutterPresentationValue=0xFFFF,
    )
    inside = np.zeros(ramp.shape, bool)
    inside[9:30, 4:40] = True  # 1-based rows 10..30, columns 5..40, edges included
    out = p.render(p.default)
    assert (out[~inside] == 255).all()
    np.testing.assert_array_equal(out[inside], plain[inside])
    np.testing.assert_array_equal(p.shutter.mask, ~inside)


def test_circular_and_polygonal_shutters_intersect(tmp_path, ramp):
    # circle centred at row 32, column 30 (1-based), radius 20; triangle with the vertices below
    verts = [(5, 10), (60, 10), (60, 55)]  # (row, column), 1-based
    p, plain = _shuttered(
        tmp_path,
        ramp,
        ShutterShape=["CIRCULAR", "POLYGONAL"],
        CenterOfCircularShutter=[32, 30],
        RadiusOfCircularShutter=20,
        VerticesOfThePolygonalShutter=[v for rc in verts for v in rc],
        ShutterPresentationValue=0,
    )
    rows, cols = np.mgrid[1:65, 1:65]
    circle = (rows - 32) ** 2 + (cols - 30) ** 2 <= 400
    # Triangle by its three half-planes (edges included): column >= 10, row <= 60, and on the
    # inner side of the hypotenuse from (5, 10) to (60, 55): 45 (row - 5) - 55 (col - 10) >= 0.
    triangle = (cols >= 10) & (rows <= 60) & (45 * (rows - 5) - 55 * (cols - 10) >= 0)
    inside = circle & triangle
    assert 200 < inside.sum() < circle.sum()
    np.testing.assert_array_equal(p.shutter.mask, ~inside)
    out = p.render(p.default)
    assert (out[~inside] == 0).all()
    np.testing.assert_array_equal(out[inside], plain[inside])
    assert p.shutter.shapes == ("CIRCULAR", "POLYGONAL")
    # switched off, nothing is masked
    np.testing.assert_array_equal(p.render(p.default, shutters=False), plain)


def test_malformed_shutter_is_reported_and_ignored(tmp_path, ramp):
    ds = write_image(
        tmp_path / "b.dcm", ramp, ShutterShape="CIRCULAR", WindowCenter=2048, WindowWidth=4096
    )
    p = DisplayPipeline.from_dataset(ds)
    assert p.shutter is None
    # the circle's centre and radius are missing: named, and the image shown unshuttered
    assert p.warnings == [
        "circular shutter unusable (missing CenterOfCircularShutter, RadiusOfCircularShutter): "
        "ignored"
    ]


# ------------------------------------------------------------------ overlays
def _unpack_overlay(ds, group):
    """Overlay Data unpacked by hand: PS3.5 8.1.2, bits little-endian within each byte."""
    rows, cols = ds[group, 0x0010].value, ds[group, 0x0011].value
    raw = np.frombuffer(ds[group, 0x3000].value, dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little")[: rows * cols]
    return bits.reshape(rows, cols).astype(bool)


def test_overlay_plane_of_a_real_file_toggles():
    ds = pydicom.dcmread(_data("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    p = DisplayPipeline.from_dataset(ds)
    assert [o.group for o in p.overlays] == [0x6000]
    bits = _unpack_overlay(ds, 0x6000)
    assert list(ds[0x6000, 0x0050].value) == [1, 1]  # origin: top-left, same grid
    np.testing.assert_array_equal(p.overlays[0].mask, bits)
    off = p.render(p.default)
    on = p.render(p.default, overlays=True)
    assert (on[bits] == 255).all()
    np.testing.assert_array_equal(on[~bits], off[~bits])
    assert (off[bits] != 255).any()  # the overlay is not part of the image itself


def test_overlay_origin_places_the_plane(tmp_path, ramp):
    plane = np.zeros((8, 8), dtype=np.uint8)
    plane[0, :] = 1
    plane[:, 0] = 1
    ds = write_image(tmp_path / "o.dcm", ramp, WindowCenter=2048, WindowWidth=4096)
    ds.add_new(0x60020010, "US", 8)
    ds.add_new(0x60020011, "US", 8)
    ds.add_new(0x60020040, "CS", "G")
    ds.add_new(0x60020050, "SS", [20, 30])
    ds.add_new(0x60020100, "US", 1)
    ds.add_new(0x60020102, "US", 0)
    ds.add_new(0x60023000, "OW", np.packbits(plane.ravel(), bitorder="little").tobytes())
    p = DisplayPipeline.from_dataset(ds)
    expected = np.zeros(ramp.shape, bool)
    expected[19:27, 29:37] = plane.astype(bool)
    np.testing.assert_array_equal(p.overlays[0].mask, expected)


# ------------------------------------------------------------------ crafted headers
def test_crafted_display_header_parts_are_refused_and_named(tmp_path, ramp):
    """A header asking for a 60000 x 60000 overlay plane, a polygon of 10,000 vertices or overlay
    data shorter than its plane: each part is left out with a warning, the image still shows."""
    ds = write_image(
        tmp_path / "x.dcm",
        ramp,
        WindowCenter=2048,
        WindowWidth=4096,
        ShutterShape="POLYGONAL",
        VerticesOfThePolygonalShutter=[1, 1, 1, 60, 60, 60] * 3334,
    )
    for group, rows in ((0x6000, 60000), (0x6002, 64)):
        ds.add_new((group << 16) | 0x0010, "US", rows)
        ds.add_new((group << 16) | 0x0011, "US", rows)
        ds.add_new((group << 16) | 0x0040, "CS", "G")
        ds.add_new((group << 16) | 0x0050, "SS", [1, 1])
        ds.add_new((group << 16) | 0x0100, "US", 1)
        ds.add_new((group << 16) | 0x0102, "US", 0)
        ds.add_new((group << 16) | 0x3000, "OW", b"\xff" * 16)  # far too short for either
    p = DisplayPipeline.from_dataset(ds)
    assert p.shutter is None and p.overlays == []
    assert "polygonal shutter unusable (too many vertices): ignored" in p.warnings
    assert (
        "overlay 6000 unusable (60000 x 60000 overlay plane is too large): not shown" in p.warnings
    )
    assert "overlay 6002 unusable (overlay data shorter than the plane): not shown" in p.warnings
    np.testing.assert_array_equal(p.render(p.default), u8(linear(ramp, 2048, 4096)))


def test_prerender_and_repeated_renders_equal_a_fresh_render():
    """The decode thread's render ahead, and a repeat of the latest render, are what a fresh
    pipeline renders for the same arguments; other arguments render anew."""
    x = np.arange(64 * 80, dtype=np.float32).reshape(64, 80)
    p = DisplayPipeline.from_values(x, presets=[Preset("Header", 2000.0, 3000.0)])
    p.prerender()
    first = p.render(p.default)
    assert not first.flags.writeable
    fresh = DisplayPipeline.from_values(x, presets=[Preset("Header", 2000.0, 3000.0)])
    np.testing.assert_array_equal(first, fresh.render(fresh.default))
    np.testing.assert_array_equal(first, u8(linear(x, 2000.0, 3000.0)))
    np.testing.assert_array_equal(p.render(p.default, invert=True), 255 - first)
    other = Preset("w", 1000.0, 500.0)
    np.testing.assert_array_equal(p.render(other), u8(linear(x, 1000.0, 500.0)))
    np.testing.assert_array_equal(p.render(p.default), first)
