"""Per-class and macro metrics for multi-label CXR predictions: AP, AUROC, F1, ECE.

Pure numpy, written out so that the tests can check them against scikit-learn independently.

Conventions
-----------
* Labels are 1, 0 or NaN (unknown); predictions are probabilities or NaN (not predicted). For
  each class only the rows where both are known count.
* AP is the step-wise area under the precision-recall curve at every distinct score
  (scikit-learn's ``average_precision_score``); AUROC is the Mann-Whitney statistic with average
  ranks for ties (equal to ``roc_auc_score``).
* ``F1@0.5`` predicts positive when ``p >= 0.5``. ``F1@best`` is the largest F1 over the
  thresholds ``t`` in the set of distinct scores (predict ``p >= t``), and ``best_threshold`` is
  that ``t`` (the highest one on ties). It is tuned on the evaluated data itself, so it is an
  optimistic upper bound, reported by name next to F1@0.5.
* ECE uses 15 equal-width bins over the predicted probability: bin ``min(floor(15 p), 14)``,
  ``ECE = sum_b (n_b / n) * |mean(y in b) - mean(p in b)|``.
* A class without a positive label (or without any scored row) is excluded and listed; the macro
  means (mAP, mAUC, mF1 = mean F1@0.5, mF1_best, mECE) are over the remaining classes. A class
  with positives but no negatives has AUROC ``None`` and is left out of mAUC only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ECE_BINS = 15


def _binary(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    return (y > 0.5), s


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative TP and FP at each distinct threshold (descending) and the thresholds."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order].astype(np.float64)
    # The last position of each run of equal scores is where that threshold's counts are read.
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    return tp, fp, s_sorted[last]


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision (NaN without positives)."""
    y, s = _binary(y, s)
    n_pos = y.sum()
    if n_pos == 0:
        return float("nan")
    tp, fp, _ = _curve(y, s)
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _average_ranks(s: np.ndarray) -> np.ndarray:
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    starts = np.r_[0, np.nonzero(np.diff(s_sorted))[0] + 1]
    ends = np.r_[starts[1:], s.size]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0  # mean of the 1-based ranks a+1 .. b
    return ranks


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (NaN unless both classes occur)."""
    y, s = _binary(y, s)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def f1_at(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of the prediction ``s >= threshold`` (0 when there is nothing to find or found)."""
    y, s = _binary(y, s)
    pred = s >= threshold
    tp = float(np.sum(pred & y))
    denom = float(pred.sum() + y.sum())
    return 2.0 * tp / denom if denom else 0.0


