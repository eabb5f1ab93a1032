"""Resumable background scoring of the library, through the work queue.

:func:`score_library` is a generator: the CLI progress line, the GUI worker and the tests all
drive it and cancel it between batches. It queues the pending images
(:mod:`cxrlt_desktop.library.queue`) and scores them with one worker in this process
(:class:`cxrlt_desktop.library.worker.ScoringWorker`); ``cxrlt worker`` runs the same worker on
any number of machines against one database. What it guarantees:

- The queue is every usable, non-missing image without a prediction for the *model set* (the
  model files' sha256s, roles, architectures and ensemble weights plus the engine settings that
  change the numbers: mode, views, normal alpha, image size, prompts hash, calibration, engine
  version; not the device, the precision or the CPU backend, whose differences are numerical
  noise) for the image's current file version: one ``score_job`` each.
- Each job is claimed by one worker at a time (with a lease), and its result is written only
  while that worker still holds it. One write transaction per batch holds the batch's jobs,
  predictions, failures and the updated study summaries, so a crash or ``kill -9`` loses at
  most the batch in flight; the next start resumes the unfinished ``scoring_run`` of the same
  model set (one per model set, shared by all its workers) and scores only what is left. A
  unique constraint (image, model set, image version) makes a double prediction impossible.
- An image that fails records its reason in ``score_failure`` (its job ``failed``) and is not
  retried in the same start. The next start retries it once (attempt 2); after two failed
  attempts it stays failed until its file changes (a rescan that sees a new size or mtime
  bumps the image version) or :func:`retry_failed` clears it.
- Right patient or nothing: just before a file is decoded, its header is compared with what
  the scan recorded (size, mtime, SOPInstanceUID and the other filing UIDs, still a usable
  chest radiograph; ``library.identity``), and its size and mtime once more after the decode.
  A file that changed fails with ``file changed since the scan: rescan the folder (...)`` and
  nothing is written for its patient.
- Attempts: each image's scoring is recorded in ``score_attempt`` (committed) before its file
  is decoded, and the row goes with the write of its outcome. Rows a dead process left behind
  (a decoder that crashed it, ``kill -9``, out of memory) make their images *suspects*: the
  worker that claims them next scores each alone, first, so a start that dies again dies on
  that file and no other. An image whose scoring was interrupted ``INTERRUPT_LIMIT`` times
  fails with ``scoring was interrupted N times on this file; it is skipped until it is
  rescanned or retried`` and is skipped like an image that failed twice. (Job ``attempts``
  count claims; the interruption rule stays on ``score_attempt``, which counts decodes begun.)
- A probability that is NaN or infinite (or outside 0..1) where the model set computes one is
  never written: the image fails with the findings named (NaN stays the marker of a task whose
  model is not configured).
- Predictions are immutable, and the newest *complete* run is the current one: a run is
  complete (``finished_at`` set) once no job of its model set is queued or claimed
  (:func:`finish_model_set`, exactly one ``score_run_end``). While a run for a new model set is
  under way, an image that already shows another model set's prediction keeps showing it (the
  worklist never mixes two model sets' scores mid-run); an image with no current prediction
  shows the new one at once. When the run completes, every image it scored switches to it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from cxrlt_desktop.library.identity import ScannedFile
from cxrlt_desktop.library.queue import (
    MAX_ATTEMPTS,
    count_outcomes,
    drop_owned,
    lock_model_set,
    open_jobs,
    settle,
)
from cxrlt_desktop.library.triage import (
    TriageSummary,
    refresh_studies,
    replace_hits,
    summarize,
)
from cxrlt_desktop.store import Store
from cxrlt_desktop.store.models import (
    AuditEvent,
    Image,
    ModelSet,
    ModelVersion,
    Prediction,
    RunModel,
    ScoreAttempt,
    ScoreFailure,
    ScoringRun,
    Series,
    Study,
    array_to_attention,
    array_to_probs,
    probs_to_array,
    utcnow,
)
from cxrlt_desktop.store.tables_department import ScoreJob
from engine.classes import ALL_CLASSES, TASK1_CLASSES

# Starts that may die while an image is in flight before the image is given up. Three, not two:
# a start killed from outside (kill -9, a power cut) while an innocent image was in flight and
# again while that image was scored alone would otherwise lose it for good.
INTERRUPT_LIMIT = 3
INTERRUPTED = (
    "scoring was interrupted {n} times on this file; it is skipped until it is rescanned or retried"
)
# predictor.settings keys that do not change the numbers beyond noise: not part of the model set.
# The CPU backend (OpenVINO, ONNX Runtime or PyTorch) is one of them: they agree to ~1e-6.
_NON_OUTPUT_SETTINGS = ("device", "precision", "backend")


@dataclass
class ScoreProgress:
    """One progress record of :func:`score_library`.

    ``done``/``failed``/``total`` count this start's queue (``failed`` and ``total`` include
    the images given up at the start after ``INTERRUPT_LIMIT`` interruptions); ``rate`` is
    images per second and ``eta`` seconds left (None before the first batch); ``last_errors``
    lists (path, reason) of the images of the latest batch that failed (in the first record:
    of the images given up).
    """

    done: int = 0
    total: int = 0
    failed: int = 0
    rate: float = 0.0
    eta: float | None = None
    last_errors: list[tuple[str, str]] = field(default_factory=list)
    elapsed: float = 0.0
    run_id: int | None = None
    model_set_id: int | None = None
    already_scored: int = 0  # usable images that had a prediction for this model set at start
    finished: bool = False  # nothing left to claim; the run is complete unless other workers
    # still hold jobs of it (the last of them completes it)
    cancelled: bool = False
    lost: int = 0  # results discarded: their job's lease had been taken by another worker
    worker: str | None = None  # the worker's name (queue.default_worker_name(): host:pid)


def model_set_description(predictor: Any) -> dict[str, Any]:
    """The JSON-able identity of what the predictor computes (hashed into the model-set key)."""
    models = sorted(
        (
            {
                "sha256": m.sha256,
                "role": m.role,
                "arch": m.arch,
                "weight": None if m.weight is None else round(float(m.weight), 6),
            }
            for m in predictor.models
        ),
        key=lambda d: (d["sha256"], d["role"], d["arch"]),
    )
    settings = {k: v for k, v in dict(predictor.settings).items() if k not in _NON_OUTPUT_SETTINGS}
    return {"models": models, "settings": settings}


def model_set_key(description: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of :func:`model_set_description`."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RunSpec:
    """What a scoring run of the predictor records: its settings and its models
    (model_version ids with their ensemble weights)."""

    settings: dict[str, Any]
    models: tuple[tuple[int, float | None], ...]


def register_model_set(s: Session, predictor: Any) -> tuple[int, RunSpec]:
    """The predictor's model set and model versions (created when new; safe when several
    workers register the same set at once); returns (model_set_id, run spec)."""
    from cxrlt_desktop.library.queue import _insert

    desc = model_set_description(predictor)
    key = model_set_key(desc)
    ins = _insert(s)
    s.execute(
        ins(ModelSet)
        .values(key=key, description=desc, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["key"])
    )
    ms_id = s.scalar(select(ModelSet.id).where(ModelSet.key == key))
    models: list[tuple[int, float | None]] = []
    for m in predictor.models:
        same = (
            ModelVersion.sha256 == m.sha256,
            ModelVersion.role == m.role,
            ModelVersion.arch == m.arch,
        )
        mv_id = s.scalar(select(ModelVersion.id).where(*same).order_by(ModelVersion.id).limit(1))
        if mv_id is None:
            s.execute(
                ins(ModelVersion)
                .values(
                    sha256=m.sha256, role=m.role, arch=m.arch, path=str(m.path), first_seen=utcnow()
                )
                .on_conflict_do_nothing()
            )
            mv_id = s.scalar(
                select(ModelVersion.id).where(*same).order_by(ModelVersion.id).limit(1)
            )
        else:
            s.execute(
                update(ModelVersion)
                .where(ModelVersion.id == mv_id, ModelVersion.path != str(m.path))
                .values(path=str(m.path))
                .execution_options(synchronize_session=False)
            )
        models.append((mv_id, m.weight))
    return ms_id, RunSpec(settings=dict(predictor.settings), models=tuple(models))


def open_run(s: Session, model_set_id: int) -> int | None:
    """The id of the model set's unfinished run (at most one: ``uq_scoring_run_open``)."""
    return s.scalar(
        select(ScoringRun.id).where(
            ScoringRun.model_set_id == model_set_id, ScoringRun.finished_at.is_(None)
        )
    )


