"""Feedback export: the radiologists' verdicts as training labels, a disagreement list and DICOM SR.

An export is a folder holding

- ``labels.csv``: the CXR-LT training format (``ImageID``, ``StudyDate_DICOM``, ``PatientID``,
  then the 30 Task 1 and the 6 zero-shot classes of :data:`engine.classes.ALL_CLASSES`); a cell
  is ``1`` (verdict present), ``0`` (verdict absent) or empty (not reviewed or uncertain). Only
  images with at least one verdict appear; the model's scores never do.
- ``disagreements.csv``: one row per finding whose verdict contradicts the model at its
  operating threshold (present while p < t, absent while p >= t), largest ``|p - t|`` first.
- ``images/<ImageID>.png`` (``copy_images``): each image's source array
  (:func:`engine.imageio.read_source`), lossless where possible, see :func:`source_to_png_array`.
- ``sr/<ImageID>.dcm`` (``sr``): one DICOM Structured Report (TID 1500) per image, see
  :mod:`cxrlt_desktop.export.sr`.
- ``README.txt``: the options used, counts, the models (sha256) and whether they were DEMO
  models, and the per-image problems (by ImageID, never by path).

De-identification (unless ``include_phi``): ImageID and PatientID are salted SHA-256 pseudonyms
(:mod:`cxrlt_desktop.library.pseudonym`; the salt is per installation, so pseudonyms are stable across
exports); no patient name, birth date, accession number, institution, path or original UID is
written; free-text notes have the patient's known identifiers replaced by ``[removed]``; with
``shift_dates`` every date of a patient (study date, review time) moves by the same offset of
1 to 730 days into the past, derived from the salt and the patient, so intervals are kept.

Overwriting: an export goes into an empty (or new) folder only; a folder that holds anything
is refused with :class:`ExportError`, so an earlier export is never overwritten. Each file is
written to a temporary file in the same folder, fsynced and renamed (``os.replace``); if the
export fails or is cancelled, the files it wrote are removed again, so the folder is left as
it was and can be used for the next try.

Everything runs without Qt and prints nothing: :func:`iter_export` yields
:class:`ExportProgress` records and returns the :class:`ExportResult`; :func:`export_feedback`
drives it with an optional callback.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS
from engine.manifest import is_demo_model

LABELS_CSV = "labels.csv"
DISAGREEMENTS_CSV = "disagreements.csv"
README_TXT = "README.txt"
IMAGES_DIR = "images"
SR_DIR = "sr"

LABEL_COLUMNS: tuple[str, ...] = ("ImageID", "StudyDate_DICOM", "PatientID", *ALL_CLASSES)
DISAGREEMENT_COLUMNS: tuple[str, ...] = (
    "ImageID",
    "finding",
    "probability",
    "threshold",
    "verdict",
    "note",
    "reviewer",
    "reviewed_at",
    "model_sha256s",
    "scoring_settings",
)
MAX_SHIFT_DAYS = 730
REMOVED = "[removed]"


class ExportError(Exception):
    """The export cannot be made (the message names the folder or file and says why)."""


class ExportCancelled(ExportError):
    """``should_stop`` asked the export to stop; the files written so far were removed."""


@dataclass
class ExportProgress:
    """One step of an export: ``stage`` is "read", "images", "sr", "csv" or "done"."""

    stage: str
    done: int
    total: int
    message: str = ""


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes
    ----------
    out_dir : Path
        The export folder.
    files : list of Path
        Every file written, in the order written.
    n_images : int
        Reviewed images (rows of labels.csv).
    n_patients : int
        Distinct patients among them.
    n_positive, n_negative : int
        Label cells set to 1 and to 0.
    n_uncertain : int
        Verdicts "uncertain" (written as empty cells).
    n_disagreements : int
        Rows of disagreements.csv.
    n_images_copied : int
        PNGs written under images/.
    n_images_scaled : int
        Of those, float sources that were rescaled to 0..65535 (not lossless).
    n_sr : int
        SR files written under sr/.
    demo : bool
        The predictions came from DEMO models (or the caller said so).
    options : dict
        The options used (as README.txt lists them).
    problems : list of str
        One line per image that could not be copied or reported, naming the file (for the
        user; README.txt carries the same lines by ImageID only).
    """

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    n_images: int = 0
    n_patients: int = 0
    n_positive: int = 0
    n_negative: int = 0
    n_uncertain: int = 0
    n_disagreements: int = 0
    n_images_copied: int = 0
    n_images_scaled: int = 0
    n_sr: int = 0
    demo: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def labels_csv(self) -> Path:
        return self.out_dir / LABELS_CSV

    @property
    def disagreements_csv(self) -> Path:
        return self.out_dir / DISAGREEMENTS_CSV


