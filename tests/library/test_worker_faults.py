"""Exactly once under faults: ``cxrlt worker`` processes killed with ``kill -9`` at random
moments, and a worker frozen (SIGSTOP) past its lease.

Everything is real: the command in subprocesses (``python -m cxrlt_desktop worker``), the engine
with the tiny random-weight convnextv2_atto model at 64 px in fast mode, a PostgreSQL database of
its own (``postgres_url``) or a SQLite file. The right answers come from outside the workers:
each image's probabilities are computed again in this process with the engine's ``Predictor``
(one image at a time), the rare-finding score and the findings above threshold of each study
from those probabilities with the default thresholds, by hand.

Every wait is a bounded poll of the database or of a process (no sleep stands in for an
event); the random sleeps before a kill only choose the moment of the fault. No timing is
asserted.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from library_helpers import cli_cmd, model_args
from sqlalchemy import func, make_url, select, text

from cxrlt_desktop.library import queue as jobq
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.scoring import register_model_set, retry_failed
from cxrlt_desktop.library.triage import _study_summaries
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.check import check_store
from cxrlt_desktop.store.models import (
    AuditEvent,
    Image,
    Prediction,
    ScoreAttempt,
    ScoreFailure,
    ScoringRun,
    Series,
    Study,
)
from cxrlt_desktop.store.tables_department import ScoreJob, Worker
from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS, RARE_CLASSES

WAIT_S = 300  # upper bound of one wait; a healthy run takes seconds
POLL_S = 0.1
DISCARDED = re.compile(
    r"worker (\S+): queue empty: (\d+) scored, (\d+) failed(?:, (\d+) discarded)?"
)


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ,
        CXRLT_DATA_DIR=str(tmp_path / "data"),
        CXRLT_CONFIG=str(tmp_path / "none.toml"),
        OMP_NUM_THREADS="1",
    )


_STARTED: list[WorkerProc] = []  # every worker a test started, killed at its teardown


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test():
    yield
    while _STARTED:
        w = _STARTED.pop()
        if w.running():  # a failed test left it (--follow workers never end by themselves)
            w.p.kill()
            w.p.wait(timeout=WAIT_S)


class WorkerProc:
    """One start of ``cxrlt worker``; its stderr goes to a file (read when it ends)."""

    def __init__(self, args: list[str], name: str, log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        with open(log, "w") as err:
            self.p = subprocess.Popen(
                [*args, "--name", name],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        _STARTED.append(self)

    def running(self) -> bool:
        return self.p.poll() is None

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def finish(self) -> str:
        """Wait for the end; it must exit 0. Returns its stderr."""
        rc = self.p.wait(timeout=WAIT_S)
        err = self.stderr()
        assert rc == 0, f"worker {self.name} exited {rc}:\n{err[-3000:]}"
        return err

    def kill(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=WAIT_S)


def _wait_for(what: str, check, procs=()) -> None:  # noqa: ANN001
    """Poll ``check`` until it is true; fail after WAIT_S, or when a process in ``procs``
    ended with an error meanwhile."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        for w in procs:
            rc = w.p.poll()
            if rc not in (None, 0):
                pytest.fail(f"worker {w.name} exited {rc} before {what}:\n{w.stderr()[-3000:]}")
        time.sleep(POLL_S)
    pytest.fail(f"timed out waiting for {what}")


def _scan(store, folder: Path) -> None:  # noqa: ANN001
    for _ in scan(store, [folder]):
        pass


def _held_by(store, name: str) -> set[int]:  # noqa: ANN001
    """Ids of the jobs ``name`` holds (claimed by it)."""
    with store.session() as s, s.begin():
        return set(
            s.scalars(
                select(ScoreJob.id).where(ScoreJob.worker == name, ScoreJob.state == "claimed")
            ).all()
        )


def _worker_done(store, name: str) -> int:  # noqa: ANN001
    with store.session() as s, s.begin():
        return int(s.scalar(select(Worker.n_done).where(Worker.name == name)) or 0)


