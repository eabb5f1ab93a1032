"""Demo phantoms: determinism, ground truth matches the drawing, DICOM files read back."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from cxrlt_desktop.demo.phantoms import (
    DEMO_INSTITUTION,
    DRAWN_FINDINGS,
    PhantomSpec,
    _stored,
    label_set,
    plan_demo,
    read_labels_csv,
    render_phantom,
    sample_findings,
    write_demo_data,
)
from engine.classes import ALL_CLASSES

SIZE = 128  # rows; width 102


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    write_demo_data(out, n=10, seed=3, size=SIZE)
    return out


def _pixels(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def test_same_seed_gives_identical_files(demo_dir, tmp_path):
    again = write_demo_data(tmp_path, n=10, seed=3, size=SIZE)
    assert len(again) == 10
    for img in again:
        assert (demo_dir / img.image_id).read_bytes() == img.path.read_bytes(), img.image_id
    assert (demo_dir / "labels.csv").read_bytes() == (tmp_path / "labels.csv").read_bytes()


def test_other_seed_gives_other_pixels(demo_dir, tmp_path):
    other = write_demo_data(tmp_path, n=2, seed=4, size=SIZE)
    first = sorted(p for p in demo_dir.rglob("*.dcm"))[0]
    assert not np.array_equal(_pixels(first), _pixels(other[0].path))


def test_labels_csv_format(demo_dir):
    with (demo_dir / "labels.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["ImageID", "StudyDate_DICOM", "PatientID", *ALL_CLASSES]
    assert len(rows) == 11
    for row in rows[1:]:
        assert (demo_dir / row[0]).is_file() and "\\" not in row[0]
        assert len(row[1]) == 8 and row[1].isdigit()
        assert row[2].startswith("DEMO")
        flags = [int(x) for x in row[3:]]
        assert set(flags) <= {0, 1}
        # Normal is positive exactly when nothing else is.
        assert flags[0] == int(sum(flags[1:]) == 0)


def test_labels_csv_is_what_was_drawn(demo_dir):
    """Re-draw each image from the CSV's labels: the decoded DICOM must match exactly."""
    labels = read_labels_csv(demo_dir / "labels.csv")
    plans = {p["image_id"]: p for p in plan_demo(10, 3)}
    assert labels.keys() == plans.keys()
    for image_id, positive in labels.items():
        p = plans[image_id]
        findings = frozenset(positive - {"Normal"})
        spec = PhantomSpec(p["spec"].seed, findings, variant=p["spec"].variant)
        expected = _stored(render_phantom(spec, SIZE), p["bits"], p["photometric"])
        np.testing.assert_array_equal(_pixels(demo_dir / image_id), expected, err_msg=image_id)
        # And a different label set would have drawn something else.
        if findings:
            wrong = PhantomSpec(spec.seed, frozenset(), variant=spec.variant)
            assert not np.array_equal(
                _stored(render_phantom(wrong, SIZE), p["bits"], p["photometric"]), expected
            )


