"""The scoring work queue on SQLite and PostgreSQL: enqueue, claim, leases, the write gate,
counters, the end of a run, the status, the path map.

Everything runs on a real store (``any_store``: a SQLite file and a PostgreSQL database of its
own); concurrent claimers are threads with engines of their own, so on PostgreSQL they meet
real row locks and ``SKIP LOCKED``. The scoring tests use the real engine with the tiny
random-weight model of the session.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import shutil
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, insert, select, update

from cxrlt_desktop.library import queue as jobq
from cxrlt_desktop.library import scoring
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.library.triage import threshold_vector
from cxrlt_desktop.library.worker import ScoringWorker
from cxrlt_desktop.settings import Settings
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.models import (
    AuditEvent,
    Image,
    ModelSet,
    Prediction,
    ScoreFailure,
    ScoringRun,
    Study,
    utcnow,
)
from cxrlt_desktop.store.tables_department import ScoreJob, Worker


def _model_set(store) -> int:
    def work(s):
        ms = ModelSet(key=secrets.token_hex(32), description={})
        s.add(ms)
        s.flush()
        return ms.id

    return store.write(work)


def _images(store, n: int, tag: str = "a") -> list[int]:
    """n image rows (no files: the queue itself never reads them)."""
    rows = [
        {
            "path": f"/nowhere/{tag}/{i:05d}.dcm",
            "size": 1,
            "mtime": 0.0,
            "version": 1,
            "usable": True,
            "missing": False,
            "is_dicom": True,
            "warnings": [],
            "meta": {},
            "scanned_at": utcnow(),
        }
        for i in range(n)
    ]
    return sorted(
        store.write(lambda s: list(s.scalars(insert(Image).returning(Image.id), rows).all()))
    )


def _jobs(store, **where):
    with store.session() as s, s.begin():
        q = select(ScoreJob)
        for k, v in where.items():
            q = q.where(getattr(ScoreJob, k) == v)
        return s.scalars(q.order_by(ScoreJob.id)).all()


def _scan(store, *folders):
    for _ in scan(store, folders):
        pass


# ---------------------------------------------------------------------------------- enqueue
def test_enqueue_idempotent_chunked_and_only_pending(any_store, monkeypatch):
    store = any_store
    ms = _model_set(store)
    ids = _images(store, 23)
    # Not pending: a missing file, an unusable one, one given up after two failures.
    missing, unusable, given_up = ids[3], ids[7], ids[11]
    store.write(lambda s: s.execute(update(Image).where(Image.id == missing).values(missing=True)))
    store.write(lambda s: s.execute(update(Image).where(Image.id == unusable).values(usable=False)))
    store.write(
        lambda s: s.add(
            ScoreFailure(
                image_id=given_up, model_set_id=ms, image_version=1, reason="bad", attempts=2
            )
        )
    )
    writes = []
    real = type(store).write

    def counting(self, fn, **kw):
        writes.append(1)
        return real(self, fn, **kw)

    monkeypatch.setattr(type(store), "write", counting)
    assert jobq.enqueue(store, ms, chunk=5) == 20
    # 23 consecutive ids in chunks of 5 ids: 5 transactions, never the whole backlog at once
    assert len(writes) == math.ceil(23 / 5)
    monkeypatch.undo()
    assert jobq.enqueue(store, ms, chunk=5) == 0  # idempotent
    assert jobq.enqueue(store, ms, image_ids=ids, chunk=4) == 0
    jobs = _jobs(store)
    assert sorted(j.image_id for j in jobs) == sorted(set(ids) - {missing, unusable, given_up})
    assert {(j.state, j.kind, j.attempts, j.model_set_id) for j in jobs} == {
        ("queued", "paper", 0, ms)
    }
    # A new file version is new work.
    store.write(lambda s: s.execute(update(Image).where(Image.id == ids[0]).values(version=2)))
    assert jobq.enqueue(store, ms, image_ids=[ids[0], ids[1]]) == 1


def test_workers_starting_at_once_queue_each_image_once(any_store):
    store = any_store
    ms = _model_set(store)
    ids = _images(store, 300)
    stores = [open_store(store.url) for _ in range(4)]
    got: list[int] = []
    errors: list[BaseException] = []
    go = threading.Barrier(4)

    def one(st):
        try:
            go.wait()
            got.append(jobq.enqueue(st, ms, chunk=37))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for st in stores:
        st.close()
    assert not errors, errors
    assert sum(got) == 300
    per_image = Counter(j.image_id for j in _jobs(store))
    assert sorted(per_image) == ids and set(per_image.values()) == {1}


def test_enqueue_for_active_sets(any_store):
    store = any_store
    running, idle, heard = _model_set(store), _model_set(store), _model_set(store)
    ids = _images(store, 4)
    assert jobq.enqueue_for_active_sets(store, ids) == 0  # nothing is being scored
    store.write(lambda s: s.add(ScoringRun(model_set_id=running, started_at=utcnow())))
    jobq.heartbeat(store, "gpu1:7", model_set_id=heard, starting=True)
    assert jobq.active_model_sets(store) == sorted([running, heard])
    assert jobq.enqueue_for_active_sets(store, ids[:3]) == 6
    assert {(j.model_set_id, j.image_id) for j in _jobs(store)} == {
        (m, i) for m in (running, heard) for i in ids[:3]
    }
    assert not _jobs(store, model_set_id=idle)
    # A worker silent for longer than ACTIVE_S no longer makes its model set active.
    old = utcnow().replace(year=2000)
    store.write(
        lambda s: s.execute(
            update(Worker).where(Worker.name == "gpu1:7").values(last_heartbeat=old)
        )
    )
    assert jobq.active_model_sets(store) == [running]


# ---------------------------------------------------------------------------------- claims
def test_claim_order_priority_then_age(any_store):
    store = any_store
    ms = _model_set(store)
    ids = _images(store, 6)
    jobq.enqueue(store, ms, image_ids=ids[:4])
    jobq.enqueue(store, ms, image_ids=[ids[4]], priority=2.0)
    jobq.enqueue(store, ms, image_ids=[ids[5]], priority=1.0)
    first = jobq.claim(store, "w1", 3, model_set_id=ms)
    assert [j.image_id for j in first] == [ids[4], ids[5], ids[0]]
    assert all(j.attempts == 1 and j.model_set_id == ms for j in first)
    second = jobq.claim(store, "w2", 10, model_set_id=ms)
    assert [j.image_id for j in second] == ids[1:4]
    assert jobq.claim(store, "w3", 10, model_set_id=ms) == []
    with store.session() as s, s.begin():
        by_worker = dict(
            s.execute(select(ScoreJob.worker, func.count()).group_by(ScoreJob.worker)).all()
        )
    assert by_worker == {"w1": 3, "w2": 3}


def test_concurrent_claimers_never_get_the_same_job(any_store):
    store = any_store
    ms = _model_set(store)
    n_jobs = 400
    jobq.enqueue(store, ms, image_ids=_images(store, n_jobs))
    stores = [open_store(store.url) for _ in range(4)]
    claimed: dict[str, list[int]] = {}
    sizes: list[int] = []
    errors: list[BaseException] = []
    go = threading.Barrier(len(stores))

    def worker(k, st):
        name = f"w{k}"
        mine: list[int] = []
        try:
            go.wait()
            while True:
                jobs = jobq.claim(st, name, 7, model_set_id=ms)
                if not jobs:
                    break
                sizes.append(len(jobs))
                mine.extend(j.id for j in jobs)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        claimed[name] = mine

    threads = [threading.Thread(target=worker, args=(k, st)) for k, st in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for st in stores:
        st.close()
    assert not errors, errors
    every = [i for ids in claimed.values() for i in ids]
    assert len(every) == len(set(every)) == n_jobs  # each job exactly once
    assert max(sizes) <= 7  # a claim never takes more than it asked for
    with store.session() as s, s.begin():
        rows = dict(
            s.execute(
                select(ScoreJob.worker, func.count())
                .where(ScoreJob.state == "claimed")
                .group_by(ScoreJob.worker)
            ).all()
        )
    assert rows == {k: len(v) for k, v in claimed.items() if v}


def test_expired_lease_is_claimed_again_and_live_one_is_not(any_store):
    store = any_store
    ms = _model_set(store)
    ids = _images(store, 3)
    jobq.enqueue(store, ms, image_ids=ids)
    held = jobq.claim(store, "slow", 2, model_set_id=ms, lease_s=0.3)
    live = jobq.claim(store, "steady", 1, model_set_id=ms, lease_s=600)
    assert len(held) == 2 and len(live) == 1
    assert jobq.claim(store, "other", 5, model_set_id=ms) == []  # all leases live
    time.sleep(1.0)
    again = jobq.claim(store, "other", 5, model_set_id=ms)
    assert sorted(j.id for j in again) == sorted(j.id for j in held)  # the expired two only
    assert {j.attempts for j in again} == {2}
    assert jobq.extend_lease(store, "slow", [j.id for j in held]) == 0  # no longer its
    assert jobq.extend_lease(store, "steady", [live[0].id], 600) == 1


def test_release_stale_takes_back_own_and_dead_claims(any_store):
    import subprocess
    import sys

    store = any_store
    ms = _model_set(store)
    jobq.enqueue(store, ms, image_ids=_images(store, 6))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)  # a process of this host that has ended
    jobq.heartbeat(store, "gone", model_set_id=ms, starting=True, pid=dead_pid)
    jobq.heartbeat(store, "alive", model_set_id=ms, starting=True)  # this process
    jobq.claim(store, "gone", 2, model_set_id=ms, lease_s=600)
    jobq.claim(store, "alive", 2, model_set_id=ms, lease_s=600)
    jobq.claim(store, "me", 2, model_set_id=ms, lease_s=600)
    assert jobq.release_stale(store, "me") == 4  # its own two and the dead process's two
    assert Counter(j.worker for j in _jobs(store, state="claimed")) == {"alive": 2}
    with store.session() as s, s.begin():
        assert s.get(Worker, "gone").state == "lost"
        assert s.get(Worker, "alive").state == "running"


# ---------------------------------------------------------------------------------- writing
@pytest.fixture
def scanned(any_store, tmp_path, write_study):
    """Six real images in two studies, scanned."""
    write_study(tmp_path / "lib" / "s1", 3, patient_id="A")
    write_study(tmp_path / "lib" / "s2", 3, patient_id="B")
    _scan(any_store, tmp_path / "lib")
    return any_store


def _register(store, predictor):
    return store.write(lambda s: scoring.register_model_set(s, predictor))


def _items(store, jobs):
    from cxrlt_desktop.store.models import Series

    with store.session() as s, s.begin():
        rows = {
            r[0]: r
            for r in s.execute(
                select(Image.id, Image.path, Image.version, Series.study_id).join(
                    Series, Series.id == Image.series_id
                )
            ).all()
        }
    return [scoring._QueueItem(*rows[j.image_id], j.id) for j in jobs]


def _results(predictor, items):
    return list(zip(items, predictor.predict_paths([q.path for q in items]), strict=True))


def _write(store, predictor, ms, run_id, worker, results):
    return store.write(
        lambda s: scoring._write_batch(
            s,
            results,
            model_set_id=ms,
            run_id=run_id,
            thresholds=threshold_vector(None),
            expected=scoring.expected_columns(predictor),
            worker=worker,
        )
    )


def _predictions_per_image(store):
    with store.session() as s, s.begin():
        return dict(
            s.execute(
                select(Prediction.image_id, func.count(Prediction.id)).group_by(Prediction.image_id)
            ).all()
        )


def test_late_write_of_a_lost_lease_is_refused(scanned, predictor):
    store = scanned
    ms, spec = _register(store, predictor)
    assert jobq.enqueue(store, ms) == 6
    run_id = store.write(lambda s: scoring.ensure_run(s, ms, spec)[0])
    frozen = jobq.claim(store, "frozen", 6, model_set_id=ms, lease_s=0.3)
    results = _results(predictor, _items(store, frozen))  # computed, not yet written
    time.sleep(1.0)  # ... and the lease runs out
    taken = jobq.claim(store, "rescuer", 3, model_set_id=ms, lease_s=600)
    assert len(taken) == 3
    # The rescuer writes its three; the frozen worker wakes up and writes all six.
    out = _write(store, predictor, ms, run_id, "rescuer", _results(predictor, _items(store, taken)))
    assert out.n_ok == 3 and not out.lost
    late = _write(store, predictor, ms, run_id, "frozen", results)
    taken_ids = {j.id for j in taken}
    # Its three expired-but-untaken jobs are still claimed by it: accepted. The other three
    # were taken: discarded, counted as lost.
    assert sorted(q.job_id for q in late.lost) == sorted(taken_ids)
    assert late.n_ok == 3
    per_image = _predictions_per_image(store)
    assert len(per_image) == 6 and set(per_image.values()) == {1}
    with store.session() as s, s.begin():
        run = s.get(ScoringRun, run_id)
        assert (run.n_done, run.n_failed) == (6, 0)  # counted once per job
        assert {j.state for j in s.scalars(select(ScoreJob)).all()} == {"done"}


def test_counters_add_up_in_sql(scanned, predictor):
    store = scanned
    ms, spec = _register(store, predictor)
    jobq.enqueue(store, ms)
    run_id = store.write(lambda s: scoring.ensure_run(s, ms, spec)[0])
    for name in ("w1", "w2"):
        jobq.heartbeat(store, name, model_set_id=ms, starting=True)
    a = jobq.claim(store, "w1", 4, model_set_id=ms)
    b = jobq.claim(store, "w2", 4, model_set_id=ms)
    ra = _results(predictor, _items(store, a))
    rb = _results(predictor, _items(store, b))
    # One of w2's results is a failure (what a file that cannot be decoded gives).
    item, res = rb[0]
    rb[0] = (item, dataclasses.replace(res, ok=False, reason="truncated pixel data (test)"))
    # Interleaved: w1 half, w2 all, w1 rest.
    _write(store, predictor, ms, run_id, "w1", ra[:2])
    _write(store, predictor, ms, run_id, "w2", rb)
    _write(store, predictor, ms, run_id, "w1", ra[2:])
    with store.session() as s, s.begin():
        run = s.get(ScoringRun, run_id)
        assert (run.n_done, run.n_failed) == (5, 1)
        got = {w.name: (w.n_done, w.n_failed) for w in s.scalars(select(Worker)).all()}
        fail = s.scalars(select(ScoreJob).where(ScoreJob.state == "failed")).one()
        assert fail.last_error == "truncated pixel data (test)" and fail.worker == "w2"
        # Study summaries equal a fresh count: every image is scored or failed.
        studies = s.scalars(select(Study)).all()
        assert sum(st.n_scored for st in studies) == 5 and sum(st.n_failed for st in studies) == 1
    assert got == {"w1": (4, 0), "w2": (1, 1)}


def test_two_workers_one_run_end(scanned, csra_ckpt, predictor):
    """Two in-process workers (own engines, own models) share one run; it ends exactly once,
    every image has exactly one prediction."""
    from engine.predictor import EngineConfig, Predictor

    store = scanned
    second = Predictor(
        EngineConfig(
            task1_checkpoints=[csra_ckpt],
            task1_arch="convnextv2_atto",
            mode="fast",
            image_size=64,
            device="cpu",
            batch_size=1,
            decode_workers=1,
        )
    )
    stores = [open_store(store.url) for _ in range(2)]
    last: dict[str, object] = {}
    errors: list[BaseException] = []

    def run(name, st, pred):
        try:
            w = ScoringWorker(st, pred, batch_size=1, claim_size=1, name=name)
            for prog in w.run():
                last[name] = prog
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(f"w{k}", st, p))
        for k, (st, p) in enumerate(zip(stores, (predictor, second), strict=True))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for st in stores:
        st.close()
    assert not errors, errors
    assert sum(p.done for p in last.values()) == 6
    per_image = _predictions_per_image(store)
    assert len(per_image) == 6 and set(per_image.values()) == {1}
    with store.session() as s, s.begin():
        ends = s.scalars(select(AuditEvent).where(AuditEvent.action == "score_run_end")).all()
        runs = s.scalars(select(ScoringRun)).all()
        assert len(runs) == 1 and runs[0].finished_at is not None and runs[0].n_done == 6
        assert len(ends) == 1 and ends[0].new["run_id"] == runs[0].id
        ms = runs[0].model_set_id
        # Each study's summary counts every image the two workers wrote (no lost update).
        from cxrlt_desktop.store.models import Series

        for st in s.scalars(select(Study)).all():
            best = s.scalar(
                select(func.max(Prediction.rare_score))
                .join(Image, Image.current_prediction_id == Prediction.id)
                .join(Series, Series.id == Image.series_id)
                .where(Series.study_id == st.id)
            )
            assert (st.n_images, st.n_scored) == (3, 3) and st.rare_score == best
    # Completing again finds the run ended: no second end.
    assert scoring.finish_model_set(store, ms, threshold_vector(None)) == []
    with store.session() as s, s.begin():
        n = s.scalar(select(func.count()).where(AuditEvent.action == "score_run_end"))
    assert n == 1


def test_queue_status_shape(scanned, predictor):
    store = scanned
    ms, spec = _register(store, predictor)
    jobq.enqueue(store, ms)
    store.write(lambda s: scoring.ensure_run(s, ms, spec))
    jobq.heartbeat(store, "gpu1:42", model_set_id=ms, starting=True)
    jobq.claim(store, "gpu1:42", 2, model_set_id=ms)
    jobs = _jobs(store, state="queued")
    store.write(
        lambda s: s.execute(
            update(ScoreJob).where(ScoreJob.id == jobs[0].id).values(state="failed")
        )
    )
    store.write(
        lambda s: s.execute(update(ScoreJob).where(ScoreJob.id == jobs[1].id).values(state="done"))
    )
    status = jobq.queue_status(store)
    assert set(status) == {"model_sets", "workers"}
    (m,) = status["model_sets"]
    assert {k: m[k] for k in ("model_set_id", "queued", "claimed", "done", "failed")} == {
        "model_set_id": ms,
        "queued": 2,
        "claimed": 2,
        "done": 1,
        "failed": 1,
    }
    assert m["open_run_id"] is not None and len(m["key"]) == 12
    (w,) = status["workers"]
    assert w["name"] == "gpu1:42" and w["live"] is True and w["state"] == "running"
    assert {"host", "pid", "last_heartbeat", "n_done", "n_failed"} <= set(w)
    from datetime import datetime

    assert datetime.fromisoformat(w["last_heartbeat"]).tzinfo is not None
    import json

    json.dumps(status)  # JSON-able as it is


def test_path_map_applied_and_unreadable_path_fails_its_job(
    any_store, tmp_path, write_study, predictor
):
    """The library was scanned at one mount point; the worker reads it at another through the
    [paths] map. A file missing at the mapped place fails with the reason; the rest is
    scored."""
    store = any_store
    paths = write_study(tmp_path / "scanned_at" / "s1", 4, patient_id="A")
    _scan(store, tmp_path / "scanned_at")
    shutil.move(tmp_path / "scanned_at", tmp_path / "mounted_at")  # keeps size and mtime
    gone = tmp_path / "mounted_at" / "s1" / paths[2].name
    gone.unlink()
    settings = Settings(paths={str(tmp_path / "scanned_at"): str(tmp_path / "mounted_at")})
    w = ScoringWorker(store, predictor, batch_size=2, map_path=settings.map_path)
    last = list(w.run())[-1]
    assert last.finished and last.done == 3 and last.failed == 1
    with store.session() as s, s.begin():
        failed = s.scalars(select(ScoreJob).where(ScoreJob.state == "failed")).one()
        image = s.get(Image, failed.image_id)
        assert image.path == str(paths[2])  # the stored path is unchanged
        assert failed.last_error.startswith("cannot read the file: No such file or directory")
        assert str(paths[2]) in failed.last_error
        reason = s.scalars(select(ScoreFailure.reason)).one()
        assert reason == failed.last_error
    per_image = _predictions_per_image(store)
    assert len(per_image) == 3 and set(per_image.values()) == {1}


def test_two_writers_of_one_study_lose_no_update(scanned, predictor, monkeypatch):
    """Two workers write images of the same study at the same moment. Each refreshes the
    study's summary; the study rows are locked before the summary is read, so the second
    waits for the first and counts both images (without the lock both would read the study
    before either committed, and the last to write would drop the other's image)."""
    store = scanned
    # Two model sets (two runs: nothing else the two transactions write is shared but the
    # study), e.g. a department scoring with a new model set while the old one finishes.
    ms, spec = _register(store, predictor)
    ms2 = _model_set(store)
    jobq.enqueue(store, ms)
    run_id = store.write(lambda s: scoring.ensure_run(s, ms, spec)[0])
    run2 = store.write(lambda s: scoring.ensure_run(s, ms2, spec)[0])
    a = _items(store, jobq.claim(store, "w1", 1, model_set_id=ms))
    with store.session() as s, s.begin():
        from cxrlt_desktop.store.models import Series

        other = s.scalar(
            select(Image.id)
            .join(Series, Series.id == Image.series_id)
            .where(Series.study_id == a[0].study_id, Image.id != a[0].id)
            .limit(1)
        )
    jobq.enqueue(store, ms2, image_ids=[other])
    b = _items(store, jobq.claim(store, "w2", 1, model_set_id=ms2))
    assert a[0].study_id == b[0].study_id and a[0].id != b[0].id
    ra, rb = _results(predictor, a), _results(predictor, b)
    both_there = threading.Barrier(2)
    real = scoring.refresh_studies

    def meet_then_refresh(s, ids):
        try:  # hold until the other writer is here too (it cannot be, when it waits on a lock)
            both_there.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass
        return real(s, ids)

    monkeypatch.setattr(scoring, "refresh_studies", meet_then_refresh)
    stores = [open_store(store.url) for _ in range(2)]
    errors: list[BaseException] = []

    def write(st, name, results):
        m, r = (ms, run_id) if name == "w1" else (ms2, run2)
        try:
            _write(st, predictor, m, r, name, results)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(stores[0], "w1", ra)),
        threading.Thread(target=write, args=(stores[1], "w2", rb)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for st in stores:
        st.close()
    assert not errors, errors
    with store.session() as s, s.begin():
        study = s.get(Study, a[0].study_id)
        assert (study.n_images, study.n_scored) == (3, 2)
