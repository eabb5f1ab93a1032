"""Rare-finding score and per-prediction summary on hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrlt_desktop.library.triage import merge_top_findings, rare_score, summarize, threshold_vector
from engine.classes import ALL_CLASSES, RARE_CLASSES, TASK2_CLASSES

IDX = {c: i for i, c in enumerate(ALL_CLASSES)}


def _probs(**values):
    p = np.full(len(ALL_CLASSES), 0.05)
    for name, v in values.items():
        p[IDX[name.replace("_", " ")]] = v
    return p


def test_rare_classes_are_zero_shot_plus_rare_task1():
    assert set(TASK2_CLASSES) <= set(RARE_CLASSES)
    assert "Normal" not in RARE_CLASSES
    assert "Pneumothorax" in RARE_CLASSES and "cardiomegaly" not in RARE_CLASSES


def test_rare_score_hand_computed():
    # Pneumothorax 0.3 / 0.5 = 0.6; Scoliosis 0.72 / 0.8 = 0.9; cardiomegaly 0.99 is not rare.
    p = _probs(Pneumothorax=0.3, Scoliosis=0.72, cardiomegaly=0.99)
    assert rare_score(p) == pytest.approx(0.9)


def test_normal_never_counts():
    p = _probs(Normal=0.99)
    assert rare_score(p) == pytest.approx(max(0.05 / 0.5, 0.05 / 0.8))
    s = summarize(p)
    assert s.n_above == 0 and all(t["finding"] != "Normal" for t in s.top_findings)


def test_nan_ignored_and_all_nan_is_none():
    p = _probs(Pneumothorax=0.4)
    for c in TASK2_CLASSES:
        p[IDX[c]] = np.nan  # no CLIP model
    assert rare_score(p) == pytest.approx(0.8)
    assert rare_score(np.full(36, np.nan)) is None


def test_threshold_override():
    t = threshold_vector({"Pneumothorax": 0.2})
    assert rare_score(_probs(Pneumothorax=0.3), t) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="unknown finding 'Nope'"):
        threshold_vector({"Nope": 0.5})
    with pytest.raises(ValueError, match="'Mass'"):
        threshold_vector({"Mass": 0.0})


def test_summary_counts_hits_and_top_findings():
    p = _probs(Pneumothorax=0.6, cardiomegaly=0.5, Mass=0.45, Bulla=0.9)
    s = summarize(p)
    # At or above threshold: Pneumothorax 0.6>=0.5, cardiomegaly 0.5>=0.5, Bulla 0.9>=0.8.
    assert sorted(h[0] for h in s.hits) == ["Bulla", "Pneumothorax", "cardiomegaly"]
    assert s.n_above == 3
    # Ratios: Pneumothorax 1.2, Bulla 1.125, cardiomegaly 1.0, Mass 0.9.
    assert [t["finding"] for t in s.top_findings] == ["Pneumothorax", "Bulla", "cardiomegaly"]
    assert s.rare_score == pytest.approx(1.2)
    assert math.isclose(s.top_findings[1]["threshold"], 0.8)


def test_merge_top_findings_takes_best_image_per_finding():
    a = [{"finding": "Mass", "probability": 0.4, "threshold": 0.5}]
    b = [
        {"finding": "Mass", "probability": 0.6, "threshold": 0.5},
        {"finding": "Bulla", "probability": 0.8, "threshold": 0.8},
    ]
    assert merge_top_findings([a, b]) == [b[0], b[1]]


def test_infinite_and_out_of_range_values_count_for_nothing():
    """A broken model's inf (or a value outside 0..1) neither flags a finding nor tops the
    worklist: it is left out like NaN."""
    p = _probs(Pneumothorax=np.inf, Bulla=-np.inf, Mass=1.5, Scoliosis=np.nan, Emphysema=0.3)
    p[IDX["cardiomegaly"]] = -0.4
    p[IDX["atelectasis"]] = 0.7  # threshold 0.5: the one hit
    # Usable rare values: Emphysema 0.3/0.5 = 0.6, the other rare classes 0.05/0.5 or 0.05/0.8.
    assert rare_score(p) == pytest.approx(0.6)
    s = summarize(p)
    assert s.rare_score == pytest.approx(0.6)
    assert [h[0] for h in s.hits] == ["atelectasis"] and s.n_above == 1
    top = [t["finding"] for t in s.top_findings]
    assert top[:2] == ["atelectasis", "Emphysema"]
    assert not {"Pneumothorax", "Bulla", "Mass", "Scoliosis", "cardiomegaly"} & set(top)
    assert rare_score(np.full(36, np.inf)) is None
