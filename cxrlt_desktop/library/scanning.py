"""Scan folders into the store: header-only walk, patient/study/series/image upserts.

Rules
-----
- One ``image`` row per SOPInstanceUID. A second file with a UID already held by an image that
  still exists becomes a ``duplicate_file`` row; if the holder's file is *missing*, the image
  moves to the new path instead (a moved file keeps its predictions and reviews).
- Incremental: a file whose (path, size, mtime) is unchanged is not read again. A file whose
  size or mtime changed is read again, its ``version`` goes up and it is queued for scoring.
  So is a file the scorer refused as changed since the scan (``library.identity``) even when
  its size and mtime look the same: the rescan its message asks for always re-reads it.
- Files under a scanned folder that are gone are marked ``missing`` (never deleted: their
  reviews stay); they come back when they reappear.
- Unusable files (the input layer's reason) are ``image`` rows with ``usable = False`` and the
  reason, attached to no series, so they appear in the problems list and never in the worklist.
  Walk problems (an unreadable folder, a symlink loop) are recorded the same way.
- PNG/JPEG/TIFF files carry no header: each folder holding such files becomes one synthetic
  patient + study + series (``synthetic = True``, key ``folder:<absolute folder>``), its UIDs
  ``2.25.<uuid5>`` derived from the folder path, and each file's SOP UID from its path. The
  study description is the folder name.
- Writes are batched (``BATCH_FILES`` headers per transaction) so a large folder scans at
  disk speed, and a crash loses at most one batch (the rescan picks it up).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import and_, insert, select, update
from sqlalchemy.orm import Session

from cxrlt_desktop.library.identity import CHANGED_SINCE_SCAN
from cxrlt_desktop.library.triage import refresh_studies
from cxrlt_desktop.store import Store
from cxrlt_desktop.store.models import (
    AuditEvent,
    DuplicateFile,
    FindingHit,
    Image,
    Patient,
    ScoreFailure,
    Series,
    Study,
    utcnow,
)

BATCH_FILES = 500
POOL_MIN_FILES = 100  # per worker: below this a process pool costs more than it saves
_IN_CHUNK = 500


@dataclass
class ScanProgress:
    """One progress record of :func:`scan` (cumulative counts, per-batch problems)."""

    seen: int = 0  # files looked at so far
    read: int = 0  # headers read (new or changed files)
    new: int = 0  # image rows added
    updated: int = 0  # changed files re-read
    unchanged: int = 0
    unusable: int = 0  # new or changed files recorded as unusable
    duplicates: int = 0
    moved: int = 0  # images whose file reappeared at another path
    replaced: int = 0  # paths now holding another image (other SOPInstanceUID): old one kept
    missing: int = 0  # files marked missing (at the end)
    returned: int = 0  # missing files found again
    elapsed: float = 0.0
    rate: float = 0.0  # files per second
    done: bool = False
    cancelled: bool = False
    # (path, reason) of the files of this batch that were found unusable
    problems: list[tuple[str, str]] = field(default_factory=list)


def _uid(kind: str, text: str) -> str:
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, f'cxrlt:{kind}:{text}').int}"


def _norm(path: Path | str) -> str:
    return _storable(os.path.abspath(os.fspath(path)))


def _storable(path: str) -> str:
    """``path`` itself, or for a file name that is not valid UTF-8 its bytes as ``\\xNN`` escapes.

    On POSIX such names reach Python as lone surrogates, which no database text column accepts
    (the whole batch would fail); the escaped form is stable across rescans.
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_BAD_NAME = (
    "file name is not valid UTF-8 (shown with \\x escapes): rename the file or folder to read it"
)


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _s(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, list):
        v = "\\".join(str(x) for x in v)
    s = str(v).strip()
    return s or None


def _i(v: Any) -> int | None:
    try:
        return int(v) if v is not None and v != "" else None
    except (TypeError, ValueError):
        return None


@dataclass
class _Rec:
    """A header, normalised for the store."""

    path: str
    size: int
    mtime: float
    usable: bool
    reason: str | None
    warnings: list[str]
    meta: dict[str, Any]
    is_dicom: bool
    patient_key: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    synthetic: bool = False


class KnownFile(NamedTuple):
    """The image row of a file under the scanned folders, as the scan found it at its start."""

    id: int
    size: int
    mtime: float
    version: int
    missing: bool
    series_id: int | None
    sop_uid: str | None


class KnownDuplicate(NamedTuple):
    """The duplicate-file row of a file under the scanned folders."""

    id: int
    size: int
    mtime: float
    missing: bool