# ----------------------------------------------------------------------------------------------
# pseudonyms, UIDs and date shifts (all derived from the installation's salt)


def patient_pseudonym(
    patient_id: str | None, patient_key: str, *, salt: bytes | None = None
) -> str:
    """The exported PatientID: the pseudonym the worklist shows for the patient.

    Salted SHA-256 of the PatientID, or of the store's patient key (``study:<UID>``,
    ``folder:<path>``) when the file had none (as ``cxrlt_desktop.library.worklist.patient_label``).
    """
    from cxrlt_desktop.library.pseudonym import pseudonym

    return pseudonym(patient_id or patient_key, kind="patient", salt=salt)


def image_pseudonym(image_key: str, *, salt: bytes | None = None) -> str:
    """The exported ImageID of an image (``image_key``: its SOPInstanceUID, else its path)."""
    from cxrlt_desktop.library.pseudonym import pseudonym

    return pseudonym(image_key, kind="image", salt=salt)


def pseudonymous_uid(uid: str, *, salt: bytes | None = None) -> str:
    """A DICOM UID standing for ``uid``: ``2.25.<128-bit integer>`` from the salted hash.

    The same original UID always maps to the same pseudonymous UID on this installation, so
    SRs of two exports reference the same (pseudonymous) study, series and image.
    """
    from cxrlt_desktop.library.pseudonym import pseudonym

    return "2.25." + str(int(pseudonym(uid, kind="uid", salt=salt, length=32), 16))


def date_shift_days(patient_key: str, *, salt: bytes | None = None) -> int:
    """The per-patient date offset: -1 to -``MAX_SHIFT_DAYS`` days, never 0."""
    from cxrlt_desktop.library.pseudonym import pseudonym

    h = int(pseudonym(patient_key, kind="date-shift", salt=salt, length=12), 16)
    return -(1 + h % MAX_SHIFT_DAYS)


def shift_da(value: str | None, days: int) -> str:
    """Shift a DICOM DA (``YYYYMMDD``) by ``days``; an unparseable date becomes empty."""
    if not value:
        return ""
    try:
        d = datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return ""  # keeping a malformed date could leak it; dropping it is the safe side
    return (d + timedelta(days=days)).strftime("%Y%m%d")


# ----------------------------------------------------------------------------------------------
# atomic files


def atomic_write(
    path: str | os.PathLike[str], data: bytes | Callable[[io.BufferedWriter], Any]
) -> Path:
    """Write a file atomically and never over an existing one.

    The bytes (or whatever the callable writes to the open binary file) go to a temporary file
    in the same folder, which is fsynced and then renamed to ``path`` (``os.replace``). If
    anything fails, the temporary file is removed and ``path`` does not appear.

    Raises
    ------
    ExportError
        ``path`` exists already.
    """
    path = Path(path)
    if path.exists():
        raise ExportError(f"{path}: exists already; an export never overwrites a file")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():  # a concurrent writer got there first
            raise ExportError(f"{path}: exists already; an export never overwrites a file")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk (POSIX); Windows cannot
    # open a folder for fsync and does not need it.
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _prepare_out_dir(out_dir: Path) -> bool:
    """Create ``out_dir`` or check it is empty; True when this export created it."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f"{out_dir}: is a file, not a folder; choose a folder for the export")
        if any(out_dir.iterdir()):
            raise ExportError(
                f"{out_dir}: folder is not empty (an earlier export?); an export never overwrites "
                "one: choose a new or empty folder"
            )
        return False
    try:
        out_dir.mkdir(parents=True)
    except OSError as e:
        raise ExportError(f"{out_dir}: cannot create the export folder ({e.strerror or e})") from e
    return True


# ----------------------------------------------------------------------------------------------
# the PNG copy


def source_to_png_array(source: np.ndarray) -> tuple[np.ndarray, bool]:
    """The array to store as PNG for a source array, and whether it was rescaled.

    - uint16 is written as is (16-bit PNG, lossless).
    - uint8 is written as is (8-bit PNG, lossless): the engine keeps uint8 sources as they
      are while it percentile-stretches wider ones, so widening to 16 bits would change what
      the model sees in training compared with the original file.
    - Other integer or float arrays (modality LUT applied) whose values are all integers in
      0..65535 are written as uint16 unchanged (lossless).
    - Anything else (negative, fractional or larger values) is mapped linearly from its
      min..max onto 0..65535 and rounded. The Task 1 preprocessing stretches between
      percentiles, which a positive linear map does not change (up to the rounding), so the
      model sees the same image; absolute modality values are lost (README.txt says how many).
    """
    a = np.asarray(source)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D source array, got shape {a.shape}")
    if a.dtype in (np.uint8, np.uint16):
        return np.ascontiguousarray(a), False
    if a.dtype.kind in "iu" or a.dtype.kind == "f":
        finite = np.isfinite(a) if a.dtype.kind == "f" else None
        if finite is not None and not finite.all():
            a = np.where(finite, a, np.nanmin(np.where(finite, a, np.nan)) if finite.any() else 0)
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0 and hi <= 65535 and (a.dtype.kind in "iu" or np.all(a == np.round(a))):
            return a.astype(np.uint16), False
        if hi > lo:
            scaled = np.rint((a.astype(np.float64) - lo) * (65535.0 / (hi - lo)))
            return np.clip(scaled, 0, 65535).astype(np.uint16), True
        return np.zeros(a.shape, np.uint16), True
    raise ValueError(f"unsupported source dtype {a.dtype}")


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a 2-D uint8/uint16 array (OpenCV writes no text chunks: no metadata)."""
    import cv2

    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("OpenCV could not encode the PNG")
    return buf.tobytes()


