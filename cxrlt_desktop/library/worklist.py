"""The worklist: studies ordered by rare-finding score, read from the store's triage columns.

Order: ``priority`` (the study's rare-finding score; -1 while nothing is scored) descending,
then study date descending (newest first among equal scores), then study id descending. The
``ix_study_worklist`` / ``ix_study_reviewed_worklist`` indexes serve this order read backwards,
so ``LIMIT`` stops early; the finding filter starts from ``finding_hit``'s (finding, study_id)
index and sorts only the matching studies.

Status: ``unreviewed`` lists studies not fully reviewed (no verdict, or only some images
reviewed: ``partial``), ``reviewed`` those whose every usable image has a verdict, ``all`` both.
Only studies with at least one usable, present image are listed.

``for_processing`` marks a study with a FOR PROCESSING image (raw detector data: scored, but the
models were trained on images for presentation; such an image raises the rare-finding flag only
with the library's ``flag_for_processing`` option, see :mod:`.triage`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Select, exists, func, literal, or_, select
from sqlalchemy.orm import Session

from cxrlt_desktop.library.pseudonym import pseudonym
from cxrlt_desktop.library.triage import for_processing_clause
from cxrlt_desktop.store import Store
from cxrlt_desktop.store.models import (
    FindingHit,
    Image,
    Patient,
    Prediction,
    ScoreFailure,
    Series,
    Study,
)
from cxrlt_desktop.store.tables_progressive import ModelSetPair
from engine.classes import ALL_CLASSES, DISPLAY_NAMES

STATUSES = ("unreviewed", "reviewed", "all")


@dataclass
class WorklistRow:
    """One study of the worklist (what ``cxrlt worklist --json`` prints, plus ids for the GUI)."""

    study_id: int
    study_uid: str
    patient: str  # pseudonym, or the PatientID with show_phi
    study_date: str | None
    description: str | None
    n_images: int
    n_scored: int
    n_failed: int
    rare_score: float | None
    n_above: int
    top_findings: list[dict[str, Any]] = field(default_factory=list)
    status: str = "unreviewed"
    patient_name: str | None = None  # only with show_phi
    for_processing: bool = False  # a usable image of the study is FOR PROCESSING
    # an image of the study shows a provisional score (the progressive policy's fast pass,
    # before the paper pass replaced it: library.progressive)
    provisional: bool = False

    @property
    def flagged(self) -> bool:
        """A rare finding is at or above its threshold (rare score >= 1)."""
        return self.rare_score is not None and self.rare_score >= 1.0

    def to_json(self, *, show_phi: bool = False) -> dict[str, Any]:
        """The JSON object ``cxrlt worklist --json`` prints: study_uid, patient, study_date,
        description, n_images, n_scored, n_failed, rare_score, top_findings, status,
        for_processing, provisional (+ n_above, patient_name with PHI)."""
        d = asdict(self)
        d.pop("study_id")
        if not show_phi:
            d.pop("patient_name")
        return d


def patient_label(patient_id: str | None, key: str, *, show_phi: bool) -> str:
    """What the worklist shows for a patient: its pseudonym (salted SHA-256 of the PatientID, or
    of the patient key when the file had none), or the PatientID itself with ``show_phi``."""
    if show_phi:
        return patient_id or key
    return pseudonym(patient_id or key, kind="patient")


def resolve_finding(name: str) -> str:
    """Engine class name for ``name`` (class or display name, any case); ValueError otherwise."""
    if name in ALL_CLASSES:
        return name
    low = name.strip().lower()
    for c in ALL_CLASSES:
        if c.lower() == low or DISPLAY_NAMES[c].lower() == low:
            return c
    raise ValueError(
        f"unknown finding {name!r}; one of: {', '.join(DISPLAY_NAMES[c] for c in ALL_CLASSES)}"
    )


DENSE_HITS = 5000  # finding_hit rows from which a finding filter walks the index instead


def _is_dense(s: Session, finding: str | None) -> bool:
    """Whether the finding has at least DENSE_HITS hit rows (a bounded count: cheap)."""
    if not finding:
        return False
    f = resolve_finding(finding)
    capped = select(literal(1)).where(FindingHit.finding == f).limit(DENSE_HITS).subquery()
    return int(s.scalar(select(func.count()).select_from(capped)) or 0) >= DENSE_HITS


def _filtered(
    stmt: Select,
    *,
    status: str,
    finding: str | None,
    text: str | None,
    show_phi: bool,
    dense: bool = False,
) -> Select:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    stmt = stmt.where(Study.n_images > 0)
    if status != "all":
        stmt = stmt.where(Study.reviewed.is_(status == "reviewed"))
    if finding:
        f = resolve_finding(finding)
        if dense:
            # Many matches: walk the worklist index and probe each study; LIMIT stops early.
            stmt = stmt.where(
                exists().where(FindingHit.study_id == Study.id, FindingHit.finding == f)
            )
        else:
            # Few matches: start from the (finding, study_id) index and sort only those studies
            # (an EXISTS walk would visit every study when the finding is rare: 63 ms vs 1 ms
            # over 30,000 studies).
            stmt = stmt.where(
                Study.id.in_(select(FindingHit.study_id).where(FindingHit.finding == f))
            )
    if text:
        like = f"%{text.strip()}%"
        conds = [Study.description.ilike(like), Study.study_date.ilike(like)]
        if show_phi:
            conds += [
                Patient.patient_id.ilike(like),
                Patient.patient_name.ilike(like),
                Study.accession_number.ilike(like),
            ]
        stmt = stmt.where(or_(*conds))
    return stmt


def query_worklist(
    store: Store,
    *,
    limit: int = 100,
    offset: int = 0,
    status: str = "all",
    finding: str | None = None,
    text: str | None = None,
    show_phi: bool = False,
    study_uids: Iterable[str] | None = None,
) -> list[WorklistRow]:
    """One page of the worklist.

    Parameters
    ----------
    limit, offset
        Page size and start (the GUI loads pages lazily).
    status
        ``unreviewed`` | ``reviewed`` | ``all``.
    finding
        Only studies where this finding (class or display name) is at or above threshold in
        some image.
    text
        Case-insensitive substring of the description or date (and, with ``show_phi``, of the
        PatientID, name or accession number).
    show_phi
        Show PatientIDs and names instead of pseudonyms.
    study_uids
        Only these studies (the GUI keeps the open study's row when it leaves the filter).

    Raises
    ------
    ValueError
        Unknown status or finding.
    """
    stmt = select(
        Study.id,
        Study.study_uid,
        Study.study_date,
        Study.description,
        Study.n_images,
        Study.n_scored,
        Study.n_failed,
        Study.rare_score,
        Study.n_above,
        Study.top_findings,
        Study.review_status,
        Patient.patient_id,
        Patient.key,
        Patient.patient_name,
    ).join(Patient, Patient.id == Study.patient_id)
    with store.session() as s, s.begin():
        dense = _is_dense(s, finding)
        stmt = _filtered(
            stmt, status=status, finding=finding, text=text, show_phi=show_phi, dense=dense
        )
        if study_uids is not None:
            stmt = stmt.where(Study.study_uid.in_(list(study_uids)))
        # NULLS LAST spelled out: PostgreSQL sorts NULL as the largest value, SQLite as the
        # smallest; both list undated studies last (SQLite still reads the index alone,
        # PostgreSQL reads it for the priority and sorts each priority's studies).
        stmt = stmt.order_by(
            Study.priority.desc(), Study.study_date.desc().nulls_last(), Study.id.desc()
        )
        rows = s.execute(stmt.limit(limit).offset(offset)).all()
        raw = _with_for_processing(s, [r.id for r in rows])
        provisional = _with_provisional(s, [r.id for r in rows])
    return [
        WorklistRow(
            study_id=r.id,
            study_uid=r.study_uid,
            patient=patient_label(r.patient_id, r.key, show_phi=show_phi),
            study_date=r.study_date,
            description=r.description,
            n_images=r.n_images,
            n_scored=r.n_scored,
            n_failed=r.n_failed,
            rare_score=r.rare_score,
            n_above=r.n_above,
            top_findings=list(r.top_findings or []),
            status=r.review_status,
            patient_name=r.patient_name if show_phi else None,
            for_processing=r.id in raw,
            provisional=r.id in provisional,
        )
        for r in rows
    ]


def _with_provisional(s: Session, study_ids: list[int]) -> set[int]:
    """Those of these studies with an image whose current prediction is provisional (a fast
    model set paired with a paper set: library.progressive), in one query for the page."""
    if not study_ids:
        return set()
    return set(
        s.scalars(
            select(Series.study_id)
            .join(Image, Image.series_id == Series.id)
            .join(Prediction, Prediction.id == Image.current_prediction_id)
            .join(ModelSetPair, ModelSetPair.fast_model_set_id == Prediction.model_set_id)
            .where(Series.study_id.in_(study_ids))
            .distinct()
        ).all()
    )


def _with_for_processing(s: Session, study_ids: list[int]) -> set[int]:
    """Those of these studies with a usable, present FOR PROCESSING image (one query for the
    page: as a correlated column it was evaluated for every study, +10 ms a page at 30,000)."""
    if not study_ids:
        return set()
    return set(
        s.scalars(
            select(Series.study_id)
            .join(Image, Image.series_id == Series.id)
            .where(
                Series.study_id.in_(study_ids),
                Image.usable.is_(True),
                Image.missing.is_(False),
                for_processing_clause(),
            )
            .distinct()
        ).all()
    )


def count_worklist(
    store: Store,
    *,
    status: str = "all",
    finding: str | None = None,
    text: str | None = None,
    show_phi: bool = False,
) -> int:
    """How many studies :func:`query_worklist` would list without a limit."""
    stmt = select(func.count(Study.id)).join(Patient, Patient.id == Study.patient_id)
    stmt = _filtered(stmt, status=status, finding=finding, text=text, show_phi=show_phi)
    with store.session() as s, s.begin():
        return int(s.scalar(stmt) or 0)


@dataclass
class ImageRow:
    """An image of a study, for the review panel.

    ``state``: ``done`` (has a current prediction), ``failed`` (scoring failed: ``failure``
    says why), ``pending`` (queued), ``missing`` (file gone) or ``unusable``.
    """

    image_id: int
    path: str
    series_uid: str
    view_position: str | None
    usable: bool
    missing: bool
    current_prediction_id: int | None
    state: str = "pending"
    failure: str | None = None


def study_images(store: Store, study_id: int) -> list[ImageRow]:
    """The study's images, by series then instance number then id."""
    with store.session() as s, s.begin():
        rows = s.execute(
            select(Image, Series.series_uid)
            .join(Series, Series.id == Image.series_id)
            .where(Series.study_id == study_id)
            .order_by(
                # unnumbered last on both dialects, as in the viewer's reading order
                # (ui.store_access.study_images)
                Series.series_number.nulls_last(),
                Series.id,
                Image.instance_number.nulls_last(),
                Image.id,
            )
        ).all()
        ids = [i.id for i, _ in rows]
        failures: dict[int, tuple[int, str]] = {}
        if ids:
            for iid, version, reason in s.execute(
                select(ScoreFailure.image_id, ScoreFailure.image_version, ScoreFailure.reason)
                .where(ScoreFailure.image_id.in_(ids))
                .order_by(ScoreFailure.last_attempt_at)
            ):
                failures[iid] = (version, reason)
        out = []
        for i, uid in rows:
            fail = failures.get(i.id)
            failure = fail[1] if fail and fail[0] == i.version else None
            if i.missing:
                state = "missing"
            elif not i.usable:
                state = "unusable"
            elif i.current_prediction_id is not None:
                state = "done"
            elif failure:
                state = "failed"
            else:
                state = "pending"
            out.append(
                ImageRow(
                    i.id,
                    i.path,
                    uid,
                    i.view_position,
                    i.usable,
                    i.missing,
                    i.current_prediction_id,
                    state,
                    failure,
                )
            )
        return out


def problem_files(store: Store, *, limit: int = 10_000) -> list[tuple[str, str]]:
    """(path, reason) of every unusable file the scans recorded (the GUI's Problems list)."""
    with store.session() as s, s.begin():
        return [
            (p, r or "unusable")
            for p, r in s.execute(
                select(Image.path, Image.reason)
                .where(Image.usable.is_(False))
                .order_by(Image.path)
                .limit(limit)
            )
        ]
