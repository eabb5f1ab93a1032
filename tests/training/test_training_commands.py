"""`cxrlt eval`, `cxrlt calibrate` and `cxrlt prevalence` end to end on CSV files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrlt_desktop.cli import main
from engine.calibration import load_temperatures
from engine.classes import ALL_CLASSES, TASK1_CLASSES, class_table


def _write_pair(tmp_path, n=150, seed=0, sharpen=1.0):
    """Labels (36 classes, some unknown) and `cxrlt score`-style predictions for them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.0, 1.5, (n, 36))
    labels = (rng.random((n, 36)) < 1 / (1 + np.exp(-z))).astype(float)
    labels[rng.random(labels.shape) < 0.15] = np.nan
    labels[:, TASK1_CLASSES.index("Mass")] = np.where(np.isnan(labels[:, 16]), np.nan, 0.0)
    probs = 1 / (1 + np.exp(-z * sharpen))
    probs[:, 30:] = np.nan  # no zero-shot model: empty columns
    lab = tmp_path / "labels.csv"
    with open(lab, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageID", "StudyDate_DICOM", "PatientID", *ALL_CLASSES])
        for i in range(n):
            w.writerow(
                [f"im{i}", "20240101", f"P{i}", *["" if np.isnan(v) else int(v) for v in labels[i]]]
            )
    pred = tmp_path / "scores.csv"
    with open(pred, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageID", *ALL_CLASSES])
        for i in range(n):
            w.writerow([f"im{i}.png", *["" if np.isnan(v) else f"{v:.8f}" for v in probs[i]]])
    return lab, pred, labels, probs


def test_eval_json_shape_and_values(tmp_path, capsys):
    lab, pred, labels, probs = _write_pair(tmp_path)
    assert main(["eval", "--labels", str(lab), "--predictions", str(pred), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["macro"]) >= {"mAP", "mAUC", "mF1", "mECE"}
    assert "Mass" in out["excluded"] and "Scoliosis" in out["excluded"]
    j = ALL_CLASSES.index("cardiomegaly")
    ok = ~np.isnan(labels[:, j])
    r = out["per_class"]["cardiomegaly"]
    assert r["AP"] == pytest.approx(average_precision_score(labels[ok, j], probs[ok, j]), abs=1e-6)
    assert r["AUROC"] == pytest.approx(roc_auc_score(labels[ok, j], probs[ok, j]), abs=1e-6)
    assert set(r) >= {"F1@0.5", "F1@best", "best_threshold", "ECE"}
    assert out["macro"]["mAP"] == pytest.approx(
        np.mean([v["AP"] for v in out["per_class"].values()])
    )


def test_eval_report_folder(tmp_path, capsys):
    lab, pred, _, _ = _write_pair(tmp_path)
    rep = tmp_path / "report"
    assert main(["eval", "--labels", str(lab), "--predictions", str(pred), "--out", str(rep)]) == 0
    text = (rep / "report.md").read_text()
    assert "pr_curves.png" in text and "reliability.png" in text and "| cardiomegaly |" in text
    for png in ("pr_curves.png", "reliability.png"):
        data = (rep / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    assert json.loads((rep / "metrics.json").read_text())["macro"]["mAP"] > 0
    assert "mAP" in capsys.readouterr().out


def test_eval_bad_input_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    lab, _, _, _ = _write_pair(tmp_path)
    assert main(["eval", "--labels", str(lab), "--predictions", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]


def _pair_args(command, lab, pred, tmp_path):
    out = ["--out", str(tmp_path / "cal.json")] if command == "calibrate" else []
    return [command, "--labels", str(lab), "--predictions", str(pred), *out, "--json"]


@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_input_problems_are_warnings_and_unreadable_input_one_line(command, tmp_path, capsys):
    lab, pred, _, _ = _write_pair(tmp_path, n=40)
    rows = pred.read_text().splitlines(keepends=True)
    pred.write_text("".join(rows[:-1]) + "im0.png,0.5\n")  # im39 replaced by a repeated ImageID
    assert main(_pair_args(command, lab, pred, tmp_path)) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {pred}: row 41: missing or repeated ImageID, row skipped",
        f"warning: {lab}: 1 labelled images have no prediction and are left out (e.g. 'im39')",
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    assert main(_pair_args(command, lab, bad, tmp_path)) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"cxrlt {command}: {bad}"), err


def test_calibrate_writes_engine_file_and_lowers_mece(tmp_path, capsys):
    lab, pred, _, _ = _write_pair(tmp_path, n=600, sharpen=3.0)  # over-confident scores
    out = tmp_path / "cal.json"
    assert (
        main(
            [
                "calibrate",
                "--labels",
                str(lab),
                "--predictions",
                str(pred),
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    temps = load_temperatures(out)
    assert set(temps) == set(summary["temperatures"]) and "Mass" not in temps
    assert np.median(list(temps.values())) == pytest.approx(3.0, rel=0.25)
    assert summary["mECE_after"] < summary["mECE_before"]
    assert summary["NLL_after"] < summary["NLL_before"]
    assert (
        main(["calibrate", "--labels", str(lab), "--predictions", str(pred), "--out", str(out)])
        == 0
    )
    assert "mECE before" in capsys.readouterr().out


def test_prevalence_prints_classes_csv_format(tmp_path, capsys):
    header = ["ImageID", "StudyDate_DICOM", "PatientID", "Normal", "Mass", "Emphysema"]
    rows = [
        [f"i{k}", "", "P", "1" if k < 30 else "0", "1" if k == 0 else "0", "" if k < 10 else "0"]
        for k in range(200)
    ]
    lab = tmp_path / "l.csv"
    with open(lab, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    assert main(["prevalence", "--labels", str(lab)]) == 0
    out = capsys.readouterr().out
    got = list(csv.DictReader(out.splitlines()))
    assert list(got[0]) == ["name", "display_name", "task", "prevalence", "rare", "threshold"]
    assert [r["name"] for r in got] == [c.name for c in class_table()]
    by = {r["name"]: r for r in got}
    assert (by["Normal"]["prevalence"], by["Normal"]["rare"]) == ("0.15", "0")  # 30 / 200
    assert (by["Mass"]["prevalence"], by["Mass"]["rare"]) == ("0.005", "1")  # 1 / 200 < 1 %
    assert (by["Emphysema"]["prevalence"], by["Emphysema"]["rare"]) == (
        "0",
        "1",
    )  # 0 / 190 labelled
    # classes without a column keep an empty prevalence and the table's rare flag
    assert by["Scoliosis"]["prevalence"] == "" and by["Scoliosis"]["rare"] == "1"
    assert by["cardiomegaly"]["prevalence"] == "" and by["cardiomegaly"]["rare"] == "0"