# ----------------------------------------------------------------------------------------------
# what is read from the store (plain records, so no session is held while files are written)


@dataclass
class _Verdict:
    finding: str
    verdict: str
    note: str | None
    reviewer: str
    reviewed_at: datetime | None
    prediction_id: int | None


@dataclass
class _PredictionRec:
    id: int
    probs: np.ndarray
    run_id: int
    model_set_id: int
    models: list[dict[str, Any]]  # [{"sha256", "role", "arch", "weight"}]
    settings: dict[str, Any]


@dataclass
class _ImageRec:
    id: int
    path: str
    sop_uid: str | None
    sop_class_uid: str | None
    is_dicom: bool
    image_key: str
    patient_key: str
    patient_id: str | None
    patient_name: str | None
    birth_date: str | None
    sex: str | None
    study_uid: str | None
    study_date: str | None
    study_time: str | None
    accession: str | None
    institution: str | None
    series_uid: str | None
    modality: str | None
    meta: dict[str, Any]
    current_prediction_id: int | None
    verdicts: dict[str, _Verdict]
    size: int = -1  # the file as the last scan saw it
    mtime: float = 0.0


def _same_file_as_scanned(rec: _ImageRec) -> None:
    """Refuse a file that changed since the last scan: it may hold another image now, and
    the verdicts were made on the scanned one."""
    st = os.stat(rec.path)
    if rec.size >= 0 and (st.st_size != rec.size or st.st_mtime != rec.mtime):
        raise ValueError("the file changed since the last scan: rescan its folder, then export")