def _record(h: Any) -> _Rec:
    path = _norm(h.path)
    meta = dict(h.meta or {})
    rec = _Rec(
        path,
        int(h.size),
        float(h.mtime),
        bool(h.ok),
        None if h.reason is None else _storable(h.reason),  # may quote a link target's name
        [_storable(w) for w in h.warnings or []],
        meta,
        bool(h.is_dicom),
    )
    if not rec.usable:
        return rec
    if not rec.is_dicom:
        folder = os.path.dirname(path)
        rec.synthetic = True
        rec.patient_key = f"folder:{folder}"
        rec.study_uid = _uid("study", folder)
        rec.series_uid = _uid("series", folder)
        rec.sop_uid = _uid("image", path)
        return rec
    folder = os.path.dirname(path)
    rec.study_uid = _s(meta.get("StudyInstanceUID")) or _uid("study", folder)
    rec.series_uid = _s(meta.get("SeriesInstanceUID")) or _uid(
        "series", f"{rec.study_uid}/{folder}"
    )
    rec.sop_uid = _s(meta.get("SOPInstanceUID")) or _uid("image", path)
    pid = _s(meta.get("PatientID"))
    rec.patient_key = f"id:{pid}" if pid else f"study:{rec.study_uid}"
    rec.warnings += _shortened_fields(meta)
    too_long = _identifier_too_long(rec, pid)
    if too_long:
        rec.usable, rec.reason = False, too_long
    return rec


# PS3.5 6.2: a UI value has at most 64 characters. An identifier longer than the store keeps is
# refused (shortening it could file the image under another patient or study); a descriptive
# value is shortened to its column with a warning (SQLite would keep any length, PostgreSQL
# refuses the insert and would stop the scan).
_UID_MAX = 64
_DESCRIPTIVE_COLUMNS = {
    "PatientName": Patient.patient_name,
    "PatientBirthDate": Patient.birth_date,
    "PatientSex": Patient.sex,
    "StudyDate": Study.study_date,
    "StudyDescription": Study.description,
    "AccessionNumber": Study.accession_number,
    "InstitutionName": Study.institution_name,
    "Modality": Series.modality,
    "BodyPartExamined": Series.body_part,
    "ViewPosition": Image.view_position,
}


def _identifier_too_long(rec: _Rec, pid: str | None) -> str | None:
    for name, value in (
        ("StudyInstanceUID", rec.study_uid),
        ("SeriesInstanceUID", rec.series_uid),
        ("SOPInstanceUID", rec.sop_uid),
    ):
        if value and len(value) > _UID_MAX:
            return f"{name} has {len(value)} characters (DICOM allows at most {_UID_MAX})"
    limit = Patient.patient_id.type.length
    if pid and len(pid) > limit:
        return f"PatientID has {len(pid)} characters (at most {limit} are kept)"
    return None


def _shortened_fields(meta: dict[str, Any]) -> list[str]:
    """Shorten the descriptive header values longer than their column, in ``meta`` (which the
    row columns are read from); one warning per value."""
    out = []
    for name, column in _DESCRIPTIVE_COLUMNS.items():
        value = _s(meta.get(name))
        limit = column.type.length
        if value is not None and len(value) > limit:
            meta[name] = value[: limit - 1] + "\u2026"
            out.append(f"{name} has {len(value)} characters: shortened to {limit}")
    return out


# The image columns a KnownFile is built from, in its field order (after the path).
_KNOWN_FILE_COLUMNS = (
    Image.id,
    Image.path,
    Image.size,
    Image.mtime,
    Image.version,
    Image.missing,
    Image.series_id,
    Image.sop_uid,
)
# The duplicate-file columns a KnownDuplicate is built from, likewise.
_KNOWN_DUPLICATE_COLUMNS = (
    DuplicateFile.id,
    DuplicateFile.path,
    DuplicateFile.size,
    DuplicateFile.mtime,
    DuplicateFile.missing,
)


def _chunks(items: list, n: int = _IN_CHUNK) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _lookup(s: Session, col_key, col_id, keys: Iterable[str]) -> dict[str, int]:  # noqa: ANN001
    out: dict[str, int] = {}
    keys = sorted(set(keys))
    for chunk in _chunks(keys):
        out.update({k: i for k, i in s.execute(select(col_key, col_id).where(col_key.in_(chunk)))})
    return out


def _insert_returning(s: Session, model, rows: list[dict], key: str) -> dict[str, int]:  # noqa: ANN001
    if not rows:
        return {}
    res = s.execute(insert(model).returning(getattr(model, key), model.id), rows)
    return {k: i for k, i in res}


class _Holder(NamedTuple):
    """The image that holds a SOPInstanceUID (in the store, or claimed earlier in the batch)."""

    id: int
    path: str
    missing: bool


def _load_known(
    s: Session, roots: list[str]
) -> tuple[dict[str, KnownFile], dict[str, KnownDuplicate]]:
    """The image and duplicate rows under ``roots``, by path."""
    known = {
        p: KnownFile(iid, size, mtime, version, missing, series_id, sop)
        for iid, p, size, mtime, version, missing, series_id, sop in s.execute(
            select(*_KNOWN_FILE_COLUMNS)
        )
        if _under(p, roots)
    }
    dups = {
        p: KnownDuplicate(did, size, mtime, missing)
        for did, p, size, mtime, missing in s.execute(select(*_KNOWN_DUPLICATE_COLUMNS))
        if _under(p, roots)
    }
    return known, dups


