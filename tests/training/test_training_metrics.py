"""Metrics against scikit-learn on random data, and ECE on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from training.metrics import auroc, average_precision, best_f1, ece, evaluate, f1_at


def _random_case(rng: np.random.Generator):
    n = int(rng.integers(5, 80))
    y = (rng.random(n) < rng.uniform(0.05, 0.7)).astype(float)
    if y.sum() == 0:
        y[0] = 1
    if y.sum() == n:
        y[-1] = 0
    # rounding makes ties, which is where AP and AUROC implementations differ
    s = np.round(rng.random(n), int(rng.integers(1, 4)))
    return y, s


def test_ap_auroc_f1_equal_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(300):
        y, s = _random_case(rng)
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert f1_at(y, s, 0.5) == pytest.approx(f1_score(y, s >= 0.5, zero_division=0), abs=1e-12)


def test_best_f1_is_the_maximum_over_all_score_thresholds():
    rng = np.random.default_rng(1)
    for _ in range(30):
        y, s = _random_case(rng)
        f1, thr = best_f1(y, s)
        brute = max(f1_score(y, s >= t, zero_division=0) for t in np.unique(s))
        assert f1 == pytest.approx(brute, abs=1e-12)
        assert f1_score(y, s >= thr) == pytest.approx(f1, abs=1e-12)


def test_ece_hand_computed_cases():
    # bins of width 1/15: 0.1 -> bin 1, 0.9 -> bin 13
    # bin 1: mean p 0.1, frequency 0.5 -> 0.4 * 2/4; bin 13: |1 - 0.9| * 2/4
    assert ece([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9]) == pytest.approx(0.25)
    # a perfectly calibrated single bin
    assert ece([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    # p = 1.0 falls in the last bin, p = 0 in the first
    assert ece([1, 0], [1.0, 0.0]) == pytest.approx(0.0)
    assert ece([0], [1.0]) == pytest.approx(1.0)
    # 0.2 and 0.25 share bin 3, 0.3 is in bin 4:
    # (2/3) * |0.5 - 0.225| + (1/3) * |0 - 0.3| = 0.18333 + 0.1 = 0.28333
    assert ece([1, 0, 0], [0.2, 0.25, 0.3]) == pytest.approx(2 / 3 * 0.275 + 1 / 3 * 0.3)


def test_evaluate_ignores_unknowns_and_excludes_classes_without_positives():
    rng = np.random.default_rng(2)
    n = 120
    classes = ["a", "b", "c", "d"]
    labels = (rng.random((n, 4)) < 0.3).astype(float)
    probs = np.clip(0.4 * labels + 0.6 * rng.random((n, 4)), 0, 1)
    labels[rng.random((n, 4)) < 0.2] = np.nan  # unknown cells
    probs[rng.random((n, 4)) < 0.1] = np.nan  # not predicted
    labels[:, 2] = np.where(np.isnan(labels[:, 2]), np.nan, 0.0)  # "c": no positive
    probs[:, 3] = np.nan  # "d": never predicted
    res = evaluate(labels, probs, classes)
    assert res.excluded == ["c", "d"]
    assert set(res.per_class) == {"a", "b"}
    for j, name in enumerate(["a", "b"]):
        ok = ~np.isnan(labels[:, j]) & ~np.isnan(probs[:, j])
        y, p = labels[ok, j], probs[ok, j]
        r = res.per_class[name]
        assert r["n"] == ok.sum() and r["positives"] == int(y.sum())
        assert r["AP"] == pytest.approx(average_precision_score(y, p))
        assert r["AUROC"] == pytest.approx(roc_auc_score(y, p))
        assert r["F1@0.5"] == pytest.approx(f1_score(y, p >= 0.5))
    m = res.macro
    assert m["mAP"] == pytest.approx(np.mean([res.per_class[c]["AP"] for c in "ab"]))
    assert m["mAUC"] == pytest.approx(np.mean([res.per_class[c]["AUROC"] for c in "ab"]))
    assert m["mF1"] == pytest.approx(np.mean([res.per_class[c]["F1@0.5"] for c in "ab"]))
    assert m["mECE"] == pytest.approx(np.mean([res.per_class[c]["ECE"] for c in "ab"]))
    js = res.to_json()
    assert set(js) >= {"macro", "per_class", "excluded"}
    assert set(js["macro"]) >= {"mAP", "mAUC", "mF1", "mECE"}


def test_class_with_only_positives_has_no_auroc_but_keeps_ap():
    res = evaluate(np.array([[1.0], [1.0]]), np.array([[0.2], [0.9]]), ["a"])
    assert res.per_class["a"]["AUROC"] is None
    assert res.per_class["a"]["AP"] == pytest.approx(1.0)
    assert res.macro["mAUC"] is None
