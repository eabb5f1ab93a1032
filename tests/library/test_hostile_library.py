"""A folder holding every crafted file of the hostile-input tests beside real radiographs: the
scan, the scoring and the export run as separate processes, as a user runs them; every real image
is scored and exported, every crafted one refused with its reason, and no process dies."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hostile_files import (
    SECRET,
    huge_private_element,
    j2k_lying_size,
    jpegls_lying_size,
    nan_slope,
    nan_tiff,
    png_bomb,
    secret_text,
)
from library_helpers import cli_cmd, model_args
from pydicom.data import get_testdata_file

REAL = ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm"]  # the chest CR, each its own UIDs

# file name -> how its refusal starts (scan: from the header; score: at decode).
REFUSED_AT_SCAN = {
    "bomb.png": "declared image size 16000 x 16000 is over the limit",
    "nan_slope.dcm": "RescaleSlope is nan",
    "inf_slope.dcm": "RescaleSlope is inf",
    "passwd.dcm": "not an image: the file holds text",
}
REFUSED_AT_SCORE = {
    "jpegls_65535.dcm": "compressed JPEG-LS stream declares 65535 x 65535 pixels",
    "j2k_60000.dcm": "compressed JPEG 2000 stream declares 60000 x 60000 pixels",
    "j2k_512.dcm": "compressed JPEG 2000 stream declares 512 x 512 pixels, the header says",
    "nan.tif": "pixel data contains NaN or infinity",
}


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    out = subprocess.run(
        cli_cmd(*args), capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert out.returncode == 0, f"{args[0]} exited {out.returncode}:\n{out.stderr[-3000:]}"
    return out


def _write_folder(folder: Path, secrets: Path) -> None:
    folder.mkdir(parents=True)
    for name in REAL:
        shutil.copy(get_testdata_file(name, download=False), folder / name)
    huge_private_element(folder / "huge_private.dcm")  # valid: scored, the element never read
    png_bomb(folder / "bomb.png")
    nan_slope(folder / "nan_slope.dcm", "NaN")
    nan_slope(folder / "inf_slope.dcm", "inf")
    (folder / "passwd.dcm").symlink_to(secret_text(secrets / "passwd"))
    jpegls_lying_size(folder / "jpegls_65535.dcm")
    j2k_lying_size(folder / "j2k_60000.dcm")
    j2k_lying_size(folder / "j2k_512.dcm", 512)
    nan_tiff(folder / "nan.tif")


@pytest.mark.slow
def test_hostile_folder_scans_scores_and_exports(tmp_path, csra_ckpt):
    folder, secrets = tmp_path / "incoming", tmp_path / "etc"
    secrets.mkdir()
    _write_folder(folder, secrets)
    db = f"sqlite:///{tmp_path / 'lib.db'}"
    env = {**os.environ, "CXRLT_CONFIG": str(tmp_path / "none.toml")}

    scan = _run("scan", str(folder), "--db", db, env=env)
    score = _run("score-library", "--db", db, *model_args(csra_ckpt), env=env)
    for out in (scan, score):
        assert SECRET[:10] not in out.stdout + out.stderr

    from sqlalchemy import select

    from cxrlt_desktop.library.reviews import agree_with_all
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Image, ScoreFailure

    store = open_store(db, create=False)
    with store.session() as s:
        images = {Path(i.path).name: i for i in s.scalars(select(Image)).all()}
        failures = {f.image_id: f.reason for f in s.scalars(select(ScoreFailure)).all()}
    scored = {name for name, i in images.items() if i.current_prediction_id is not None}
    assert scored == {*REAL, "huge_private.dcm"}
    for name, start in REFUSED_AT_SCAN.items():
        assert not images[name].usable
        assert (images[name].reason or "").startswith(start), (name, images[name].reason)
    for name, start in REFUSED_AT_SCORE.items():
        assert images[name].current_prediction_id is None
        reason = failures.get(images[name].id, "")
        assert reason.startswith(start), (name, reason)
    for text in [i.reason or "" for i in images.values()] + list(failures.values()):
        assert SECRET[:10] not in text

    # Retrying the failures tries them again (and they fail again, with the same reasons).
    again = _run("score-library", "--db", db, "--retry-failed", *model_args(csra_ckpt), env=env)
    assert f"{len(REFUSED_AT_SCORE)} failed image(s) will be tried again" in again.stderr
    assert f"finished: 0 scored, {len(REFUSED_AT_SCORE)} failed" in again.stderr

    for name in scored:
        agree_with_all(store, images[name].id, reviewer="dr test")
    store.close()
    out_dir = tmp_path / "export"
    _run("export", "--db", db, "--out", str(out_dir), "--copy-images", "--sr", env=env)
    with open(out_dir / "labels.csv", newline="") as fp:
        rows = list(csv.DictReader(fp))
    assert len(rows) == len(scored)
    pngs = sorted((out_dir / "images").glob("*.png"))
    assert len(pngs) == len(scored)
    # two SR documents per reviewed image: the AI result and the radiologist's review
    assert len(list((out_dir / "sr").glob("*_ai.dcm"))) == len(scored)
    assert len(list((out_dir / "sr").glob("*_review.dcm"))) == len(scored)