def _refused_as_changed(s: Session, roots: list[str]) -> set[int]:
    """Images under ``roots`` whose current version the scorer refused as changed since the
    scan: read again by the next scan whatever their size and mtime."""
    rows = s.execute(
        select(Image.id, Image.path)
        .join(
            ScoreFailure,
            and_(ScoreFailure.image_id == Image.id, ScoreFailure.image_version == Image.version),
        )
        .where(ScoreFailure.reason.startswith(CHANGED_SINCE_SCAN, autoescape=True))
    ).all()
    return {iid for iid, p in rows if _under(p, roots)}


# ----------------------------------------------------------------------------------------------
# one batch of headers: patients, studies and series first, then the image rows


def _upsert_patients(s: Session, usable: list[_Rec]) -> dict[str, int]:
    """Patient ids by key, inserting the patients not in the store yet."""
    by_patient = {r.patient_key: r for r in usable}
    pat_ids = _lookup(s, Patient.key, Patient.id, by_patient)
    new = [
        {
            "key": k,
            "patient_id": None if r.synthetic else _s(r.meta.get("PatientID")),
            "patient_name": None if r.synthetic else _s(r.meta.get("PatientName")),
            "birth_date": _s(r.meta.get("PatientBirthDate")),
            "sex": _s(r.meta.get("PatientSex")),
            "synthetic": r.synthetic,
        }
        for k, r in by_patient.items()
        if k not in pat_ids
    ]
    pat_ids.update(_insert_returning(s, Patient, new, "key"))
    return pat_ids


def _upsert_studies(s: Session, usable: list[_Rec], pat_ids: dict[str, int]) -> dict[str, int]:
    """Study ids by StudyInstanceUID, inserting the studies not in the store yet."""
    by_study = {r.study_uid: r for r in usable}
    study_ids = _lookup(s, Study.study_uid, Study.id, by_study)
    new = [
        {
            "patient_id": pat_ids[r.patient_key],
            "study_uid": u,
            "study_date": _s(r.meta.get("StudyDate")),
            "description": os.path.basename(os.path.dirname(r.path))
            if r.synthetic
            else _s(r.meta.get("StudyDescription")),
            "accession_number": _s(r.meta.get("AccessionNumber")),
            "institution_name": _s(r.meta.get("InstitutionName")),
            "synthetic": r.synthetic,
            "top_findings": [],
        }
        for u, r in by_study.items()
        if u not in study_ids
    ]
    study_ids.update(_insert_returning(s, Study, new, "study_uid"))
    return study_ids


def _upsert_series(
    s: Session, usable: list[_Rec], study_ids: dict[str, int]
) -> tuple[dict[str, int], set[int]]:
    """Series ids by SeriesInstanceUID, inserting the series not in the store yet, and the
    ids of their studies (whose summaries the batch changes)."""
    by_series = {r.series_uid: r for r in usable}
    series_ids = _lookup(s, Series.series_uid, Series.id, by_series)
    new = [
        {
            "study_id": study_ids[r.study_uid],
            "series_uid": u,
            "modality": _s(r.meta.get("Modality")),
            "body_part": _s(r.meta.get("BodyPartExamined")),
            "series_number": _i(r.meta.get("SeriesNumber")),
        }
        for u, r in by_series.items()
        if u not in series_ids
    ]
    series_ids.update(_insert_returning(s, Series, new, "series_uid"))
    return series_ids, {study_ids[r.study_uid] for r in by_series.values()}


def _holders(s: Session, usable: list[_Rec]) -> dict[str, _Holder]:
    """The stored images holding the SOPInstanceUIDs of the batch, by UID."""
    holders: dict[str, _Holder] = {}
    for chunk in _chunks(sorted({r.sop_uid for r in usable})):
        for iid, sop, p, miss in s.execute(
            select(Image.id, Image.sop_uid, Image.path, Image.missing).where(
                Image.sop_uid.in_(chunk)
            )
        ):
            holders[sop] = _Holder(iid, p, miss)
    return holders


def _image_cols(r: _Rec, series_ids: dict[str, int], now: datetime) -> dict[str, Any]:
    """The ``image`` columns of a header (for an insert, or an update once ``id`` is added)."""
    return {
        "path": r.path,
        "size": r.size,
        "mtime": r.mtime,
        "is_dicom": r.is_dicom,
        "usable": r.usable,
        "reason": r.reason,
        "warnings": r.warnings,
        "missing": False,
        "meta": r.meta,
        "view_position": _s(r.meta.get("ViewPosition")),
        "instance_number": _i(r.meta.get("InstanceNumber")),
        "rows": _i(r.meta.get("Rows")),
        "columns": _i(r.meta.get("Columns")),
        "series_id": series_ids[r.series_uid] if r.usable else None,
        "sop_uid": r.sop_uid if r.usable else None,
        "scanned_at": now,
    }


