"""Progressive triage: a fast pass over every image first, then the paper pass in triage order.

The policy (``POLICIES``; :func:`default_policy`: "progressive" when the engine runs on a CPU,
"paper" on a GPU, which is fast enough for the paper pass alone):

- Fast and paper passes are two model sets (the mode is part of a model set's settings, so their
  keys differ) linked by a ``model_set_pair`` row (:func:`pair_model_sets`). Their predictions
  are distinct rows, each with its model set: nothing is overwritten, and an image never has two
  predictions of one model set for a file version (``uq_prediction_image_set``).
- Jobs: one queue. The fast set's jobs (``score_job.kind`` "fast") are queued at
  :data:`FAST_PRIORITY`; the paper set's jobs (kind "paper") at :data:`UNRANKED_PRIORITY` until
  the image's fast result lands, then at its provisional rare score
  (:func:`rank_paper_jobs`), so paper jobs are claimed most suspicious first, by a progressive
  CPU workstation and by a paper-only GPU worker on the same queue alike.
- What shows: an image's current prediction is its paper prediction when there is one, else
  its fast one, which is *provisional* (:func:`provisional_images`) when its model set is paired
  with a paper set. A fast set scored on its own (the "fast" policy) is not provisional. A paper
  prediction replaces a current prediction of its paired fast sets at once
  (:func:`replaceable_sets`), not at the end of its run.
- The CLIP zero-shot columns are computed once, in the fast pass, and reused by the paper pass
  (``Predictor.predict_paths(..., clip=False)``, then :func:`with_clip_columns`); verdicts are
  per image and finding and never depend on which pass is current.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from cxrlt_desktop.store.models import Image, Prediction, utcnow
from cxrlt_desktop.store.tables_department import ScoreJob
from cxrlt_desktop.store.tables_progressive import ModelSetPair
from engine.classes import TASK1_CLASSES

POLICIES = ("progressive", "paper", "fast")
FAST_KIND = "fast"
PAPER_KIND = "paper"
# Fast jobs go before any paper job of the queue; a paper job whose image has no fast result
# yet waits behind every ranked one (rare scores are >= 0).
FAST_PRIORITY = 1.0e9
UNRANKED_PRIORITY = -1.0


def default_policy(device_type: str) -> str:
    """ "progressive" on a CPU, "paper" on a GPU (``device_type``: torch.device.type)."""
    return "paper" if device_type == "cuda" else "progressive"


def fast_pass_config(config: Any) -> Any:
    """The provisional pass's ``EngineConfig``: fast mode, and a bf16 backbone where the CPU
    has bf16 hardware (its result is replaced by the paper pass, so it need not meet the fp32
    agreement bound)."""
    from dataclasses import replace

    return replace(config, mode="fast", backbone_precision="auto")


def load_predictors(config: Any, policy: str | None = None) -> tuple[Any, Any, str]:
    """The predictors a policy needs: ``(predictor, fast_predictor, policy)``. ``predictor``
    runs the policy's main pass (paper mode, or fast mode for the "fast" policy);
    ``fast_predictor`` is the provisional pass of the "progressive" policy, else None; it uses
    the main predictor's CLIP model (one copy in memory; the paper pass runs without CLIP).
    ``policy`` None: "fast" when ``config.mode`` is fast, else :func:`default_policy` of the
    device the predictor runs on."""
    from dataclasses import replace

    from engine.predictor import Predictor

    if policy is None and config.mode == "fast":
        policy = "fast"
    if policy is not None:
        check_policy(policy)
    predictor = Predictor(replace(config, mode="fast" if policy == "fast" else "paper"))
    policy = policy or default_policy(predictor.device.type)
    fast = (
        Predictor(fast_pass_config(config), share_clip_with=predictor)
        if policy == "progressive"
        else None
    )
    return predictor, fast, policy


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    return policy


def pair_model_sets(s: Session, fast_model_set_id: int, paper_model_set_id: int) -> None:
    """Record that the fast set is the provisional pass of the paper set (idempotent; safe when
    several workers pair the same sets at once)."""
    from cxrlt_desktop.library.queue import _insert

    s.execute(
        _insert(s)(ModelSetPair)
        .values(
            fast_model_set_id=fast_model_set_id,
            paper_model_set_id=paper_model_set_id,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )


def replaceable_sets(s: Session, paper_model_set_id: int) -> set[int]:
    """The fast model sets whose current predictions the paper set's replace at once."""
    return set(
        s.scalars(
            select(ModelSetPair.fast_model_set_id).where(
                ModelSetPair.paper_model_set_id == paper_model_set_id
            )
        ).all()
    )


def paper_sets_of(s: Session, fast_model_set_id: int) -> set[int]:
    """The paper model sets whose jobs this (fast) set's results rank."""
    return set(
        s.scalars(
            select(ModelSetPair.paper_model_set_id).where(
                ModelSetPair.fast_model_set_id == fast_model_set_id
            )
        ).all()
    )


def provisional_images(s: Session, image_ids: Iterable[int] | None = None) -> set[int]:
    """Images (of ``image_ids``, or all) whose current prediction is a provisional fast one:
    its model set is paired with a paper set."""
    q = (
        select(Image.id)
        .join(Prediction, Prediction.id == Image.current_prediction_id)
        .join(ModelSetPair, ModelSetPair.fast_model_set_id == Prediction.model_set_id)
    )
    if image_ids is not None:
        ids = sorted({int(i) for i in image_ids})
        if not ids:
            return set()
        q = q.where(Image.id.in_(ids))
    return set(s.scalars(q.distinct()).all())


