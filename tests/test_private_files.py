"""The app's own files are the user's only: the data folder 0700, the database (and its WAL and
shared-memory files) 0600, whatever the umask, and ``cxrlt`` runs its commands under umask 077.

Mode bits are read with os.stat (CI runs as root, who can open any file, so a PermissionError
would prove nothing).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """Run the test under the common default umask 022 (files 0644, folders 0755)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_database_and_its_folder_are_private(tmp_path, open_umask):
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Patient

    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    db = existing / "new" / "deeper" / "lib.db"
    store = open_store(f"sqlite:///{db}")
    try:
        store.write(lambda s: s.add(Patient(key="k", patient_id="ID1", patient_name="A^B")))
        files = [db, db.with_name("lib.db-wal"), db.with_name("lib.db-shm")]
        assert all(p.exists() for p in files)
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        store.close()
    assert _mode(db.parent) == 0o700 and _mode(db.parent.parent) == 0o700
    assert _mode(existing) == 0o755  # a folder that existed keeps its mode


def test_existing_open_database_is_made_private(tmp_path, open_umask):
    from cxrlt_desktop.store import open_store

    db = tmp_path / "lib.db"
    open_store(f"sqlite:///{db}").close()
    os.chmod(db, 0o644)  # as an older version left it
    open_store(f"sqlite:///{db}", create=False).close()
    assert _mode(db) == 0o600


def test_data_folder_and_cache_are_private(tmp_path, monkeypatch, open_umask):
    from cxrlt_desktop.paths import cache_dir, data_dir

    monkeypatch.setenv("CXRLT_DATA_DIR", str(tmp_path / "data"))
    assert data_dir() == tmp_path / "data" and _mode(tmp_path / "data") == 0o700
    assert _mode(cache_dir()) == 0o700
    # A folder the user named that exists already keeps its mode (it may be shared on purpose).
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    monkeypatch.setenv("CXRLT_DATA_DIR", str(shared))
    assert data_dir() == shared and _mode(shared) == 0o755


def test_cli_runs_under_umask_077_and_restores_it(tmp_path, monkeypatch, open_umask):
    """`cxrlt eval --out` writes its report with plain open(): only the umask makes it private."""
    import csv

    from cxrlt_desktop.cli import main
    from engine.classes import ALL_CLASSES

    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    labels, preds = tmp_path / "labels.csv", tmp_path / "preds.csv"
    with open(labels, "w", newline="") as fl, open(preds, "w", newline="") as fp:
        wl, wp = csv.writer(fl), csv.writer(fp)
        wl.writerow(["ImageID", *ALL_CLASSES])
        wp.writerow(["ImageID", *ALL_CLASSES])
        for i in range(6):
            wl.writerow([f"i{i}", *(str((i + j) % 2) for j in range(36))])
            wp.writerow([f"i{i}", *(f"{((i + j) % 5) / 5:.2f}" for j in range(36))])
    report = tmp_path / "report"
    assert (
        main(["eval", "--labels", str(labels), "--predictions", str(preds), "--out", str(report)])
        == 0
    )
    assert _mode(report) == 0o700
    written = [p for p in report.iterdir()]
    assert written and all(_mode(p) == 0o600 for p in written), {
        p.name: oct(_mode(p)) for p in written
    }
    assert os.umask(0o022) == 0o022  # main() gave the caller its umask back