def _dup_row(r: _Rec, **image: Any) -> dict[str, Any]:
    """A ``duplicate_file`` row for ``r``; ``image`` is ``image_id=`` or, for an image inserted
    in the same batch, ``sop=`` (resolved to its id once inserted)."""
    return {"path": r.path, "size": r.size, "mtime": r.mtime, **image, "missing": False}


class _ImageBatch:
    """What each header of one batch becomes: a new image, an update of the image at its path
    or of a moved image, or a duplicate of another image (the rules of the module docstring).
    :meth:`place` decides for one header, :meth:`apply` writes the batch's rows."""

    def __init__(
        self,
        recs: list[_Rec],
        known: dict[str, KnownFile],
        dups: dict[str, KnownDuplicate],
        holders: dict[str, _Holder],
        prog: ScanProgress,
        moved_ids: set[int],
        replaced_ids: set[int],
    ) -> None:
        self.known, self.dups, self.holders, self.prog = known, dups, holders, prog
        self.moved_ids = moved_ids  # the scan's, added to
        self.replaced_ids = replaced_ids  # the scan's, added to
        self.new_rows: list[dict] = []
        self.updates: list[dict] = []
        self.dup_rows: list[dict] = []
        self.stale: list[int] = []  # images whose content changed: drop derived hits
        self.replaced: list[dict] = []  # images whose path now holds another image
        self.old_series: set[int] = set()  # series that images leave
        self.pending_sops: dict[str, str] = {}  # sop -> path inserted in this batch
        # sop -> (image id, path) that an existing row takes in this batch (a changed or moved
        # file): a second file of the batch with that UID is its duplicate, not a second holder
        # (which the unique constraint would refuse, failing the whole scan).
        self.claimed: dict[str, tuple[int, str]] = {}
        # images whose path, in this batch, holds another image
        self.reused_ids = {
            known[r.path].id
            for r in recs
            if r.usable and r.path in known and known[r.path].sop_uid not in (None, r.sop_uid)
        }

    def place(self, s: Session, r: _Rec, cols: dict[str, Any]) -> None:
        """Decide what header ``r`` (image columns ``cols``) becomes."""
        if not r.usable:
            self.prog.unusable += 1
            self.prog.problems.append((r.path, r.reason or "unusable"))
        old = self.known.get(r.path)
        if r.path in self.dups:  # a former duplicate changed: forget it, treat as a new file
            s.execute(DuplicateFile.__table__.delete().where(DuplicateFile.path == r.path))
        holder = self.holders.get(r.sop_uid) if r.usable else None
        if old is not None and r.usable and old.sop_uid is not None and old.sop_uid != r.sop_uid:
            self._retire(r, old)
            old = None
        if old is not None:
            self._update(r, cols, old, holder)
        elif r.usable and r.sop_uid in self.pending_sops:
            self.dup_rows.append(_dup_row(r, sop=r.sop_uid))
            self.prog.duplicates += 1
        elif r.usable and r.sop_uid in self.claimed:
            self.dup_rows.append(_dup_row(r, image_id=self.claimed[r.sop_uid][0]))
            self.prog.duplicates += 1
        elif holder is not None:
            self._follow_or_duplicate(r, cols, holder)
        else:
            if r.usable:
                self.pending_sops[r.sop_uid] = r.path
            self.new_rows.append(cols)
            self.prog.new += 1

    def _retire(self, r: _Rec, old: KnownFile) -> None:
        """Another image now lives at this path (a reused file name): it is a new image. The
        old one keeps its predictions, verdicts and notes, and its study, as a missing image
        under a marked path, so no verdict moves to another patient's image."""
        self.replaced.append(
            {"id": old.id, "path": f"{r.path} (replaced image {old.id})", "missing": True}
        )
        if old.series_id is not None:
            self.old_series.add(old.series_id)
        self.replaced_ids.add(old.id)

    def _update(
        self, r: _Rec, cols: dict[str, Any], old: KnownFile, holder: _Holder | None
    ) -> None:
        """The file at a known path changed: a new version of its image, or a duplicate when
        it now carries a UID another image holds."""
        iid = old.id
        if r.usable and (holder is None or holder.id == iid):
            other = self.claimed.get(r.sop_uid) or (
                (-1, self.pending_sops[r.sop_uid]) if r.sop_uid in self.pending_sops else None
            )
            if other is not None and other[0] != iid:
                holder = _Holder(other[0], other[1], False)
        if holder is not None and holder.id != iid:
            cols.update(
                usable=False,
                reason=f"duplicate of {holder.path} (same SOPInstanceUID)",
                sop_uid=None,
                series_id=None,
            )
        elif r.usable:
            self.claimed[r.sop_uid] = (iid, r.path)
        cols.update(id=iid, version=old.version + 1, current_prediction_id=None)
        self.updates.append(cols)
        self.stale.append(iid)
        if old.series_id is not None:
            self.old_series.add(old.series_id)
        self.prog.updated += 1

    def _follow_or_duplicate(self, r: _Rec, cols: dict[str, Any], holder: _Holder) -> None:
        """A new path with a UID a stored image holds: the image moved here if its old path
        is gone or now holds another image (predictions and reviews stay valid), otherwise
        the file is a duplicate."""
        if not os.path.exists(holder.path) or holder.id in self.reused_ids:
            cols.update(id=holder.id)
            self.updates.append(cols)
            self.moved_ids.add(holder.id)
            self.claimed[r.sop_uid] = (holder.id, r.path)
            self.prog.moved += 1
        else:
            self.dup_rows.append(_dup_row(r, image_id=holder.id))
            self.prog.duplicates += 1

    def apply(self, s: Session) -> set[int]:
        """Write the batch's image and duplicate rows; returns the series images left."""
        if self.replaced:  # first: frees the paths the new rows take
            s.execute(update(Image), self.replaced)
        if self.updates:
            s.execute(update(Image), self.updates)
        for chunk in _chunks(self.stale):
            s.execute(FindingHit.__table__.delete().where(FindingHit.image_id.in_(chunk)))
        path_to_id: dict[str, int] = {}
        if self.new_rows:
            # Fill defaults the bulk insert needs, so every row has the same keys.
            for row in self.new_rows:
                row.setdefault("version", 1)
            path_to_id = _insert_returning(s, Image, self.new_rows, "path")
        for d in self.dup_rows:
            if "sop" in d:
                d["image_id"] = path_to_id[self.pending_sops[d.pop("sop")]]
        if self.dup_rows:
            s.execute(insert(DuplicateFile), self.dup_rows)
        return self.old_series