def best_f1(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """The F1-maximising threshold among the distinct scores and its F1: ``(f1, threshold)``."""
    y, s = _binary(y, s)
    n_pos = y.sum()
    if n_pos == 0 or y.size == 0:
        return 0.0, float("nan")
    tp, fp, thresholds = _curve(y, s)
    f1 = 2.0 * tp / (tp + fp + n_pos)
    k = int(np.argmax(f1))  # first maximum = highest threshold
    return float(f1[k]), float(thresholds[k])


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins over ``p`` in [0, 1]."""
    y, p = _binary(y, p)
    if y.size == 0:
        return float("nan")
    bins = np.minimum((np.clip(p, 0.0, 1.0) * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    sum_y = np.bincount(bins, weights=y.astype(np.float64), minlength=n_bins)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    used = count > 0
    gap = np.abs(sum_y[used] / count[used] - sum_p[used] / count[used])
    return float(np.sum(count[used] / y.size * gap))


def reliability_bins(
    y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (mean probability, observed frequency, count) for a reliability diagram."""
    y, p = _binary(y, p)
    bins = np.minimum((np.clip(p, 0.0, 1.0) * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(bins, weights=p, minlength=n_bins) / count
        freq = np.bincount(bins, weights=y.astype(np.float64), minlength=n_bins) / count
    return mean_p, freq, count


def precision_recall_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at each distinct threshold, starting from recall 0, for plotting."""
    y, s = _binary(y, s)
    tp, fp, _ = _curve(y, s)
    n_pos = max(1.0, float(y.sum()))
    return np.r_[0.0, tp / n_pos], np.r_[1.0, tp / (tp + fp)]


@dataclass
class EvalResult:
    """Metrics of one evaluation; :meth:`to_json` gives the ``cxrlt eval --json`` shape."""

    macro: dict[str, float | None]
    per_class: dict[str, dict[str, Any]]
    excluded: list[str]
    excluded_reasons: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"macro": {...}, "per_class": {...}, "excluded": [...], "excluded_reasons": {...}}``."""
        return {
            "macro": dict(self.macro),
            "per_class": {k: dict(v) for k, v in self.per_class.items()},
            "excluded": list(self.excluded),
            "excluded_reasons": dict(self.excluded_reasons),
        }


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def evaluate(
    labels: np.ndarray, probs: np.ndarray, classes: Sequence[str], n_bins: int = ECE_BINS
) -> EvalResult:
    """Per-class and macro AP, AUROC, F1@0.5, F1@best (with its threshold) and ECE.

    Parameters
    ----------
    labels : numpy.ndarray
        ``[N, C]`` 1/0/NaN.
    probs : numpy.ndarray
        ``[N, C]`` probabilities, NaN where not predicted.
    classes : sequence of str
        The ``C`` class names.
    n_bins : int
        ECE bins.

    Returns
    -------
    EvalResult
        Per-class entries hold ``AP, AUROC, F1@0.5, F1@best, best_threshold, ECE, n,
        positives``; excluded classes are listed with the reason.
    """
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if labels.shape != probs.shape or labels.ndim != 2 or labels.shape[1] != len(classes):
        raise ValueError(
            f"labels {labels.shape} and predictions {probs.shape} must both be [N, {len(classes)}]"
        )
    per_class: dict[str, dict[str, Any]] = {}
    excluded: list[str] = []
    reasons: dict[str, str] = {}
    for j, name in enumerate(classes):
        ok = ~np.isnan(labels[:, j]) & ~np.isnan(probs[:, j])
        y, p = labels[ok, j], probs[ok, j]
        n_pos = int(np.sum(y > 0.5))
        if ok.sum() == 0:
            excluded.append(name)
            reasons[name] = "no row with both a label and a prediction"
            continue
        if n_pos == 0:
            excluded.append(name)
            reasons[name] = "no positive label"
            continue
        f1b, thr = best_f1(y, p)
        per_class[name] = {
            "AP": average_precision(y, p),
            "AUROC": _none_if_nan(auroc(y, p)),
            "F1@0.5": f1_at(y, p, 0.5),
            "F1@best": f1b,
            "best_threshold": thr,
            "ECE": ece(y, p, n_bins),
            "n": int(ok.sum()),
            "positives": n_pos,
        }
    rows = list(per_class.values())
    macro = {
        "mAP": _mean([r["AP"] for r in rows]),
        "mAUC": _mean([r["AUROC"] for r in rows]),
        "mF1": _mean([r["F1@0.5"] for r in rows]),
        "mF1_best": _mean([r["F1@best"] for r in rows]),
        "mECE": _mean([r["ECE"] for r in rows]),
        "classes": len(rows),
    }
    return EvalResult(macro=macro, per_class=per_class, excluded=excluded, excluded_reasons=reasons)


def mean_average_precision(labels: np.ndarray, probs: np.ndarray) -> float:
    """Macro AP over the classes that have a positive (NaN when none has): validation's mAP."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    aps = []
    for j in range(labels.shape[1]):
        ok = ~np.isnan(labels[:, j]) & ~np.isnan(probs[:, j])
        if np.any(labels[ok, j] > 0.5):
            aps.append(average_precision(labels[ok, j], probs[ok, j]))
    return float(np.mean(aps)) if aps else float("nan")
