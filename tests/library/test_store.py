"""The store: connection settings, migrations that match the models, upgrades that keep data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from cxrlt_desktop.store import StoreError, current_revision, open_store
from cxrlt_desktop.store.check import check_store
from cxrlt_desktop.store.db import retry_reason, upgrade
from cxrlt_desktop.store.models import Base
from engine.classes import ALL_CLASSES


def test_sqlite_pragmas_and_head(store):
    assert current_revision(store) == "0008"
    with store.raw_connection() as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_models_match_migrations(any_store):
    """Autogenerate finds nothing to do: the Alembic head is exactly the ORM schema (on SQLite
    and on PostgreSQL)."""
    assert current_revision(any_store) == "0008"
    with any_store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_in_memory_url_refused():
    with pytest.raises(StoreError, match="in-memory"):
        open_store("sqlite://")
    with pytest.raises(StoreError, match="in-memory"):
        open_store("sqlite:///:memory:")


def test_bad_url_named():
    with pytest.raises(StoreError, match="nonsense"):
        open_store("nonsense://x")


def test_unreachable_server_named_without_its_password():
    """Nothing listens on the port: one line naming the server, the password hidden."""
    with pytest.raises(StoreError) as info:
        open_store("postgresql+psycopg://cxrlt:s3cret@127.0.0.1:1/lib")
    message = str(info.value)
    assert "s3cret" not in message and "\n" not in message
    assert "cxrlt:***@127.0.0.1:1/lib" in message and "Connection refused" in message


def test_postgresql_database_that_is_not_a_library_refused(postgres_url):
    """Like a SQLite file: a database without a schema is not a library for the commands that
    read one (create=False), and another program's database is never migrated."""
    with pytest.raises(StoreError, match="an empty database, not a CXR-LT library"):
        open_store(postgres_url, create=False)
    st = open_store(postgres_url, migrate=False)
    try:
        assert current_revision(st) is None  # nothing was created
        with st.engine.begin() as c:
            c.execute(text("CREATE TABLE invoices (id integer PRIMARY KEY)"))
    finally:
        st.close()
    with pytest.raises(StoreError, match="another program: 1 tables, no alembic_version"):
        open_store(postgres_url)
    st = open_store(postgres_url, migrate=False)
    try:
        assert current_revision(st) is None
        with st.engine.connect() as c:
            assert c.scalar(text("SELECT count(*) FROM pg_tables WHERE tablename = 'image'")) == 0
    finally:
        st.close()


def test_default_url_in_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRLT_DATA_DIR", str(tmp_path / "data"))
    st = open_store()
    try:
        assert (tmp_path / "data" / "cxrlt.db").exists()
    finally:
        st.close()


def test_reopen_is_idempotent(store_url):
    open_store(store_url).close()
    st = open_store(store_url)
    assert current_revision(st) == "0008"
    st.close()


def test_foreign_keys_enforced(any_store):
    import sqlalchemy.exc

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        with any_store.session(write=True) as s, s.begin():
            s.execute(
                __import__("sqlalchemy").text(
                    "INSERT INTO series (study_id, series_uid) VALUES (999, '1.2')"
                )
            )


