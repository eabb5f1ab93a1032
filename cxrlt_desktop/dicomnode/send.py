"""Results back to the PACS: the AI-result SR, the review SR and the attention heatmap of each
image, over C-STORE or STOW-RS, every send recorded in ``dicom_send``.

- What: ``ai-sr`` (an AI-result SR for every scored image, reviewed or not), ``review-sr``
  (only where verdicts exist; it references the AI-result SR, which is sent with it when this
  destination has not received it yet), ``heatmap`` (:mod:`.heatmap`, images with attention
  maps). The documents are identified (the PACS files them next to the images): built with
  ``export.build_ai_sr``/``build_review_sr`` and ``include_phi=True``.
- Each object is first written to the outbox (``data_dir()/outbox/<SOPInstanceUID>.dcm``), a
  ``dicom_send`` row records it (pending), and the transfer's outcome sets ``sent`` or
  ``failed`` with the peer's error; ``attempts`` counts tries. A failure is kept and retried on
  request (:func:`retry_failed`: the same file, the same SOP instance, so the PACS never holds
  two copies); nothing is dropped silently. Heatmap files leave the outbox once sent; SRs stay
  (a later review SR references the AI-result SR the PACS holds).
- An object already sent to the destination and unchanged since (the prediction, or the latest
  verdict, is older than the send) is not sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cxrlt_desktop.dicomnode.destinations import Destination
from cxrlt_desktop.dicomnode.inbox import valid_uid

WHATS = ("ai-sr", "review-sr", "heatmap")
TIMEOUT_S = 30.0
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_SEND_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


class SendError(Exception):
    """The destination could not be reached at all (one line); per-object failures are recorded
    in ``dicom_send`` instead."""


@dataclass
class SendProgress:
    """Objects handled so far (``total`` known up front)."""

    done: int
    total: int
    text: str = ""


@dataclass
class SendReport:
    """What one run did: counts per outcome and one problem line per failure."""

    sent: int = 0
    failed: int = 0
    unchanged: int = 0  # already sent and not changed since
    nothing: int = 0  # nothing to send for that image (no prediction, no verdict, no map)
    problems: list[str] = field(default_factory=list)
    cancelled: bool = False


@dataclass
class SendRow:
    """One ``dicom_send`` row, as the GUI shows it."""

    id: int
    image_id: int | None
    what: str
    destination: str
    sop_uid: str | None
    status: str
    error: str | None
    attempts: int
    created_at: datetime | None
    sent_at: datetime | None


def outbox_dir() -> Path:
    """``data_dir()/outbox``: the objects built for sending (private to the user)."""
    from cxrlt_desktop.paths import data_dir, private_dir

    return private_dir(data_dir() / "outbox")


def parse_what(text: str | Iterable[str]) -> list[str]:
    """``"ai-sr,heatmap"`` -> ``["ai-sr", "heatmap"]``; ValueError naming an unknown kind."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item not in WHATS:
            raise ValueError(f"unknown result kind {item!r} (allowed: {', '.join(WHATS)})")
        if item not in out:
            out.append(item)
    if not out:
        raise ValueError(f"nothing to send (give one or more of {', '.join(WHATS)})")
    return out


# -- selection ----------------------------------------------------------------------------------


def select_images(
    store: Any,
    *,
    study_uids: Sequence[str] = (),
    all_scored: bool = False,
    all_reviewed: bool = False,
) -> tuple[list[int], list[str]]:
    """Usable, present DICOM images to send results of: those of ``study_uids``, or every scored
    image, or every image with a verdict. Returns the image ids and the study UIDs the library
    does not hold."""
    from sqlalchemy import select

    from cxrlt_desktop.store.models import Image, Review, Series, Study

    with store.session() as s, s.begin():
        q = (
            select(Image.id)
            .join(Series, Image.series_id == Series.id)
            .join(Study, Series.study_id == Study.id)
            # DICOM images only: a PNG's synthetic UIDs mean nothing to a PACS.
            .where(Image.usable.is_(True), Image.missing.is_(False), Image.is_dicom.is_(True))
        )
        unknown: list[str] = []
        if study_uids:
            known = set(s.scalars(select(Study.study_uid).where(Study.study_uid.in_(study_uids))))
            unknown = [u for u in study_uids if u not in known]
            q = q.where(Study.study_uid.in_(study_uids))
        elif all_reviewed:
            q = q.where(Image.id.in_(select(Review.image_id)))
        elif all_scored:
            q = q.where(Image.current_prediction_id.is_not(None))
        else:
            raise ValueError("give study UIDs, all_scored or all_reviewed")
        return sorted(set(s.scalars(q))), unknown


# -- transport ----------------------------------------------------------------------------------


