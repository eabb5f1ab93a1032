"""Scan folders into the store: header-only walk, patient/study/series/image upserts.

Rules
-----
- One ``image`` row per SOPInstanceUID. A second file with a UID already held by an image that
  still exists becomes a ``duplicate_file`` row; if the holder's file is *missing*, the image
  moves to the new path instead (a moved file keeps its predictions and reviews).
- Incremental: a file whose (path, size, mtime) is unchanged is not read again. A file whose
  size or mtime changed is read again, its ``version`` goes up and it is queued for scoring.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from cxrlt_desktop.library.triage import refresh_studies
from cxrlt_desktop.store import Store
from cxrlt_desktop.store.models import (
    AuditEvent,
    DuplicateFile,
    FindingHit,
    Image,
    Patient,
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
    return rec


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


def _write_batch(
    s: Session,
    recs: list[_Rec],
    known: dict[str, tuple],
    dups: dict[str, tuple],
    prog: ScanProgress,
    moved_ids: set[int],
    replaced_ids_scan: set[int],
) -> None:
    """Upsert one batch of headers (one transaction, run by Store.write: must be re-runnable)."""
    usable = [r for r in recs if r.usable]
    # -- patients, studies, series -------------------------------------------------------
    by_patient = {r.patient_key: r for r in usable}
    pat_ids = _lookup(s, Patient.key, Patient.id, by_patient)
    pat_ids.update(
        _insert_returning(
            s,
            Patient,
            [
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
            ],
            "key",
        )
    )
    by_study = {r.study_uid: r for r in usable}
    study_ids = _lookup(s, Study.study_uid, Study.id, by_study)
    study_ids.update(
        _insert_returning(
            s,
            Study,
            [
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
            ],
            "study_uid",
        )
    )
    by_series = {r.series_uid: r for r in usable}
    series_ids = _lookup(s, Series.series_uid, Series.id, by_series)
    series_ids.update(
        _insert_returning(
            s,
            Series,
            [
                {
                    "study_id": study_ids[r.study_uid],
                    "series_uid": u,
                    "modality": _s(r.meta.get("Modality")),
                    "body_part": _s(r.meta.get("BodyPartExamined")),
                    "series_number": _i(r.meta.get("SeriesNumber")),
                }
                for u, r in by_series.items()
                if u not in series_ids
            ],
            "series_uid",
        )
    )
    series_study = {
        sid: study_ids[u2] for u, sid in series_ids.items() for u2 in [by_series[u].study_uid]
    }
    touched: set[int] = set(series_study.values())

    # -- images ----------------------------------------------------------------------------
    holders: dict[str, tuple[int, str, bool]] = {}  # sop -> (image id, path, missing)
    for chunk in _chunks(sorted({r.sop_uid for r in usable})):
        for iid, sop, p, miss in s.execute(
            select(Image.id, Image.sop_uid, Image.path, Image.missing).where(
                Image.sop_uid.in_(chunk)
            )
        ):
            holders[sop] = (iid, p, miss)

    new_rows: list[dict] = []
    updates: list[dict] = []
    dup_rows: list[dict] = []
    stale: list[int] = []  # images whose content changed: drop derived hits
    replaced: list[dict] = []  # images whose path now holds another image (see below)
    replaced_ids = {
        known[r.path][0]
        for r in recs
        if r.usable and r.path in known and known[r.path][6] not in (None, r.sop_uid)
    }
    old_series: set[int] = set()
    pending_sops: dict[str, str] = {}  # sop -> path inserted in this batch
    # sop -> (image id, path) that an existing row takes in this batch (a changed or moved file):
    # a second file of the batch with that UID is its duplicate, not a second holder (which
    # the unique constraint would refuse, failing the whole scan).
    claimed: dict[str, tuple[int, str]] = {}
    now = utcnow()
    for r in recs:
        cols: dict[str, Any] = {
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
        if not r.usable:
            prog.unusable += 1
            prog.problems.append((r.path, r.reason or "unusable"))
        old = known.get(r.path)
        if r.path in dups:  # a former duplicate changed: forget it, treat as a new file
            s.execute(DuplicateFile.__table__.delete().where(DuplicateFile.path == r.path))
        holder = holders.get(r.sop_uid) if r.usable else None
        if old is not None and r.usable and old[6] is not None and old[6] != r.sop_uid:
            # Another image now lives at this path (a reused file name): it is a new image. The
            # old one keeps its predictions, verdicts and notes, and its study, as a missing
            # image under a marked path, so no verdict moves to another patient's image.
            replaced.append(
                {"id": old[0], "path": f"{r.path} (replaced image {old[0]})", "missing": True}
            )
            if old[5] is not None:
                old_series.add(old[5])
            replaced_ids_scan.add(old[0])
            old = None
        if old is not None:
            iid, _size, _mtime, version, _missing, old_series_id, _sop = old
            if r.usable and (holder is None or holder[0] == iid):
                other = claimed.get(r.sop_uid) or (
                    (-1, pending_sops[r.sop_uid]) if r.sop_uid in pending_sops else None
                )
                if other is not None and other[0] != iid:
                    holder = (other[0], other[1], False)
            if holder is not None and holder[0] != iid:
                # The changed file now carries a UID another image holds: it is a duplicate.
                cols.update(
                    usable=False,
                    reason=f"duplicate of {holder[1]} (same SOPInstanceUID)",
                    sop_uid=None,
                    series_id=None,
                )
            elif r.usable:
                claimed[r.sop_uid] = (iid, r.path)
            cols.update(id=iid, version=version + 1, current_prediction_id=None)
            updates.append(cols)
            stale.append(iid)
            if old_series_id is not None:
                old_series.add(old_series_id)
            prog.updated += 1
            continue
        if r.usable and r.sop_uid in pending_sops:
            dup_rows.append(
                {
                    "path": r.path,
                    "size": r.size,
                    "mtime": r.mtime,
                    "sop": r.sop_uid,
                    "missing": False,
                }
            )
            prog.duplicates += 1
            continue
        if r.usable and r.sop_uid in claimed:
            dup_rows.append(
                {
                    "path": r.path,
                    "size": r.size,
                    "mtime": r.mtime,
                    "image_id": claimed[r.sop_uid][0],
                    "missing": False,
                }
            )
            prog.duplicates += 1
            continue
        if holder is not None:
            iid, hpath, hmissing = holder
            if not os.path.exists(hpath) or iid in replaced_ids:
                # The file moved (its old path is gone or now holds another image): the image
                # follows it (predictions and reviews stay valid).
                cols.update(id=iid)
                updates.append(cols)
                moved_ids.add(iid)
                claimed[r.sop_uid] = (iid, r.path)
                prog.moved += 1
            else:
                dup_rows.append(
                    {
                        "path": r.path,
                        "size": r.size,
                        "mtime": r.mtime,
                        "image_id": iid,
                        "missing": False,
                    }
                )
                prog.duplicates += 1
            continue
        if r.usable:
            pending_sops[r.sop_uid] = r.path
        new_rows.append(cols)
        prog.new += 1

    if replaced:  # first: frees the paths the new rows take
        s.execute(update(Image), replaced)
    if updates:
        s.execute(update(Image), updates)
    if stale:
        for chunk in _chunks(stale):
            s.execute(FindingHit.__table__.delete().where(FindingHit.image_id.in_(chunk)))
    if new_rows:
        # Fill defaults the bulk insert needs, so every row has the same keys.
        for row in new_rows:
            row.setdefault("version", 1)
        sop_ids = _insert_returning(s, Image, new_rows, "path")
        path_to_id = sop_ids
    else:
        path_to_id = {}
    for d in dup_rows:
        if "sop" in d:
            d["image_id"] = path_to_id[pending_sops[d.pop("sop")]]
    if dup_rows:
        s.execute(insert(DuplicateFile), dup_rows)
    if old_series:
        touched.update(s.scalars(select(Series.study_id).where(Series.id.in_(old_series))).all())
    if touched:
        refresh_studies(s, touched)


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
    from engine.imageio import WalkProblem, iter_image_files, read_header

    folders = [Path(f) for f in folders]
    roots = [_norm(f) for f in folders]
    t0 = time.perf_counter()
    prog = ScanProgress()

    def load_known(s: Session) -> tuple[dict[str, tuple], dict[str, tuple]]:
        known = {
            p: (iid, size, mtime, version, missing, series_id, sop)
            for iid, p, size, mtime, version, missing, series_id, sop in s.execute(
                select(
                    Image.id,
                    Image.path,
                    Image.size,
                    Image.mtime,
                    Image.version,
                    Image.missing,
                    Image.series_id,
                    Image.sop_uid,
                )
            )
            if _under(p, roots)
        }
        dups = {
            p: (did, size, mtime, missing)
            for did, p, size, mtime, missing in s.execute(
                select(
                    DuplicateFile.id,
                    DuplicateFile.path,
                    DuplicateFile.size,
                    DuplicateFile.mtime,
                    DuplicateFile.missing,
                )
            )
            if _under(p, roots)
        }
        return known, dups

    with store.session() as s, s.begin():
        known, dups = load_known(s)
    seen: set[str] = set()
    moved_ids: set[int] = set()
    replaced_ids: set[int] = set()  # images whose path now holds another image (this scan)
    returned_images: list[int] = []
    returned_dups: list[int] = []
    pending: list[_Rec] = []
    since_yield = 0

    def tick() -> ScanProgress:
        prog.elapsed = time.perf_counter() - t0
        prog.rate = prog.seen / prog.elapsed if prog.elapsed > 0 else 0.0
        out = ScanProgress(**{**prog.__dict__, "problems": list(prog.problems)})
        prog.problems.clear()
        return out

    pool = None
    heads: Iterator[Any] | None = None  # header results, in walk order, from the worker pool

    def flush() -> None:
        nonlocal pending, returned_images, returned_dups
        batch, back_i, back_d = pending, returned_images, returned_dups
        pending, returned_images, returned_dups = [], [], []
        snapshot = dict(prog.__dict__)
        snapshot["problems"] = list(prog.problems)

        def work(s: Session) -> None:
            # A retried attempt starts from the same counts.
            prog.__dict__.update({**snapshot, "problems": list(snapshot["problems"])})
            if batch:
                _write_batch(s, batch, known, dups, prog, moved_ids, replaced_ids)
                prog.replaced = len(replaced_ids - moved_ids)
            if back_i:
                for chunk in _chunks(back_i):
                    s.execute(update(Image).where(Image.id.in_(chunk)).values(missing=False))
                refresh_studies(
                    s,
                    s.scalars(
                        select(Series.study_id)
                        .join(Image, Image.series_id == Series.id)
                        .where(Image.id.in_(back_i))
                    ).all(),
                )
            if back_d:
                for chunk in _chunks(back_d):
                    s.execute(
                        update(DuplicateFile)
                        .where(DuplicateFile.id.in_(chunk))
                        .values(missing=False)
                    )

        store.write(work)

    def classify(item: Any) -> tuple[str, Any]:
        """("problem", rec) | ("same", path, size, mtime) | ("read", path) for one walk item."""
        if isinstance(item, WalkProblem):
            rec = _Rec(_norm(item.path), 0, 0.0, False, _storable(item.reason), [], {}, False)
            return ("problem", rec)
        path = _norm(item)
        if path != os.path.abspath(item):
            return ("problem", _Rec(path, 0, 0.0, False, _BAD_NAME, [], {}, False))
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime
        except OSError:
            size, mtime = 0, 0.0  # what read_header records for a file it cannot stat
        old = known.get(path) or dups.get(path)
        if old is not None and old[1] == size and old[2] == mtime:
            return ("same", path)
        return ("read", Path(item))

    cancelled = False
    try:
        walk = iter_image_files([Path(os.path.abspath(f)) for f in folders])
        items: Iterable[tuple[str, Any]] = (classify(x) for x in _once(walk))
        if workers > 1:
            # Walk first (cheap), then stream the headers from worker processes while this
            # process writes batches: reading and writing overlap.
            items = list(items)
            to_read = [it[1] for it in items if it[0] == "read"]
            if len(to_read) >= POOL_MIN_FILES * workers:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                # spawn: safe beside the GUI's and torch's threads (fork is not).
                ctx = multiprocessing.get_context("spawn")
                pool = ProcessPoolExecutor(workers, mp_context=ctx)
                heads = iter(pool.map(read_header, to_read, chunksize=32))
        for kind, payload in items:
            if kind == "problem":
                seen.add(payload.path)
                prog.seen += 1
                if payload.path not in known:
                    pending.append(payload)
            elif kind == "same":
                path = payload
                seen.add(path)
                prog.seen += 1
                prog.unchanged += 1
                if path in known and known[path][4]:
                    returned_images.append(known[path][0])
                    prog.returned += 1
                elif path in dups and dups[path][3]:
                    returned_dups.append(dups[path][0])
                    prog.returned += 1
                since_yield += 1
            else:
                seen.add(_norm(payload))
                prog.seen += 1
                head = next(heads) if heads is not None else read_header(payload)
                pending.append(_record(head))
                prog.read += 1
            if len(pending) >= batch_files or since_yield >= batch_files:
                since_yield = 0
                flush()
                yield tick()
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
        if pending or returned_images or returned_dups:
            flush()
        if replaced_ids - moved_ids:
            # Renamed files (a re-export that shifted names, a swap) whose new path came before
            # the old one, in an earlier batch, were taken for duplicates of an image still at
            # its old path; that path then turned out to hold another image. Such an image now
            # lives at its duplicate's path: it follows it, verdicts and predictions included.
            promoted = store.write(lambda s: _promote_duplicates(s, replaced_ids - moved_ids))
            moved_ids.update(promoted)
            prog.moved += len(promoted)
            # (only the duplicates this scan found were counted in it)
            prog.duplicates -= sum(1 for p in promoted.values() if p in seen and p not in dups)
            prog.replaced = len(replaced_ids - moved_ids)
        if not cancelled:
            gone_i = [
                v[0]
                for p, v in known.items()
                if p not in seen and not v[4] and v[0] not in moved_ids
            ]
            gone_d = [v[0] for p, v in dups.items() if p not in seen and not v[3]]
            prog.missing = len(gone_i) + len(gone_d)

            def mark(s: Session) -> None:
                for chunk in _chunks(gone_i):
                    s.execute(update(Image).where(Image.id.in_(chunk)).values(missing=True))
                for chunk in _chunks(gone_d):
                    s.execute(
                        update(DuplicateFile)
                        .where(DuplicateFile.id.in_(chunk))
                        .values(missing=True)
                    )
                if gone_i:
                    refresh_studies(
                        s,
                        s.scalars(
                            select(Series.study_id)
                            .join(Image, Image.series_id == Series.id)
                            .where(Image.id.in_(gone_i))
                        ).all(),
                    )
                s.add(
                    AuditEvent(
                        action="scan",
                        new={
                            "folders": roots,
                            "seen": prog.seen,
                            "new": prog.new,
                            "updated": prog.updated,
                            "unusable": prog.unusable,
                            "duplicates": prog.duplicates,
                            "missing": prog.missing,
                        },
                    )
                )

            store.write(mark)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    final = tick()
    final.done = not cancelled
    final.cancelled = cancelled
    yield final
