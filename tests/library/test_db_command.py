"""``cxrlt db upgrade`` and ``cxrlt db check`` on SQLite and PostgreSQL; concurrent upgrades."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest
from library_helpers import cli_cmd
from sqlalchemy import inspect, text

from cxrlt_desktop.cli import main
from cxrlt_desktop.store import current_revision, open_store
from cxrlt_desktop.store.check import check_store
from cxrlt_desktop.store.db import upgrade
from cxrlt_desktop.store.models import Base

N_TABLES = len(Base.metadata.tables)  # the library's tables (alembic_version not counted)


@pytest.fixture(autouse=True)
def _no_user_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))


def test_upgrade_then_check(store_url, capsys):
    """An empty database: check reports it (SQLite: the file does not exist, status 2;
    PostgreSQL: no schema, status 1); upgrade creates the schema; check then says ok."""
    status = main(["db", "check", "--db", store_url])
    out, err = capsys.readouterr()
    if store_url.startswith("sqlite"):
        assert status == 2 and "the database does not exist" in err and "lib.db" in err
    else:
        assert status == 1 and "no schema" in out

    assert main(["db", "upgrade", "--db", store_url]) == 0
    out, _ = capsys.readouterr()
    assert "schema at revision 0008" in out
    assert main(["db", "upgrade", "--db", store_url]) == 0  # idempotent
    capsys.readouterr()

    assert main(["db", "check", "--db", store_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dialect"] == store_url.split(":")[0].split("+")[0]
    assert (report["revision"], report["head"], report["ok"]) == ("0008", "0008", True)
    assert len(report["rows"]) == N_TABLES and set(report["rows"].values()) == {0}
    assert main(["db", "check", "--db", store_url]) == 0
    assert "integrity: ok" in capsys.readouterr().out


def test_check_reports_an_old_revision(store_url, capsys):
    st = open_store(store_url, migrate=False)
    upgrade(st, "0002")
    st.close()
    assert main(["db", "check", "--db", store_url]) == 1
    out = capsys.readouterr().out
    assert "schema revision 0002, this version expects 0008" in out
    assert main(["db", "upgrade", "--db", store_url]) == 0
    assert main(["db", "check", "--db", store_url]) == 0


def test_check_sqlite_foreign_key_check(tmp_path, capsys):
    """A row whose parent is missing (written with foreign keys off, as another tool could)."""
    path = tmp_path / "fk.db"
    open_store(f"sqlite:///{path.as_posix()}").close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO series (id, study_id, series_uid) VALUES (7, 99, '1.2')")
    conn.commit()
    conn.close()
    assert main(["db", "check", "--db", f"sqlite:///{path.as_posix()}"]) == 1
    out = capsys.readouterr().out
    assert "foreign_key_check: series row 7 refers to a missing study row" in out


def test_check_postgresql_missing_foreign_key_and_orphans(postgres_url, capsys):
    """A foreign key dropped (by hand, or a restore that lost it) and an orphan row written
    meanwhile: check names both and exits 1."""
    st = open_store(postgres_url)
    try:
        (fk,) = [
            f["name"]
            for f in inspect(st.engine).get_foreign_keys("series")
            if f["referred_table"] == "study"
        ]
        with st.engine.begin() as c:
            c.execute(text(f'ALTER TABLE series DROP CONSTRAINT "{fk}"'))
            c.execute(text("INSERT INTO series (study_id, series_uid) VALUES (99, '1.2')"))
            c.execute(text("INSERT INTO series (study_id, series_uid) VALUES (98, '1.3')"))
        problems = check_store(st).problems
    finally:
        st.close()
    assert problems == [
        "series(study_id) -> study: foreign key missing",
        "series(study_id) -> study: 2 orphan row(s)",
    ]
    assert main(["db", "check", "--db", postgres_url]) == 1
    assert "2 orphan row(s)" in capsys.readouterr().out


def test_check_postgresql_disabled_triggers_and_unvalidated_key(postgres_url):
    """Foreign keys that exist but do not hold: enforcement switched off on a table, and a
    constraint added NOT VALID over an orphan."""
    st = open_store(postgres_url)
    try:
        with st.engine.begin() as c:
            c.execute(text("ALTER TABLE review DISABLE TRIGGER ALL"))
            c.execute(
                text(
                    "INSERT INTO review (image_id, finding, verdict, reviewer, reviewed_at) "
                    "VALUES (5, 'Pneumothorax', 'present', 'dr', now())"
                )
            )
            c.execute(text("ALTER TABLE review ENABLE TRIGGER ALL"))
            c.execute(text("ALTER TABLE image_note DISABLE TRIGGER ALL"))
        problems = check_store(st).problems
        with st.engine.begin() as c:
            c.execute(text("ALTER TABLE image_note ENABLE TRIGGER ALL"))
            c.execute(
                text(
                    "ALTER TABLE review ADD CONSTRAINT extra FOREIGN KEY (image_id) "
                    "REFERENCES image (id) NOT VALID"
                )
            )
        later = check_store(st).problems
    finally:
        st.close()
    assert problems == [
        "image_note: foreign-key enforcement triggers are disabled",
        "review(image_id) -> image: 1 orphan row(s)",
    ]
    assert later == [
        "foreign key review.extra is not validated (NOT VALID)",
        "review(image_id) -> image: 1 orphan row(s)",
    ]


def test_check_postgresql_sequence_behind_the_ids(postgres_url):
    """Rows copied in with their ids leave the id sequence behind: the next insert would fail,
    and check says so (then, after setval, is content)."""
    st = open_store(postgres_url)
    try:
        with st.engine.begin() as c:
            for i in (1, 2, 5):
                c.execute(
                    text(
                        "INSERT INTO model_version (id, sha256, role, arch, path, first_seen) "
                        "VALUES (:i, :h, 'clip', '', '', now())"
                    ),
                    {"i": i, "h": str(i)},
                )
        problems = check_store(st).problems
        with st.engine.begin() as c:
            c.execute(text("SELECT setval(pg_get_serial_sequence('model_version', 'id'), 5)"))
        later = check_store(st).problems
    finally:
        st.close()
    assert problems == [
        "model_version: id sequence public.model_version_id_seq would next give 1, not above "
        "the largest id 5 (the next insert would fail; fix with SELECT "
        "setval('public.model_version_id_seq', 5))"
    ]
    assert later == []


def test_concurrent_upgrades_on_an_empty_postgresql_database(postgres_url):
    """Four `cxrlt db upgrade` processes started together on an empty database (workstations
    starting at once): all succeed, and there is one schema at head."""
    procs = [
        subprocess.Popen(
            cli_cmd("db", "upgrade", "--db", postgres_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for status, out, err in results:
        assert status == 0, err
        assert "schema at revision 0008" in out
    st = open_store(postgres_url, migrate=False)
    try:
        assert current_revision(st) == "0008"
        with st.engine.connect() as c:
            assert c.scalar(text("SELECT count(*) FROM alembic_version")) == 1
        report = check_store(st)
    finally:
        st.close()
    assert report.ok and len(report.rows) == N_TABLES
