"""`cxrlt gui --self-test` as a user runs it: a subprocess, offscreen, exit status and PNGs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _env(tmp_path):
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        HF_HUB_OFFLINE="1",
        CXRLT_DATA_DIR=str(tmp_path / "data"),
        CXRLT_CONFIG=str(tmp_path / "no-settings.toml"),  # no models configured
    )
    return env


@pytest.mark.slow
def test_self_test_passes_and_writes_screenshots(tmp_path):
    shots = tmp_path / "shots"
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "cxrlt_desktop", "gui", "--self-test", "--screenshots", str(shots)],
        env={**_env(tmp_path), "TMPDIR": str(tmpdir)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    for step in (
        "scan and score",
        "worklist ordered by rare-finding score",
        "top study opened and displayed",
        "verdict stored",
        "attention overlay toggles",
        "screenshots",
    ):
        assert f"[ok] {step}" in log, log
    assert "random-weight models (DEMO" in log
    pngs = sorted(p.name for p in shots.glob("*.png"))
    assert pngs == ["main_window.png", "main_window_overlay.png"]
    for p in shots.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A passing self-test leaves no working folder behind (it used to leave ~57 MB per run).
    assert not list(tmpdir.glob("cxrlt-selftest-*")), sorted(tmpdir.iterdir())


def test_gui_refuses_a_missing_folder(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cxrlt_desktop", "gui", str(tmp_path / "nope")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "nope: no such file or folder" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "content, fragment",
    [
        (
            'database = "sqlite:////somewhere/my.db"\nreviewer = "Dr R"\n[engine]\nbatch_size = 0\n',
            "engine.batch_size",
        ),
        ('[shortcuts]\nverdict_present = "A"\n', "already used by 'verdict_present'"),
        ('[shortcuts]\nnext_study = "PgDn"\n', "'PgDn' is not a key Qt knows"),
    ],
)
def test_gui_refuses_to_start_on_a_settings_file_it_cannot_use(tmp_path, content, fragment):
    # It used to start on defaults (another database, reviewer and thresholds) and overwrite
    # the file on the first OK, or crash with a traceback for a shortcut clash.
    env = _env(tmp_path)
    cfg = tmp_path / "settings.toml"
    cfg.write_text(content)
    env["CXRLT_CONFIG"] = str(cfg)
    proc = subprocess.run(
        [sys.executable, "-m", "cxrlt_desktop", "gui"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = proc.stdout + proc.stderr
    assert proc.returncode == 2, err
    assert str(cfg) in err and fragment in err and "Traceback" not in err
    assert cfg.read_text() == content  # untouched
