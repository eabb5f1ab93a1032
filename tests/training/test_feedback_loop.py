"""The feedback loop end to end: verdicts in the store -> export -> train -> score -> eval ->
calibrate.

Everything is real: DICOMs written with PHI, a SQLite store filled by the library scan, a
random-weight convnextv2_atto checkpoint scored by the engine at 64 px, verdicts set through
:func:`cxrlt_desktop.library.reviews.set_verdict`, then the ``cxrlt`` commands as a user runs them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from engine.classes import ALL_CLASSES, TASK1_CLASSES

SIZE = 64
PATIENTS = [
    # (PatientID, PatientName, AccessionNumber): distinctive strings that must not leave
    ("PIDLOOP001", "Quaxley^Wendolyn", "ACCLOOP01"),
    ("PIDLOOP002", "Brimsworth^Odalys", "ACCLOOP02"),
    ("PIDLOOP003", "Fennimore^Zebulon", "ACCLOOP03"),
]
INSTITUTION = "Loopington Infirmary"
PER_PATIENT = 3
# Reviewed findings: each gets both a present and an absent verdict somewhere, so the classes
# have positives and negatives in the export (eval and calibration need both).
FINDINGS = ("Normal", "cardiomegaly", "pleural effusion")


def _pixels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # 256 x 256: the library's smallest usable radiograph
    yy, xx = np.mgrid[0:256, 0:256]
    base = 20000 + 12000 * np.sin(xx / (6.0 + seed % 4)) * np.cos(yy / 12.0)
    return (base + rng.normal(0, 1500, (256, 256))).clip(0, 65535).astype(np.uint16)


def _write_library(folder: Path) -> list[Path]:
    from engine.dicomwrite import write_dicom

    paths = []
    for p, (pid, name, acc) in enumerate(PATIENTS):
        study = f"1.2.826.0.1.3680043.8.498.77{p}0"
        for k in range(PER_PATIENT):
            paths.append(
                write_dicom(
                    folder / name.replace("^", "_") / f"img{k}.dcm",
                    _pixels(10 * p + k),
                    patient_id=pid,
                    patient_name=name,
                    patient_birth_date="19510203",
                    accession_number=acc,
                    institution_name=INSTITUTION,
                    study_date="20240315",
                    study_uid=study,
                    series_uid=study + ".1",
                    sop_uid=f"{study}.1.{k + 1}",
                )
            )
    return paths


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.timeout(600)
def test_verdicts_export_train_score_eval_calibrate(tmp_path, monkeypatch, capsys):
    import torch
    from sklearn.metrics import average_precision_score, roc_auc_score

    from cxrlt_desktop.cli import main
    from cxrlt_desktop.library.reviews import set_verdict
    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.library.scoring import score_library
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Image
    from engine.calibration import load_temperatures, temperature_scale
    from engine.checkpoints import load_task1_model
    from engine.predictor import EngineConfig, Predictor
    from engine.random_models import write_random_task1
    from training.calibration import fit_temperature

    torch.set_num_threads(1)
    # The pseudonym salt and the settings live in the user data folder: keep them in tmp_path.
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("CXRLT_DATA_DIR", str(tmp_path / "userdata"))

    # -- library, scored with a random-weight model -------------------------------------------
    paths = _write_library(tmp_path / "studies")
    db = tmp_path / "lib.db"
    url = "sqlite:///" + str(db)
    store = open_store(url)
    try:
        for _ in scan(store, [tmp_path / "studies"]):
            pass
        ckpt = write_random_task1(tmp_path / "models" / "csra.safetensors", head="csra", seed=3)
        predictor = Predictor(
            EngineConfig(
                task1_checkpoints=[ckpt],
                task1_arch="convnextv2_atto",
                mode="fast",
                image_size=SIZE,
                device="cpu",
                batch_size=4,
                decode_workers=1,
            )
        )
        progress = list(score_library(store, predictor))
        assert progress[-1].finished and progress[-1].failed == 0
        from sqlalchemy import select

        with store.session() as s, s.begin():
            rows = s.execute(select(Image.path, Image.id, Image.current_prediction_id)).all()
        ids = {Path(p).resolve(): i for p, i, _ in rows}
        assert len(ids) == len(paths) and all(pred for _, _, pred in rows), rows

        # -- verdicts, as the GUI records them --------------------------------------------------
        expected: dict[int, dict[str, str]] = {}
        for n, path in enumerate(paths):
            image_id = ids[path.resolve()]
            verdicts = {f: ("present" if (n + j) % 2 else "absent") for j, f in enumerate(FINDINGS)}
            if n == 0:
                verdicts["Hernia"] = "uncertain"  # exported as an empty cell
            for finding, verdict in verdicts.items():
                set_verdict(store, image_id, finding, verdict, reviewer="Dr Review", note=None)
            expected[n] = verdicts
    finally:
        store.close()

    # -- export ---------------------------------------------------------------------------------
    exp = tmp_path / "export"
    rc = main(["export", "--db", url, "--out", str(exp), "--copy-images", "--sr", "-q"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    labels_csv = exp / "labels.csv"
    label_rows = _read_csv(labels_csv)
    assert len(label_rows) == len(paths)
    assert sum(r["Hernia"] == "" for r in label_rows) == len(paths)  # uncertain -> empty
    for f in FINDINGS:
        assert sorted(r[f] for r in label_rows) == sorted(
            "1" if v[f] == "present" else "0" for v in expected.values()
        )
    pngs = sorted((exp / "images").glob("*.png"))
    assert [p.stem for p in pngs] == sorted(r["ImageID"] for r in label_rows)
    assert len(list((exp / "sr").glob("*_ai.dcm"))) == len(paths)  # plus one review SR each
    everything = b"".join(p.read_bytes() for p in exp.rglob("*") if p.is_file())
    for pid, name, acc in PATIENTS:
        for phi in (pid, name, acc, *name.split("^")):
            assert phi.encode() not in everything, phi
    assert INSTITUTION.encode() not in everything and b"19510203" not in everything

    # -- train on the export as it is --------------------------------------------------------
    run = tmp_path / "run"
    rc = main(
        ["train", "--labels", str(labels_csv), "--images", str(exp / "images"), "--out", str(run),
         "--arch", "convnextv2_atto", "--image-size", str(SIZE), "--epochs", "1",
         "--batch-size", "2", "--device", "cpu", "--workers", "0", "--val-fraction", "0.34"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    best = run / "best.safetensors"
    loaded = load_task1_model(best, arch=None)
    assert (loaded.arch, loaded.head) == ("convnextv2_atto", "csra")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["classes"] == list(TASK1_CLASSES)
    assert manifest["data"]["n_train"] + manifest["data"]["n_val"] == len(paths)

    # -- score the exported images with the new checkpoint -----------------------------------
    preds_csv = tmp_path / "preds.csv"
    rc = main(
        ["score", str(exp / "images"), "--out", str(preds_csv), "--task1-checkpoint", str(best),
         "--task1-arch", "convnextv2_atto", "--mode", "fast", "--device", "cpu",
         "--image-size", str(SIZE), "--batch-size", "4", "--no-progress"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    pred_rows = _read_csv(preds_csv)
    assert len(pred_rows) == len(paths)

    # -- eval: the JSON shape, and values recomputed with scikit-learn ----------------
    rc = main(["eval", "--labels", str(labels_csv), "--predictions", str(preds_csv), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    result = json.loads(out.out)
    assert {"macro", "per_class", "excluded"} <= set(result)
    assert {"mAP", "mAUC", "mF1", "mECE"} <= set(result["macro"])
    assert set(result["per_class"]) == set(FINDINGS)
    assert "Hernia" in result["excluded"]  # reviewed only as uncertain: no positive label
    by_stem = {Path(r["ImageID"]).stem: r for r in pred_rows}
    aps, aucs = [], []
    for f in FINDINGS:
        y = np.array([float(r[f]) for r in label_rows])
        p = np.array([float(by_stem[r["ImageID"]][f]) for r in label_rows])
        aps.append(average_precision_score(y, p))
        aucs.append(roc_auc_score(y, p))
        assert result["per_class"][f]["AP"] == pytest.approx(aps[-1], abs=1e-6)
    assert result["macro"]["mAP"] == pytest.approx(np.mean(aps), abs=1e-6)
    assert result["macro"]["mAUC"] == pytest.approx(np.mean(aucs), abs=1e-6)

    # -- calibrate: temperatures the engine reads, mECE before and after ----------------------
    cal = tmp_path / "calibration.json"
    rc = main(
        ["calibrate", "--labels", str(labels_csv), "--predictions", str(preds_csv),
         "--out", str(cal), "--json"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads(out.out)
    temps = load_temperatures(cal)
    assert set(temps) == set(summary["temperatures"]) and temps
    # every finding is fitted or skipped with a reason; a skipped one really has no interior
    # optimum on these few labels (its fit runs to a bound of [0.05, 20])
    at_bound = set(summary["skipped"]) & set(FINDINGS)
    assert set(temps) | at_bound == set(FINDINGS) and not set(temps) & at_bound
    for f in at_bound:
        assert "runs to its bound" in summary["skipped"][f]
        y = np.array([float(r[f]) for r in label_rows])
        p = np.array([float(by_stem[r["ImageID"]][f]) for r in label_rows])
        assert min(abs(np.log(fit_temperature(y, p) / b)) for b in (0.05, 20.0)) < 1e-3
    fitted_ece = [result["per_class"][f]["ECE"] for f in temps]
    assert summary["mECE_before"] == pytest.approx(np.mean(fitted_ece), abs=1e-9)
    # the fit minimises the NLL on these very rows, so it cannot be worse than T = 1
    assert summary["NLL_after"] <= summary["NLL_before"] + 1e-9

    # -- the engine applies the temperatures when configured -----------------------------------
    def engine(calibration: Path | None) -> Predictor:
        return Predictor(
            EngineConfig(
                task1_checkpoints=[best],
                task1_arch="convnextv2_atto",
                mode="fast",
                image_size=SIZE,
                device="cpu",
                batch_size=4,
                decode_workers=1,
                calibration=calibration,
            )
        )

    plain = np.stack([r.probs for r in engine(None).predict_paths(pngs[:3])])
    calibrated = np.stack([r.probs for r in engine(cal).predict_paths(pngs[:3])])
    for j, name in enumerate(ALL_CLASSES):
        if name in temps:
            want = temperature_scale(plain[:, j], temps[name])
            np.testing.assert_allclose(calibrated[:, j], want, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(calibrated[:, j], plain[:, j])
    # and the uncalibrated engine gives what `cxrlt score` wrote
    for k, png in enumerate(pngs[:3]):
        row = by_stem[png.stem]
        np.testing.assert_allclose(
            [float(row[c]) for c in TASK1_CLASSES], plain[k, : len(TASK1_CLASSES)], atol=1e-5
        )