def _chunks(seq: list[int], n: int = 500) -> Iterable[list[int]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _read_store(
    store: Any,
) -> tuple[list[_ImageRec], dict[int, _PredictionRec], dict[int, list[str]]]:
    """Reviewed images, the predictions their verdicts refer to, and each run's model paths."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from cxrlt_desktop.store.models import (
        VERDICTS,
        Image,
        ModelSet,
        Prediction,
        Review,
        RunModel,
        ScoringRun,
        Series,
        Study,
    )

    with store.session() as s, s.begin():
        by_image: dict[int, dict[str, _Verdict]] = {}
        for r in s.scalars(select(Review).order_by(Review.image_id, Review.finding)):
            if r.verdict not in VERDICTS or r.finding not in ALL_CLASSES:
                continue
            by_image.setdefault(r.image_id, {})[r.finding] = _Verdict(
                r.finding, r.verdict, r.note, r.reviewer, r.reviewed_at, r.prediction_id
            )
        images: list[_ImageRec] = []
        ids = sorted(by_image)
        for chunk in _chunks(ids):
            rows = s.scalars(
                select(Image)
                .where(Image.id.in_(chunk))
                .options(
                    selectinload(Image.series)
                    .selectinload(Series.study)
                    .selectinload(Study.patient)
                )
            )
            for im in rows:
                series = im.series
                study = series.study if series is not None else None
                patient = study.patient if study is not None else None
                meta = dict(im.meta or {})
                images.append(
                    _ImageRec(
                        id=im.id,
                        path=im.path,
                        sop_uid=im.sop_uid,
                        sop_class_uid=meta.get("SOPClassUID"),
                        is_dicom=bool(im.is_dicom),
                        image_key=im.sop_uid or f"path:{im.path}",
                        # An image without series (unusable file without UIDs) still is one
                        # person's: key it by the file, so it never shares a patient pseudonym.
                        patient_key=patient.key if patient is not None else f"image:{im.path}",
                        patient_id=patient.patient_id if patient is not None else None,
                        patient_name=patient.patient_name if patient is not None else None,
                        birth_date=patient.birth_date if patient is not None else None,
                        sex=patient.sex if patient is not None else None,
                        study_uid=study.study_uid if study is not None else None,
                        study_date=study.study_date if study is not None else None,
                        study_time=meta.get("StudyTime"),
                        accession=study.accession_number if study is not None else None,
                        institution=study.institution_name if study is not None else None,
                        series_uid=series.series_uid if series is not None else None,
                        modality=series.modality if series is not None else meta.get("Modality"),
                        meta=meta,
                        current_prediction_id=im.current_prediction_id,
                        verdicts=by_image[im.id],
                        size=im.size,
                        mtime=im.mtime,
                    )
                )
        pred_ids = sorted(
            {v.prediction_id for rec in images for v in rec.verdicts.values() if v.prediction_id}
            | {rec.current_prediction_id for rec in images if rec.current_prediction_id}
        )
        preds: dict[int, _PredictionRec] = {}
        for chunk in _chunks(pred_ids):
            for p, ms, run in s.execute(
                select(Prediction, ModelSet, ScoringRun)
                .join(ModelSet, Prediction.model_set_id == ModelSet.id)
                .join(ScoringRun, Prediction.run_id == ScoringRun.id)
                .where(Prediction.id.in_(chunk))
            ):
                desc = ms.description or {}
                preds[p.id] = _PredictionRec(
                    id=p.id,
                    probs=p.probabilities(),
                    run_id=p.run_id,
                    model_set_id=p.model_set_id,
                    models=list(desc.get("models") or []),
                    settings=dict(run.settings or desc.get("settings") or {}),
                )
        run_paths: dict[int, list[str]] = {}
        run_ids = sorted({p.run_id for p in preds.values()})
        for chunk in _chunks(run_ids):
            for rm in s.scalars(
                select(RunModel)
                .where(RunModel.run_id.in_(chunk))
                .options(selectinload(RunModel.model_version))
            ):
                run_paths.setdefault(rm.run_id, []).append(rm.model_version.path)
    images.sort(key=lambda r: r.id)
    return images, preds, run_paths


# ----------------------------------------------------------------------------------------------
# demo detection


# ----------------------------------------------------------------------------------------------
# de-identification of free text


def _identifiers(rec: _ImageRec) -> list[str]:
    """The patient's known identifying strings, longest first, for scrubbing free text."""
    out: set[str] = set()
    raw = [
        rec.patient_id,
        rec.patient_name,
        rec.birth_date,
        rec.accession,
        rec.institution,
        rec.study_uid,
        rec.series_uid,
        rec.sop_uid,
        rec.study_date,
        rec.path,
        Path(rec.path).name if rec.path else None,
    ]
    for key in (
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "InstitutionName",
        "PatientBirthDate",
    ):
        v = rec.meta.get(key)
        if isinstance(v, str):
            raw.append(v)
    for da in (rec.study_date, rec.birth_date):
        if da:
            out.update(_date_forms(da.strip()))
    for v in raw:
        if not v:
            continue
        v = str(v).strip()
        if len(v) >= 2:
            out.add(v)
        if not ("^" in v or " " in v or "=" in v):
            continue
        # Person names: "Family^Given^Middle", with "=" between the alphabetic, ideographic
        # and phonetic groups -> each part, and per group the "Given Family" order too.
        for group in v.split("="):
            parts = [p for p in re.split(r"[\^\s]+", group) if len(p) >= 2]
            out.update(parts)
            if len(parts) >= 2:
                out.add(" ".join(parts))
                out.add(" ".join(reversed(parts)))
    return sorted(out, key=len, reverse=True)


_MONTHS = (
    "January February March April May June July August September October November December"
).split()


def _date_forms(da: str) -> set[str]:
    """A DICOM date (YYYYMMDD) as people write it: 2023-04-17, 17/04/2023, 4/17/23,
    2023/04/17, 17.4.2023, 17 Apr 2023, April 17, 2023, 17th April 2023, 17-Apr-23 ..."""
    if not re.fullmatch(r"\d{8}", da):
        return set()
    y4, mm, dd = da[:4], da[4:6], da[6:8]
    if not (1 <= int(mm) <= 12 and 1 <= int(dd) <= 31):
        return set()
    out: set[str] = set()
    for y in (y4, y4[2:]):
        for m in {mm, str(int(mm))}:
            for d in {dd, str(int(dd))}:
                for sep in "-/.":
                    out |= {f"{d}{sep}{m}{sep}{y}", f"{m}{sep}{d}{sep}{y}"}
                    if y == y4:
                        out.add(f"{y}{sep}{m}{sep}{d}")
        day = int(dd)
        nth = f"{day}{'th' if 11 <= day <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')}"
        for name in {_MONTHS[int(mm) - 1], _MONTHS[int(mm) - 1][:3]}:
            for d in {dd, str(day), nth}:
                out |= {
                    f"{d} {name} {y}",
                    f"{d}-{name}-{y}",
                    f"{name} {d} {y}",
                    f"{name} {d}, {y}",
                    f"{d}. {name} {y}",
                }
    return out


def _word(ident: str) -> str:
    """A regex for ``ident`` as a whole word; ``_`` separates words (file and folder names).
    Ideographic and kana name parts are matched anywhere (those scripts have no spaces)."""
    body = re.escape(ident)
    if any(ord(c) > 0x2E7F and c.isalpha() for c in ident):
        return body
    return rf"(?<![^\W_]){body}(?![^\W_])"


@functools.lru_cache(maxsize=64)
def _scrubber(identifiers: tuple[str, ...]) -> re.Pattern[str] | None:
    # Longest first, so "Lee Ann" goes before "Lee".
    idents = sorted(set(identifiers), key=len, reverse=True)
    if not idents:
        return None
    return re.compile("|".join(_word(i) for i in idents), flags=re.IGNORECASE)


def scrub_text(text: str | None, identifiers: Iterable[str]) -> str:
    """``text`` with each identifier (case-insensitive) replaced by ``[removed]``.

    Free text cannot be de-identified in general; this removes what the store knows about the
    patient (name parts, IDs, accession, institution, UIDs, dates in the usual written forms,
    the file's path and name), matched as whole words ("_" counts as a separator, so
    "Smith_John" is caught; a short name part like "Lee" does not eat into "fleet").
    """
    if not text:
        return ""
    pattern = _scrubber(tuple(identifiers))
    return text if pattern is None else pattern.sub(REMOVED, text)


# ----------------------------------------------------------------------------------------------
# the export


def _csv_bytes(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(header))
    for row in rows:
        w.writerow(list(row))
    return buf.getvalue().encode("utf-8")


def _fmt_prob(p: float) -> str:
    return f"{p:.6f}"


def _models_text(models: list[dict[str, Any]]) -> str:
    return ";".join(f"{m.get('role', '?')}:{m.get('sha256', '?')}" for m in models)


def _iso(ts: datetime | None, shift: int) -> str:
    if ts is None:
        return ""
    return (ts + timedelta(days=shift)).isoformat(timespec="seconds")


@dataclass
class _Exported:
    rec: _ImageRec
    image_id: str
    patient_id: str
    study_date: str
    shift: int
    identifiers: list[str]


def iter_export(
    store: Any,
    out_dir: str | os.PathLike[str],
    *,
    include_phi: bool = False,
    shift_dates: bool = False,
    copy_images: bool = False,
    sr: bool = False,
    demo: bool = False,
    thresholds: Mapping[str, float] | None = None,
    should_stop: Callable[[], bool] | None = None,
    salt: bytes | None = None,
) -> Generator[ExportProgress, None, ExportResult]:
    """Export the verdicts; a generator yielding progress that returns the result.

    Same parameters as :func:`export_feedback` (``salt`` overrides the installation's
    pseudonym salt). Drive it with ``for``/``yield from`` (the :class:`ExportResult` is the
    generator's return value) or call :func:`export_feedback`. Closing the generator before the
    last record (``stage == "done"``) removes what it wrote, like a cancellation.
    """
    from cxrlt_desktop.library.triage import threshold_vector

    try:
        th = dict(zip(ALL_CLASSES, (float(v) for v in threshold_vector(thresholds)), strict=True))
    except ValueError as e:
        raise ExportError(f"operating thresholds: {e}") from e
    out = Path(out_dir).expanduser()
    created_dir = _prepare_out_dir(out)
    options = {
        "include_phi": include_phi,
        "shift_dates": shift_dates,
        "copy_images": copy_images,
        "sr": sr,
    }
    result = ExportResult(out_dir=out, options=dict(options))
    made_dirs: list[Path] = []
    complete = False

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise ExportCancelled(f"{out}: export cancelled; the files it had written were removed")

    def write(path: Path, data: bytes | Callable[[io.BufferedWriter], Any]) -> None:
        try:
            atomic_write(path, data)
        except OSError as e:
            raise ExportError(f"{path}: cannot write ({e.strerror or e})") from e
        result.files.append(path)

    try:
        yield ExportProgress("read", 0, 1, "reading verdicts from the database")
        images, preds, run_paths = _read_store(store)
        check_stop()
        yield ExportProgress("read", 1, 1, f"{len(images)} reviewed images")

        # -- identities -------------------------------------------------------------------
        exported: list[_Exported] = []
        for rec in images:
            shift = date_shift_days(rec.patient_key, salt=salt) if shift_dates else 0
            if include_phi:
                image_id = rec.sop_uid or f"image{rec.id}"
                patient_id = rec.patient_id or ""
            else:
                image_id = image_pseudonym(rec.image_key, salt=salt)
                patient_id = patient_pseudonym(rec.patient_id, rec.patient_key, salt=salt)
            study_date = shift_da(rec.study_date, shift) if shift_dates else (rec.study_date or "")
            idents = [] if include_phi else _identifiers(rec)
            exported.append(_Exported(rec, image_id, patient_id, study_date, shift, idents))
        exported.sort(key=lambda e: e.image_id)
        result.n_images = len(exported)
        result.n_patients = len({e.rec.patient_key for e in exported})

        # -- models behind the exported predictions ----------------------------------------
        used_preds = {
            v.prediction_id or e.rec.current_prediction_id
            for e in exported
            for v in e.rec.verdicts.values()
        } | {e.rec.current_prediction_id for e in exported}
        used = [preds[i] for i in sorted(p for p in used_preds if p and p in preds)]
        model_rows: dict[tuple[str, str], dict[str, Any]] = {}
        for p in used:
            for m in p.models:
                model_rows.setdefault((str(m.get("role")), str(m.get("sha256"))), m)
        demo_models = any(
            is_demo_model(path)
            for rid in {p.run_id for p in used}
            for path in run_paths.get(rid, [])
        )
        result.demo = bool(demo or demo_models)

        # -- images/ -------------------------------------------------------------------------
        readme_problems: list[str] = []
        if copy_images:
            from engine.imageio import ImageReadError, read_source

            img_dir = out / IMAGES_DIR
            img_dir.mkdir()
            made_dirs.append(img_dir)
            for k, e in enumerate(exported):
                check_stop()
                try:
                    _same_file_as_scanned(e.rec)
                    arr, scaled = source_to_png_array(read_source(e.rec.path))
                    png = encode_png(arr)
                except (ImageReadError, ValueError, OSError) as exc:
                    reason = getattr(exc, "reason", None) or str(exc)
                    result.problems.append(f"{e.rec.path}: not copied: {reason}")
                    # De-identified, the README gets the kind of problem only: the details can
                    # quote the file's own bytes.
                    shown = (
                        reason if include_phi else scrub_text(reason.split(": ")[0], e.identifiers)
                    )
                    readme_problems.append(f"{e.image_id}: image not copied: {shown}")
                else:
                    write(img_dir / f"{e.image_id}.png", png)
                    result.n_images_copied += 1
                    result.n_images_scaled += int(scaled)
                yield ExportProgress("images", k + 1, len(exported), e.image_id)

        # -- sr/ -----------------------------------------------------------------------------
        if sr:
            from cxrlt_desktop import __version__
            from cxrlt_desktop.export.sr import SRInput, build_sr, sr_bytes

            sr_dir = out / SR_DIR
            sr_dir.mkdir()
            made_dirs.append(sr_dir)
            for k, e in enumerate(exported):
                check_stop()
                pred = preds.get(e.rec.current_prediction_id or -1)
                try:
                    ds = build_sr(
                        SRInput(
                            image_id=e.image_id,
                            patient_id=e.patient_id,
                            patient_name=(e.rec.patient_name or "")
                            if include_phi
                            else e.patient_id,
                            patient_sex=e.rec.sex or "",
                            birth_date=(e.rec.birth_date or "") if include_phi else "",
                            study_uid=_uid(e.rec.study_uid, include_phi, salt),
                            series_uid=_uid(e.rec.series_uid, include_phi, salt),
                            sop_uid=_uid(e.rec.sop_uid or e.rec.image_key, include_phi, salt),
                            sop_class_uid=e.rec.sop_class_uid or _SECONDARY_CAPTURE,
                            modality=e.rec.modality or "OT",
                            study_date=e.study_date,
                            study_time=(e.rec.study_time or "") if include_phi else "",
                            accession=(e.rec.accession or "") if include_phi else "",
                            verdicts={
                                f: (v.verdict, v.reviewer, v.reviewed_at)
                                for f, v in e.rec.verdicts.items()
                            },
                            probabilities=pred.probs if pred is not None else None,
                            thresholds=th,
                            models=pred.models if pred is not None else [],
                            settings=pred.settings if pred is not None else {},
                            app_version=__version__,
                            demo=result.demo,
                            date_shift_days=e.shift,
                        )
                    )
                    data = sr_bytes(ds)
                except Exception as exc:  # noqa: BLE001 - one image's SR must not stop the rest
                    first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
                    result.problems.append(f"{e.rec.path}: no SR: {first_line}")
                    readme_problems.append(f"{e.image_id}: no SR written ({type(exc).__name__})")
                else:
                    write(sr_dir / f"{e.image_id}.dcm", data)
                    result.n_sr += 1
                yield ExportProgress("sr", k + 1, len(exported), e.image_id)

        # -- labels.csv ----------------------------------------------------------------------
        check_stop()
        yield ExportProgress("csv", 0, 2, LABELS_CSV)
        label_rows = []
        for e in exported:
            cells = []
            for c in ALL_CLASSES:
                v = e.rec.verdicts.get(c)
                if v is None:
                    cells.append("")
                elif v.verdict == "present":
                    cells.append("1")
                    result.n_positive += 1
                elif v.verdict == "absent":
                    cells.append("0")
                    result.n_negative += 1
                else:
                    cells.append("")
                    result.n_uncertain += 1
            label_rows.append([e.image_id, e.study_date, e.patient_id, *cells])
        write(out / LABELS_CSV, _csv_bytes(LABEL_COLUMNS, label_rows))

        # -- disagreements.csv ---------------------------------------------------------------
        check_stop()
        yield ExportProgress("csv", 1, 2, DISAGREEMENTS_CSV)
        dis: list[tuple[float, str, str, list[str]]] = []
        for e in exported:
            for finding, v in e.rec.verdicts.items():
                if v.verdict not in ("present", "absent"):
                    continue
                pred = preds.get(v.prediction_id or e.rec.current_prediction_id or -1)
                if pred is None:
                    continue
                p = float(pred.probs[ALL_CLASSES.index(finding)])
                if math.isnan(p):
                    continue  # the task's model was not configured: nothing to disagree with
                t = th[finding]
                model_present = p >= t
                if (v.verdict == "present") == model_present:
                    continue
                note = (v.note or "") if include_phi else scrub_text(v.note, e.identifiers)
                dis.append(
                    (
                        abs(p - t),
                        e.image_id,
                        finding,
                        [
                            e.image_id,
                            finding,
                            _fmt_prob(p),
                            _fmt_prob(t),
                            v.verdict,
                            note,
                            v.reviewer,
                            _iso(v.reviewed_at, e.shift),
                            _models_text(pred.models),
                            json.dumps(pred.settings, sort_keys=True, separators=(",", ":")),
                        ],
                    )
                )
        # Largest margin first; ties in a stable, content-defined order.
        dis.sort(key=lambda d: (-d[0], d[1], ALL_CLASSES.index(d[2])))
        result.n_disagreements = len(dis)
        write(out / DISAGREEMENTS_CSV, _csv_bytes(DISAGREEMENT_COLUMNS, [d[3] for d in dis]))
        yield ExportProgress("csv", 2, 2, DISAGREEMENTS_CSV)

        # -- README.txt last: its presence marks a complete export ---------------------------
        check_stop()
        write(
            out / README_TXT,
            _readme(result, th, list(model_rows.values()), readme_problems).encode("utf-8"),
        )
        complete = True
        yield ExportProgress("done", 1, 1, str(out))
        return result
    except BaseException:
        if not complete:  # a consumer that stops after "done" keeps the finished export
            _cleanup(result.files, made_dirs, out if created_dir else None)
        raise


_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _uid(uid: str | None, include_phi: bool, salt: bytes | None) -> str:
    if not uid:
        from pydicom.uid import generate_uid

        return generate_uid(prefix="2.25.")
    return (
        uid
        if include_phi and re.fullmatch(r"[0-9.]{1,64}", uid)
        else pseudonymous_uid(uid, salt=salt)
    )


def _cleanup(files: list[Path], dirs: list[Path], created: Path | None) -> None:
    for f in reversed(files):
        try:
            f.unlink(missing_ok=True)
        except OSError:
            pass
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            pass
    if created is not None:
        try:
            created.rmdir()
        except OSError:
            pass


def _readme(
    result: ExportResult,
    thresholds: Mapping[str, float],
    models: list[dict[str, Any]],
    problems: list[str],
) -> str:
    from cxrlt_desktop import __version__

    o = result.options
    lines = []
    if result.demo:
        lines += [
            "*** DEMO EXPORT: the predictions come from DEMO models trained on synthetic phantoms. ***",
            "*** Do not use these labels or disagreements for clinical work.                       ***",
            "",
        ]
    lines += [
        "CXR-LT Desktop feedback export",
        "==============================",
        f"Created: {date.today().isoformat()} by CXR-LT Desktop {__version__}",
        "",
        "Options",
        f"  include PHI ........ {'YES: this export CONTAINS patient identifiers' if o['include_phi'] else 'no (de-identified)'}",
        f"  shift dates ........ {'yes (per-patient offset of 1-' + str(MAX_SHIFT_DAYS) + ' days into the past)' if o['shift_dates'] else 'no'}",
        f"  copy images ........ {'yes' if o['copy_images'] else 'no'}",
        f"  DICOM SR ........... {'yes' if o['sr'] else 'no'}",
        f"  DEMO models ........ {'yes' if result.demo else 'no'}",
        "",
        "Contents",
        f"  {LABELS_CSV}: {result.n_images} reviewed images of {result.n_patients} patients; "
        f"{result.n_positive} present, {result.n_negative} absent, {result.n_uncertain} uncertain (empty cells).",
        "    CXR-LT format: ImageID, StudyDate_DICOM, PatientID, then 36 class columns;",
        "    1 = present, 0 = absent, empty = not reviewed or uncertain. Radiologist verdicts only.",
        f"  {DISAGREEMENTS_CSV}: {result.n_disagreements} findings where the verdict disagrees with the model",
        "    at its operating threshold (present while p < t, absent while p >= t), largest |p - t| first.",
    ]
    if o["copy_images"]:
        lines += [
            f"  {IMAGES_DIR}/: {result.n_images_copied} images named <ImageID>.png: the source array the models read.",
            "    uint8 and uint16 sources (and integer modality values in 0..65535) are stored unchanged;",
            "    other modality-LUT values are mapped linearly from their min..max onto 0..65535",
            f"    ({result.n_images_scaled} images), which leaves the models' input unchanged up to rounding.",
            f"    Train with: cxrlt train --labels {LABELS_CSV} --images {IMAGES_DIR} ...",
        ]
    if o["sr"]:
        lines += [
            f"  {SR_DIR}/: {result.n_sr} DICOM Structured Reports (TID 1500) named <ImageID>.dcm.",
        ]
    if not o["include_phi"]:
        lines += [
            "",
            "De-identification",
            "  ImageID and PatientID are salted SHA-256 pseudonyms (the salt stays on the exporting",
            "  machine, so the same patient keeps the same pseudonym in later exports). No patient name,",
            "  birth date, accession number, institution, file path or original UID is included; UIDs in",
            "  the SR files are new pseudonymous UIDs. Known identifiers are removed from notes, but free",
            "  text can hold anything: read the notes before sharing.",
        ]
    lines += ["", "Models (role: sha256)"]
    if models:
        lines += [
            f"  {m.get('role', '?')}: {m.get('sha256', '?')}  ({m.get('arch') or ''})"
            for m in models
        ]
    else:
        lines += ["  (no scored predictions among the exported images)"]
    changed = {k: v for k, v in thresholds.items() if DEFAULT_THRESHOLDS.get(k) != v}
    lines += [
        "",
        "Operating thresholds: the defaults"
        + (f", except {json.dumps(changed)}" if changed else ""),
    ]
    if problems:
        lines += ["", f"Problems ({len(problems)})"] + [f"  {p}" for p in problems]
    return "\n".join(lines) + "\n"


def export_feedback(
    store: Any,
    out_dir: str | os.PathLike[str],
    *,
    include_phi: bool = False,
    shift_dates: bool = False,
    copy_images: bool = False,
    sr: bool = False,
    demo: bool = False,
    thresholds: Mapping[str, float] | None = None,
    progress: Callable[[ExportProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ExportResult:
    """Export the radiologists' verdicts from ``store`` into ``out_dir``.

    Parameters
    ----------
    store : cxrlt_desktop.store.Store
        The open store.
    out_dir : path-like
        A new or empty folder (a non-empty one is refused, see the module docstring).
    include_phi : bool
        Keep original identifiers (PatientID, SOPInstanceUID as ImageID, names in the SR).
    shift_dates : bool
        Shift each patient's dates by a per-patient offset (1 to 730 days back).
    copy_images : bool
        Write ``images/<ImageID>.png`` (the source arrays), so training reads the export as is.
    sr : bool
        Write one DICOM SR per image under ``sr/``.
    demo : bool
        Mark the export DEMO even if no model manifest says so (the GUI's demo mode).
    thresholds : mapping, optional
        Operating thresholds by class name; missing classes use
        :data:`engine.classes.DEFAULT_THRESHOLDS`.
    progress : callable, optional
        Called with each :class:`ExportProgress`.
    should_stop : callable, optional
        Polled between files; when it returns True the export stops, removes what it wrote
        and raises :class:`ExportCancelled`.

    Returns
    -------
    ExportResult

    Raises
    ------
    ExportError
        The folder is not empty or cannot be created, a file cannot be written, or a threshold
        names an unknown class.
    """
    gen = iter_export(
        store,
        out_dir,
        include_phi=include_phi,
        shift_dates=shift_dates,
        copy_images=copy_images,
        sr=sr,
        demo=demo,
        thresholds=thresholds,
        should_stop=should_stop,
    )
    while True:
        try:
            rec = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(rec)


# The GUI's File menu (cxrlt_desktop/ui/main_window.py) looks this name up; same function.
export_labels = export_feedback
