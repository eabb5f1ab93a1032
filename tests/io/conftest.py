"""Fixtures for the image-input tests: real radiographs from pydicom-data and synthetic writers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from engine.dicomwrite import make_dataset, write_dicom


def _testdata(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.fail(f"pydicom-data test file {name} is missing; install the test extra")
    return Path(path)


@pytest.fixture(scope="session")
def testdata() -> Callable[[str], Path]:
    """Path of a file bundled with pydicom or pydicom-data (never downloaded)."""
    return _testdata


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """``write(name, pixels, **header)``: a synthetic DICOM file in tmp_path (engine.dicomwrite)."""

    def _write(name: str, pixels: np.ndarray, **header) -> Path:
        return write_dicom(tmp_path / name, pixels, **header)

    return _write


@pytest.fixture
def dataset() -> Callable[..., object]:
    """``dataset(pixels, **header)``: an in-memory pydicom Dataset to edit before saving."""
    return make_dataset


def chest_regions(source: np.ndarray) -> tuple[float, float, float]:
    """Means of a central vertical strip (mediastinum) and of the left and right lung fields."""
    h, w = source.shape
    arr = source.astype(np.float64)
    mid = arr[h // 4 : 3 * h // 4, w * 9 // 20 : w * 11 // 20].mean()
    left = arr[h // 4 : h * 3 // 5, w // 8 : w * 3 // 8].mean()
    right = arr[h // 4 : h * 3 // 5, w * 5 // 8 : w * 7 // 8].mean()
    return float(mid), float(left), float(right)


@pytest.fixture(scope="session")
def regions() -> Callable[[np.ndarray], tuple[float, float, float]]:
    return chest_regions


def ramp(shape: tuple[int, int], lo: int, hi: int, dtype: type) -> np.ndarray:
    """A deterministic array that covers [lo, hi] (both ends present) plus noise-like texture."""
    rows, cols = shape
    n = rows * cols
    base = np.linspace(lo, hi, n).reshape(rows, cols)
    rng = np.random.default_rng(rows * 1000 + cols)
    arr = np.clip(base + rng.integers(-50, 51, size=(rows, cols)), lo, hi)
    arr.flat[0], arr.flat[-1] = lo, hi
    return arr.astype(dtype)


@pytest.fixture(scope="session")
def make_ramp() -> Callable[..., np.ndarray]:
    return ramp
