"""The scoring work queue: jobs in the store that any number of workers claim exactly once.

One ``score_job`` row is one image content (image x file version) to score with one model set
(and one ``kind`` of pass, "paper" today). Its life:

``queued`` --:func:`claim`--> ``claimed`` (``worker``, ``lease_until``) --> ``done`` | ``failed``

- :func:`enqueue` inserts jobs with ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` over id
  ranges of the image table (``chunk`` images per transaction): never the backlog in memory,
  and N workers enqueueing at once create each job once (``uq_score_job``).
- :func:`claim` takes up to n jobs in one short transaction of two statements: ``SELECT id ...
  WHERE state = 'queued' OR (state = 'claimed' AND lease_until < now) ORDER BY priority DESC,
  id LIMIT n FOR UPDATE SKIP LOCKED``, then ``UPDATE ... WHERE id IN (those)`` (PostgreSQL; on
  SQLite the transaction begins with ``BEGIN IMMEDIATE``, which serialises claims). A single
  ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`` is avoided on purpose: under
  contention the planner may re-run the subquery and claim far more than n rows.
- A claim holds for ``lease_s`` seconds; a live worker extends it (:func:`extend_lease`), so
  only a dead or frozen worker's jobs are claimed again by others. A worker that starts also
  takes back the claims of its own name and of dead processes on its host
  (:func:`release_stale`), so a restart does not wait for the lease.
- A result counts only while the job is still claimed by the worker that computed it:
  :func:`settle` is ``UPDATE score_job SET state = ... WHERE id IN (...) AND worker = :me AND
  state = 'claimed' RETURNING id``; what it does not return is a *lost lease* and its result is
  discarded (a frozen worker that wakes up after its lease was taken writes nothing).
- Time comes from the database on PostgreSQL (``now()``), so workers on machines whose clocks
  differ agree on leases; SQLite is one machine's file, and its time is this process's clock.

Workers announce themselves in the ``worker`` table (:func:`heartbeat`); :func:`queue_status` is
what ``cxrlt queue`` prints. Model sets are *active* (:func:`active_model_sets`) while they have
an unfinished scoring run or a worker heartbeat of the last :data:`ACTIVE_S` seconds: the scan,
the DICOM listener and a workstation in "workers" mode enqueue for those
(:func:`enqueue_for_active_sets`) without loading any model.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    DateTime,
    Interval,
    and_,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from cxrlt_desktop.store import Store
from cxrlt_desktop.store.models import (
    Image,
    Prediction,
    ScoreFailure,
    ScoringRun,
    utcnow,
)
from cxrlt_desktop.store.tables_department import JOB_STATES, ScoreJob, Worker

# Failed attempts (in separate starts) after which an image is not queued again until its
# file changes or retry_failed clears it.
MAX_ATTEMPTS = 2
LEASE_S = 120.0  # default claim lease; a live worker extends it every LEASE_S / 3
ACTIVE_S = 300.0  # a worker heartbeat this recent makes its model set active
OPEN_STATES = ("queued", "claimed")
DEFAULT_KIND = "paper"
# Namespace of the two-key advisory locks of a model set's jobs on PostgreSQL ("cxlq"): claims
# take it shared, the completion of a run exclusive (the second key is the model set id).
LOCK_NAMESPACE = 0x63786C71


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds: score ``image_id`` at ``image_version`` with the model set."""

    id: int
    image_id: int
    model_set_id: int
    image_version: int
    kind: str
    priority: float
    attempts: int  # claims so far, this one included