def _write_batch(
    s: Session,
    recs: list[_Rec],
    known: dict[str, KnownFile],
    dups: dict[str, KnownDuplicate],
    prog: ScanProgress,
    moved_ids: set[int],
    replaced_ids: set[int],
) -> None:
    """Upsert one batch of headers (one transaction, run by Store.write: must be re-runnable).

    ``moved_ids`` and ``replaced_ids`` are the scan's: the images that moved to another path
    and those whose path now holds another image get added.
    """
    usable = [r for r in recs if r.usable]
    pat_ids = _upsert_patients(s, usable)
    study_ids = _upsert_studies(s, usable, pat_ids)
    series_ids, touched = _upsert_series(s, usable, study_ids)
    batch = _ImageBatch(recs, known, dups, _holders(s, usable), prog, moved_ids, replaced_ids)
    now = utcnow()
    for r in recs:
        batch.place(s, r, _image_cols(r, series_ids, now))
    old_series = batch.apply(s)
    if old_series:
        touched.update(s.scalars(select(Series.study_id).where(Series.id.in_(old_series))).all())
    if touched:
        refresh_studies(s, touched)


def _set_images_missing(s: Session, image_ids: list[int], missing: bool) -> None:
    """Mark these images missing (or found again) and refresh their studies."""
    if not image_ids:
        return
    for chunk in _chunks(image_ids):
        s.execute(update(Image).where(Image.id.in_(chunk)).values(missing=missing))
    refresh_studies(
        s,
        s.scalars(
            select(Series.study_id)
            .join(Image, Image.series_id == Series.id)
            .where(Image.id.in_(image_ids))
        ).all(),
    )


def _set_duplicates_missing(s: Session, dup_ids: list[int], missing: bool) -> None:
    for chunk in _chunks(dup_ids):
        s.execute(update(DuplicateFile).where(DuplicateFile.id.in_(chunk)).values(missing=missing))


def _promote_duplicates(s: Session, image_ids: set[int]) -> dict[int, str]:
    """Move each of these (missing) images to the path of a duplicate of its file that is on
    disk; returns {image id: the duplicate's path}."""
    promoted: dict[int, int | None] = {}  # image id -> its series
    paths: dict[int, str] = {}
    for chunk in _chunks(sorted(image_ids)):
        for dup in s.scalars(
            select(DuplicateFile)
            .where(DuplicateFile.image_id.in_(chunk), DuplicateFile.missing.is_(False))
            .order_by(DuplicateFile.id)
        ).all():
            if dup.image_id in promoted or not os.path.exists(dup.path):
                continue  # (a duplicate deleted since: the sweep for gone files follows)
            image = s.get(Image, dup.image_id)
            s.execute(DuplicateFile.__table__.delete().where(DuplicateFile.id == dup.id))
            s.flush()
            image.path, image.size, image.mtime, image.missing = (
                dup.path,
                dup.size,
                dup.mtime,
                False,
            )
            promoted[image.id] = image.series_id
            paths[image.id] = dup.path
    s.flush()
    series = {v for v in promoted.values() if v is not None}
    if series:
        refresh_studies(
            s, s.scalars(select(Series.study_id).where(Series.id.in_(sorted(series)))).all()
        )
    return paths


