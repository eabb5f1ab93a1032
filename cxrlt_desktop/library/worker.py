"""One scoring worker: claim jobs from the queue, score them, write them, repeat.

:class:`ScoringWorker` is what ``cxrlt worker`` runs on each GPU server and what
:func:`cxrlt_desktop.library.scoring.score_library` runs inside the workstation. Its start:

1. register the predictor's model set; queue every pending image (idempotent: N workers
   starting at once on a fresh library queue each image once); put back to ``queued`` the
   failed jobs that may be retried once more; take back the claims of its own name and of dead
   processes on this host; announce itself (``worker`` heartbeat row); resume the model set's
   unfinished run, or start one when there is work.
2. claim a chunk of jobs (``claim_size``, default 4 batches); those whose image was rescanned
   or went missing are dropped, those interrupted ``INTERRUPT_LIMIT`` times given up, the
   *suspects* (left in flight by a process that died) scored one by one first, the rest in
   batches. Each file is read at its stored path rewritten by the settings' ``[paths]`` map
   (``Settings.map_path``); a file that cannot be read fails its job with the reason, and the
   others go on. Inference runs outside any transaction; each batch is one write transaction,
   accepted only for the jobs this worker still holds.
3. a heartbeat thread extends the leases of the jobs in hand and the worker's heartbeat every
   ``lease_s / 3`` seconds (at most 30 s), so only a dead or frozen worker loses its claims.
4. when nothing is left to claim: complete the run if no job of the model set is open
   anywhere. Without ``follow`` the worker ends there; with ``follow`` it waits for new jobs
   (the store's change feed: LISTEN on PostgreSQL, ``PRAGMA data_version`` on SQLite, and a
   poll every second) until ``should_stop``.

A stop request (``should_stop`` true) finishes the batch in flight, gives the rest of the chunk
back to the queue and forgets the attempts of images decoded ahead but not written (a clean
stop interrupts nothing). Anything else that ends the process (``kill -9``, a decoder that
takes it down) leaves the claims to be taken back by the next start of the same name or host,
or by any worker once the lease expires.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from cxrlt_desktop.library import queue as jobq
from cxrlt_desktop.library import scoring
from cxrlt_desktop.library.identity import CHANGED_SINCE_SCAN, FileChanged, read_checked
from cxrlt_desktop.library.scoring import ScoreProgress, _QueueItem
from cxrlt_desktop.library.triage import threshold_vector
from cxrlt_desktop.store import Store
from cxrlt_desktop.store.models import Image, Series
from cxrlt_desktop.store.tables_department import ScoreJob

log = logging.getLogger(__name__)

CLAIM_BATCHES = 4  # a claim takes this many compute batches (decode runs ahead within it)
POLL_S = 1.0  # --follow: longest wait between two looks at the queue
MAX_BEAT_S = 30.0
_LOST = object()  # _Reader: the job is no longer this worker's


class _Reader:
    """``predict_paths``' ``read`` for one call: records each image's attempt (committed), then
    decodes its file (at the mapped path) only if it is still the one the scan recorded. Runs
    in the decode pool."""

    def __init__(self, worker: ScoringWorker, items: list[_QueueItem], paths: list[str]) -> None:
        self.worker = worker
        self.by_path = {str(Path(p)): q for p, q in zip(paths, items, strict=True)}
        self.begun: set[int] = set()  # images whose attempt this call recorded
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> np.ndarray:
        from engine import imageio

        item = self.by_path[str(path)]
        w = self.worker

        def begin(s: Any) -> Any:
            # A worker whose lease was taken (frozen past it) records no attempt: the image is
            # another worker's now, and the attempt would count as an interruption against it.
            mine = ScoreJob.worker == w.name, ScoreJob.state == "claimed"
            if s.scalar(select(ScoreJob.id).where(ScoreJob.id == item.job_id, *mine)) is None:
                return _LOST
            return scoring._begin_attempt(s, item, w.model_set_id, w.run_id)

        scanned = w.store.write(begin)
        if scanned is _LOST:  # its result would be discarded by _write_batch anyway
            raise imageio.ImageReadError(path, "lease lost: another worker holds this job")
        if scanned is None:  # not written: _write_batch drops an image rescanned meanwhile
            raise FileChanged(path, f"{CHANGED_SINCE_SCAN} (rescanned while it was queued)")
        with self._lock:
            self.begun.add(item.id)
        mapped = str(path)
        try:
            with open(mapped, "rb"):
                pass
        except OSError as exc:
            via = f" (stored as {item.path}; [paths] map)" if mapped != item.path else ""
            raise imageio.ImageReadError(
                mapped, f"cannot read the file: {exc.strerror or exc}{via}"
            ) from exc
        return read_checked(replace(scanned, path=mapped), w.read_source or imageio.read_source)


class ScoringWorker:
    """Claims, scores and writes jobs of the predictor's model set; :meth:`run` yields a
    :class:`ScoreProgress` before the first batch, after each written batch, and at the end.

    Parameters
    ----------
    store, predictor
        The open store and an ``engine.predictor.Predictor``.
    thresholds
        Operating-threshold overrides by class name.
    batch_size
        Images per compute batch and per write transaction.
    claim_size
        Jobs per claim (default ``CLAIM_BATCHES * batch_size``).
    name
        The worker's name in claims and heartbeats (default ``host:pid``); two live workers
        must not share one.
    lease_s
        Seconds a claim holds without a heartbeat.
    should_stop
        Checked between batches (and while waiting): True stops after the batch in flight.
    map_path
        Rewrites a stored path before it is read (``Settings.map_path``).
    follow
        Wait for new jobs when the queue is empty, until ``should_stop``.
    kind, priority
        The jobs this worker queues at its start: ``score_job.kind`` and their priority (the
        progressive policy's fast pass: "fast" at ``progressive.FAST_PRIORITY``; its paper
        pass: "paper", ranked later by the fast results).
    read_source
        Decodes a file (default ``engine.imageio.read_source``); the progressive policy passes
        ``engine.source_cache``'s reader so that both passes decode each file once.
    clip_from
        A model set whose stored CLIP (zero-shot) columns this worker reuses instead of running
        CLIP again (the progressive policy's paper pass: the fast pass computed them with the
        same fp32 tower); a chunk with an image lacking them runs CLIP itself.
    """

    def __init__(
        self,
        store: Store,
        predictor: Any,
        *,
        thresholds: Mapping[str, float] | None = None,
        batch_size: int = 8,
        claim_size: int | None = None,
        name: str | None = None,
        lease_s: float = jobq.LEASE_S,
        should_stop: Callable[[], bool] | None = None,
        map_path: Callable[[str], str] | None = None,
        follow: bool = False,
        kind: str = jobq.DEFAULT_KIND,
        priority: float = 0.0,
        read_source: Callable[[Path], np.ndarray] | None = None,
        clip_from: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.store = store
        self.predictor = predictor
        self.overrides = dict(thresholds or {})
        # The settings' thresholds, until start() knows the model set: then its own
        # (library.thresholds: a threshold belongs to one model set).
        self.t = threshold_vector(thresholds)
        self.bs = int(batch_size)
        self.claim_size = int(claim_size or CLAIM_BATCHES * self.bs)
        self.name = name or jobq.default_worker_name()
        self.lease_s = float(lease_s)
        self.should_stop = should_stop
        self.map_path = map_path or (lambda p: p)
        self.follow = follow
        self.kind = kind
        self.priority = float(priority)
        self.read_source = read_source
        self.clip_from = clip_from
        self.expected = scoring.expected_columns(predictor)
        self.model_set_id: int | None = None
        self.run_id: int | None = None
        self.spec: scoring.RunSpec | None = None
        self.prog = ScoreProgress(worker=self.name)
        self.t0 = time.perf_counter()
        self._claimed: set[int] = set()  # every job id this worker claimed (progress total)
        self._held: set[int] = set()  # job ids in hand (the heartbeat extends their lease)
        self._held_lock = threading.Lock()
        self._beat_stop = threading.Event()
        self._wake = threading.Event()

    # ---------------------------------------------------------------------------- start
    def start(self) -> None:
        """Register, queue, take back stale claims, announce, resume or start the run."""
        from cxrlt_desktop.library.thresholds import migrate_settings_thresholds, thresholds_for

        store = self.store
        # A library scored before thresholds were per model set keeps the settings' ones (they
        # go to the model set that was current until now).
        migrate_settings_thresholds(store, self.overrides)
        self.model_set_id, self.spec = store.write(
            lambda s: scoring.register_model_set(s, self.predictor)
        )
        ms = self.model_set_id
        with store.session() as s, s.begin():
            self.t = thresholds_for(s, ms, self.overrides).vector()
        jobq.enqueue(store, ms, kind=self.kind, priority=self.priority)
        jobq.requeue_failed(store, ms)
        jobq.release_stale(store, self.name)
        jobq.heartbeat(store, self.name, model_set_id=ms, starting=True)

        def resume(s: Any) -> int | None:
            scoring._drop_old_attempts(s, ms)
            if jobq.open_jobs(s, ms) == 0 and scoring.open_run(s, ms) is None:
                return None  # nothing pending: no run is recorded
            return scoring.ensure_run(s, ms, self.spec, resume=True)[0]

        self.run_id = store.write(resume)
        with store.session() as s, s.begin():
            self.prog.already_scored = scoring._count_scored(s, ms)
        self.prog.run_id, self.prog.model_set_id = self.run_id, ms
        self.prog.total = jobq.claimable_jobs(store, ms)

    # ---------------------------------------------------------------------------- loop
    def run(self) -> Iterator[ScoreProgress]:
        """Start, then score until the queue is empty (or, with ``follow``, until stopped)."""
        self.start()
        beat = threading.Thread(target=self._beat, name="cxrlt-worker-heartbeat", daemon=True)
        beat.start()
        feed = None
        try:
            self.t0 = time.perf_counter()
            chunk, given_up = self._claim()
            yield self._stamp(given_up)
            cancelled = False
            scored_since_finish = True
            while True:
                if chunk:
                    cancelled = yield from self._score(chunk)
                    scored_since_finish = True
                    if cancelled:
                        break
                elif self._stopped():
                    cancelled = True
                    break
                elif not self.follow:
                    break
                else:
                    if scored_since_finish:
                        self._finish()
                        scored_since_finish = False
                    if feed is None:
                        feed = self._listen()
                    if self._wait():
                        cancelled = True
                        break
                chunk, given_up = self._claim()
                if given_up:
                    yield self._stamp(given_up)
            if cancelled:
                self.prog.cancelled = True
            else:
                self._finish()
                self.prog.finished = True
            self.stop_cleanly()
            yield self._stamp([])
        finally:
            self._beat_stop.set()
            if feed is not None:
                feed.stop()
            beat.join(timeout=5)

    def stop_cleanly(self) -> None:
        """Record the worker as stopped (:meth:`run` does, before its last record)."""
        jobq.heartbeat(self.store, self.name, model_set_id=self.model_set_id, state="stopped")

    def _stopped(self) -> bool:
        return self.should_stop is not None and bool(self.should_stop())

    def _stamp(self, errors: list[tuple[str, str]]) -> ScoreProgress:
        """A copy of the counts to yield, with the rate and time left."""
        prog = self.prog
        prog.elapsed = time.perf_counter() - self.t0
        n = prog.done + prog.failed
        prog.rate = n / prog.elapsed if prog.elapsed > 0 and n else 0.0
        left = max(0, prog.total - n)
        prog.eta = left / prog.rate if prog.rate > 0 else None
        prog.last_errors = list(errors)
        return replace(prog, last_errors=list(errors))

    def _finish(self) -> None:
        ended = scoring.finish_model_set(self.store, self.model_set_id, self.t)
        if ended:
            log.info(
                "worker %s: run(s) %s of model set %s complete", self.name, ended, self.model_set_id
            )

    # ---------------------------------------------------------------------------- claims
    def _hold(self, job_ids: Any, *, add: bool) -> None:
        with self._held_lock:
            if add:
                self._held.update(job_ids)
            else:
                self._held.difference_update(job_ids)

    def _claim(self) -> tuple[list[_QueueItem], list[tuple[str, str]]]:
        """Claim the next chunk; returns its items to score and the (path, reason) of those
        given up after repeated interruptions. Keeps claiming while a chunk holds nothing to
        score (all dropped or given up), so an empty list means the queue is empty."""
        errors: list[tuple[str, str]] = []
        while True:
            if self._stopped():
                return [], errors
            jobs = jobq.claim(
                self.store,
                self.name,
                self.claim_size,
                model_set_id=self.model_set_id,
                lease_s=self.lease_s,
            )
            if not jobs:
                return [], errors
            self._hold((j.id for j in jobs), add=True)
            self._claimed.update(j.id for j in jobs)
            self.prog.total = max(self.prog.total, len(self._claimed))
            items, given_up = self.store.write(lambda s, js=jobs: self._prepare(s, js))
            kept = {q.job_id for q in items}
            self._hold((j.id for j in jobs if j.id not in kept), add=False)
            if given_up:
                self.prog.failed += len(given_up)
                errors.extend((q.path, reason) for q, reason in given_up)
            if items:
                return items, errors

    def _prepare(self, s: Any, jobs: list[jobq.ClaimedJob]) -> tuple[list[_QueueItem], list]:
        """In one transaction: the run to write to, the claimed jobs' images (jobs of images
        rescanned, missing or unusable are dropped) and the give-ups."""
        self.run_id = scoring.ensure_run(s, self.model_set_id, self.spec)[0]
        self.prog.run_id = self.run_id
        by_image = {j.image_id: j for j in jobs}
        rows = s.execute(
            select(
                Image.id, Image.path, Image.version, Image.missing, Image.usable, Series.study_id
            )
            .outerjoin(Series, Series.id == Image.series_id)
            .where(Image.id.in_(list(by_image)))
        ).all()
        live: list[_QueueItem] = []
        stale: list[int] = []
        seen = set()
        for iid, path, version, missing, usable, study_id in rows:
            job = by_image[iid]
            seen.add(iid)
            if version != job.image_version or missing or not usable:
                stale.append(job.id)
            else:
                live.append(_QueueItem(iid, path, version, study_id, job.id))
        stale.extend(j.id for j in jobs if j.image_id not in seen)
        jobq.drop_owned(s, self.name, stale)
        gone = scoring._give_up_interrupted(s, live, self.model_set_id, self.run_id, self.name)
        gone_ids = {q.id for q, _ in gone}
        live = sorted((q for q in live if q.id not in gone_ids), key=lambda q: q.id)
        return live, gone

    # ---------------------------------------------------------------------------- scoring
    def _score(self, chunk: list[_QueueItem]) -> Generator[ScoreProgress, None, bool]:
        """Score a claimed chunk: the suspects first, each alone (a start that dies now dies on
        that file), then the rest in batches; returns True when stopped."""
        with self.store.session() as s, s.begin():
            suspects = scoring._suspects(s, self.model_set_id, [q.id for q in chunk])
        alone = [q for q in chunk if q.id in suspects]
        rest = [q for q in chunk if q.id not in suspects]
        parts = [([q], 1) for q in alone] + ([(rest, self.bs)] if rest else [])
        for k, (items, bs) in enumerate(parts):
            if (yield from self._predict(items, bs)):
                left = [q for items2, _ in parts[k + 1 :] for q in items2]
                self._give_back(left, set())
                return True
        return False

    def _give_back(self, items: list[_QueueItem], begun: set[int]) -> None:
        """A clean stop: unwritten jobs back to the queue, their begun attempts forgotten."""
        if not items:
            return
        unwritten = sorted(begun & {q.id for q in items})
        if unwritten:
            self.store.write(lambda s: scoring._forget_attempts(s, unwritten, self.model_set_id))
        job_ids = [q.job_id for q in items]
        jobq.release(self.store, self.name, job_ids)
        self._hold(job_ids, add=False)

    def _predict(
        self, items: list[_QueueItem], batch_size: int
    ) -> Generator[ScoreProgress, None, bool]:
        """Score these images, one write transaction per batch; returns True when stopped."""
        from cxrlt_desktop.library.progressive import with_clip_columns

        paths = [self.map_path(q.path) for q in items]
        reader = _Reader(self, items, paths)
        reuse = self._reused_clip_columns(items)
        gen = self.predictor.predict_paths(
            paths,
            batch_size=batch_size,
            should_stop=self.should_stop,
            read=reader,
            **({"clip": False} if reuse is not None else {}),
        )
        pending: list[tuple[_QueueItem, Any]] = []
        idx = 0
        stopped = False
        try:
            for res in gen:
                if reuse is not None and res.ok and res.probs is not None:
                    res = replace(res, probs=with_clip_columns(res.probs, reuse[items[idx].id]))
                pending.append((items[idx], res))
                idx += 1
                if len(pending) >= batch_size or idx == len(items):
                    batch, pending = pending, []
                    yield self._write(batch)
                    if self._stopped():
                        stopped = True
                        break
        finally:
            gen.close()  # waits for the decodes in flight
        if idx < len(items) and not stopped:
            stopped = True  # predict_paths returned early: its should_stop fired
        if stopped:  # a clean stop interrupted nothing
            self._give_back(items[idx:], reader.begun)
        return stopped

    def _reused_clip_columns(self, items: list[_QueueItem]) -> dict[int, np.ndarray] | None:
        """image id -> the ``clip_from`` set's probabilities for these images (their CLIP
        columns are reused), or None when CLIP must run: no ``clip_from``, a predictor without
        CLIP, or an image of the chunk without a finite stored result."""
        from cxrlt_desktop.store.models import Prediction, probs_to_array
        from engine.classes import TASK1_CLASSES

        if self.clip_from is None or not getattr(self.predictor, "has_clip", False) or not items:
            return None
        with self.store.session() as s, s.begin():
            rows = s.execute(
                select(Prediction.image_id, Prediction.image_version, Prediction.probs).where(
                    Prediction.model_set_id == self.clip_from,
                    Prediction.image_id.in_([q.id for q in items]),
                )
            ).all()
        version = {q.id: q.version for q in items}
        out = {i: probs_to_array(b) for i, v, b in rows if version.get(i) == v}
        k = len(TASK1_CLASSES)
        if len(out) < len(version) or not all(np.isfinite(p[k:]).all() for p in out.values()):
            return None
        return out

    def _write(self, batch: list[tuple[_QueueItem, Any]]) -> ScoreProgress:
        """Write one batch of results; the progress record after it."""
        out = self.store.write(
            lambda s: scoring._write_batch(
                s,
                batch,
                model_set_id=self.model_set_id,
                run_id=self.run_id,
                thresholds=self.t,
                expected=self.expected,
                worker=self.name,
            )
        )
        self._hold((item.job_id for item, _ in batch), add=False)
        self.prog.done += out.n_ok
        self.prog.failed += len(out.failed)
        self.prog.lost += len(out.lost)
        if out.lost:
            log.warning(
                "worker %s: %d result(s) discarded: their lease was taken by another worker",
                self.name,
                len(out.lost),
            )
        return self._stamp([(item.path, reason) for item, reason in out.failed])

    # ---------------------------------------------------------------------------- waiting
    def _beat(self) -> None:
        """Heartbeat thread: extend the leases in hand and the worker's heartbeat."""
        every = max(0.5, min(MAX_BEAT_S, self.lease_s / 3))
        while not self._beat_stop.wait(every):
            try:
                with self._held_lock:
                    held = sorted(self._held)
                if held:
                    jobq.extend_lease(self.store, self.name, held, self.lease_s)
                jobq.heartbeat(self.store, self.name, model_set_id=self.model_set_id)
            except Exception as exc:  # noqa: BLE001 - a lost connection: try again next beat
                log.warning("worker %s: heartbeat failed: %s", self.name, exc)

    def _listen(self) -> Any:
        """The change feed that wakes the waiting worker (None where it cannot start)."""
        from cxrlt_desktop.store.notify import ChangeFeed

        def on_change(change: Any) -> None:
            if change.what in ("jobs", "all"):
                self._wake.set()

        try:
            return ChangeFeed(self.store).start(on_change)
        except Exception as exc:  # noqa: BLE001 - polling still finds new jobs
            log.warning("worker %s: no change feed (%s); polling", self.name, exc)
            return None

    def _wait(self) -> bool:
        """Wait for a change of the queue (at most POLL_S); True when a stop was requested."""
        self._wake.clear()
        deadline = time.monotonic() + POLL_S
        while time.monotonic() < deadline:
            if self._stopped():
                return True
            if self._wake.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
                break
        return self._stopped()
