"""Per-class temperature scaling of predicted probabilities (fitted by ``cxrlt calibrate``).

A calibration file is JSON ``{"<class name>": T, ...}`` with ``T > 0``. For a calibrated class,
``p' = sigmoid(logit(p) / T)``; ``T > 1`` softens over-confident scores, ``T < 1`` sharpens them.
Classes absent from the file, and NaN cells, pass through unchanged. The engine applies it to
its final probabilities (after ensembling and normal gating), which is what ``cxrlt score``
writes and what the temperatures were fitted on.

Numpy only: the engine cannot import ``training``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from engine.classes import ALL_CLASSES
from engine.smallfiles import MAX_TEXT_BYTES, SmallFileError, read_small_text

# Keeps logit(p) finite: the engine clips its output to [1e-6, 1 - 1e-6] already.
_EPS = 1e-7
MAX_CALIBRATION_BYTES = MAX_TEXT_BYTES  # 36 temperatures are about a kilobyte


def load_temperatures(path: str | Path) -> dict[str, float]:
    """Read and validate a calibration file.

    Parameters
    ----------
    path : str or Path
        JSON file ``{class: T}``.

    Returns
    -------
    dict
        Class name to temperature.

    Raises
    ------
    ValueError
        With the file name, when the file is not a regular file of at most 1 MiB (a FIFO, a
        device, a folder), not such a mapping, or a temperature is not a finite positive number
        or a class name is unknown.
    """
    path = Path(path)
    try:
        text = read_small_text(path, MAX_CALIBRATION_BYTES)
    except SmallFileError as e:
        raise ValueError(f"{path}: cannot read the calibration file: {e.reason}") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: cannot read calibration JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: calibration must be a JSON object {{class: temperature}}")
    temps: dict[str, float] = {}
    for name, value in data.items():
        if name not in ALL_CLASSES:
            raise ValueError(f"{path}: unknown class {name!r} in calibration")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{path}: temperature of {name!r} is not a number: {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{path}: temperature of {name!r} must be > 0, got {value}")
        temps[name] = float(value)
    return temps


def temperature_scale(p: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)`` elementwise; NaN stays NaN."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    z = np.log(p) - np.log1p(-p)
    return 1.0 / (1.0 + np.exp(-z / float(temperature)))


def apply_calibration(
    probs: np.ndarray,
    temps: Mapping[str, float],
    classes: Sequence[str] = ALL_CLASSES,
) -> np.ndarray:
    """Temperature-scale the columns of ``probs`` whose class has a temperature.

    Parameters
    ----------
    probs : numpy.ndarray
        ``[N, C]`` (or ``[C]``) probabilities, NaN where not predicted.
    temps : mapping
        Class name to temperature (from :func:`load_temperatures`).
    classes : sequence of str
        The column names of ``probs``; default the engine's 36 output classes.

    Returns
    -------
    numpy.ndarray
        A new float64 array of the same shape.
    """
    out = np.array(probs, dtype=np.float64, copy=True)
    if out.shape[-1] != len(classes):
        raise ValueError(f"probabilities have {out.shape[-1]} columns, classes {len(classes)}")
    for j, name in enumerate(classes):
        t = temps.get(name)
        if t is not None and t != 1.0:
            out[..., j] = temperature_scale(out[..., j], t)
    return out
