"""Temperature scaling: recovers a known temperature, lowers NLL and ECE; the engine applies it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.calibration import apply_calibration, load_temperatures
from training.calibration import fit_calibration, fit_temperature, nll, save_temperatures
from training.metrics import ece


def _miscalibrated(true_t: float, n: int = 20000, seed: int = 0):
    """Labels drawn from sigmoid(z); scores sigmoid(true_t * z), so logit(p) / true_t = z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(float)
    p = 1.0 / (1.0 + np.exp(-z * true_t))
    return y, p


@pytest.mark.parametrize("true_t", [0.4, 2.5])
def test_recovers_a_known_temperature_and_lowers_nll(true_t):
    y, p = _miscalibrated(true_t)
    t = fit_temperature(y, p)
    assert t == pytest.approx(true_t, rel=0.06)
    q = apply_calibration(p[:, None], {"Normal": t}, ["Normal"])[:, 0]
    assert nll(y, q) < nll(y, p) - 0.01
    assert ece(y, q) < ece(y, p)
    assert ece(y, q) < 0.02


def test_fit_calibration_skips_one_sided_classes_and_reports_mece():
    y, p = _miscalibrated(3.0, n=4000)
    labels = np.stack([y, np.ones_like(y), np.full_like(y, np.nan)], axis=1)
    probs = np.stack([p, p, p], axis=1)
    res = fit_calibration(labels, probs, ["Normal", "Mass", "goiter"])
    assert set(res.temperatures) == {"Normal"}
    assert set(res.skipped) == {"Mass", "goiter"}
    assert res.mece_after < res.mece_before
    assert res.nll_after < res.nll_before


def test_fit_calibration_skips_classes_whose_scores_separate_the_labels():
    # 2 positives scored above 2 negatives: the NLL falls all the way to T -> 0; a fitted
    # T = 0.05 would turn p = 0.6 into 0.9997 on every new image.
    labels = np.array([[1.0], [0.0], [1.0], [0.0]])
    probs = np.array([[0.8], [0.3], [0.6], [0.4]])
    assert fit_temperature(labels[:, 0], probs[:, 0]) == pytest.approx(0.05, rel=1e-3)
    res = fit_calibration(labels, probs, ["Mass"])
    assert res.temperatures == {}
    assert "separated by the scores" in res.skipped["Mass"]
    assert res.mece_before is None


def test_saved_file_loads_in_the_engine_and_apply_maps_columns(tmp_path):
    path = save_temperatures(tmp_path / "cal.json", {"Mass": 2.0, "goiter": 0.5})
    temps = load_temperatures(path)
    assert temps == {"Mass": 2.0, "goiter": 0.5}
    classes = ["Normal", "Mass", "goiter"]
    probs = np.array([[0.7, 0.8, 0.6], [0.1, np.nan, 0.3]])
    out = apply_calibration(probs, temps, classes)
    logit = np.log(0.8 / 0.2)
    assert out[0, 1] == pytest.approx(1.0 / (1.0 + np.exp(-logit / 2.0)))
    logit = np.log(0.3 / 0.7)
    assert out[1, 2] == pytest.approx(1.0 / (1.0 + np.exp(-logit / 0.5)))
    assert out[0, 0] == 0.7 and out[1, 0] == 0.1  # no temperature: unchanged
    assert np.isnan(out[1, 1])  # not predicted stays not predicted
    assert probs[0, 1] == 0.8  # input untouched


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('{"Mass": -1}', "must be > 0"),
        ('{"Mass": "hot"}', "not a number"),
        ('{"NoSuchClass": 1.0}', "unknown class"),
        ("[1, 2]", "JSON object"),
        ("{not json", "cannot read"),
    ],
)
def test_engine_rejects_bad_calibration_files(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError) as e:
        load_temperatures(path)
    assert str(path) in str(e.value) and fragment in str(e.value)
    json.dumps(content)  # the parametrisation itself is plain text