def _predictions_per_image(store) -> dict[tuple[int, int], int]:  # noqa: ANN001
    """(image id, model set id) -> number of predictions."""
    with store.session() as s, s.begin():
        rows = s.execute(
            select(
                Prediction.image_id, Prediction.model_set_id, func.count(Prediction.id)
            ).group_by(Prediction.image_id, Prediction.model_set_id)
        ).all()
    return {(i, m): n for i, m, n in rows}


def _open_jobs(store) -> int:  # noqa: ANN001
    with store.session() as s, s.begin():
        return int(
            s.scalar(
                select(func.count(ScoreJob.id)).where(ScoreJob.state.in_(("queued", "claimed")))
            )
        )


def _run_ends(store) -> int:  # noqa: ANN001
    with store.session() as s, s.begin():
        return int(s.scalar(select(func.count()).where(AuditEvent.action == "score_run_end")))


def _hand_rare(p: np.ndarray) -> float | None:
    """max over the rare classes of p / t (default thresholds), by a plain loop."""
    best = None
    for k, c in enumerate(ALL_CLASSES):
        if c in RARE_CLASSES and not np.isnan(p[k]):
            r = float(p[k]) / DEFAULT_THRESHOLDS[c]
            best = r if best is None or r > best else best
    return best


def _reference(store, predictor) -> dict[int, np.ndarray]:  # noqa: ANN001
    """Each usable image's probabilities computed here, one image at a time."""
    from engine.imageio import read_source

    with store.session() as s, s.begin():
        paths = dict(s.execute(select(Image.id, Image.path).where(Image.usable.is_(True))).all())
    return {iid: predictor.predict_arrays([read_source(p)]).probs[0] for iid, p in paths.items()}


def _check_exactly_once(store, predictor, n_images: int) -> dict[int, int]:  # noqa: ANN001
    """What every fault test ends with: one prediction per usable image and model set, equal to
    an independent computation; every study summary equal to a recompute (the library's, and
    the rare score and findings above threshold by hand); counters that add up; a store that
    passes ``cxrlt db check``. Returns the workers' ``n_done`` by name."""
    ref = _reference(store, predictor)
    assert len(ref) == n_images
    per = _predictions_per_image(store)
    with store.session() as s, s.begin():
        (ms,) = s.scalars(select(ScoringRun.model_set_id).distinct()).all()
    assert per == {(iid, ms): 1 for iid in ref}, "an image without or with two predictions"
    with store.session() as s, s.begin():
        rows = s.execute(
            select(Image.id, Prediction, Series.study_id)
            .join(Prediction, Prediction.id == Image.current_prediction_id)
            .join(Series, Series.id == Image.series_id)
        ).all()
        assert len(rows) == n_images  # every image shows its prediction
        by_study: dict[int, list[np.ndarray]] = {}
        for iid, pred, study_id in rows:
            # batched vs one-image compute differ by float32 rounding (engine bound: 1e-5)
            np.testing.assert_allclose(pred.probabilities(), ref[iid], rtol=0, atol=1e-5)
            by_study.setdefault(study_id, []).append(pred.probabilities())
        studies = {st.id: st for st in s.scalars(select(Study)).all()}
        assert set(studies) == set(by_study)
        fresh = {d["id"]: d for d in _study_summaries(s, sorted(studies))}
        for sid, st in studies.items():
            want = fresh[sid]
            for key, value in want.items():
                got = getattr(st, key)
                if isinstance(value, float):
                    assert got == pytest.approx(value, rel=1e-12), (sid, key)
                else:
                    assert got == value, (sid, key)
            probs = by_study[sid]
            assert st.n_images == st.n_scored == len(probs) and st.n_failed == 0
            assert st.rare_score == pytest.approx(max(_hand_rare(p) for p in probs), rel=1e-6)
            above = {
                c
                for p in probs
                for k, c in enumerate(ALL_CLASSES)
                if c != "Normal" and p[k] >= DEFAULT_THRESHOLDS[c]
            }
            assert st.n_above == len(above), sid
        run_done = s.scalar(select(func.sum(ScoringRun.n_done)))
        workers = dict(s.execute(select(Worker.name, Worker.n_done)).all())
        assert s.scalar(select(func.count(ScoreAttempt.image_id))) == 0
        assert s.scalar(select(func.count(ScoreFailure.image_id))) == 0
        assert {j for (j,) in s.execute(select(ScoreJob.state).distinct())} == {"done"}
        assert s.scalar(select(func.count(ScoreJob.id))) == n_images
    # The counters are incremented in the batch's transaction: a kill loses none, counts none twice.
    assert run_done == n_images
    assert sum(workers.values()) == n_images, workers
    assert check_store(store).problems == []
    return workers