def test_upgrade_from_first_revision_keeps_data(store_url):
    """A database made at 0001 and filled with raw SQL keeps every row through the upgrade, and
    0002 backfills finding_hit (default thresholds) and study.reviewed (on both dialects)."""
    url = store_url
    st = open_store(url, migrate=False)
    upgrade(st, "0001")
    assert current_revision(st) == "0001"
    probs = np.full(len(ALL_CLASSES), 0.1, dtype="<f4")
    probs[ALL_CLASSES.index("Pneumothorax")] = 0.9  # above its 0.5 threshold
    probs[ALL_CLASSES.index("Scoliosis")] = 0.85  # above its 0.8 threshold
    probs[0] = 0.95  # Normal above threshold never counts as a finding
    now = "2026-01-01 00:00:00"
    rows = [
        "INSERT INTO patient (id, key, patient_id, patient_name, synthetic)"
        " VALUES (1, 'id:P', 'P', 'Doe^J', :false)",
        "INSERT INTO study (id, patient_id, study_uid, study_date, synthetic, priority, n_above,"
        " n_images, n_scored, n_failed, n_reviewed, review_status, top_findings, rare_score)"
        " VALUES (1, 1, '1.2.3', '20240101', :false, 1.8, 2, 1, 1, 0, 1, 'reviewed', '[]', 1.8)",
        "INSERT INTO series (id, study_id, series_uid, modality) VALUES (1, 1, '1.2.3.4', 'CR')",
        "INSERT INTO image (id, series_id, path, size, mtime, version, sop_uid, is_dicom, usable,"
        " warnings, missing, meta, scanned_at) VALUES (1, 1, '/x/a.dcm', 10, 1.5, 1, '1.2.3.4.5',"
        " :true, :true, '[]', :false, :meta, :now)",
        "INSERT INTO model_set (id, key, description, created_at) VALUES (1, 'k', '{}', :now)",
        "INSERT INTO scoring_run (id, model_set_id, weights, settings, started_at, n_done,"
        " n_failed, attempts) VALUES (1, 1, '[]', '{}', :now, 1, 0, 1)",
        "INSERT INTO prediction (id, image_id, run_id, model_set_id, image_version, probs,"
        " rare_score, n_above, top_findings, created_at)"
        " VALUES (1, 1, 1, 1, 1, :probs, 1.8, 2, '[]', :now)",
        "UPDATE image SET current_prediction_id = 1 WHERE id = 1",
        "INSERT INTO review (image_id, finding, verdict, reviewer, reviewed_at, prediction_id)"
        " VALUES (1, 'Pneumothorax', 'present', 'dr', :now, 1)",
        "INSERT INTO audit_event (at, actor, action, image_id) VALUES (:now, 'dr', 'verdict', 1)",
    ]
    params = {
        "true": True,
        "false": False,
        "now": now,
        "meta": json.dumps({"PatientID": "P"}),
        "probs": probs.tobytes(),
    }
    with st.engine.begin() as c:
        for sql in rows:
            c.execute(text(sql), {k: v for k, v in params.items() if f":{k}" in sql})
        if not st.is_sqlite:  # rows written with their ids: move the sequences past them
            for table in (
                "patient",
                "study",
                "series",
                "image",
                "model_set",
                "scoring_run",
                "prediction",
            ):
                c.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 1)"))
    st.close()

    st = open_store(url)
    assert current_revision(st) == "0008"
    with st.engine.connect() as c:

        def q(sql: str) -> list[tuple]:
            return [tuple(r) for r in c.execute(text(sql)).fetchall()]

        assert q("SELECT path, sop_uid, current_prediction_id FROM image") == [
            ("/x/a.dcm", "1.2.3.4.5", 1)
        ]
        assert q("SELECT finding, verdict, reviewer FROM review") == [
            ("Pneumothorax", "present", "dr")
        ]
        assert bytes(q("SELECT probs FROM prediction")[0][0]) == probs.tobytes()
        assert q("SELECT count(*) FROM audit_event") == [(1,)]
        assert q("SELECT patient_name FROM patient") == [("Doe^J",)]
        assert q("SELECT reviewed, rare_score FROM study") == [(True, 1.8)]
        hits = q("SELECT finding, study_id, image_id FROM finding_hit ORDER BY finding")
        assert hits == [("Pneumothorax", 1, 1), ("Scoliosis", 1, 1)]
    report = check_store(st)  # SQLite: integrity_check, foreign_key_check; PostgreSQL: orphans
    assert report.problems == []
    assert report.rows["finding_hit"] == 2 and report.rows["image"] == 1
    st.close()


# --- transient failures: what Store.write runs again ---------------------------------------


@pytest.fixture
def pg_store(postgres_url):
    st = open_store(postgres_url)
    yield st
    st.close()


def _raised(engine, sql: str) -> DBAPIError:
    """The error the server raises for ``sql`` (as SQLAlchemy hands it over)."""
    with pytest.raises(DBAPIError) as info:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    return info.value


@pytest.mark.parametrize(
    "sqlstate, retried",
    [("40001", True), ("40P01", True), ("55P03", True), ("23505", False), ("22012", False)],
)
def test_retry_reason_postgresql_sqlstates(pg_store, sqlstate, retried):
    """Serialization failure, deadlock and lock-not-available are retried; a unique violation
    or a division by zero is not (errors raised by the server with that SQLSTATE)."""
    exc = _raised(
        pg_store.engine,
        f"DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{sqlstate}'; END $$",
    )
    assert exc.orig.sqlstate == sqlstate
    assert retry_reason(exc) == (f"SQLSTATE {sqlstate}" if retried else None)


