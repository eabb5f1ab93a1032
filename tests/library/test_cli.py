"""cxrlt scan / score-library / worklist end to end (in-process through cli.main), on SQLite and
PostgreSQL (``store_url``) except where a test is about the SQLite file itself."""

from __future__ import annotations

import json
import os

import pytest
from library_helpers import model_args

from cxrlt_desktop.cli import main
from cxrlt_desktop.store import open_store


def test_scan_score_worklist(store_url, tmp_path, write_study, csra_ckpt, capsys, monkeypatch):
    from pydicom.data import get_testdata_file

    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    import shutil

    write_study(tmp_path / "in" / "a", 2, patient_id="PAT-A", study_date="20240101")
    write_study(tmp_path / "in" / "b", 1, patient_id="PAT-B", study_date="20240202")
    shutil.copy(get_testdata_file("RG1_UNCR.dcm", download=False), tmp_path / "in" / "rg1.dcm")
    (tmp_path / "in" / "junk.dcm").write_text("not dicom")
    db = store_url

    assert main(["scan", str(tmp_path / "in"), "--db", db, "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["new"] == 5 and summary["unusable"] == 1
    assert summary["problems"][0]["path"].endswith("junk.dcm")
    assert "files/s" in err and "junk.dcm" in err

    assert main(["score-library", "--db", db, *model_args(csra_ckpt)]) == 0
    _, err = capsys.readouterr()
    assert "images/s" in err and "finished: 4 scored, 0 failed" in err
    # another CPU runtime computes the same model set: nothing to rescore
    assert (
        main(["score-library", "--db", db, *model_args(csra_ckpt), "--cpu-backend", "torch"]) == 0
    )
    _, err = capsys.readouterr()
    assert "finished: 0 scored, 0 failed, 4 already scored" in err

    assert main(["worklist", "--db", db, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3
    keys = {
        "study_uid",
        "patient",
        "study_date",
        "description",
        "n_images",
        "n_scored",
        "n_failed",
        "rare_score",
        "top_findings",
        "status",
    }
    assert all(keys <= set(r) for r in rows)
    assert [r["rare_score"] for r in rows] == sorted((r["rare_score"] for r in rows), reverse=True)
    assert all(r["n_scored"] == r["n_images"] for r in rows)
    assert all(
        set(t) == {"finding", "probability", "threshold"} for r in rows for t in r["top_findings"]
    )
    text = json.dumps(rows)
    assert "PAT-A" not in text and "Doe^Jane" not in text and "patient_name" not in text

    assert main(["worklist", "--db", db, "--json", "--show-phi"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"PAT-A", "PAT-B"} <= {r["patient"] for r in rows} and "patient_name" in rows[0]
    assert main(["worklist", "--db", db, "--json", "--limit", "1"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1

    assert main(["worklist", "--db", db]) == 0
    assert "score" in capsys.readouterr().out


def test_usage_errors(store_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    db = store_url
    assert main(["score-library", "--db", db]) == 2
    assert "no model to score with" in capsys.readouterr().err
    assert main(["worklist", "--db", db, "--finding", "unicorn"]) == 2
    assert "unknown finding 'unicorn'" in capsys.readouterr().err
    assert main(["worklist", "--db", "sqlite://"]) == 2
    assert "in-memory" in capsys.readouterr().err
    assert main(["scan", str(tmp_path / "nope"), "--db", db]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[engine]\nmode = "slow"\n')
    monkeypatch.setenv("CXRLT_CONFIG", str(bad))
    assert main(["worklist", "--db", db]) == 2
    assert "engine.mode" in capsys.readouterr().err


def test_models_from_settings(store_url, tmp_path, write_study, csra_ckpt, capsys, monkeypatch):
    from cxrlt_desktop.settings import Settings

    db = store_url
    cfg = Settings(
        database=db,
        task1_checkpoints=[csra_ckpt],
        task1_arch="convnextv2_atto",
        mode="fast",
        device="cpu",
        batch_size=2,
    )
    monkeypatch.setenv("CXRLT_CONFIG", str(cfg.save(tmp_path / "settings.toml")))
    write_study(tmp_path / "in", 2)
    assert main(["scan", str(tmp_path / "in")]) == 0  # database from the settings
    assert main(["score-library", "--image-size", "64"]) == 0  # models from the settings
    assert "finished: 2 scored" in capsys.readouterr().err


@pytest.mark.parametrize("status", ["unreviewed", "reviewed"])
def test_status_option(store_url, tmp_path, status, capsys, monkeypatch):
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    db = store_url
    open_store(db).close()  # an empty library
    assert main(["worklist", "--db", db, "--status", status, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_named_settings_file_must_exist(store_url, tmp_path, capsys, monkeypatch):
    # An absent user file means defaults, but a mistyped --settings must not silently do so.
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    db = store_url
    missing = tmp_path / "typo.toml"
    for cmd in (["worklist"], ["scan", str(tmp_path)], ["score-library"]):
        assert main([*cmd, "--db", db, "--settings", str(missing)]) == 2
        err = capsys.readouterr().err
        assert f"{missing}: no such settings file (given with --settings)" in err, err
    open_store(db).close()
    assert main(["worklist", "--db", db]) == 0  # the absent user file is still fine


def test_reading_commands_refuse_a_missing_database(tmp_path, csra_ckpt, capsys, monkeypatch):
    # SQLite only: a database file that does not exist (test_store covers PostgreSQL's empty one).
    # A mistyped --db used to create a new empty library and list/score/export nothing, quietly.
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    missing = tmp_path / "typo" / "cxrlt.db"
    db = f"sqlite:///{missing}"
    for cmd in (
        ["worklist", "--db", db],
        ["score-library", "--db", db, *model_args(csra_ckpt)],
        ["export", "--db", db, "--out", str(tmp_path / "out")],
    ):
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err
        assert f"{missing}: the database does not exist" in err, (cmd, err)
    assert not missing.exists() and not missing.parent.exists()
    # scan creates it; then the same commands work
    assert main(["scan", str(tmp_path / "empty"), "--db", db]) == 2  # no such folder
    (tmp_path / "empty").mkdir()
    assert main(["scan", str(tmp_path / "empty"), "--db", db]) == 0
    assert missing.is_file()
    assert main(["worklist", "--db", db]) == 0


def test_reading_commands_refuse_an_empty_server_database(
    postgres_url, tmp_path, csra_ckpt, capsys, monkeypatch
):
    # PostgreSQL's counterpart of a missing file: a mistyped database name is an empty database.
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    for cmd in (
        ["worklist", "--db", postgres_url],
        ["score-library", "--db", postgres_url, *model_args(csra_ckpt)],
        ["export", "--db", postgres_url, "--out", str(tmp_path / "out")],
    ):
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err
        assert "an empty database, not a CXR-LT library" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    assert main(["scan", str(tmp_path / "empty"), "--db", postgres_url]) == 0  # scan creates it
    assert main(["worklist", "--db", postgres_url]) == 0


def test_worklist_show_phi_on_an_ascii_console(store_url, tmp_path, monkeypatch):
    # A non-ASCII PatientID used to abort the text listing with UnicodeEncodeError on a console
    # whose encoding lacks the character (ASCII here; cp1252 for Greek or Cyrillic names).
    import os
    import subprocess

    import numpy as np
    from library_helpers import cli_cmd

    from engine.dicomwrite import write_dicom

    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    px = np.random.default_rng(0).integers(0, 4000, (256, 256)).astype(np.uint16)
    write_dicom(
        tmp_path / "in" / "a.dcm",
        px,
        bits_stored=12,
        patient_id="MÜLLER",
        extra={"SpecificCharacterSet": "ISO_IR 192"},
    )
    db = store_url
    assert main(["scan", str(tmp_path / "in"), "--db", db, "--quiet"]) == 0
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "CXRLT_DATA_DIR": str(tmp_path / "d")}
    proc = subprocess.run(
        cli_cmd("worklist", "--db", db, "--show-phi"), capture_output=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode("ascii", "replace")
    assert "M\\xdcLLER" in proc.stdout.decode("ascii")


def test_database_folder_that_cannot_be_created_is_a_clear_error(tmp_path, capsys, monkeypatch):
    # SQLite only: the folder of a database file.
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (tmp_path / "in").mkdir()
    db = f"sqlite:///{blocker / 'sub' / 'cxrlt.db'}"
    assert main(["scan", str(tmp_path / "in"), "--db", db]) == 2
    err = capsys.readouterr().err
    assert f"{blocker / 'sub'}: cannot create the folder" in err and "Traceback" not in err


# ----------------------------------------------------------------------------------------------
# database files that are not a library, or are damaged (SQLite only: the bytes of the file)


def _scanned_db(tmp_path, write_study) -> tuple[str, object]:
    db = tmp_path / "lib.db"
    write_study(tmp_path / "in", 1)
    assert main(["scan", str(tmp_path / "in"), "--db", f"sqlite:///{db}", "--quiet"]) == 0
    return f"sqlite:///{db}", db


def test_zero_byte_and_foreign_files_are_not_libraries(tmp_path, capsys, monkeypatch):
    import sqlite3

    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    text = tmp_path / "notes.db"
    text.write_text("shopping list: eggs, milk\n" * 40)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE recipes (name TEXT)")
    before = {p: p.read_bytes() for p in (empty, text, other)}
    (tmp_path / "in").mkdir()
    cases = [
        (empty, "not a CXR-LT library (0 bytes)", ("worklist", "export")),
        (text, "bytes that are not an SQLite database", ("worklist", "export", "scan")),
        (other, "an SQLite database of another program", ("worklist", "export", "scan")),
    ]
    for path, message, commands in cases:
        for cmd in commands:
            argv = {
                "worklist": ["worklist", "--db", f"sqlite:///{path}"],
                "export": ["export", "--db", f"sqlite:///{path}", "--out", str(tmp_path / "x")],
                "scan": ["scan", str(tmp_path / "in"), "--db", f"sqlite:///{path}"],
            }[cmd]
            assert main(argv) == 2, (path, cmd)
            err = capsys.readouterr().err
            assert f"{path}: not a CXR-LT library (" in err and message in err, (cmd, err)
            assert "Traceback" not in err
            assert "--db NEW" in err
    # nothing was created in them, and no export folder was made
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "x").exists()
    # A 0-byte file named for a new library is fine to scan into.
    assert main(["scan", str(tmp_path / "in"), "--db", f"sqlite:///{empty}"]) == 0
    assert main(["worklist", "--db", f"sqlite:///{empty}"]) == 0


def _corrupt(db, name: str):
    """A copy of ``db`` with the root page of the table or index ``name`` overwritten."""
    import shutil
    import sqlite3

    copy = db.with_name(f"{name}.db")
    shutil.copy(db, copy)
    with sqlite3.connect(copy) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,))
        root = (root.fetchone() or [1])[0]  # sqlite_master itself: page 1
    start = (root - 1) * page_size + (100 if root == 1 else 0)  # after the file header
    with open(copy, "r+b") as f:
        f.seek(start)
        f.write(b"\xa5" * (root * page_size - start))
    return copy


def test_damaged_database_says_what_to_do(tmp_path, write_study, capsys, monkeypatch):
    import sqlite3

    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    _, db = _scanned_db(tmp_path, write_study)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    capsys.readouterr()
    advice = (
        "is damaged (SQLite says: database disk image is malformed); restore it from a "
        "backup or rescan into a new library with --db NEW"
    )

    def run(argv: list[str], rc: int, path) -> None:  # noqa: ANN001
        assert main(argv) == rc, argv
        err = capsys.readouterr().err
        assert f"{path}: {advice}" in err and "Traceback" not in err, err

    # Damaged where only the query reads (the worklist's index, the verdicts' index).
    bad = _corrupt(db, "ix_study_worklist")
    run(["worklist", "--db", f"sqlite:///{bad}"], 1, bad)
    bad = _corrupt(db, "sqlite_autoindex_review_1")
    run(["export", "--db", f"sqlite:///{bad}", "--out", str(tmp_path / "out")], 1, bad)
    assert not (tmp_path / "out").exists()
    # Damaged in a table (the open's checks read them) and in the schema itself.
    for bad in (_corrupt(db, "study"), _corrupt(db, "sqlite_master")):
        run(["worklist", "--db", f"sqlite:///{bad}"], 2, bad)
        run(["export", "--db", f"sqlite:///{bad}", "--out", str(tmp_path / "o")], 2, bad)


# ----------------------------------------------------------------------------------------------
# odd file names in `cxrlt score`


def test_score_odd_file_names(tmp_path, csra_ckpt, capsys, monkeypatch):
    import csv
    import os

    import cv2
    import numpy as np

    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    folder = tmp_path / "in"
    folder.mkdir()
    ok, png = cv2.imencode(".png", (np.indices((256, 256)).sum(0) % 251).astype(np.uint8))
    assert ok
    names = {
        b"\xff\xfe.png": "\\xff\\xfe.png",  # not UTF-8: its bytes as escapes
        b"=cmd.png": "'=cmd.png",  # a formula: neutralised
        b"-2+3.png": "'-2+3.png",
        b"\x1b[31mred.png": "\\x1b[31mred.png",  # a terminal escape: shown, not run
        b"plain.png": "plain.png",
    }
    for raw in names:
        with open(os.path.join(os.fsencode(folder), raw), "wb") as f:
            f.write(png.tobytes())
    with open(os.path.join(os.fsencode(folder), b"\x1b]0;=bad\xff.png"), "wb") as f:
        f.write(b"not an image")  # rejected: its name is printed and written to errors.csv
    out = tmp_path / "scores.csv"
    assert (
        main(["score", str(folder), "--out", str(out), *model_args(csra_ckpt), "--no-progress"])
        == 0
    )
    err = capsys.readouterr().err
    assert "5 image(s) scored" in err and "1 rejected" in err, err
    assert "\x1b" not in err and "\udcff" not in err and "\\x1b]0;=bad\\xff.png" in err, err
    with open(out, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert {r[0] for r in rows} == set(names.values())
    assert all(0.0 <= float(r[c]) <= 1.0 for r in rows for c in range(1, 31))
    with open(tmp_path / "scores.errors.csv", newline="", encoding="utf-8") as f:
        errors = list(csv.reader(f))
    assert [e[0] for e in errors] == ["ImageID", "\\x1b]0;=bad\\xff.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []

    # An output that cannot be written: a clear one-line error, and no .part file left.
    blocked = tmp_path / "blocked.csv"
    blocked.mkdir()  # a folder where the CSV should go: the final rename fails
    rc = main(
        ["score", str(folder), "--out", str(blocked), *model_args(csra_ckpt), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "cannot write" in err and "Traceback" not in err, err
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_printable_escapes_what_a_terminal_would_run():
    from cxrlt_desktop.commands._text import printable

    assert (
        printable(os.fsdecode(b"a\xffb\x1b[2J\r\n\x7f.png")) == "a\\xffb\\x1b[2J\\x0d\\x0a\\x7f.png"
    )
    assert printable("caf\u00e9 \u202eevil\u2028") == "caf\u00e9 \\u202eevil\\u2028"
    assert printable(b"x\xff") == "x\\xff"
