"""Shared fixtures: a tiny labelled CXR-LT set made of 16-bit PNGs written by the test."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from engine.classes import ALL_CLASSES


def write_png16(path: Path, arr: np.ndarray) -> None:
    import cv2

    assert arr.dtype == np.uint16
    if not cv2.imwrite(str(path), arr):
        raise OSError(f"cannot write {path}")


def make_labelled_set(
    root: Path, n: int = 16, patients: int = 8, seed: int = 0, size: tuple[int, int] = (72, 80)
) -> tuple[Path, Path, np.ndarray]:
    """Write ``n`` 16-bit PNGs and a 36-class label CSV; return (csv, images, labels [n, 36])."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    labels = (rng.random((n, len(ALL_CLASSES))) < 0.25).astype(np.float64)
    labels[rng.random(labels.shape) < 0.1] = np.nan  # unknown cells
    labels[:, 0] = np.arange(n) % 2  # Normal known everywhere, both values in every split
    rows = []
    for i in range(n):
        image_id = f"img{i:03d}.png"
        yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
        base = 20000 + 15000 * np.sin(xx / (3 + i % 5)) * np.cos(yy / 7.0)
        arr = (base + rng.normal(0, 2000, size)).clip(0, 65535).astype(np.uint16)
        write_png16(images / image_id, arr)
        cells = ["" if np.isnan(v) else str(int(v)) for v in labels[i]]
        rows.append([image_id, "20200101", f"P{i % patients}", *cells])
    csv_path = root / "labels.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageID", "StudyDate_DICOM", "PatientID", *ALL_CLASSES])
        w.writerows(rows)
    return csv_path, images, labels


@pytest.fixture
def labelled_set(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    return make_labelled_set(tmp_path / "data")


@pytest.fixture
def make_set():
    """The :func:`make_labelled_set` factory, for tests that need several sets."""
    return make_labelled_set