def test_retry_reason_real_lock_not_available(pg_store):
    """A NOWAIT lock on a table another transaction holds: 55P03 from the server itself."""
    with pg_store.engine.connect() as holder, holder.begin():
        holder.exec_driver_sql("LOCK TABLE patient IN ACCESS EXCLUSIVE MODE")
        exc = _raised(pg_store.engine, "LOCK TABLE patient IN ACCESS EXCLUSIVE MODE NOWAIT")
    assert retry_reason(exc) == "SQLSTATE 55P03"


def test_retry_reason_sqlite_locked(tmp_path):
    """SQLite's "database is locked" (another connection holds the write lock, no busy wait)
    is retried; a constraint violation is not."""
    import sqlite3

    from sqlalchemy import create_engine

    path = tmp_path / "l.db"
    open_store(f"sqlite:///{path.as_posix()}").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        impatient = create_engine(f"sqlite:///{path.as_posix()}", connect_args={"timeout": 0})
        exc = _raised(impatient, "INSERT INTO model_version (sha256) VALUES ('x')")
        impatient.dispose()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked" in str(exc.orig)
    assert retry_reason(exc) == "database locked"
    st = open_store(f"sqlite:///{path.as_posix()}")
    try:
        violation = _raised(st.engine, "INSERT INTO series (study_id, series_uid) VALUES (9, 'u')")
    finally:
        st.close()
    assert retry_reason(violation) is None


def _add_patient(s, key: str = "id:P") -> int:
    return s.execute(
        text(
            "INSERT INTO patient (key, patient_id, patient_name, synthetic) "
            "VALUES (:k, 'P', 'Doe^J', false) RETURNING id"
        ),
        {"k": key},
    ).scalar_one()


def test_write_retries_a_real_serialization_failure(pg_store):
    """A REPEATABLE READ transaction whose row another transaction changed after its snapshot
    fails with 40001; Store.write runs it again and the second attempt commits."""
    pid = pg_store.write(_add_patient)
    attempts = []

    def rename(s) -> str:  # noqa: ANN001
        s.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        name = s.execute(text("SELECT patient_name FROM patient WHERE id = :i"), {"i": pid})
        name = name.scalar_one()
        attempts.append(name)
        if len(attempts) == 1:  # another workstation changes the row after our snapshot
            with pg_store.engine.begin() as other:
                other.execute(
                    text("UPDATE patient SET patient_name = 'Roe^K' WHERE id = :i"), {"i": pid}
                )
        s.execute(
            text("UPDATE patient SET patient_name = :n WHERE id = :i"), {"n": name + "+", "i": pid}
        )
        return name

    assert pg_store.write(rename) == "Roe^K"
    assert attempts == ["Doe^J", "Roe^K"]
    with pg_store.session() as s, s.begin():
        assert s.scalar(text("SELECT patient_name FROM patient")) == "Roe^K+"


def test_write_retries_after_the_connection_is_dropped(pg_store):
    """The server terminates the writer's connection mid-transaction (a restart, a network
    cut): Store.write runs the transaction again on a new connection."""
    backends = []

    def add(s) -> int:  # noqa: ANN001
        backends.append(s.scalar(text("SELECT pg_backend_pid()")))
        if len(backends) == 1:
            with pg_store.engine.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backends[0]})
        return _add_patient(s)

    pid = pg_store.write(add)
    assert len(backends) == 2 and backends[0] != backends[1]
    with pg_store.session() as s, s.begin():
        assert s.scalar(text("SELECT id FROM patient")) == pid


def test_write_does_not_retry_a_constraint_violation(any_store):
    """A unique violation is the caller's to handle: raised at once, on both dialects."""
    any_store.write(_add_patient)
    calls = []

    def again(s) -> int:  # noqa: ANN001
        calls.append(1)
        return _add_patient(s)

    with pytest.raises(DBAPIError):
        any_store.write(again)
    assert calls == [1]
