"""The store: connection settings, migrations that match the models, upgrades that keep data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cxrlt_desktop.store import StoreError, current_revision, open_store
from cxrlt_desktop.store.db import upgrade
from cxrlt_desktop.store.models import Base
from engine.classes import ALL_CLASSES


def test_sqlite_pragmas_and_head(store):
    assert current_revision(store) == "0003"
    with store.raw_connection() as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_models_match_migrations(store):
    """Autogenerate finds nothing to do: the Alembic head is exactly the ORM schema."""
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_in_memory_url_refused():
    with pytest.raises(StoreError, match="in-memory"):
        open_store("sqlite://")
    with pytest.raises(StoreError, match="in-memory"):
        open_store("sqlite:///:memory:")


def test_bad_url_named():
    with pytest.raises(StoreError, match="nonsense"):
        open_store("nonsense://x")


def test_default_url_in_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRLT_DATA_DIR", str(tmp_path / "data"))
    st = open_store()
    try:
        assert (tmp_path / "data" / "cxrlt.db").exists()
    finally:
        st.close()


def test_reopen_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_store(url).close()
    st = open_store(url)
    assert current_revision(st) == "0003"
    st.close()


def test_foreign_keys_enforced(store):
    import sqlalchemy.exc

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        with store.session(write=True) as s, s.begin():
            s.execute(
                __import__("sqlalchemy").text(
                    "INSERT INTO series (study_id, series_uid) VALUES (999, '1.2')"
                )
            )


def test_upgrade_from_first_revision_keeps_data(tmp_path):
    """A database made at 0001 and filled with raw SQL keeps every row through the upgrade, and
    0002 backfills finding_hit (default thresholds) and study.reviewed."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    st = open_store(url, migrate=False)
    upgrade(st, "0001")
    assert current_revision(st) == "0001"
    probs = np.full(len(ALL_CLASSES), 0.1, dtype="<f4")
    probs[ALL_CLASSES.index("Pneumothorax")] = 0.9  # above its 0.5 threshold
    probs[ALL_CLASSES.index("Scoliosis")] = 0.85  # above its 0.8 threshold
    probs[0] = 0.95  # Normal above threshold never counts as a finding
    now = "2026-01-01 00:00:00"
    with st.raw_connection() as c:
        c.execute("BEGIN")
        c.execute(
            "INSERT INTO patient (id, key, patient_id, patient_name, synthetic) VALUES (1, 'id:P', 'P', 'Doe^J', 0)"
        )
        c.execute(
            "INSERT INTO study (id, patient_id, study_uid, study_date, synthetic, priority, n_above, n_images,"
            " n_scored, n_failed, n_reviewed, review_status, top_findings, rare_score)"
            " VALUES (1, 1, '1.2.3', '20240101', 0, 1.8, 2, 1, 1, 0, 1, 'reviewed', '[]', 1.8)"
        )
        c.execute(
            "INSERT INTO series (id, study_id, series_uid, modality) VALUES (1, 1, '1.2.3.4', 'CR')"
        )
        c.execute(
            "INSERT INTO image (id, series_id, path, size, mtime, version, sop_uid, is_dicom, usable, warnings,"
            " missing, meta, scanned_at) VALUES (1, 1, '/x/a.dcm', 10, 1.5, 1, '1.2.3.4.5', 1, 1, '[]', 0, ?, ?)",
            (json.dumps({"PatientID": "P"}), now),
        )
        c.execute(
            "INSERT INTO model_set (id, key, description, created_at) VALUES (1, 'k', '{}', ?)",
            (now,),
        )
        c.execute(
            "INSERT INTO scoring_run (id, model_set_id, weights, settings, started_at, n_done, n_failed, attempts)"
            " VALUES (1, 1, '[]', '{}', ?, 1, 0, 1)",
            (now,),
        )
        c.execute(
            "INSERT INTO prediction (id, image_id, run_id, model_set_id, image_version, probs, rare_score, n_above,"
            " top_findings, created_at) VALUES (1, 1, 1, 1, 1, ?, 1.8, 2, '[]', ?)",
            (probs.tobytes(), now),
        )
        c.execute("UPDATE image SET current_prediction_id = 1 WHERE id = 1")
        c.execute(
            "INSERT INTO review (image_id, finding, verdict, reviewer, reviewed_at, prediction_id)"
            " VALUES (1, 'Pneumothorax', 'present', 'dr', ?, 1)",
            (now,),
        )
        c.execute(
            "INSERT INTO audit_event (at, actor, action, image_id) VALUES (?, 'dr', 'verdict', 1)",
            (now,),
        )
        c.execute("COMMIT")
    st.close()

    st = open_store(url)
    assert current_revision(st) == "0003"
    with st.raw_connection() as c:
        assert c.execute("SELECT path, sop_uid, current_prediction_id FROM image").fetchall() == [
            ("/x/a.dcm", "1.2.3.4.5", 1)
        ]
        assert c.execute("SELECT finding, verdict, reviewer FROM review").fetchall() == [
            ("Pneumothorax", "present", "dr")
        ]
        assert c.execute("SELECT probs FROM prediction").fetchone()[0] == probs.tobytes()
        assert c.execute("SELECT count(*) FROM audit_event").fetchone()[0] == 1
        assert c.execute("SELECT patient_name FROM patient").fetchone()[0] == "Doe^J"
        assert c.execute("SELECT reviewed, rare_score FROM study").fetchone() == (1, 1.8)
        hits = c.execute(
            "SELECT finding, study_id, image_id FROM finding_hit ORDER BY finding"
        ).fetchall()
        assert hits == [("Pneumothorax", 1, 1), ("Scoliosis", 1, 1)]
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA foreign_key_check").fetchall() == []
    st.close()