class _Dimse:
    """One association for the run, opened on the first object (C-STORE)."""

    def __init__(self, dest: Destination, calling_aet: str) -> None:
        self.dest, self.calling_aet, self.assoc = dest, calling_aet, None

    def _open(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
        for sop_class in (COMPREHENSIVE_SR, SECONDARY_CAPTURE):
            ae.add_requested_context(sop_class, list(_SEND_SYNTAXES))
        assoc = ae.associate(self.dest.host, self.dest.port, ae_title=self.dest.aet)
        if not assoc.is_established:
            why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
            raise SendError(
                f"{self.dest.describe()}: association {why} (is the PACS running, and does it "
                f"accept this node's AE title {self.calling_aet!r}?)"
            )
        return assoc

    def store(self, ds: Any) -> str | None:
        """Send one dataset; None on success, else the reason."""
        if self.assoc is None or not self.assoc.is_established:
            self.assoc = self._open()
        try:
            status = self.assoc.send_c_store(ds)
        except (RuntimeError, ValueError) as exc:  # no accepted context for it
            return " ".join(str(exc).split())[:300]
        if status is None or "Status" not in status:
            self.assoc = None
            return "no answer to C-STORE (timeout or abort)"
        code = int(status.Status)
        if code == 0x0000 or (code & 0xF000) == 0xB000:
            return None
        comment = str(status.get("ErrorComment", "") or "")
        return f"C-STORE status 0x{code:04X}" + (f": {comment}" if comment else "")

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()


class _Web:
    """STOW-RS, one request per object (each object's outcome on its own)."""

    def __init__(self, dest: Destination) -> None:
        import requests
        from dicomweb_client import DICOMwebClient

        session = requests.Session()
        session.trust_env = False  # only the configured peer: no proxy or netrc
        self.dest, self.session = dest, session
        self.client = DICOMwebClient(dest.url, session=session, timeout=TIMEOUT_S)

    def store(self, ds: Any) -> str | None:
        import requests

        try:
            answer = self.client.store_instances([ds])
        except requests.ConnectionError as exc:
            raise SendError(
                f"{self.dest.describe()}: cannot connect ({type(exc).__name__})"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - an HTTP error is this object's failure
            return " ".join(str(exc).split())[:300] or type(exc).__name__
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reason = failed[0].get("FailureReason")
            return f"STOW-RS failure reason {reason}"
        return None

    def close(self) -> None:
        self.session.close()


def _transport(dest: Destination, calling_aet: str) -> Any:
    return _Web(dest) if dest.is_web else _Dimse(dest, calling_aet)


# -- records ------------------------------------------------------------------------------------


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _image_facts(store: Any, image_id: int) -> tuple[int | None, datetime | None, datetime | None]:
    """(study id, the current prediction's time, the latest verdict's time)."""
    from sqlalchemy import func, select

    from cxrlt_desktop.store.models import Image, Prediction, Review, Series

    with store.session() as s, s.begin():
        row = s.execute(
            select(Series.study_id, Prediction.created_at)
            .select_from(Image)
            .join(Series, Image.series_id == Series.id)
            .outerjoin(Prediction, Image.current_prediction_id == Prediction.id)
            .where(Image.id == image_id)
        ).first()
        latest = s.scalar(select(func.max(Review.reviewed_at)).where(Review.image_id == image_id))
    if row is None:
        return None, None, _utc(latest)
    return row[0], _utc(row[1]), _utc(latest)


def _last_sent(store: Any, image_id: int, what: str, destination: str) -> Any | None:
    from sqlalchemy import select

    from cxrlt_desktop.store.tables_dicom import DicomSend

    with store.session() as s, s.begin():
        row = s.scalars(
            select(DicomSend)
            .where(
                DicomSend.image_id == image_id,
                DicomSend.what == what,
                DicomSend.destination == destination,
                DicomSend.status == "sent",
            )
            .order_by(DicomSend.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            s.expunge(row)
        return row


def _record(store: Any, **values: Any) -> int:
    from cxrlt_desktop.store.tables_dicom import DicomSend

    def work(s: Any) -> int:
        row = DicomSend(status="pending", attempts=0, **values)
        s.add(row)
        s.flush()
        return row.id

    return store.write(work)


def _outcome(store: Any, row_id: int, error: str | None, sop_uid: str | None = None) -> None:
    from cxrlt_desktop.store.models import utcnow
    from cxrlt_desktop.store.tables_dicom import DicomSend

    def work(s: Any) -> None:
        row = s.get(DicomSend, row_id)
        row.attempts = (row.attempts or 0) + 1
        if sop_uid is not None:
            row.sop_uid = sop_uid
        if error is None:
            row.status, row.error, row.sent_at = "sent", None, utcnow()
        else:
            row.status, row.error = "failed", error

    store.write(work)


def send_status(store: Any, *, study_id: int | None = None) -> list[SendRow]:
    """The ``dicom_send`` rows (of one study), newest first."""
    from sqlalchemy import select

    from cxrlt_desktop.store.tables_dicom import DicomSend

    with store.session() as s, s.begin():
        q = select(DicomSend).order_by(DicomSend.id.desc())
        if study_id is not None:
            q = q.where(DicomSend.study_id == study_id)
        return [
            SendRow(
                r.id,
                r.image_id,
                r.what,
                r.destination,
                r.sop_uid,
                r.status,
                r.error,
                r.attempts,
                r.created_at,
                r.sent_at,
            )
            for r in s.scalars(q)
        ]


# -- building -----------------------------------------------------------------------------------


def _save(outbox: Path, ds: Any) -> Path:
    """Write ``ds`` to ``outbox/<SOPInstanceUID>.dcm`` (0600, atomically)."""
    from cxrlt_desktop.export.files import atomic_write

    uid = str(ds.SOPInstanceUID)
    if not valid_uid(uid):
        raise ValueError(f"built object has an invalid SOPInstanceUID {uid[:80]!r}")
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{uid}.dcm"
    atomic_write(path, lambda f: ds.save_as(f, enforce_file_format=True))
    return path


def _load(outbox: Path, sop_uid: str | None) -> Any | None:
    import pydicom

    if not sop_uid or not valid_uid(sop_uid):
        return None
    path = outbox / f"{sop_uid}.dcm"
    if not path.is_file():
        return None
    return pydicom.dcmread(path)


class _Run:
    def __init__(
        self,
        store: Any,
        dest: Destination,
        calling_aet: str,
        outbox: Path,
        thresholds: Mapping[str, float] | None,
        progress: Callable[[SendProgress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.store, self.dest, self.outbox = store, dest, Path(outbox)
        self.thresholds = thresholds
        self.progress, self.should_stop = progress, should_stop
        self.transport = _transport(dest, calling_aet)
        self.report = SendReport()

    def stop(self) -> bool:
        if self.should_stop is not None and self.should_stop():
            self.report.cancelled = True
            return True
        return False

    def transfer(self, row_id: int, ds: Any, path: Path | None, what: str, label: str) -> bool:
        try:
            error = self.transport.store(ds)
        except SendError as exc:
            error = str(exc)
            _outcome(self.store, row_id, error)
            self.report.failed += 1
            raise
        _outcome(self.store, row_id, error)
        if error is None:
            self.report.sent += 1
            if what == "heatmap" and path is not None:
                path.unlink(missing_ok=True)
            return True
        self.report.failed += 1
        self.report.problems.append(f"{label}: {what} not sent: {error}")
        return False

    def send_new(self, image_id: int, what: str, ds: Any, study_id: int | None) -> bool:
        path = _save(self.outbox, ds)
        row = _record(
            self.store,
            study_id=study_id,
            image_id=image_id,
            what=what,
            destination=self.dest.name,
            sop_uid=str(ds.SOPInstanceUID),
        )
        return self.transfer(row, ds, path, what, f"image {image_id}")

    def image(self, image_id: int, whats: Sequence[str]) -> None:
        from cxrlt_desktop.dicomnode.heatmap import HeatmapError, build_heatmap
        from cxrlt_desktop.export import build_ai_sr, build_review_sr

        study_id, predicted_at, reviewed_at = _image_facts(self.store, image_id)
        ai = None
        last_ai = _last_sent(self.store, image_id, "ai-sr", self.dest.name)
        ai_current = (
            last_ai is not None
            and predicted_at is not None
            and _utc(last_ai.created_at) >= predicted_at
        )
        need_ai = "ai-sr" in whats or "review-sr" in whats
        if need_ai and predicted_at is None:
            if "ai-sr" in whats:
                self.report.nothing += 1
        elif need_ai:
            if ai_current:
                ai = _load(self.outbox, last_ai.sop_uid)
                if "ai-sr" in whats:
                    self.report.unchanged += 1
            if ai is None:
                try:
                    ai = build_ai_sr(
                        self.store, image_id, include_phi=True, thresholds=self.thresholds
                    )
                except (LookupError, ValueError) as exc:
                    self.report.nothing += 1
                    self.report.problems.append(f"image {image_id}: no AI-result SR: {exc}")
                else:
                    if not self.send_new(image_id, "ai-sr", ai, study_id):
                        ai = None  # the review must not reference what the PACS lacks
        if "heatmap" in whats and self.stop() is False:
            last = _last_sent(self.store, image_id, "heatmap", self.dest.name)
            if predicted_at is None:
                self.report.nothing += 1
            elif last is not None and _utc(last.created_at) >= predicted_at:
                self.report.unchanged += 1
            else:
                try:
                    hm = build_heatmap(self.store, image_id, thresholds=self.thresholds)
                except HeatmapError as exc:
                    self.report.nothing += 1
                    self.report.problems.append(f"no heatmap: {exc}")
                else:
                    self.send_new(image_id, "heatmap", hm, study_id)
        if "review-sr" in whats and self.stop() is False:
            last = _last_sent(self.store, image_id, "review-sr", self.dest.name)
            if reviewed_at is None:
                self.report.nothing += 1
            elif last is not None and _utc(last.created_at) >= reviewed_at:
                self.report.unchanged += 1
            else:
                review = build_review_sr(self.store, image_id, ai, include_phi=True)
                if review is None:
                    self.report.nothing += 1
                else:
                    self.send_new(image_id, "review-sr", review, study_id)


def send_results(
    store: Any,
    dest: Destination,
    calling_aet: str,
    image_ids: Sequence[int],
    whats: Sequence[str] = WHATS,
    *,
    outbox: Path | None = None,
    thresholds: Mapping[str, float] | None = None,
    progress: Callable[[SendProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SendReport:
    """Build and send ``whats`` for each image; every object is recorded in ``dicom_send``.

    Raises
    ------
    SendError
        The destination cannot be reached (the object in hand is recorded as failed; the
        others are not built).
    """
    run = _Run(store, dest, calling_aet, outbox or outbox_dir(), thresholds, progress, should_stop)
    try:
        for k, image_id in enumerate(image_ids):
            if run.stop():
                break
            run.image(image_id, whats)
            if progress is not None:
                progress(SendProgress(k + 1, len(image_ids), f"image {image_id}"))
    finally:
        run.transport.close()
    return run.report


def retry_failed(
    store: Any,
    dest: Destination,
    calling_aet: str,
    *,
    image_ids: Sequence[int] | None = None,
    outbox: Path | None = None,
    thresholds: Mapping[str, float] | None = None,
    progress: Callable[[SendProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SendReport:
    """Send again every failed object for ``dest`` (of ``image_ids`` if given): the same file
    from the outbox (the same SOP instance), or, when that file is gone, a new build."""
    from sqlalchemy import select

    from cxrlt_desktop.store.tables_dicom import DicomSend

    with store.session() as s, s.begin():
        q = select(DicomSend.id, DicomSend.image_id, DicomSend.what, DicomSend.sop_uid).where(
            DicomSend.destination == dest.name, DicomSend.status == "failed"
        )
        if image_ids is not None:
            q = q.where(DicomSend.image_id.in_(list(image_ids)))
        rows = s.execute(q.order_by(DicomSend.id)).all()
    run = _Run(store, dest, calling_aet, outbox or outbox_dir(), thresholds, progress, should_stop)
    try:
        for k, (row_id, image_id, what, sop_uid) in enumerate(rows):
            if run.stop():
                break
            ds = _load(run.outbox, sop_uid)
            path = run.outbox / f"{sop_uid}.dcm" if ds is not None else None
            if ds is None:
                ds = _rebuild(run, image_id, what)
                if ds is None:
                    continue
                path = _save(run.outbox, ds)
                _outcome_uid(store, row_id, str(ds.SOPInstanceUID))
            run.transfer(row_id, ds, path, what, f"image {image_id}")
            if progress is not None:
                progress(SendProgress(k + 1, len(rows), f"image {image_id}"))
    finally:
        run.transport.close()
    return run.report


def _rebuild(run: _Run, image_id: int | None, what: str) -> Any | None:
    from cxrlt_desktop.dicomnode.heatmap import HeatmapError, build_heatmap
    from cxrlt_desktop.export import build_ai_sr, build_review_sr

    try:
        if what == "heatmap":
            return build_heatmap(run.store, image_id, thresholds=run.thresholds)
        ai = build_ai_sr(run.store, image_id, include_phi=True, thresholds=run.thresholds)
        if what == "ai-sr":
            return ai
        last = _last_sent(run.store, image_id, "ai-sr", run.dest.name)
        sent_ai = _load(run.outbox, last.sop_uid) if last is not None else None
        return build_review_sr(run.store, image_id, sent_ai or ai, include_phi=True)
    except (LookupError, ValueError, HeatmapError) as exc:
        run.report.nothing += 1
        run.report.problems.append(f"image {image_id}: {what} cannot be rebuilt: {exc}")
        return None


def _outcome_uid(store: Any, row_id: int, sop_uid: str) -> None:
    from cxrlt_desktop.store.tables_dicom import DicomSend

    def work(s: Any) -> None:
        s.get(DicomSend, row_id).sop_uid = sop_uid

    store.write(work)


__all__ = [
    "WHATS",
    "SendError",
    "SendProgress",
    "SendReport",
    "SendRow",
    "outbox_dir",
    "parse_what",
    "retry_failed",
    "select_images",
    "send_results",
    "send_status",
]