def _once(walk: Iterable[Any]) -> Iterator[Any]:
    """The walk without repeats: overlapping roots (a folder and a folder or file inside it)
    reach the same path twice, and a second row for one path would fail the whole batch."""
    got: set[str] = set()
    for item in walk:
        key = _norm(getattr(item, "path", item))
        if key not in got:
            got.add(key)
            yield item


# What the walk found at one path, before any header is read.
@dataclass
class _Problem:
    """A walk problem or a file name the store cannot hold: recorded as unusable."""

    rec: _Rec


@dataclass
class _Unchanged:
    """A known file with the same size and mtime: not read again."""

    path: str


@dataclass
class _ToRead:
    """A new or changed file: its header is read."""

    path: Path


_WalkItem = _Problem | _Unchanged | _ToRead


class _Scan:
    """The state of one :func:`scan`: what the store held under the roots at the start, what
    the walk has seen, and the headers and returned files not written yet."""

    def __init__(self, store: Store, folders: Iterable[Path | str]) -> None:
        self.store = store
        self.folders = [Path(f) for f in folders]
        self.roots = [_norm(f) for f in self.folders]
        self.t0 = time.perf_counter()
        self.prog = ScanProgress()
        with store.session() as s, s.begin():
            self.known, self.dups = _load_known(s, self.roots)
            self.recheck = _refused_as_changed(s, self.roots)
        self.seen: set[str] = set()
        self.moved_ids: set[int] = set()
        self.replaced_ids: set[int] = set()  # images whose path now holds another image
        self.returned_images: list[int] = []
        self.returned_dups: list[int] = []
        self.pending: list[_Rec] = []
        self.since_yield = 0  # unchanged files since the last progress record
        self.pool: Any = None
        self.heads: Iterator[Any] | None = None  # header results, in walk order, from the pool
        self.cancelled = False

    # -- the walk ------------------------------------------------------------------------------

    def classify(self, item: Any) -> _WalkItem:
        """What one walk item is: a problem, an unchanged file or a file to read."""
        from engine.imageio import WalkProblem

        if isinstance(item, WalkProblem):
            rec = _Rec(_norm(item.path), 0, 0.0, False, _storable(item.reason), [], {}, False)
            return _Problem(rec)
        path = _norm(item)
        if path != os.path.abspath(item):
            return _Problem(_Rec(path, 0, 0.0, False, _BAD_NAME, [], {}, False))
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime
        except OSError:
            size, mtime = 0, 0.0  # what read_header records for a file it cannot stat
        old = self.known.get(path) or self.dups.get(path)
        refused = isinstance(old, KnownFile) and old.id in self.recheck
        if old is not None and old.size == size and old.mtime == mtime and not refused:
            return _Unchanged(path)
        return _ToRead(Path(item))

    def walk(self, workers: int) -> Iterable[_WalkItem]:
        """The classified walk items; with ``workers`` > 1 the whole walk is classified first
        (cheap) and the headers stream from worker processes while this process writes
        batches, so reading and writing overlap."""
        from engine.imageio import iter_image_files, read_header

        walk = iter_image_files([Path(os.path.abspath(f)) for f in self.folders])
        items: Iterable[_WalkItem] = (self.classify(x) for x in _once(walk))
        if workers > 1:
            items = list(items)
            to_read = [it.path for it in items if isinstance(it, _ToRead)]
            if len(to_read) >= POOL_MIN_FILES * workers:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                # spawn: safe beside the GUI's and torch's threads (fork is not).
                ctx = multiprocessing.get_context("spawn")
                self.pool = ProcessPoolExecutor(workers, mp_context=ctx)
                self.heads = iter(self.pool.map(read_header, to_read, chunksize=32))
        return items

    def take(self, item: _WalkItem) -> None:
        """Count one classified walk item and queue what it needs written."""
        prog = self.prog
        match item:
            case _Problem(rec=rec):
                self.seen.add(rec.path)
                prog.seen += 1
                if rec.path not in self.known:
                    self.pending.append(rec)
            case _Unchanged(path=path):
                self.seen.add(path)
                prog.seen += 1
                prog.unchanged += 1
                if path in self.known and self.known[path].missing:
                    self.returned_images.append(self.known[path].id)
                    prog.returned += 1
                elif path in self.dups and self.dups[path].missing:
                    self.returned_dups.append(self.dups[path].id)
                    prog.returned += 1
                self.since_yield += 1
            case _ToRead(path=path):
                from engine.imageio import read_header

                self.seen.add(_norm(path))
                prog.seen += 1
                head = next(self.heads) if self.heads is not None else read_header(path)
                self.pending.append(_record(head))
                prog.read += 1

    def batch_full(self, batch_files: int) -> bool:
        return len(self.pending) >= batch_files or self.since_yield >= batch_files

    # -- writing -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the pending headers and the files found again (one transaction)."""
        batch, back_i, back_d = self.pending, self.returned_images, self.returned_dups
        self.pending, self.returned_images, self.returned_dups = [], [], []
        before = self.prog

        def work(s: Session) -> ScanProgress:
            # A retried attempt starts from the same counts.
            prog = replace(before, problems=list(before.problems))
            if batch:
                _write_batch(
                    s, batch, self.known, self.dups, prog, self.moved_ids, self.replaced_ids
                )
                prog.replaced = len(self.replaced_ids - self.moved_ids)
            _set_images_missing(s, back_i, False)
            _set_duplicates_missing(s, back_d, False)
            return prog

        self.prog = self.store.write(work)

    def tick(self) -> ScanProgress:
        """The progress record to yield now (the batch's problems move into it)."""
        prog = self.prog
        prog.elapsed = time.perf_counter() - self.t0
        prog.rate = prog.seen / prog.elapsed if prog.elapsed > 0 else 0.0
        out = replace(prog, problems=list(prog.problems))
        prog.problems.clear()
        return out

    def finish(self) -> None:
        """Write what is left; after a complete walk, mark what was not seen as missing."""
        if self.pending or self.returned_images or self.returned_dups:
            self.flush()
        if self.replaced_ids - self.moved_ids:
            self.promote_renamed()
        if not self.cancelled:
            self.mark_gone()

    def promote_renamed(self) -> None:
        """Renamed files (a re-export that shifted names, a swap) whose new path came before
        the old one, in an earlier batch, were taken for duplicates of an image still at its
        old path; that path then turned out to hold another image. Such an image now lives at
        its duplicate's path: it follows it, verdicts and predictions included."""
        prog = self.prog
        promoted = self.store.write(
            lambda s: _promote_duplicates(s, self.replaced_ids - self.moved_ids)
        )
        self.moved_ids.update(promoted)
        prog.moved += len(promoted)
        # (only the duplicates this scan found were counted in it)
        prog.duplicates -= sum(
            1 for p in promoted.values() if p in self.seen and p not in self.dups
        )
        prog.replaced = len(self.replaced_ids - self.moved_ids)

    def mark_gone(self) -> None:
        """Mark the images and duplicates under the roots that the walk did not see missing,
        and record the scan in the audit log."""
        prog = self.prog
        gone_i = [
            v.id
            for p, v in self.known.items()
            if p not in self.seen and not v.missing and v.id not in self.moved_ids
        ]
        gone_d = [v.id for p, v in self.dups.items() if p not in self.seen and not v.missing]
        prog.missing = len(gone_i) + len(gone_d)
        audit = {
            "folders": self.roots,
            "seen": prog.seen,
            "new": prog.new,
            "updated": prog.updated,
            "unusable": prog.unusable,
            "duplicates": prog.duplicates,
            "missing": prog.missing,
        }

        def mark(s: Session) -> None:
            _set_images_missing(s, gone_i, True)
            _set_duplicates_missing(s, gone_d, True)
            s.add(AuditEvent(action="scan", new=audit))

        self.store.write(mark)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def final(self) -> ScanProgress:
        return replace(self.tick(), done=not self.cancelled, cancelled=self.cancelled)