# ------------------------------------------------------------------------------------ kill -9
@pytest.mark.slow
def test_workers_killed_at_random_moments_score_each_image_exactly_once(
    store_url, tmp_path, write_study, csra_ckpt, predictor
):
    """4 workers on PostgreSQL (2 on SQLite), all with --follow; one of them is killed with
    kill -9 at random moments (while it loads, while it holds claimed jobs, right after a
    committed batch) and started again: under its own name, under a new name, or only after
    the others took its jobs once its lease expired. New studies arrive in waves while the
    victim is up, so there is work to interrupt whatever the machine's speed; one job held by
    this test (a slow worker) keeps the run open until the end. Then every image has exactly
    one prediction, equal to an independent computation, the summaries equal a recompute,
    the counters add up and one run end is recorded."""
    postgresql = store_url.startswith("postgresql")
    n_workers = 4 if postgresql else 2
    rng = random.Random(20261206 + n_workers)
    store = open_store(store_url)
    studies = iter(range(1000))

    def add_wave(n_studies: int) -> None:
        """New studies of 4 images scanned and queued (what `cxrlt scan` does)."""
        folder = tmp_path / "in" / f"wave{next(studies)}"
        for _ in range(n_studies):
            write_study(folder / f"s{next(studies)}", 4, patient_id=f"P{next(studies)}")
        _scan(store, folder)
        jobq.enqueue(store, ms)

    # The model set of the workers' configuration (the test's predictor computes the same),
    # its first studies, and the job a slow worker (this test) holds until the end.
    ms, _spec = store.write(lambda s: register_model_set(s, predictor))
    add_wave(5)
    (sentinel,) = jobq.claim(store, "slow-holder", 1, model_set_id=ms, lease_s=3600)
    env = _env(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    args = [
        *cli_cmd("worker", "--db", store_url, *model_args(csra_ckpt, batch=2)),
        "--claim-size",
        "4",
        "--lease",
        "3",
        "--no-progress",
        "--follow",
    ]
    others = [WorkerProc(args, f"w{k}", logs / f"w{k}.err", env) for k in range(1, n_workers)]
    starts = 0

    def start_victim(name: str) -> WorkerProc:
        nonlocal starts
        starts += 1
        return WorkerProc(args, name, logs / f"victim-{starts}.err", env)

    def started(w: WorkerProc) -> bool:
        """The worker has registered, queued and announced itself (its heartbeat row)."""
        with store.session() as s, s.begin():
            row = s.execute(
                select(Worker.pid, Worker.model_set_id).where(Worker.name == w.name)
            ).one_or_none()
        return row is not None and row[0] == w.p.pid and row[1] == ms

    victim = start_victim("victim")
    # The first kill falls right after a committed batch; then the others in a random order.
    schedule = ["holding", "loading", "after_batch", "holding", "after_batch", "loading"]
    rng.shuffle(schedule)
    schedule.insert(0, "after_batch")
    kills: list[tuple[str, int, str]] = []  # (moment, jobs held when killed, restart)
    for moment in schedule:
        if moment == "loading":  # imports, the model, the start's queries
            time.sleep(rng.uniform(0.1, 4.0))
        else:
            _wait_for("the victim's start", lambda w=victim: started(w), [victim, *others])
            before = _worker_done(store, victim.name)

            def ready(moment=moment, before=before, name=victim.name) -> bool:
                if moment == "holding":
                    return bool(_held_by(store, name))
                return _worker_done(store, name) > before

            # The others may take a whole wave before the victim, idle and woken by the change
            # feed (SQLite: polled every 0.5 s), claims: another one. A wave of 40 images
            # outlasts that wake-up (16 were scored by one worker within it on an idle machine).
            for _wave in range(10):
                add_wave(10)
                _wait_for(
                    f"the victim's moment {moment!r} or the wave scored",
                    lambda: ready() or _open_jobs(store) == 1,
                    [victim, *others],
                )
                if ready():
                    break
            else:
                pytest.fail(f"the victim took no job of 10 waves:\n{victim.stderr()[-3000:]}")
            time.sleep(rng.uniform(0.0, 0.3))
        assert victim.running(), victim.stderr()[-3000:]
        victim.kill()
        held = _held_by(store, victim.name)
        restart = rng.choice(["same name", "new name", "after the lease"])
        kills.append((moment, len(held), restart))
        # Never two predictions of an image, at any moment.
        assert set(_predictions_per_image(store).values()) <= {1}
        if restart == "after the lease" and held:
            # Nobody takes the dead worker's claims back at once: the running workers claim
            # them when its lease has expired.
            _wait_for(
                "the dead worker's jobs claimed by the others",
                lambda name=victim.name: not _held_by(store, name),
                others,
            )
        name = f"victim{len(kills)}" if restart == "new name" else victim.name
        victim = start_victim(name)

    # The slow holder gives its job back; the workers score what is left and the run ends.
    add_wave(2)
    assert jobq.release(store, "slow-holder", [sentinel.id]) == 1
    workers = [*others, victim]
    # (SIGTERM stops a worker cleanly once it has installed its handler, before its start.)
    _wait_for("the last victim's start", lambda w=victim: started(w), workers)
    _wait_for("the queue scored", lambda: _open_jobs(store) == 0, workers)
    _wait_for("the end of the run", lambda: _run_ends(store) >= 1, workers)
    for w in workers:
        w.p.send_signal(signal.SIGTERM)
    errs = [w.finish() for w in workers]
    assert sum(1 for _m, held, _r in kills if held) >= 2, kills
    assert _run_ends(store) == 1, errs

    # An image whose scoring was interrupted three times (in flight in three killed starts) is
    # given up by design; retrying it is the user's way back, and scores it once more.
    with store.session() as s, s.begin():
        reasons = s.scalars(select(ScoreFailure.reason)).all()
        n_images = s.scalar(select(func.count(Image.id)).where(Image.usable.is_(True)))
    assert all(r.startswith("scoring was interrupted") for r in reasons), reasons
    if reasons:
        assert retry_failed(store) == len(reasons)
        final = [a for a in args if a != "--follow"]
        WorkerProc(final, "final", logs / "final.err", env).finish()
        assert _run_ends(store) == 2
    done_by = _check_exactly_once(store, predictor, n_images)
    assert set(done_by) >= {"victim", *(w.name for w in others)}
    store.close()


# ------------------------------------------------------------------------------- frozen worker
def _in_transaction(url: str) -> bool:
    """Whether a connection other than this check's is inside a write transaction: on
    PostgreSQL any backend of the database with an open transaction, on SQLite the file's
    write lock held."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        con = sqlite3.connect(u.database, timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return True
        else:
            con.execute("ROLLBACK")
            return False
        finally:
            con.close()
    from sqlalchemy import create_engine

    engine = create_engine(u, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            n = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
                )
            ).scalar()
        return bool(n)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_frozen_worker_gets_none_of_its_late_writes_accepted(
    store_url, tmp_path, write_study, csra_ckpt, predictor
):
    """A worker is frozen (SIGSTOP) while it holds claimed jobs, outside any transaction; a
    second worker takes its jobs once the lease expired and scores everything; the frozen one
    is then woken (SIGCONT), computes the jobs it held and writes them: every one of those
    results is discarded (counted as lost on its stderr), its counters do not move, and no image
    ends with two predictions."""
    for k in range(6):
        write_study(tmp_path / "in" / f"s{k}", 4, patient_id=f"F{k}")
    n_images = 24
    store = open_store(store_url)
    _scan(store, tmp_path / "in")
    env = _env(tmp_path)
    base = [
        *cli_cmd("worker", "--db", store_url, *model_args(csra_ckpt, batch=1)),
        "--lease",
        "3",
        "--no-progress",
    ]
    frozen = WorkerProc([*base, "--claim-size", "8"], "frozen", tmp_path / "frozen.err", env)
    thawed = False
    other = None
    try:
        # Freeze it once a batch is written and it holds jobs, outside any transaction (a
        # process frozen inside one would hold its locks: another question).
        _wait_for(
            "the worker's first batch, with jobs in hand",
            lambda: _worker_done(store, "frozen") >= 1 and len(_held_by(store, "frozen")) >= 2,
            [frozen],
        )
        for _ in range(200):
            frozen.p.send_signal(signal.SIGSTOP)
            if not _in_transaction(store_url):
                break
            frozen.p.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        else:
            pytest.fail("the worker never stopped outside a transaction")
        held = _held_by(store, "frozen")
        done_when_frozen = _worker_done(store, "frozen")
        assert held and frozen.running()
        # The other worker scores the queue and, past the lease, the frozen worker's jobs.
        other = WorkerProc([*base, "--follow"], "other", tmp_path / "other.err", env)

        def all_scored() -> bool:
            with store.session() as s, s.begin():
                states = dict(
                    s.execute(
                        select(ScoreJob.id, ScoreJob.state).where(ScoreJob.id.in_(held))
                    ).all()
                )
            return _open_jobs(store) == 0 and set(states.values()) == {"done"}

        _wait_for("every job done by the other worker", all_scored, [other])
        with store.session() as s, s.begin():
            owners = set(s.scalars(select(ScoreJob.worker).where(ScoreJob.id.in_(held))).all())
        assert owners == {"other"}
        _wait_for("the end of the run", lambda: _run_ends(store) >= 1, [other])
        assert _run_ends(store) == 1
        before = _predictions_per_image(store)
        assert set(before.values()) == {1} and len(before) == n_images

        # Wake the frozen worker: it computes the jobs it held and tries to write them.
        frozen.p.send_signal(signal.SIGCONT)
        thawed = True
        err = frozen.finish()
    finally:
        if not thawed:
            frozen.p.send_signal(signal.SIGCONT)
        for w in (frozen, other):
            if w is not None and w.running():
                w.p.send_signal(signal.SIGTERM)
                w.p.wait(timeout=WAIT_S)
    assert other.p.returncode == 0, other.stderr()[-3000:]
    m = DISCARDED.search(err)
    assert m and m.group(1) == "frozen", err[-3000:]
    scored_late, discarded = int(m.group(2)) - done_when_frozen, int(m.group(4) or 0)
    # Every job it held was computed after it woke, and every result was refused.
    assert discarded == len(held), err[-3000:]
    assert scored_late == 0
    assert _worker_done(store, "frozen") == done_when_frozen
    assert _predictions_per_image(store) == before
    assert _run_ends(store) == 1
    workers = _check_exactly_once(store, predictor, n_images)
    assert workers == {"frozen": done_when_frozen, "other": n_images - done_when_frozen}
    store.close()