def ensure_run(
    s: Session, model_set_id: int, spec: RunSpec, *, resume: bool = False
) -> tuple[int, bool]:
    """The model set's unfinished run, created (``score_run_start``) when there is none;
    ``resume``: a start of the service that takes over an existing run (its ``attempts`` and
    settings are updated, ``score_run_resume``). Returns (run id, created).

    Workers that start at once race for the one open run: the loser's insert meets the
    partial unique index and it takes the winner's run.
    """
    from sqlalchemy.exc import IntegrityError

    run_id = open_run(s, model_set_id)
    created = False
    if run_id is None:
        try:
            with s.begin_nested():
                run = ScoringRun(model_set_id=model_set_id, started_at=utcnow())
                _apply_settings(run, spec.settings)
                s.add(run)
                s.flush()
                run_id, created = run.id, True
        except IntegrityError:
            run_id = open_run(s, model_set_id)
            if run_id is None:
                raise
    if not created and not resume:
        return run_id, False
    run = s.get(ScoringRun, run_id)
    if not created:
        s.execute(
            update(ScoringRun)
            .where(ScoringRun.id == run_id)
            .values(attempts=ScoringRun.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        _apply_settings(run, spec.settings)
    have = set(s.scalars(select(RunModel.model_version_id).where(RunModel.run_id == run_id)))
    for mv_id, weight in spec.models:
        if mv_id not in have:
            s.add(RunModel(run_id=run_id, model_version_id=mv_id, weight=weight))
            have.add(mv_id)
    key = s.scalar(select(ModelSet.key).where(ModelSet.id == model_set_id))
    s.add(
        AuditEvent(
            action="score_run_start" if created else "score_run_resume",
            new={"run_id": run_id, "model_set": key, "settings": spec.settings},
        )
    )
    s.flush()
    return run_id, created


def _apply_settings(run: ScoringRun, settings: dict[str, Any]) -> None:
    run.mode = settings.get("mode")
    run.views = len(settings.get("views") or []) or None
    run.alpha = settings.get("normal_alpha")
    run.weights = list(settings.get("weights") or [])
    run.precision = settings.get("precision")
    run.device = settings.get("device")
    run.prompts_hash = settings.get("prompts_hash")
    run.settings = settings


class _QueueItem(NamedTuple):
    """A claimed image to score: its id, path, file version, study and job."""

    id: int
    path: str
    version: int
    study_id: int | None
    job_id: int


def lock_studies(s: Session, study_ids: Any) -> list[int]:
    """PostgreSQL: lock these study rows in id order (``SELECT ... FOR UPDATE``) before their
    summaries are recomputed, so two workers refreshing one study neither lose an update nor
    deadlock. Returns the ids, sorted."""
    ids = sorted({int(i) for i in study_ids if i is not None})
    if ids and s.get_bind().dialect.name == "postgresql":
        for start in range(0, len(ids), 500):
            s.execute(
                select(Study.id)
                .where(Study.id.in_(ids[start : start + 500]))
                .order_by(Study.id)
                .with_for_update()
            ).all()
    return ids


def refresh_studies_locked(s: Session, study_ids: Any) -> None:
    """:func:`refresh_studies` with the study rows locked first (:func:`lock_studies`)."""
    ids = lock_studies(s, study_ids)
    if ids:
        refresh_studies(s, ids)


def _count_scored(s: Session, model_set_id: int) -> int:
    return int(
        s.scalar(
            select(func.count(Prediction.id))
            .join(
                Image,
                and_(Image.id == Prediction.image_id, Image.version == Prediction.image_version),
            )
            .where(
                Prediction.model_set_id == model_set_id,
                Image.usable.is_(True),
                Image.missing.is_(False),
            )
        )
        or 0
    )


# ----------------------------------------------------------------------------------------------
# attempts: recorded before each decode, gone with the outcome


def _begin_attempt(
    s: Session, item: _QueueItem, model_set_id: int, run_id: int
) -> ScannedFile | None:
    """Record that this image's scoring begins; its scanned record to check the file against.

    None (and nothing recorded) when the image is no longer the queued one: rescanned to a new
    version, missing or unusable since the queue was read.
    """
    image = s.get(Image, item.id)
    if image is None or image.version != item.version or image.missing or not image.usable:
        return None
    att = s.get(ScoreAttempt, (item.id, model_set_id))
    if att is None:
        s.add(
            ScoreAttempt(
                image_id=item.id,
                model_set_id=model_set_id,
                image_version=item.version,
                started=1,
                last_run_id=run_id,
            )
        )
    else:
        att.started = att.started + 1 if att.image_version == item.version else 1
        att.image_version = item.version
        att.last_run_id = run_id
        att.last_started_at = utcnow()
    return ScannedFile.of(image)


def _forget_attempts(s: Session, image_ids: list[int], model_set_id: int) -> None:
    """Undo this start's begun attempts of images it stopped before scoring (a clean cancel:
    nothing was interrupted)."""
    for att in s.scalars(
        select(ScoreAttempt).where(
            ScoreAttempt.image_id.in_(image_ids), ScoreAttempt.model_set_id == model_set_id
        )
    ).all():
        if att.started <= 1:
            s.delete(att)
        else:
            att.started -= 1


def _suspects(s: Session, model_set_id: int, image_ids: list[int]) -> set[int]:
    """Those of these images (claimed by this worker) that an earlier start left in flight:
    each is scored alone, so a start that dies on it dies on that file and no other."""
    if not image_ids:
        return set()
    return set(
        s.scalars(
            select(ScoreAttempt.image_id)
            .join(Image, Image.id == ScoreAttempt.image_id)
            .where(
                ScoreAttempt.model_set_id == model_set_id,
                ScoreAttempt.image_version == Image.version,
                ScoreAttempt.image_id.in_(image_ids),
            )
        ).all()
    )


def _drop_old_attempts(s: Session, model_set_id: int) -> None:
    """Attempts of older file versions: the rescanned file starts afresh."""
    stale = (
        select(ScoreAttempt.image_id)
        .join(Image, Image.id == ScoreAttempt.image_id)
        .where(
            ScoreAttempt.model_set_id == model_set_id, ScoreAttempt.image_version != Image.version
        )
    )
    ids = list(s.scalars(stale).all())
    if ids:
        s.execute(
            delete(ScoreAttempt).where(
                ScoreAttempt.model_set_id == model_set_id, ScoreAttempt.image_id.in_(ids)
            )
        )


def _give_up_interrupted(
    s: Session,
    items: list[_QueueItem],
    model_set_id: int,
    run_id: int,
    worker: str,
) -> list[tuple[_QueueItem, str]]:
    """Of these claimed images, fail those whose scoring was interrupted INTERRUPT_LIMIT times
    (while this worker still holds their job). Returns the items given up, with the reason."""
    if not items:
        return []
    by_id = {q.id: q for q in items}
    rows = s.execute(
        select(ScoreAttempt.image_id, ScoreAttempt.started)
        .join(Image, Image.id == ScoreAttempt.image_id)
        .where(
            ScoreAttempt.model_set_id == model_set_id,
            ScoreAttempt.image_version == Image.version,
            ScoreAttempt.image_id.in_(list(by_id)),
            ScoreAttempt.started >= INTERRUPT_LIMIT,
        )
    ).all()
    out: list[tuple[_QueueItem, str]] = []
    for image_id, started in rows:
        item = by_id[image_id]
        reason = INTERRUPTED.format(n=started)
        if not settle(s, worker, [item.job_id], "failed", error=reason):
            continue  # lost lease: another worker has it now
        _record_failure(s, image_id, item.version, reason, model_set_id, run_id, final=True)
        s.execute(
            delete(ScoreAttempt).where(
                ScoreAttempt.image_id == image_id, ScoreAttempt.model_set_id == model_set_id
            )
        )
        out.append((item, reason))
    if out:
        s.execute(
            update(ScoringRun)
            .where(ScoringRun.id == run_id)
            .values(n_failed=ScoringRun.n_failed + len(out))
            .execution_options(synchronize_session=False)
        )
        count_outcomes(s, worker, 0, len(out))
        s.flush()
        refresh_studies_locked(s, {q.study_id for q, _ in out})
    return out


# ----------------------------------------------------------------------------------------------
# results that must never be written


def expected_columns(predictor: Any) -> np.ndarray:
    """bool[36]: the columns the predictor computes (Task 1 with a task1 model, the zero-shot
    findings with a CLIP model); the others are NaN by design."""
    roles = {m.role for m in predictor.models}
    mask = np.zeros(len(ALL_CLASSES), dtype=bool)
    mask[: len(TASK1_CLASSES)] = any(r.startswith("task1") for r in roles)
    mask[len(TASK1_CLASSES) :] = "clip" in roles
    return mask


def invalid_probabilities(probs: np.ndarray, expected: np.ndarray) -> str | None:
    """Why these probabilities must not be written (None when they may): a NaN or infinity
    where the model set computes a probability, an infinity anywhere, or a value outside 0..1."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(ALL_CLASSES),):
        return f"the model returned {p.size} probabilities instead of {len(ALL_CLASSES)}"
    finite = np.isfinite(p)
    bad = (expected & ~finite) | np.isinf(p)
    bad |= finite & ((p < 0.0) | (p > 1.0))
    if not bad.any():
        return None
    names = [ALL_CLASSES[k] for k in np.flatnonzero(bad)]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"the model returned an invalid probability (NaN, infinity or outside 0..1) for {shown}: "
        "not scored"
    )


def _result_problem(res: Any, expected: np.ndarray) -> str | None:
    """Why an ok result must not be written (its probabilities, or its Task 1 values before
    gating), or None."""
    reason = invalid_probabilities(res.probs, expected)
    if reason is None and res.ungated is not None and expected[: len(TASK1_CLASSES)].any():
        ungated = np.asarray(res.ungated, dtype=np.float64)
        if not (np.isfinite(ungated).all() and (ungated >= 0).all() and (ungated <= 1).all()):
            reason = (
                "the model returned an invalid Task 1 probability before normal gating "
                "(NaN, infinity or outside 0..1): not scored"
            )
    return reason


# ----------------------------------------------------------------------------------------------
# one batch's write


@dataclass
class BatchOutcome:
    """What one batch's write did: images scored, (item, reason) failures, and the results
    discarded because this worker no longer held their job (``lost``: its lease was taken by
    another worker) or their image changed since it was queued (``stale``)."""

    n_ok: int = 0
    failed: list[tuple[_QueueItem, str]] = field(default_factory=list)
    lost: list[_QueueItem] = field(default_factory=list)
    stale: list[_QueueItem] = field(default_factory=list)


def _write_batch(
    s: Session,
    results: list[tuple[_QueueItem, Any]],
    *,
    model_set_id: int,
    run_id: int,
    thresholds: np.ndarray,
    expected: np.ndarray,
    worker: str,
) -> BatchOutcome:
    """One transaction: the jobs settled (only those this worker still holds), predictions,
    current pointers, hits, failures, counters, study summaries, and the end of the batch's
    attempts."""
    out = BatchOutcome()
    ids = [item.id for item, _ in results]
    existing = _scored_images(s, ids, model_set_id)
    current = {
        iid: (version, missing, usable)
        for iid, version, missing, usable in s.execute(
            select(Image.id, Image.version, Image.missing, Image.usable).where(Image.id.in_(ids))
        ).all()
    }
    # Sort the results: ok (to write), failed (with the reason), changed since queued.
    ok: list[tuple[_QueueItem, Any]] = []
    bad: list[tuple[_QueueItem, str]] = []
    stale: list[_QueueItem] = []
    already: list[_QueueItem] = []
    for item, res in results:
        if current.get(item.id) != (item.version, False, True):
            stale.append(item)  # rescanned (or gone) since it was queued: a rescan requeues it
        elif item.id in existing:
            already.append(item)  # scored meanwhile (by an older process without the queue)
        else:
            reason = (
                (res.reason or "unknown error") if not res.ok else _result_problem(res, expected)
            )
            if reason is None:
                ok.append((item, res))
            else:
                bad.append((item, reason))
    # The gate: only the jobs this worker still holds are settled; the rest is discarded.
    done_ids = settle(s, worker, [q.job_id for q, _ in ok] + [q.job_id for q in already], "done")
    failed_ids: set[int] = set()
    for item, reason in bad:
        failed_ids |= settle(s, worker, [item.job_id], "failed", error=reason)
    dropped = drop_owned(s, worker, [q.job_id for q in stale])
    owned = done_ids | failed_ids | dropped
    out.lost = [item for item, _ in results if item.job_id not in owned]
    out.stale = [q for q in stale if q.job_id in dropped]
    mine = [item.id for item, _ in results if item.job_id in owned]
    if mine:
        s.execute(
            delete(ScoreAttempt).where(
                ScoreAttempt.image_id.in_(mine), ScoreAttempt.model_set_id == model_set_id
            )
        )
    # The model set each image currently shows: another set's prediction stays current until
    # this run completes (see the module docstring).
    showing = dict(
        s.execute(
            select(Image.id, Prediction.model_set_id)
            .join(Prediction, Prediction.id == Image.current_prediction_id)
            .where(Image.id.in_(ids))
        ).all()
    )
    # Progressive triage (library.progressive): a paper set's prediction replaces a current
    # prediction of its paired fast sets at once; a fast set's results rank the paper jobs.
    from cxrlt_desktop.library import progressive

    replaces = {model_set_id} | progressive.replaceable_sets(s, model_set_id)
    ranks_for = progressive.paper_sets_of(s, model_set_id)
    ranked: list[tuple[int, int, float | None]] = []
    studies: set[int] = set()
    for item, res in ok:
        if item.job_id not in done_ids:
            continue
        studies.add(item.study_id)
        pred, summary = _add_prediction(
            s, item.id, item.version, res, model_set_id, run_id, thresholds
        )
        ranked.append((item.id, item.version, summary.rare_score))
        if showing.get(item.id, model_set_id) in replaces:
            s.execute(
                update(Image)
                .where(Image.id == item.id, Image.version == item.version)
                .values(current_prediction_id=pred.id)
            )
            replace_hits(s, item.id, item.study_id, pred.id, summary)
        s.execute(
            delete(ScoreFailure).where(
                ScoreFailure.image_id == item.id, ScoreFailure.model_set_id == model_set_id
            )
        )
        out.n_ok += 1
    for paper_set in ranks_for:
        progressive.rank_paper_jobs(s, paper_set, ranked)
    for item, reason in bad:
        if item.job_id not in failed_ids:
            continue
        studies.add(item.study_id)
        _record_failure(s, item.id, item.version, reason, model_set_id, run_id)
        out.failed.append((item, reason))
    if out.n_ok or out.failed:
        s.execute(
            update(ScoringRun)
            .where(ScoringRun.id == run_id)
            .values(
                n_done=ScoringRun.n_done + out.n_ok, n_failed=ScoringRun.n_failed + len(out.failed)
            )
            .execution_options(synchronize_session=False)
        )
        count_outcomes(s, worker, out.n_ok, len(out.failed))
    s.flush()
    refresh_studies_locked(s, studies)
    return out


def _scored_images(s: Session, ids: list[int], model_set_id: int) -> set[int]:
    """Those of ``ids`` that have a prediction of this model set for their current version."""
    return set(
        s.scalars(
            select(Prediction.image_id)
            .where(Prediction.image_id.in_(ids), Prediction.model_set_id == model_set_id)
            .join(
                Image,
                and_(Image.id == Prediction.image_id, Image.version == Prediction.image_version),
            )
        ).all()
    )


def _add_prediction(
    s: Session,
    image_id: int,
    version: int,
    res: Any,
    model_set_id: int,
    run_id: int,
    thresholds: np.ndarray,
) -> tuple[Prediction, TriageSummary]:
    """Store one image's result (flushed, so it has an id) and its triage summary."""
    # Triage from the stored float32 values, so the score is reproducible from the row.
    probs = probs_to_array(array_to_probs(res.probs))
    summary = summarize(probs, thresholds)
    att = res.attention
    blob, h, w = array_to_attention(att) if att is not None else (None, None, None)
    pred = Prediction(
        image_id=image_id,
        run_id=run_id,
        model_set_id=model_set_id,
        image_version=version,
        probs=array_to_probs(probs),
        ungated=None if res.ungated is None else array_to_probs(res.ungated),
        attention=blob,
        attention_h=h,
        attention_w=w,
        rare_score=summary.rare_score,
        n_above=summary.n_above,
        top_findings=summary.top_findings,
        seconds=float(res.seconds),
    )
    s.add(pred)
    s.flush()
    return pred, summary


def _record_failure(
    s: Session,
    image_id: int,
    version: int,
    reason: str | None,
    model_set_id: int,
    run_id: int,
    *,
    final: bool = False,
) -> None:
    """Count a failed attempt; a new file version starts counting again at 1. ``final``: no
    further attempt (the count goes to MAX_ATTEMPTS)."""
    reason = reason or "unknown error"
    fail = s.get(ScoreFailure, (image_id, model_set_id))
    if fail is None:
        fail = ScoreFailure(
            image_id=image_id,
            model_set_id=model_set_id,
            image_version=version,
            reason=reason,
            attempts=1,
            last_run_id=run_id,
        )
        s.add(fail)
    else:
        fail.attempts = fail.attempts + 1 if fail.image_version == version else 1
        fail.image_version = version
        fail.reason = reason
        fail.last_run_id = run_id
        fail.last_attempt_at = utcnow()
    if final:
        fail.attempts = max(fail.attempts or 1, MAX_ATTEMPTS)


def retry_failed(store: Store, image_ids: list[int] | None = None) -> int:
    """Forget the scoring failures and interrupted attempts of these images (all when None) and
    queue their failed jobs again, so the next start (or a running worker) scores them again
    (after the file that crashed a decoder was replaced, or the decoder updated). Returns the
    number of failures cleared."""

    def work(s: Session) -> int:
        fails = select(ScoreFailure)
        atts = delete(ScoreAttempt)
        if image_ids is not None:
            fails = fails.where(ScoreFailure.image_id.in_(image_ids))
            atts = atts.where(ScoreAttempt.image_id.in_(image_ids))
        rows = s.scalars(fails).all()
        cleared = {f.image_id for f in rows}
        for f in rows:
            s.delete(f)
        s.execute(atts)
        jobs = update(ScoreJob).where(ScoreJob.state == "failed")
        if image_ids is not None:
            jobs = jobs.where(ScoreJob.image_id.in_(image_ids))
        s.execute(
            jobs.values(
                state="queued", worker=None, lease_until=None, finished_at=None
            ).execution_options(synchronize_session=False)
        )
        s.flush()
        if cleared:
            refresh_studies_locked(
                s,
                s.scalars(
                    select(Series.study_id)
                    .join(Image, Image.series_id == Series.id)
                    .where(Image.id.in_(sorted(cleared)))
                ).all(),
            )
        return len(rows)

    return store.write(work)


# Images switched per write transaction when a run completes: a library rescored by a new model
# set switches every image, and one transaction for all of them would hold the write lock for
# minutes (about 1 ms per image), freezing a verdict clicked meanwhile.
SWITCH_CHUNK = 200


def _make_current(
    s: Session, model_set_id: int, thresholds: np.ndarray, image_ids: list[int] | None = None
) -> int:
    """Point every image scored by this model set (current file version) at that prediction.

    ``image_ids`` limits the switch to those images. Returns the number of images switched.
    """
    newest = (
        select(Prediction.image_id, func.max(Prediction.id).label("pid"))
        .join(
            Image,
            and_(Image.id == Prediction.image_id, Image.version == Prediction.image_version),
        )
        .where(Prediction.model_set_id == model_set_id)
    )
    if image_ids is not None:
        newest = newest.where(Prediction.image_id.in_(image_ids))
    newest = newest.group_by(Prediction.image_id).subquery()
    rows = s.execute(
        select(Image.id, newest.c.pid, Series.study_id, Prediction.probs)
        .join(newest, newest.c.image_id == Image.id)
        .join(Prediction, Prediction.id == newest.c.pid)
        .outerjoin(Series, Series.id == Image.series_id)
        .where(
            (Image.current_prediction_id.is_(None)) | (Image.current_prediction_id != newest.c.pid)
        )
        .where(~_shows_paired_paper(model_set_id))
    ).all()
    for image_id, pid, study_id, blob in rows:
        s.execute(update(Image).where(Image.id == image_id).values(current_prediction_id=pid))
        replace_hits(s, image_id, study_id, pid, summarize(probs_to_array(blob), thresholds))
    refresh_studies_locked(s, {r[2] for r in rows if r[2] is not None})
    return len(rows)


def _shows_paired_paper(model_set_id: int) -> Any:
    """The image shows a prediction of a paper set this (fast) set is paired with: the final
    result of progressive triage, never switched back to the provisional one."""
    from cxrlt_desktop.store.tables_progressive import ModelSetPair

    cur = aliased(Prediction)
    return exists().where(
        cur.id == Image.current_prediction_id,
        cur.model_set_id == ModelSetPair.paper_model_set_id,
        ModelSetPair.fast_model_set_id == model_set_id,
    )


def _to_switch(s: Session, model_set_id: int) -> list[int]:
    """Images with a prediction of this model set for their file version that show another."""
    return list(
        s.scalars(
            select(Image.id)
            .join(
                Prediction,
                and_(
                    Prediction.image_id == Image.id,
                    Prediction.image_version == Image.version,
                    Prediction.model_set_id == model_set_id,
                ),
            )
            .where(
                (Image.current_prediction_id.is_(None))
                | (Image.current_prediction_id != Prediction.id)
            )
            .where(~_shows_paired_paper(model_set_id))
            .distinct()
            .order_by(Image.id)
        ).all()
    )


def finish_model_set(store: Store, model_set_id: int, thresholds: np.ndarray) -> list[int]:
    """Complete the model set's run if none of its jobs is open: switch the images it scored
    to it, in short transactions (see SWITCH_CHUNK), then, in one more that re-checks under the
    model set's exclusive advisory lock (PostgreSQL), switch anything that changed meanwhile
    and record the end of the open run (``finished_at``, audit ``score_run_end``). Whoever of
    several workers gets there first ends the run; the others find it ended. Returns the ids
    of the runs this call ended (empty when jobs are still open or no run was open).
    """
    with store.session() as s, s.begin():
        if open_jobs(s, model_set_id):
            return []
        todo = _to_switch(s, model_set_id)
    for i in range(0, len(todo), SWITCH_CHUNK):
        chunk = todo[i : i + SWITCH_CHUNK]
        store.write(lambda s, c=chunk: _make_current(s, model_set_id, thresholds, c))

    def finish(s: Session) -> list[int]:
        lock_model_set(s, model_set_id, shared=False)
        if open_jobs(s, model_set_id):  # queued meanwhile: the run goes on
            return []
        _make_current(s, model_set_id, thresholds)
        ended = s.execute(
            update(ScoringRun)
            .where(ScoringRun.model_set_id == model_set_id, ScoringRun.finished_at.is_(None))
            .values(finished_at=utcnow())
            .returning(ScoringRun.id, ScoringRun.n_done, ScoringRun.n_failed)
            .execution_options(synchronize_session=False)
        ).all()
        for run_id, n_done, n_failed in ended:
            s.add(
                AuditEvent(
                    action="score_run_end",
                    new={"run_id": run_id, "done": n_done, "failed": n_failed},
                )
            )
        return [r[0] for r in ended]

    return store.write(finish)


def score_library(
    store: Store,
    predictor: Any,
    *,
    batch_size: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    thresholds: Mapping[str, float] | None = None,
    map_path: Callable[[str], str] | None = None,
) -> Iterator[ScoreProgress]:
    """Score every pending image of the library with ``predictor``; yield progress per batch.

    The pending images are queued (:func:`cxrlt_desktop.library.queue.enqueue`) and scored by
    one worker in this process (:class:`cxrlt_desktop.library.worker.ScoringWorker`), which
    claims them from the queue: workers on other machines may share the work.

    Parameters
    ----------
    store
        The open store.
    predictor
        An ``engine.predictor.Predictor`` (``models``, ``settings``, ``predict_paths``).
    batch_size
        Images per compute batch and per write transaction (default: the predictor's).
    should_stop
        Checked between batches; True stops after the batch in flight has been written.
    thresholds
        Operating-threshold overrides by class name (settings ``[thresholds]``).
    map_path
        Rewrites a stored image path before it is read (``Settings.map_path``: the settings'
        ``[paths]`` prefixes); default: read the stored path.

    Yields
    ------
    ScoreProgress
        One record before the first batch (``total`` known; ``last_errors`` names the images
        given up after repeated interruptions), one per written batch, and a last one with
        ``finished`` or ``cancelled`` set.

    Raises
    ------
    TypeError
        ``predictor.predict_paths`` takes no ``read``: every file is decoded through it, so
        that it is checked against the scan and its attempt recorded first.
    """
    from cxrlt_desktop.library.worker import ScoringWorker

    bs = int(batch_size or getattr(getattr(predictor, "config", None), "batch_size", 8) or 8)
    worker = ScoringWorker(
        store,
        predictor,
        thresholds=thresholds,
        batch_size=bs,
        should_stop=should_stop,
        map_path=map_path,
    )
    yield from worker.run()


def current_predictions(store: Store, image_ids: list[int]) -> dict[int, Prediction]:
    """The current prediction of each image (for the review panel and export)."""
    with store.session() as s, s.begin():
        rows = s.execute(
            select(Image.id, Prediction)
            .join(Prediction, Prediction.id == Image.current_prediction_id)
            .where(Image.id.in_(image_ids))
        ).all()
        return {iid: p for iid, p in rows}