def scan(
    store: Store,
    folders: Iterable[Path | str],
    *,
    should_stop: Callable[[], bool] | None = None,
    batch_files: int = BATCH_FILES,
    workers: int = 1,
) -> Iterator[ScanProgress]:
    """Walk ``folders`` (files are accepted too) and bring the store up to date.

    Parameters
    ----------
    store
        The open store.
    folders
        Folders (walked recursively by ``engine.imageio.iter_image_files``) and/or files.
    should_stop
        Checked between batches; when it returns True the batch read so far is written and
        the scan stops without marking anything missing (the walk was incomplete).
    batch_files
        Headers per write transaction.
    workers
        Processes that read headers (1: in this thread). Header parsing is pure Python, so a
        big first scan runs ~1.7x faster with 2 workers on 2 cores; small rescans gain nothing.

    Yields
    ------
    ScanProgress
        After each written batch (and every ``batch_files`` unchanged files), and a final record
        with ``done=True`` (or ``cancelled=True``).
    """
    run = _Scan(store, folders)
    try:
        for item in run.walk(workers):
            run.take(item)
            if run.batch_full(batch_files):
                run.since_yield = 0
                run.flush()
                yield run.tick()
                if should_stop is not None and should_stop():
                    run.cancelled = True
                    break
        run.finish()
    finally:
        run.close()
    yield run.final()


# ----------------------------------------------------------------------------------------------
# incremental add of given files (the DICOM node's inbox): no walk


@dataclass
class AddResult:
    """What :func:`add_files` did: the counts (``problems`` lists the unusable files) and the
    usable images whose file was new or changed, which are to be scored."""

    progress: ScanProgress
    image_ids: list[int]