# ------------------------------------------------------------------------------------ helpers
def is_postgresql(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def _insert(s: Session):  # noqa: ANN202 - the dialect's insert construct
    if is_postgresql(s):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def db_now(s: Session) -> Any:
    """The time to compare leases and heartbeats with: the server's on PostgreSQL."""
    if is_postgresql(s):
        return func.now()
    return literal(utcnow(), DateTime(timezone=True))


def db_later(s: Session, seconds: float) -> Any:
    """``db_now`` plus ``seconds``."""
    if is_postgresql(s):
        return func.now() + literal(timedelta(seconds=seconds), Interval())
    return literal(utcnow() + timedelta(seconds=seconds), DateTime(timezone=True))


def lock_model_set(s: Session, model_set_id: int, *, shared: bool) -> None:
    """PostgreSQL: the transaction-level advisory lock of a model set's queue (no-op on SQLite,
    where every write transaction holds the database's write lock)."""
    if not is_postgresql(s):
        return
    fn = func.pg_advisory_xact_lock_shared if shared else func.pg_advisory_xact_lock
    s.execute(select(fn(LOCK_NAMESPACE, model_set_id)))


def default_worker_name() -> str:
    """``host:pid``: unique among the workers of a department while the process lives."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _chunks(items: Sequence[int], n: int) -> Iterable[Sequence[int]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


# ------------------------------------------------------------------------------------ enqueue
def pending_condition(model_set_id: int) -> Any:
    """The images that need a job of this model set: usable, on disk, without a prediction of
    the set for their current file version, not given up after MAX_ATTEMPTS failures."""
    scored = exists().where(
        Prediction.image_id == Image.id,
        Prediction.model_set_id == model_set_id,
        Prediction.image_version == Image.version,
    )
    gave_up = exists().where(
        ScoreFailure.image_id == Image.id,
        ScoreFailure.model_set_id == model_set_id,
        ScoreFailure.image_version == Image.version,
        ScoreFailure.attempts >= MAX_ATTEMPTS,
    )
    return and_(Image.usable.is_(True), Image.missing.is_(False), ~scored, ~gave_up)


def _insert_jobs(
    s: Session,
    model_set_id: int,
    where: Any,
    kind: str,
    priority: float,
) -> int:
    sel = select(
        Image.id,
        literal(model_set_id),
        Image.version,
        literal(kind),
        literal(float(priority)),
        literal("queued"),
        literal(0),
        db_now(s),
    ).where(pending_condition(model_set_id), where)
    cols = [
        "image_id",
        "model_set_id",
        "image_version",
        "kind",
        "priority",
        "state",
        "attempts",
        "created_at",
    ]
    stmt = _insert(s)(ScoreJob).from_select(cols, sel).on_conflict_do_nothing()
    res = s.execute(stmt, execution_options={"preserve_rowcount": True})
    return max(0, int(res.rowcount or 0))


def enqueue(
    store: Store,
    model_set_id: int,
    *,
    image_ids: Iterable[int] | None = None,
    kind: str = DEFAULT_KIND,
    priority: float = 0.0,
    chunk: int = 1000,
    since: datetime | None = None,
) -> int:
    """Queue the pending images (all, or ``image_ids``) for ``model_set_id``; idempotent.

    Pending: usable, not missing, no prediction of this model set for the image's current
    version, not given up, and no job yet for (image, model set, version, kind). Each chunk of
    ``chunk`` image ids is one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` transaction.
    ``since`` limits the images to those scanned (added or changed) at or after that time.
    Returns the number of jobs inserted.
    """
    if chunk < 1:
        raise ValueError("chunk must be >= 1")

    def extra(where: Any) -> Any:
        return and_(where, Image.scanned_at >= since) if since is not None else where

    total = 0
    if image_ids is not None:
        ids = sorted({int(i) for i in image_ids})
        for part in _chunks(ids, chunk):
            where = extra(Image.id.in_(list(part)))
            total += store.write(
                lambda s, w=where: _insert_jobs(s, model_set_id, w, kind, priority)
            )
        return total
    with store.session() as s, s.begin():
        lo, hi = s.execute(select(func.min(Image.id), func.max(Image.id))).one()
    if lo is None:
        return 0
    for start in range(lo - 1, hi, chunk):
        where = extra(and_(Image.id > start, Image.id <= start + chunk))
        total += store.write(lambda s, w=where: _insert_jobs(s, model_set_id, w, kind, priority))
    return total


def active_model_sets(store: Store) -> list[int]:
    """Model sets with an unfinished scoring run or a running worker heard from in the last
    :data:`ACTIVE_S` seconds, and the library's current model set (that of its newest run, even
    finished: images added after a run ended are queued for the next worker to start)."""
    with store.session() as s, s.begin():
        runs = s.scalars(
            select(ScoringRun.model_set_id).where(ScoringRun.finished_at.is_(None))
        ).all()
        newest = s.scalar(select(ScoringRun.model_set_id).order_by(ScoringRun.id.desc()).limit(1))
        if is_postgresql(s):
            cutoff = func.now() - literal(timedelta(seconds=ACTIVE_S), Interval())
        else:
            cutoff = literal(utcnow() - timedelta(seconds=ACTIVE_S), DateTime(timezone=True))
        workers = s.scalars(
            select(Worker.model_set_id).where(
                Worker.model_set_id.is_not(None),
                Worker.state == "running",
                Worker.last_heartbeat >= cutoff,
            )
        ).all()
    return sorted(set(runs) | set(workers) | ({newest} if newest is not None else set()))


def enqueue_for_active_sets(
    store: Store,
    image_ids: Iterable[int] | None,
    *,
    since: datetime | None = None,
    kind: str = DEFAULT_KIND,
) -> int:
    """Queue these images (None: every pending image, ``since`` as in :func:`enqueue`) for every
    active model set (:func:`active_model_sets`); no model is loaded. Returns the jobs added."""
    ids = None if image_ids is None else sorted({int(i) for i in image_ids})
    if ids is not None and not ids:
        return 0
    return sum(
        enqueue(store, ms, image_ids=ids, kind=kind, since=since) for ms in active_model_sets(store)
    )


def requeue_failed(
    store: Store,
    model_set_id: int | None = None,
    *,
    image_ids: Iterable[int] | None = None,
    retryable_only: bool = True,
) -> int:
    """Failed jobs back to ``queued``. With ``retryable_only`` only those of images that may be
    tried again (fewer than MAX_ATTEMPTS recorded failures for their current version); the
    worker and score_library do this when they start, so a failure is retried once, by the next
    start. Returns the number of jobs requeued."""

    def work(s: Session) -> int:
        cond = [ScoreJob.state == "failed"]
        if model_set_id is not None:
            cond.append(ScoreJob.model_set_id == model_set_id)
        if image_ids is not None:
            cond.append(ScoreJob.image_id.in_(sorted({int(i) for i in image_ids})))
        current = exists().where(
            Image.id == ScoreJob.image_id,
            Image.version == ScoreJob.image_version,
            Image.usable.is_(True),
            Image.missing.is_(False),
        )
        cond.append(current)
        if retryable_only:
            cond.append(
                ~exists().where(
                    ScoreFailure.image_id == ScoreJob.image_id,
                    ScoreFailure.model_set_id == ScoreJob.model_set_id,
                    ScoreFailure.image_version == ScoreJob.image_version,
                    ScoreFailure.attempts >= MAX_ATTEMPTS,
                )
            )
        res = s.execute(
            update(ScoreJob)
            .where(*cond)
            .values(state="queued", worker=None, lease_until=None, finished_at=None)
            .execution_options(synchronize_session=False)
        )
        return int(res.rowcount or 0)

    return store.write(work)


# ------------------------------------------------------------------------------------ claims
def claim(
    store: Store,
    worker: str,
    n: int,
    *,
    model_set_id: int,
    lease_s: float = LEASE_S,
    kind: str | None = None,
) -> list[ClaimedJob]:
    """Claim up to ``n`` jobs of ``model_set_id`` for ``worker``: queued ones and those whose
    lease expired, the highest priority first, then the oldest (lowest id)."""
    if n < 1:
        return []

    def work(s: Session) -> list[ClaimedJob]:
        lock_model_set(s, model_set_id, shared=True)
        claimable = or_(
            ScoreJob.state == "queued",
            and_(ScoreJob.state == "claimed", ScoreJob.lease_until < db_now(s)),
        )
        q = select(ScoreJob.id).where(ScoreJob.model_set_id == model_set_id, claimable)
        if kind is not None:
            q = q.where(ScoreJob.kind == kind)
        q = (
            q.order_by(ScoreJob.priority.desc(), ScoreJob.id)
            .limit(n)
            .with_for_update(skip_locked=True)
        )
        ids = list(s.scalars(q).all())
        if not ids:
            return []
        rows = s.execute(
            update(ScoreJob)
            .where(ScoreJob.id.in_(ids))
            .values(
                state="claimed",
                worker=worker,
                lease_until=db_later(s, lease_s),
                attempts=ScoreJob.attempts + 1,
            )
            .returning(
                ScoreJob.id,
                ScoreJob.image_id,
                ScoreJob.model_set_id,
                ScoreJob.image_version,
                ScoreJob.kind,
                ScoreJob.priority,
                ScoreJob.attempts,
            )
            .execution_options(synchronize_session=False)
        ).all()
        jobs = [ClaimedJob(*r) for r in rows]
        return sorted(jobs, key=lambda j: (-j.priority, j.id))

    return store.write(work)


def settle(
    s: Session,
    worker: str,
    job_ids: Iterable[int],
    state: str,
    *,
    error: str | None = None,
) -> set[int]:
    """In the caller's transaction: mark these jobs ``state`` ("done" or "failed", with
    ``error``) if, and only if, they are still claimed by ``worker``; returns the ids that
    were. A result whose job is not returned must be discarded (lost lease)."""
    if state not in ("done", "failed"):
        raise ValueError(f"a job is settled as done or failed, not {state!r}")
    ids = sorted({int(i) for i in job_ids})
    if not ids:
        return set()
    rows = s.execute(
        update(ScoreJob)
        .where(ScoreJob.id.in_(ids), ScoreJob.worker == worker, ScoreJob.state == "claimed")
        .values(state=state, finished_at=db_now(s), lease_until=None, last_error=error)
        .returning(ScoreJob.id)
        .execution_options(synchronize_session=False)
    ).all()
    return {r[0] for r in rows}


def drop_owned(s: Session, worker: str, job_ids: Iterable[int]) -> set[int]:
    """In the caller's transaction: delete these jobs if still claimed by ``worker`` (their
    image was rescanned to a new version, went missing or became unusable: the job no longer
    describes work; a rescan queues the new version). Returns the ids deleted."""
    ids = sorted({int(i) for i in job_ids})
    if not ids:
        return set()
    rows = s.execute(
        ScoreJob.__table__.delete()
        .where(ScoreJob.id.in_(ids), ScoreJob.worker == worker, ScoreJob.state == "claimed")
        .returning(ScoreJob.id)
    ).all()
    return {r[0] for r in rows}


def release(store: Store, worker: str, job_ids: Iterable[int]) -> int:
    """Give back claimed jobs unscored (a clean stop): queued again at once."""
    ids = sorted({int(i) for i in job_ids})
    if not ids:
        return 0

    def work(s: Session) -> int:
        res = s.execute(
            update(ScoreJob)
            .where(ScoreJob.id.in_(ids), ScoreJob.worker == worker, ScoreJob.state == "claimed")
            .values(state="queued", worker=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        return int(res.rowcount or 0)

    return store.write(work)


def extend_lease(
    store: Store, worker: str, job_ids: Iterable[int], lease_s: float = LEASE_S
) -> int:
    """Push the lease of the jobs ``worker`` still holds to now + ``lease_s``; returns how many
    it still holds."""
    ids = sorted({int(i) for i in job_ids})
    if not ids:
        return 0

    def work(s: Session) -> int:
        res = s.execute(
            update(ScoreJob)
            .where(ScoreJob.id.in_(ids), ScoreJob.worker == worker, ScoreJob.state == "claimed")
            .values(lease_until=db_later(s, lease_s))
            .execution_options(synchronize_session=False)
        )
        return int(res.rowcount or 0)

    return store.write(work)


def _pid_alive(pid: int) -> bool:
    """True unless ``pid`` certainly is no process on this machine (always True off POSIX)."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's process
        return True
    return True


def release_stale(store: Store, worker: str) -> int:
    """Take back, as queued, the claims of ``worker``'s own name (an earlier start of it that
    died) and of workers of this host whose process is gone; those workers are marked
    ``lost``. Returns the number of jobs requeued."""
    host = socket.gethostname()
    with store.session() as s, s.begin():
        here = s.execute(
            select(Worker.name, Worker.pid).where(Worker.host == host, Worker.state == "running")
        ).all()
    dead = [name for name, pid in here if name != worker and pid and not _pid_alive(pid)]

    def work(s: Session) -> int:
        names = [worker, *dead]
        res = s.execute(
            update(ScoreJob)
            .where(ScoreJob.state == "claimed", ScoreJob.worker.in_(names))
            .values(state="queued", worker=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        if dead:
            s.execute(
                update(Worker)
                .where(Worker.name.in_(dead), Worker.state == "running")
                .values(state="lost")
                .execution_options(synchronize_session=False)
            )
        return int(res.rowcount or 0)

    return store.write(work)


# ------------------------------------------------------------------------------------ workers
def heartbeat(
    store: Store,
    worker_name: str,
    *,
    model_set_id: int | None = None,
    state: str = "running",
    starting: bool = False,
    host: str | None = None,
    pid: int | None = None,
) -> None:
    """Record that ``worker_name`` is alive (``state`` "running") or has ``"stopped"``.
    ``starting``: a new start of the worker (its host, pid and start time are recorded)."""

    def work(s: Session) -> None:
        now = db_now(s)
        values: dict[str, Any] = {
            "name": worker_name,
            "host": host or socket.gethostname(),
            "pid": pid if pid is not None else os.getpid(),
            "model_set_id": model_set_id,
            "state": state,
            "started_at": now,
            "last_heartbeat": now,
            "n_done": 0,
            "n_failed": 0,
        }
        stmt = _insert(s)(Worker).values(**values)
        change: dict[str, Any] = {"state": state, "last_heartbeat": now}
        if model_set_id is not None:
            change["model_set_id"] = model_set_id
        if starting:
            change.update(host=values["host"], pid=values["pid"], started_at=now)
        s.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=change))

    store.write(work)


def count_outcomes(s: Session, worker_name: str, n_done: int, n_failed: int) -> None:
    """In the caller's transaction: add to the worker's counters (in SQL, never read first)."""
    if not (n_done or n_failed):
        return
    s.execute(
        update(Worker)
        .where(Worker.name == worker_name)
        .values(n_done=Worker.n_done + n_done, n_failed=Worker.n_failed + n_failed)
        .execution_options(synchronize_session=False)
    )


def open_jobs(s: Session, model_set_id: int) -> int:
    """Jobs of the model set still queued or claimed (by anyone)."""
    return int(
        s.scalar(
            select(func.count(ScoreJob.id)).where(
                ScoreJob.model_set_id == model_set_id, ScoreJob.state.in_(OPEN_STATES)
            )
        )
        or 0
    )


def claimable_jobs(store: Store, model_set_id: int) -> int:
    """Jobs of the model set that a claim could take now (queued, or lease expired)."""
    with store.session() as s, s.begin():
        return int(
            s.scalar(
                select(func.count(ScoreJob.id)).where(
                    ScoreJob.model_set_id == model_set_id,
                    or_(
                        ScoreJob.state == "queued",
                        and_(ScoreJob.state == "claimed", ScoreJob.lease_until < db_now(s)),
                    ),
                )
            )
            or 0
        )


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive UTC
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def queue_status(store: Store) -> dict[str, Any]:
    """Counts per model set and state, and the workers, as ``cxrlt queue --json`` prints them::

        {"model_sets": [{"model_set_id", "key", "queued", "claimed", "done", "failed",
                         "open_run_id"}, ...],
         "workers": [{"name", "host", "pid", "model_set_id", "state", "live",
                      "started_at", "last_heartbeat", "n_done", "n_failed"}, ...]}

    A worker is ``live`` when its state is "running" and its last heartbeat is at most
    :data:`ACTIVE_S` seconds old.
    """
    from cxrlt_desktop.store.models import ModelSet

    with store.session() as s, s.begin():
        counts: dict[int, dict[str, int]] = {}
        for ms, state, n in s.execute(
            select(ScoreJob.model_set_id, ScoreJob.state, func.count(ScoreJob.id)).group_by(
                ScoreJob.model_set_id, ScoreJob.state
            )
        ).all():
            counts.setdefault(ms, dict.fromkeys(JOB_STATES, 0))[state] = int(n)
        runs = dict(
            s.execute(
                select(ScoringRun.model_set_id, ScoringRun.id).where(
                    ScoringRun.finished_at.is_(None)
                )
            ).all()
        )
        for ms in runs:
            counts.setdefault(ms, dict.fromkeys(JOB_STATES, 0))
        keys = dict(
            s.execute(select(ModelSet.id, ModelSet.key).where(ModelSet.id.in_(list(counts)))).all()
        )
        now = s.scalar(select(db_now(s))) if is_postgresql(s) else utcnow()
        workers = s.scalars(select(Worker).order_by(Worker.name)).all()
        out_workers = []
        for w in workers:
            beat = w.last_heartbeat
            if beat is not None and beat.tzinfo is None and now.tzinfo is not None:
                from datetime import UTC

                beat = beat.replace(tzinfo=UTC)
            live = (
                w.state == "running"
                and beat is not None
                and (now - beat).total_seconds() <= ACTIVE_S
            )
            out_workers.append(
                {
                    "name": w.name,
                    "host": w.host,
                    "pid": w.pid,
                    "model_set_id": w.model_set_id,
                    "state": w.state,
                    "live": live,
                    "started_at": _iso(w.started_at),
                    "last_heartbeat": _iso(w.last_heartbeat),
                    "n_done": int(w.n_done or 0),
                    "n_failed": int(w.n_failed or 0),
                }
            )
    model_sets = [
        {
            "model_set_id": ms,
            "key": (keys.get(ms) or "")[:12],
            **{state: c[state] for state in JOB_STATES},
            "open_run_id": runs.get(ms),
        }
        for ms, c in sorted(counts.items())
    ]
    return {"model_sets": model_sets, "workers": out_workers}


__all__ = [
    "ACTIVE_S",
    "ClaimedJob",
    "DEFAULT_KIND",
    "LEASE_S",
    "MAX_ATTEMPTS",
    "active_model_sets",
    "claim",
    "claimable_jobs",
    "count_outcomes",
    "default_worker_name",
    "drop_owned",
    "enqueue",
    "enqueue_for_active_sets",
    "extend_lease",
    "heartbeat",
    "open_jobs",
    "queue_status",
    "release",
    "release_stale",
    "requeue_failed",
    "settle",
]
