"""Fit per-class temperatures on reviewed labels (``cxrlt calibrate``).

For each class, with ``z = logit(p)`` of the rows that have both a label and a prediction, ``T``
minimises the mean negative log-likelihood ``-mean(y log s(z/T) + (1-y) log(1 - s(z/T)))``
over ``log T`` in ``[log 0.05, log 20]`` (bounded Brent search; the NLL is smooth and, in
``1/T``, convex). A class needs at least one positive and one negative label, otherwise the fit
is degenerate (T runs to a bound) and the class is skipped; so is a class whose fit still ends
at a bound (scores that separate its few labels perfectly). The engine applies the result with
:func:`engine.calibration.apply_calibration`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.calibration import apply_calibration, temperature_scale
from training.metrics import ece

T_MIN = 0.05
T_MAX = 20.0
_EPS = 1e-7


def nll(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary negative log-likelihood of labels ``y`` under probabilities ``p``."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def fit_temperature(y: np.ndarray, p: np.ndarray) -> float:
    """The temperature minimising the NLL of ``y`` under ``sigmoid(logit(p) / T)``.

    Parameters
    ----------
    y : numpy.ndarray
        Labels 1/0 (both must occur).
    p : numpy.ndarray
        Predicted probabilities.

    Returns
    -------
    float
        ``T`` in ``[T_MIN, T_MAX]``.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    z = np.log(p) - np.log1p(-p)

    def objective(log_t: float) -> float:
        a = z / math.exp(log_t)
        # log(1 + e^a) - y a, the stable form of the BCE with logits
        return float(np.mean(np.logaddexp(0.0, a) - y * a))

    res = minimize_scalar(
        objective,
        bounds=(math.log(T_MIN), math.log(T_MAX)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(res.x))


@dataclass
class CalibrationResult:
    """Fitted temperatures and the before/after figures of ``cxrlt calibrate``."""

    temperatures: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    mece_before: float | None = None
    mece_after: float | None = None
    nll_before: float | None = None
    nll_after: float | None = None


def fit_calibration(
    labels: np.ndarray, probs: np.ndarray, classes: Sequence[str]
) -> CalibrationResult:
    """Fit one temperature per class and report NLL and ECE before and after.

    Parameters
    ----------
    labels : numpy.ndarray
        ``[N, C]`` 1/0/NaN (NaN = not reviewed).
    probs : numpy.ndarray
        ``[N, C]`` probabilities, NaN where not predicted.
    classes : sequence of str
        Column names.

    Returns
    -------
    CalibrationResult
        Macro ECE and mean NLL are over the fitted classes.
    """
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    result = CalibrationResult(temperatures={})
    for j, name in enumerate(classes):
        ok = ~np.isnan(labels[:, j]) & ~np.isnan(probs[:, j])
        y = (labels[ok, j] > 0.5).astype(np.float64)
        p = probs[ok, j]
        if y.size == 0:
            result.skipped[name] = "no reviewed label with a prediction"
            continue
        if y.min() == y.max():
            result.skipped[name] = "needs both a positive and a negative label"
            continue
        t = fit_temperature(y, p)
        if min(abs(math.log(t / T_MIN)), abs(math.log(t / T_MAX))) < 1e-3:
            # The NLL has no minimum inside: typically the scores separate the few labels
            # perfectly, and T -> 0 would make every future score 0 or 1.
            result.skipped[name] = (
                f"the fit runs to its bound (T = {t:.3g}): the {int(y.sum())} positive and "
                f"{int(y.size - y.sum())} negative labels are separated by the scores; "
                "review more images of this finding"
            )
            continue
        q = temperature_scale(p, t)
        result.temperatures[name] = t
        result.per_class[name] = {
            "temperature": t,
            "n": int(y.size),
            "nll_before": nll(y, p),
            "nll_after": nll(y, q),
            "ece_before": ece(y, p),
            "ece_after": ece(y, q),
        }
    rows = list(result.per_class.values())
    if rows:
        result.mece_before = float(np.mean([r["ece_before"] for r in rows]))
        result.mece_after = float(np.mean([r["ece_after"] for r in rows]))
        result.nll_before = float(np.mean([r["nll_before"] for r in rows]))
        result.nll_after = float(np.mean([r["nll_after"] for r in rows]))
    return result


def save_temperatures(path: str | Path, temps: Mapping[str, float]) -> Path:
    """Write ``{class: T}`` as JSON atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: float(v) for k, v in temps.items()}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        _public(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = [
    "CalibrationResult",
    "apply_calibration",
    "fit_calibration",
    "fit_temperature",
    "nll",
    "save_temperatures",
]


def _public(path: str) -> None:
    """Give a mkstemp file (0600) the permissions a plain ``open`` would (0666 minus umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