def _known_at(
    s: Session, paths: list[str]
) -> tuple[dict[str, KnownFile], dict[str, KnownDuplicate]]:
    """The image and duplicate rows at exactly these paths (an indexed lookup, not a walk)."""
    known: dict[str, KnownFile] = {}
    dups: dict[str, KnownDuplicate] = {}
    for chunk in _chunks(paths):
        for iid, p, size, mtime, version, missing, series_id, sop in s.execute(
            select(*_KNOWN_FILE_COLUMNS).where(Image.path.in_(chunk))
        ):
            known[p] = KnownFile(iid, size, mtime, version, missing, series_id, sop)
        for did, p, size, mtime, missing in s.execute(
            select(*_KNOWN_DUPLICATE_COLUMNS).where(DuplicateFile.path.in_(chunk))
        ):
            dups[p] = KnownDuplicate(did, size, mtime, missing)
    return known, dups


def add_files(
    store: Store, paths: Iterable[Path | str], *, headers: dict[str, Any] | None = None
) -> AddResult:
    """Add these files to the library, by the rules of :func:`scan` (one image per
    SOPInstanceUID, a changed file is a new version, an unusable file is recorded with the
    input layer's reason), without walking any folder: what the DICOM node calls for each
    batch of received objects. Nothing is marked missing.

    ``headers`` maps a path (absolute, as given) to the ``HeaderInfo`` the caller already read
    with ``engine.imageio.read_header`` for that file (the node validates each object before it
    moves it into the inbox); other files are read here. One transaction for the batch.
    """
    from engine.imageio import read_header

    t0 = time.perf_counter()
    headers = headers or {}
    order: dict[str, Path | str] = {}
    for p in paths:
        order.setdefault(_norm(p), p)
    norm = list(order)
    with store.session() as s, s.begin():
        known, dups = _known_at(s, norm)
    prog = ScanProgress()
    recs: list[_Rec] = []
    returned: list[int] = []
    for path, given in order.items():
        prog.seen += 1
        if path != os.path.abspath(given):
            recs.append(_Rec(path, 0, 0.0, False, _BAD_NAME, [], {}, False))
            continue
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime
        except OSError:
            size, mtime = 0, 0.0
        old = known.get(path) or dups.get(path)
        if old is not None and old.size == size and old.mtime == mtime:
            prog.unchanged += 1
            if isinstance(old, KnownFile) and old.missing:
                returned.append(old.id)
                prog.returned += 1
            continue
        head = headers.get(os.fspath(given)) or headers.get(path) or read_header(path)
        recs.append(_record(head))
        prog.read += 1
    moved: set[int] = set()
    replaced: set[int] = set()

    def work(s: Session) -> ScanProgress:
        out = replace(prog, problems=[])
        if recs:
            _write_batch(s, recs, known, dups, out, moved, replaced)
            out.replaced = len(replaced - moved)
        _set_images_missing(s, returned, False)
        s.add(
            AuditEvent(
                action="add_files",
                new={
                    "files": out.seen,
                    "new": out.new,
                    "updated": out.updated,
                    "unusable": out.unusable,
                    "duplicates": out.duplicates,
                },
            )
        )
        return out

    prog = store.write(work)
    if replaced - moved:
        store.write(lambda s: _promote_duplicates(s, replaced - moved))
    read_paths = [r.path for r in recs if r.usable]
    ids: list[int] = []
    if read_paths:
        with store.session() as s, s.begin():
            for chunk in _chunks(read_paths):
                ids.extend(
                    s.scalars(
                        select(Image.id).where(
                            Image.path.in_(chunk),
                            Image.usable.is_(True),
                            Image.current_prediction_id.is_(None),
                        )
                    ).all()
                )
    prog.elapsed = time.perf_counter() - t0
    prog.rate = prog.seen / prog.elapsed if prog.elapsed > 0 else 0.0
    prog.done = True
    return AddResult(prog, sorted(ids))


def record_refused(store: Store, source: str, reason: str) -> bool:
    """Record an object that was refused before it became a file (the DICOM node's refusals:
    an unsupported SOP class, UIDs that cannot be path parts) as an unusable entry of the
    Problems list. ``source`` names it (``dicom://AET@HOST/...``), ``reason`` says why; a
    second refusal of the same source updates the reason. Returns True when it was new."""

    def work(s: Session) -> bool:
        row = s.scalars(select(Image).where(Image.path == source)).first()
        if row is not None:
            row.reason, row.missing, row.scanned_at = reason, False, utcnow()
            return False
        s.add(
            Image(
                path=source,
                size=0,
                mtime=time.time(),
                is_dicom=True,
                usable=False,
                reason=reason,
                warnings=[],
                meta={},
                missing=False,
            )
        )
        s.add(AuditEvent(action="dicom_refused", new={"source": source, "reason": reason}))
        return True

    return store.write(work)
