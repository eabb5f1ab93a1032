"""Label and prediction CSV parsing, image lookup and the engine-identical preprocessing."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from engine.classes import ALL_CLASSES, TASK1_CLASSES
from training.data import (
    CXRDataset,
    align_predictions,
    find_images,
    read_labels_csv,
    read_predictions_csv,
    split_by_patient,
)


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_label_cells_one_zero_empty_and_bad_values(tmp_path):
    header = ["ImageID", "StudyDate_DICOM", "PatientID", "Normal", "Mass", "goiter"]
    rows = [
        ["a.png", "20200101", "P1", "1", "0", ""],
        ["b.png", "20200101", "P1", "1.0", "-1", "0.0"],
        ["", "20200101", "P2", "1", "1", "1"],  # no ImageID
        ["a.png", "20200101", "P3", "0", "0", "0"],  # repeated
        ["c.png", "", "", "yes", "1", "0"],  # bad cell, no patient
    ]
    path = _write(tmp_path / "labels.csv", header, rows)
    t = read_labels_csv(path)
    assert t.classes == ("Normal", "Mass", "goiter")
    assert t.image_ids == ["a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(
        t.labels, np.array([[1, 0, np.nan], [1, np.nan, 0], [np.nan, 1, 0]], np.float32)
    )
    assert t.patient_ids == ["P1", "P1", "c.png"]
    text = "\n".join(t.problems)
    assert "row 4: no ImageID" in text and "row 5: ImageID 'a.png' repeated" in text
    assert "row 6: Normal = 'yes'" in text and str(path) in text


def test_task1_columns_requested_missing_column_is_unknown(tmp_path):
    header = ["ImageID", "StudyDate_DICOM", "PatientID", *TASK1_CLASSES[:-1]]
    path = _write(tmp_path / "l.csv", header, [["x", "", "P", *["0"] * 29]])
    t = read_labels_csv(path, TASK1_CLASSES)
    assert t.labels.shape == (1, 30) and np.isnan(t.labels[0, -1])
    assert any(TASK1_CLASSES[-1] in p for p in t.problems)


def test_unusable_label_files_raise_with_the_file_name(tmp_path):
    p = _write(tmp_path / "nocol.csv", ["Image", "Normal"], [["a", "1"]])
    with pytest.raises(ValueError, match="no ImageID column") as e:
        read_labels_csv(p)
    assert str(p) in str(e.value)
    p = _write(tmp_path / "noclass.csv", ["ImageID", "foo"], [["a", "1"]])
    with pytest.raises(ValueError, match="none of the class columns"):
        read_labels_csv(p)
    with pytest.raises(ValueError, match="cannot read"):
        read_labels_csv(tmp_path / "missing.csv")


def test_predictions_align_by_image_id_with_or_without_extension(tmp_path):
    lab = _write(
        tmp_path / "l.csv",
        ["ImageID", "StudyDate_DICOM", "PatientID", "Normal", "Mass"],
        [["abc", "", "P", "1", "0"], ["def", "", "P", "0", ""], ["zzz", "", "P", "1", "1"]],
    )
    pred = _write(
        tmp_path / "p.csv",
        ["ImageID", *ALL_CLASSES],
        [
            ["abc.png", *["0.25"] * 36],
            ["def", *(["0.75"] * 30 + [""] * 6)],
            ["other.png", *["2.0"] * 36],  # not a probability, and no label anyway
        ],
    )
    ids, classes, probs, problems = read_predictions_csv(pred)
    assert classes == ALL_CLASSES and np.isnan(probs[1, 35]) and np.isnan(probs[2, 0])
    assert any("not a probability" in p for p in problems)
    labels, preds, common, aprob = align_predictions(read_labels_csv(lab), ids, classes, probs)
    assert common == ("Normal", "Mass")
    np.testing.assert_array_equal(labels, [[1, 0], [0, np.nan]])
    np.testing.assert_array_equal(preds, [[0.25, 0.25], [0.75, 0.75]])
    assert any("1 labelled images have no prediction" in p for p in aprob)


def _reference_preprocess(arr: np.ndarray, size: int) -> np.ndarray:
    """The paper's preprocessing (0.5/99.5 percentile clip, scale to [0, 1], resize), written out
    independently of engine.preprocess."""
    flat = arr.ravel()
    lo, hi = np.percentile(flat[:: max(1, flat.size // 2000)], (0.5, 99.5))
    u8 = ((np.clip(arr, lo, hi) - lo) / (hi - lo) * 255.0).astype(np.uint8)
    rgb = np.repeat(u8[:, :, None], 3, axis=2)
    rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    return ((rgb - mean) / std).transpose(2, 0, 1)


def test_dataset_reads_16bit_png_and_preprocesses_like_the_engine(labelled_set):
    csv_path, images, labels = labelled_set
    table = read_labels_csv(csv_path, TASK1_CLASSES)
    table, paths, problems = find_images(table, images)
    assert problems == [] and len(paths) == len(labels)
    ds = CXRDataset(table, paths, image_size=64, augment=False)
    for i in (0, 5):
        x, y, idx = ds[i]
        arr = cv2.imread(str(paths[i]), cv2.IMREAD_UNCHANGED)
        assert arr.dtype == np.uint16
        np.testing.assert_allclose(x.numpy(), _reference_preprocess(arr, 64), atol=1e-5)
        np.testing.assert_array_equal(y.numpy(), labels[i, :30].astype(np.float32))
        assert idx == i


def test_augmented_samples_vary_keep_shape_and_labels(labelled_set):
    csv_path, images, labels = labelled_set
    table, paths, _ = find_images(read_labels_csv(csv_path, TASK1_CLASSES), images)
    ds = CXRDataset(table, paths, image_size=64, augment=True, seed=0)
    xs = [ds[3][0].numpy() for _ in range(12)]
    assert all(x.shape == (3, 64, 64) and np.isfinite(x).all() for x in xs)
    assert any(not np.array_equal(xs[0], x) for x in xs[1:])
    np.testing.assert_array_equal(ds[3][1].numpy(), labels[3, :30].astype(np.float32))
    # the same seed reproduces the same draws
    a = CXRDataset(table, paths, 64, augment=True, seed=7)
    b = CXRDataset(table, paths, 64, augment=True, seed=7)
    assert all(np.array_equal(a[k][0].numpy(), b[k][0].numpy()) for k in range(4))


def test_missing_and_broken_images_are_reported_not_fatal(labelled_set, capsys):
    csv_path, images, _ = labelled_set
    (images / "img001.png").unlink()
    (images / "img002.png").write_bytes(b"not a png at all")
    table, paths, problems = find_images(read_labels_csv(csv_path, TASK1_CLASSES), images)
    assert len(paths) == 15 and "img001.png" in problems[0]
    ds = CXRDataset(table, paths, 64)
    x, y, _ = ds[1]  # img002: unreadable
    # a black image, normalised: each channel is the constant -mean / std
    np.testing.assert_allclose(
        x[:, 0, 0].numpy(), [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-5
    )
    assert float(x.amax(dim=(1, 2)).sub(x.amin(dim=(1, 2))).abs().max()) == 0.0
    assert bool(np.isnan(y.numpy()).all())  # contributes nothing to the loss
    assert "img002.png" in capsys.readouterr().err


def test_patient_split_keeps_patients_apart():
    pids = [f"P{i % 7}" for i in range(40)]
    tr, va = split_by_patient(pids, 0.3, seed=1)
    assert sorted(tr + va) == list(range(40))
    assert not {pids[i] for i in tr} & {pids[i] for i in va}
    assert split_by_patient(pids, 0.3, seed=1) == (tr, va)
    with pytest.raises(ValueError, match="at least 2 patients"):
        split_by_patient(["P"] * 5, 0.2, 0)


def test_each_paper_augmentation_runs_on_the_grey_uint8_image():
    from training.data import build_augmentation

    aug = build_augmentation(seed=0)
    names = [type(t).__name__ for t in aug.transforms]
    assert names == [
        "HorizontalFlip",
        "Affine",
        "CLAHE",
        "RandomBrightnessContrast",
        "GaussNoise",
        "CoarseDropout",
    ]
    img = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    for t in aug.transforms:
        t.p = 1.0  # force it, so a library API change cannot hide behind the probability
        out = t(image=img)["image"]
        assert out.shape == img.shape and out.dtype == np.uint8
        assert not np.array_equal(out, img), type(t).__name__
    np.testing.assert_array_equal(aug.transforms[0](image=img)["image"], img[:, ::-1])