def test_dicom_headers_and_variety(demo_dir):
    seen = {"ts": set(), "pi": set(), "mod": set(), "bits": set(), "view": set()}
    studies: dict[str, int] = {}
    for path in sorted(demo_dir.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        assert ds.BodyPartExamined == "CHEST"
        assert ds.ViewPosition in ("PA", "AP")
        assert ds.InstitutionName == DEMO_INSTITUTION
        assert str(ds.PatientName).startswith("DEMO^")
        assert "DEMO" in ds.StudyDescription
        assert ds.Rows == SIZE and ds.Columns == round(SIZE * 0.8)
        arr = ds.pixel_array
        assert arr.shape == (ds.Rows, ds.Columns) and arr.dtype == np.uint16
        assert int(arr.max()) < 2**ds.BitsStored
        seen["ts"].add(ds.file_meta.TransferSyntaxUID)
        seen["pi"].add(ds.PhotometricInterpretation)
        seen["mod"].add(ds.Modality)
        seen["bits"].add(int(ds.BitsStored))
        seen["view"].add(ds.ViewPosition)
        studies[ds.StudyInstanceUID] = studies.get(ds.StudyInstanceUID, 0) + 1
    assert seen["ts"] == {ExplicitVRLittleEndian, JPEG2000Lossless}
    assert seen["pi"] == {"MONOCHROME1", "MONOCHROME2"}
    assert seen["mod"] == {"CR", "DX"}
    assert seen["bits"] <= {12, 14, 15, 16} and len(seen["bits"]) >= 2
    assert set(studies.values()) <= {1, 2}


def test_monochrome1_is_inverted():
    """The lungs (air) are dark on MONOCHROME2 and bright in MONOCHROME1 stored values."""
    att = render_phantom(PhantomSpec(11), 160)
    m2, m1 = _stored(att, 12, "MONOCHROME2"), _stored(att, 12, "MONOCHROME1")
    np.testing.assert_array_equal(m1.astype(int), 4095 - m2.astype(int))


def test_full_size_is_about_2000_by_2500():
    att = render_phantom(PhantomSpec(2, frozenset({"Nodule"})))
    assert att.shape == (2500, 2000) and att.dtype == np.float32
    assert 0.0 <= att.min() and att.max() <= 1.0


def _diff(seed: int, finding: str, size: int = 192) -> tuple[np.ndarray, np.ndarray]:
    base = render_phantom(PhantomSpec(seed), size)
    with_f = render_phantom(PhantomSpec(seed, frozenset({finding})), size)
    return base, with_f.astype(np.float64) - base


@pytest.mark.parametrize("finding", DRAWN_FINDINGS)
def test_every_finding_changes_the_image(finding):
    for seed in (1, 2):
        _, d = _diff(seed, finding)
        assert np.abs(d).max() > 0.08, finding


@pytest.mark.parametrize(
    "finding",
    [
        "Nodule",
        "Mass",
        "atelectasis",
        "sternotomy",
        "central venous catheter",
        "Support Devices",
        "pleural effusion",
    ],
)
def test_added_densities_only_brighten(finding):
    """Findings that add matter leave every other pixel as it was (same noise, same anatomy)."""
    _, d = _diff(5, finding)
    assert d.min() >= -1e-6
    assert (d > 0.02).mean() < 0.25


def test_finding_sizes_and_contrast():
    area = {f: (_diff(7, f)[1] > 0.05).sum() for f in ("Nodule", "Mass")}
    assert area["Mass"] > 2 * area["Nodule"] > 0
    for metal in ("sternotomy", "central venous catheter", "Support Devices"):
        assert _diff(7, metal)[1].max() > 0.3, metal


def test_pneumothorax_darkens_upper_lateral_lung():
    base, d = _diff(8, "Pneumothorax")
    h = d.shape[0]
    dark = d < -0.04
    assert dark.sum() > 0.01 * d.size
    rows = np.nonzero(dark)[0]
    assert np.median(rows) < 0.6 * h


def test_cardiomegaly_widens_the_heart():
    base, d = _diff(9, "cardiomegaly")
    brighter = d > 0.1
    cols = np.nonzero(brighter)[1]
    rows = np.nonzero(brighter)[0]
    h, w = d.shape
    assert brighter.sum() > 0.02 * d.size
    # on both sides of the heart, in the lower half
    assert cols.min() < 0.45 * w < 0.55 * w < cols.max()
    assert np.median(rows) > 0.45 * h


def test_label_set_rules():
    assert label_set([]) == {"Normal"}
    assert label_set(["central venous catheter"]) == {"central venous catheter", "Support Devices"}
    assert "Normal" not in label_set(["Nodule"])
    with pytest.raises(ValueError, match="cannot draw"):
        PhantomSpec(0, frozenset({"Osteopenia"}))


def test_sample_findings_covers_everything():
    rng = np.random.default_rng(0)
    draws = [sample_findings(rng) for _ in range(2000)]
    normal = sum(1 for d in draws if not d) / len(draws)
    assert 0.2 < normal < 0.3
    counts = {f: sum(f in d for d in draws) for f in DRAWN_FINDINGS}
    assert min(counts.values()) > 60, counts
    assert max(len(d) for d in draws) == 3


def test_cli_demo_data(tmp_path, capsys):
    from cxrlt_desktop.cli import main

    assert (
        main(["demo-data", str(tmp_path / "d"), "--n", "3", "--size", "320", "--seed", "1", "-q"])
        == 0
    )
    labels = read_labels_csv(tmp_path / "d" / "labels.csv")
    assert len(labels) == 3
    assert "wrote 3 DEMO images" in capsys.readouterr().out
    assert main(["demo-data", str(tmp_path / "e"), "--n", "0"]) == 2
    assert main(["demo-data", str(tmp_path / "e"), "--size", "100"]) == 2


def test_engine_imageio_accepts_demo_files(tmp_path):
    imageio = pytest.importorskip("engine.imageio")
    # 320 rows x 256 columns: the smallest demo image the app's reader accepts (256 px minimum).
    size = 320
    write_demo_data(tmp_path, n=4, seed=5, size=size)
    for path in sorted(tmp_path.rglob("*.dcm")):
        info = imageio.read_header(path)
        assert info.ok, (path, info.reason)
        assert info.is_dicom
        src = imageio.read_source(path)
        assert src.ndim == 2 and src.shape == (size, round(size * 0.8))
        disp = imageio.read_display(path)
        assert disp.pixels.dtype == np.uint8
        assert disp.invert == (pydicom.dcmread(path).PhotometricInterpretation == "MONOCHROME1")
        # On screen (MONOCHROME1 already inverted) the lungs are dark and the spine bright,
        # whatever the photometric interpretation: compare lung and spine at mid height.
        for arr in (disp.pixels, src):
            row = arr[int(0.35 * size)].astype(float)
            w = row.size
            assert row[int(0.5 * w) - 1 : int(0.5 * w) + 2].mean() > row[
                int(0.25 * w)
            ] + 0.1 * np.ptp(arr)
