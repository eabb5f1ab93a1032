"""``cxrlt worker`` and ``cxrlt queue`` end to end: real subprocesses, the real engine with the
tiny random-weight model, a real SQLite file or PostgreSQL database.

Waits are bounded polls of the database (no timing is asserted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from library_helpers import cli_cmd, model_args
from sqlalchemy import func, select

from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.models import AuditEvent, Image, Prediction, ScoringRun
from cxrlt_desktop.store.tables_department import ScoreJob, Worker

WAIT_S = 300  # upper bound of one wait; a healthy run takes seconds


def _env(tmp_path):
    return dict(
        os.environ,
        CXRLT_DATA_DIR=str(tmp_path / "data"),
        CXRLT_CONFIG=str(tmp_path / "none.toml"),
        OMP_NUM_THREADS="1",
    )


def _scan(store, folder):
    for _ in scan(store, [folder]):
        pass


def _per_image(store):
    with store.session() as s, s.begin():
        return dict(
            s.execute(
                select(Prediction.image_id, func.count(Prediction.id)).group_by(Prediction.image_id)
            ).all()
        )


def _wait_for(what, check, proc=None):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(
                f"the worker ended (status {proc.returncode}) before {what}:\n{err[-3000:]}"
            )
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
def test_two_workers_on_postgresql_score_each_image_once(
    postgres_url, tmp_path, write_study, csra_ckpt, capsys
):
    for k in range(4):
        write_study(tmp_path / "in" / f"s{k}", 5, patient_id=f"P{k}")
    store = open_store(postgres_url)
    _scan(store, tmp_path / "in")
    with store.session() as s, s.begin():
        image_ids = sorted(s.scalars(select(Image.id)).all())
    assert len(image_ids) == 20
    args = cli_cmd("worker", "--db", postgres_url, *model_args(csra_ckpt, batch=1))
    procs = [
        subprocess.Popen(
            [*args, "--name", f"w{k}", "--claim-size", "2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(tmp_path),
        )
        for k in range(2)
    ]
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=WAIT_S)
        errs.append(err)
        assert p.returncode == 0, err[-3000:]
    per_image = _per_image(store)
    assert sorted(per_image) == image_ids and set(per_image.values()) == {1}, errs
    with store.session() as s, s.begin():
        assert s.scalar(select(func.count()).where(AuditEvent.action == "score_run_end")) == 1
        run = s.scalars(select(ScoringRun)).one()
        assert run.finished_at is not None and run.n_done == 20 and run.n_failed == 0
        assert {j.state for j in s.scalars(select(ScoreJob)).all()} == {"done"}
        workers = {w.name: w for w in s.scalars(select(Worker)).all()}
    assert set(workers) == {"w0", "w1"}
    assert sum(w.n_done for w in workers.values()) == 20
    assert {w.state for w in workers.values()} == {"stopped"}
    for name, err in zip(("w0", "w1"), errs, strict=True):
        assert f"worker {name}: queue empty: {workers[name].n_done} scored, 0 failed" in err

    # cxrlt queue --json: the counts and the two workers.
    from cxrlt_desktop.cli import main

    assert main(["queue", "--db", postgres_url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    (m,) = status["model_sets"]
    assert (m["queued"], m["claimed"], m["done"], m["failed"]) == (0, 0, 20, 0)
    assert m["model_set_id"] == run.model_set_id and m["open_run_id"] is None
    assert sorted(w["name"] for w in status["workers"]) == ["w0", "w1"]
    assert all(w["state"] == "stopped" and not w["live"] for w in status["workers"])
    assert sum(w["n_done"] for w in status["workers"]) == 20
    # ... and the table for people.
    assert main(["queue", "--db", postgres_url]) == 0
    text = capsys.readouterr().out
    assert "queued" in text and "w0" in text and "w1" in text
    store.close()


@pytest.mark.slow
def test_follow_picks_up_a_job_queued_later_and_stops_on_sigterm(
    store_url, tmp_path, write_study, csra_ckpt
):
    write_study(tmp_path / "first", 2, patient_id="A")
    store = open_store(store_url)
    _scan(store, tmp_path / "first")
    proc = subprocess.Popen(
        [
            *cli_cmd("worker", "--db", store_url, *model_args(csra_ckpt, batch=1)),
            "--follow",
            "--name",
            "follower",
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    try:
        _wait_for("the first two images", lambda: len(_per_image(store)) == 2, proc)

        def run_ended():
            with store.session() as s, s.begin():
                return s.scalar(select(func.count()).where(AuditEvent.action == "score_run_end"))

        # Idle, the worker completes the run, and keeps waiting.
        _wait_for("the end of the first run", lambda: run_ended() == 1, proc)
        assert proc.poll() is None
        # A new study arrives: `cxrlt scan` queues it for the model set whose worker is live.
        write_study(tmp_path / "second", 1, patient_id="B")
        out = subprocess.run(
            cli_cmd("scan", str(tmp_path / "second"), "--db", store_url, "--json"),
            capture_output=True,
            text=True,
            env=_env(tmp_path),
            timeout=WAIT_S,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["queued"] == 1
        _wait_for("the image queued later", lambda: len(_per_image(store)) == 3, proc)
        _wait_for("the end of the second run", lambda: run_ended() == 2, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "worker follower: stopped: 3 scored, 0 failed" in err
    assert set(_per_image(store).values()) == {1}
    with store.session() as s, s.begin():
        assert s.get(Worker, "follower").state == "stopped"
    store.close()


@pytest.mark.slow
def test_sigterm_finishes_the_batch_in_flight_and_gives_the_rest_back(
    store_url, tmp_path, write_study, csra_ckpt
):
    from cxrlt_desktop.store.models import ScoreAttempt

    for k in range(8):
        write_study(tmp_path / "in" / f"s{k}", 5, patient_id=f"P{k}")
    store = open_store(store_url)
    _scan(store, tmp_path / "in")
    proc = subprocess.Popen(
        [
            *cli_cmd("worker", "--db", store_url, *model_args(csra_ckpt, batch=1)),
            "--name",
            "stopping",
            "--claim-size",
            "40",  # one claim: the stop lands inside it
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    try:
        _wait_for("a first scored image", lambda: len(_per_image(store)) >= 1, proc)
        assert proc.poll() is None, "the worker finished before the stop: make the library larger"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "stopping after the batch in flight" in err
    scored = len(_per_image(store))
    assert f"worker stopping: stopped: {scored} scored, 0 failed" in err
    assert 0 < scored < 40
    with store.session() as s, s.begin():
        states = dict(
            s.execute(select(ScoreJob.state, func.count()).group_by(ScoreJob.state)).all()
        )
        # Nothing stays claimed: what was not written went back to the queue, and the images
        # decoded ahead are not counted as interrupted.
        assert states == {"done": scored, "queued": 40 - scored}
        assert s.scalar(select(func.count()).select_from(ScoreAttempt)) == 0
        assert s.get(Worker, "stopping").state == "stopped"
        assert s.scalars(select(ScoringRun.finished_at)).one() is None  # the run goes on
    store.close()


@pytest.mark.parametrize("command", ["worker", "score-library"])
def test_commands_read_through_the_settings_path_map(
    command, tmp_path, write_study, csra_ckpt, monkeypatch, capsys
):
    """Scanned under one prefix, read under another: the settings file's [paths] map."""
    import shutil

    from cxrlt_desktop.cli import main

    monkeypatch.setenv("CXRLT_DATA_DIR", str(tmp_path / "data"))
    write_study(tmp_path / "scanned_at" / "s1", 3, patient_id="A")
    url = f"sqlite:///{tmp_path / 'lib.db'}"
    store = open_store(url)
    _scan(store, tmp_path / "scanned_at")
    shutil.move(tmp_path / "scanned_at", tmp_path / "mounted_at")
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f'[paths]\n"{tmp_path / "scanned_at"}" = "{tmp_path / "mounted_at"}"\n', encoding="utf-8"
    )
    args = [command, "--db", url, "--settings", str(settings), *model_args(csra_ckpt)]
    assert main([*args, "--no-progress"]) == 0
    err = capsys.readouterr().err
    per_image = _per_image(store)
    assert len(per_image) == 3 and set(per_image.values()) == {1}, err
    store.close()