def is_provisional_prediction(s: Session, prediction_id: int | None) -> bool:
    """True when the prediction is a provisional fast one (its model set is paired with a
    paper set)."""
    if prediction_id is None:
        return False
    return (
        s.scalar(
            select(ModelSetPair.fast_model_set_id)
            .join(Prediction, Prediction.model_set_id == ModelSetPair.fast_model_set_id)
            .where(Prediction.id == prediction_id)
            .limit(1)
        )
        is not None
    )


PROVISIONAL_NOTE = "Provisional scores (fast pass): the paper method's result will replace them"


def rank_paper_jobs(
    s: Session, paper_model_set_id: int, ranked: Sequence[tuple[int, int, float | None]]
) -> int:
    """Give the paper set's queued jobs of ``ranked`` (image id, image version, provisional rare
    score) the score as priority (None: :data:`UNRANKED_PRIORITY`); claimed or finished jobs
    keep theirs. Returns the number of jobs changed."""
    n = 0
    for image_id, version, score in ranked:
        prio = UNRANKED_PRIORITY if score is None or not np.isfinite(score) else float(score)
        res = s.execute(
            update(ScoreJob)
            .where(
                and_(
                    ScoreJob.image_id == image_id,
                    ScoreJob.image_version == version,
                    ScoreJob.model_set_id == paper_model_set_id,
                    ScoreJob.kind == PAPER_KIND,
                    ScoreJob.state == "queued",
                )
            )
            .values(priority=prio)
            .execution_options(synchronize_session=False)
        )
        n += int(res.rowcount or 0)
    return n


def rank_from_fast_results(s: Session, fast_model_set_id: int, paper_model_set_id: int) -> int:
    """Rank the paper set's queued jobs by the fast set's stored results (a restart after the
    fast pass, or after a kill between the passes, finds them there)."""
    rows = s.execute(
        select(Prediction.image_id, Prediction.image_version, Prediction.rare_score)
        .join(
            Image,
            and_(Image.id == Prediction.image_id, Image.version == Prediction.image_version),
        )
        .where(Prediction.model_set_id == fast_model_set_id)
    ).all()
    return rank_paper_jobs(s, paper_model_set_id, [tuple(r) for r in rows])


def score_progressive(
    store: Any, fast_predictor: Any, paper_predictor: Any, **worker_kw: Any
) -> Iterator[tuple[str, Any]]:
    """The progressive policy in one process: the fast pass over every pending image, then the
    paper pass, its jobs claimed in decreasing provisional rare score. Yields ``(pass name,
    ScoreProgress)`` from the two :class:`~cxrlt_desktop.library.worker.ScoringWorker` runs;
    both decode through the process's :func:`engine.source_cache.shared_cache`. ``worker_kw``
    goes to both workers (``thresholds``, ``batch_size``, ``name``, ``should_stop``, ...).
    Stopped or killed anywhere, a new start goes on where the queue stands.
    """
    from cxrlt_desktop.library import queue as jobq
    from cxrlt_desktop.library import scoring
    from cxrlt_desktop.library.worker import ScoringWorker
    from engine.source_cache import shared_cache

    fast_id, _ = store.write(lambda s: scoring.register_model_set(s, fast_predictor))
    paper_id, _ = store.write(lambda s: scoring.register_model_set(s, paper_predictor))
    if fast_id == paper_id:
        raise ValueError("the fast and paper passes compute the same model set")
    store.write(lambda s: pair_model_sets(s, fast_id, paper_id))
    # Paper jobs first (unranked), so that each fast result can rank its image's job.
    jobq.enqueue(store, paper_id, kind=PAPER_KIND, priority=UNRANKED_PRIORITY)
    store.write(lambda s: rank_from_fast_results(s, fast_id, paper_id))
    read = shared_cache().reader()
    fast = ScoringWorker(
        store,
        fast_predictor,
        kind=FAST_KIND,
        priority=FAST_PRIORITY,
        read_source=read,
        **worker_kw,
    )
    last = None
    for last in fast.run():
        yield "fast", last
    if last is not None and last.cancelled:
        return
    paper = ScoringWorker(
        store,
        paper_predictor,
        kind=PAPER_KIND,
        priority=UNRANKED_PRIORITY,
        read_source=read,
        clip_from=fast_id,  # the CLIP columns are computed once, in the fast pass
        **worker_kw,
    )
    for last in paper.run():
        yield "paper", last


def with_clip_columns(paper_probs: np.ndarray, fast_probs: np.ndarray) -> np.ndarray:
    """The paper pass's probabilities with the zero-shot (CLIP) columns of the fast pass: the
    paper pass skips CLIP (same tower, same fp32 numbers)."""
    out = np.array(paper_probs, dtype=np.float64, copy=True)
    k = len(TASK1_CLASSES)
    out[..., k:] = np.asarray(fast_probs, dtype=np.float64)[..., k:]
    return out


__all__ = [
    "FAST_KIND",
    "FAST_PRIORITY",
    "PAPER_KIND",
    "POLICIES",
    "PROVISIONAL_NOTE",
    "UNRANKED_PRIORITY",
    "check_policy",
    "default_policy",
    "fast_pass_config",
    "load_predictors",
    "is_provisional_prediction",
    "pair_model_sets",
    "paper_sets_of",
    "provisional_images",
    "rank_from_fast_results",
    "score_progressive",
    "rank_paper_jobs",
    "replaceable_sets",
    "with_clip_columns",
]
