"""Running a feedback export: the radiologists' verdicts as labels, disagreements and DICOM SR.

An export is a folder holding

- ``labels.csv``: the CXR-LT training format (``ImageID``, ``StudyDate_DICOM``, ``PatientID``,
  then the 30 Task 1 and the 6 zero-shot classes of :data:`engine.classes.ALL_CLASSES`); a cell
  is ``1`` (verdict present), ``0`` (verdict absent) or empty (not reviewed or uncertain),
  then the reader's measurements (:data:`MEASUREMENT_COLUMNS`). Only images with at least one
  verdict or one measurement appear: an image measured but not reviewed has every class cell
  empty ("not reviewed", unknown to training) and its measurement cells. The model's scores
  never appear.
- ``disagreements.csv``: one row per finding whose verdict contradicts the model at its
  operating threshold (present while p < t, absent while p >= t; the threshold of the
  prediction's model set, see :func:`.sr.effective_thresholds`), largest ``|p - t|`` first.
- ``images/<ImageID>.png`` (``copy_images``): each image's source array
  (:func:`engine.imageio.read_source`), lossless where possible, see :mod:`.images`. A
  de-identified export leaves out images whose header says (or, for a secondary capture,
  does not deny) that text is burned into the pixels, unless ``allow_burned_in``
  (:func:`.header_phi.burned_in_reason`).
- ``sr/<ImageID>_ai.dcm`` and ``sr/<ImageID>_review.dcm`` (``sr``): per image the AI-result
  SR (UNVERIFIED, the models' calls) when it has a prediction, and the review SR (VERIFIED,
  the radiologists' verdicts, referencing the AI-result SR), see :mod:`.sr`.
- ``README.txt`` (:mod:`.readme`): the options used, counts, the models (sha256) and whether
  they were DEMO models, and the per-image problems (by ImageID, never by path).

De-identification (unless ``include_phi``, see :mod:`.deid`): ImageID and PatientID are salted
SHA-256 pseudonyms (:mod:`cxrlt_desktop.library.pseudonym`; the salt is per installation, so
pseudonyms are stable across exports), and so are reviewer names
(:func:`.deid.reviewer_pseudonym`, in disagreements.csv and the SRs); no patient name, birth
date, accession number,
institution, path or original UID is written; free-text notes have every identifier known from
the store and from the image's own header replaced by ``[removed]`` (a note whose image header
cannot be read, or whose file changed since the scan, is withheld) and of every reviewer's
name (:func:`.deid.reviewer_identifiers`); every date of a patient
(study date, review time) moves by the same offset of 1 to 730 days into the past, derived
from the salt and the patient, so intervals are kept (``shift_dates``, on by default unless
``include_phi``).

Overwriting: an export goes into an empty (or new) folder only; a folder that holds anything
is refused with :class:`ExportError`, so an earlier export is never overwritten. Each file is
written to a temporary file in the same folder, fsynced and renamed (``os.replace``), mode
0600; if the export fails or is cancelled, the files it wrote are removed again, so the folder
is left as it was and can be used for the next try (:mod:`.files`). Every path is built by
:func:`.files.inside`, which refuses one that would resolve outside the export folder, and a
UID names a file only when it is a plain DICOM UID (:func:`.files.is_file_uid`).

CSV cells a spreadsheet would run as a formula (a note starting with ``=``, say) are written
with a leading ``'`` (:mod:`.safe_csv`).

The store is read once, into the typed records of :mod:`.records`. Everything runs without Qt
and prints nothing: :func:`iter_export` yields :class:`ExportProgress` records and returns the
:class:`ExportResult`; :func:`export_feedback` drives it with an optional callback.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from cxrlt_desktop.export.deid import (
    date_shift_days,
    image_pseudonym,
    patient_identifiers,
    patient_pseudonym,
    reviewer_identifiers,
    reviewer_pseudonym,
    scrub_text,
    shift_da,
    shift_timestamp,
)
from cxrlt_desktop.export.errors import ExportCancelled, ExportError
from cxrlt_desktop.export.files import (
    DISAGREEMENTS_CSV,
    IMAGES_DIR,
    LABELS_CSV,
    README_TXT,
    SR_DIR,
    atomic_write,
    inside,
    is_file_uid,
    make_private_dir,
    prepare_out_dir,
    remove_written,
)
from cxrlt_desktop.export.header_phi import HeaderFacts, burned_in_reason, read_header_facts
from cxrlt_desktop.export.images import encode_png, source_to_png_array
from cxrlt_desktop.export.readme import readme_text
from cxrlt_desktop.export.records import (
    ImageRecord,
    PredictionRecord,
    StoreSnapshot,
    VerdictRecord,
    read_store,
)
from cxrlt_desktop.export.safe_csv import Numeric, csv_bytes
from cxrlt_desktop.export.sr import (
    ai_sr_of,
    deid_declaration,
    effective_thresholds,
    review_sr_of,
    sr_bytes,
    sr_subject,
)
from cxrlt_desktop.library.triage import threshold_vector
from engine.classes import ALL_CLASSES
from engine.manifest import is_demo_model

# The reader's measurements after the labels: the latest Cobb angle (degrees) and CTR of the
# image, then every measurement as "<kind> <value with its unit>" ("; " between them).
MEASUREMENT_COLUMNS: tuple[str, ...] = ("Cobb_angle_deg", "Cardiothoracic_ratio", "Measurements")
LABEL_COLUMNS: tuple[str, ...] = (
    "ImageID",
    "StudyDate_DICOM",
    "PatientID",
    *ALL_CLASSES,
    *MEASUREMENT_COLUMNS,
)
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
NOTE_WITHHELD = "[note withheld: its image's header could not be checked for identifiers]"


@dataclass
class ExportProgress:
    """One step of an export: ``stage`` is "read", "images", "sr", "csv" or "done"."""

    stage: Literal["read", "images", "sr", "csv", "done"]
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
        Reviewed images (rows of labels.csv with a verdict).
    n_measured_only : int
        Images measured but not reviewed (rows of labels.csv without a verdict).
    n_patients : int
        Distinct patients among the rows of labels.csv.
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
    n_images_burned_in : int
        Images left out of images/ because their pixels may show burned-in text.
    n_images_unflagged : int
        PNGs copied from PNG/JPEG/TIFF files, which carry no burned-in-text flag.
    n_notes_withheld : int
        Notes replaced by :data:`NOTE_WITHHELD` (the image's header could not be read, or the
        file changed since the scan).
    n_sr : int
        SR files written under sr/ (AI-result and review SRs together).
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
    n_measured_only: int = 0
    n_patients: int = 0
    n_positive: int = 0
    n_negative: int = 0
    n_uncertain: int = 0
    n_disagreements: int = 0
    n_images_copied: int = 0
    n_images_scaled: int = 0
    n_images_burned_in: int = 0
    n_images_unflagged: int = 0
    n_notes_withheld: int = 0
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


@dataclass
class _Exported:
    """A reviewed image as it is exported: its exported IDs, date and date shift."""

    rec: ImageRecord
    image_id: str
    patient_id: str
    study_date: str
    shift: int
    # The image's header as read at export time (read once, when first needed): its facts,
    # or why it could not be read. None: not read yet.
    header: HeaderFacts | str | None = None
    identifiers: list[str] | None = None  # what to scrub from its notes, once known


class _Disagreement(NamedTuple):
    margin: float  # |p - t|
    image_id: str
    finding: str
    row: list[Any]  # the disagreements.csv row (text, and Numeric for the numbers)


def measurement_cells(rec: ImageRecord) -> list[str]:
    """The :data:`MEASUREMENT_COLUMNS` cells of an image."""
    cobb = [m for m in rec.measurements if m.kind == "cobb"]
    ctr = [m for m in rec.measurements if m.kind == "ctr"]
    every = "; ".join(
        m.text if m.kind in ("cobb", "ctr") else f"{m.kind} {m.text}" for m in rec.measurements
    )
    return [
        f"{cobb[-1].value:.1f}" if cobb else "",
        f"{ctr[-1].value:.3f}" if ctr else "",
        every,
    ]


def _fmt_prob(p: float) -> str:
    return f"{p:.6f}"


def _models_text(models: list[dict[str, Any]]) -> str:
    return ";".join(f"{m.get('role', '?')}:{m.get('sha256', '?')}" for m in models)


class _ExportRun:
    """One export in progress: its options, the files written so far and the result."""

    def __init__(
        self,
        out: Path,
        options: dict[str, bool],
        thresholds: dict[str, float],
        salt: bytes | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.out = out
        self.include_phi = options["include_phi"]
        self.shift_dates = options["shift_dates"]
        self.allow_burned_in = options["allow_burned_in"]
        self.thresholds = thresholds
        self.salt = salt
        self.should_stop = should_stop
        self.result = ExportResult(out_dir=out, options=dict(options))
        self.made_dirs: list[Path] = []
        self.readme_problems: list[str] = []  # by ImageID, never by path
        self.reviewer_names: list[str] = []  # their written forms, for scrubbing notes

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise ExportCancelled(
                f"{self.out}: export cancelled; the files it had written were removed"
            )

    def write(
        self, parts: tuple[str, ...], data: bytes | Callable[[io.BufferedWriter], Any]
    ) -> None:
        """Write the file ``out/parts...`` (checked to stay inside the export folder)."""
        path = inside(self.out, *parts)
        try:
            atomic_write(path, data)
        except OSError as e:
            raise ExportError(f"{path}: cannot write ({e.strerror or e})") from e
        self.result.files.append(path)

    def make_dir(self, name: str) -> Path:
        folder = inside(self.out, name)
        make_private_dir(folder)
        self.made_dirs.append(folder)
        return folder

    # -- identities ------------------------------------------------------------------------

    def identities(self, images: list[ImageRecord]) -> list[_Exported]:
        """Exported IDs, dates and identifiers of the images, sorted by exported ImageID."""
        exported = [self._identity(rec) for rec in images]
        exported.sort(key=lambda e: e.image_id)
        # Every reviewer's name is scrubbed from every note (a colleague named in a note).
        self.reviewer_names = reviewer_identifiers(
            {v.reviewer for rec in images for v in rec.verdicts.values()}
        )
        self.result.n_measured_only = sum(1 for e in exported if not e.rec.verdicts)
        self.result.n_images = len(exported) - self.result.n_measured_only
        self.result.n_patients = len({e.rec.patient_key for e in exported})
        return exported

    def _identity(self, rec: ImageRecord) -> _Exported:
        salt = self.salt
        shift = date_shift_days(rec.patient_key, salt=salt) if self.shift_dates else 0
        if self.include_phi:
            # The ImageID names files (images/, sr/): a SOPInstanceUID that is not a plain UID
            # ("../../x", "/tmp/abs", 65 characters) gets the pseudonym instead.
            if is_file_uid(rec.sop_uid):
                image_id = str(rec.sop_uid)
            elif rec.sop_uid:
                image_id = image_pseudonym(rec.image_key, salt=salt)
            else:
                image_id = f"image{rec.id}"
            patient_id = rec.patient_id or ""
        else:
            image_id = image_pseudonym(rec.image_key, salt=salt)
            patient_id = patient_pseudonym(rec.patient_id, rec.patient_key, salt=salt)
        study_date = shift_da(rec.study_date, shift) if self.shift_dates else (rec.study_date or "")
        return _Exported(rec, image_id, patient_id, study_date, shift)

    # -- the image's header, read again at export time ---------------------------------------

    def header(self, e: _Exported) -> HeaderFacts | str:
        """The image's :class:`HeaderFacts`, or why they cannot be known (read once).

        Only the file the scan recorded counts (:mod:`cxrlt_desktop.library.identity`: size,
        time, filing UIDs, still a chest radiograph): the verdicts and notes were made on it,
        and another file now at its path says nothing about that one.
        """
        from cxrlt_desktop.library.identity import (
            ScannedFile,
            check_header,
            check_unchanged_after,
        )
        from engine.imageio import ImageReadError

        if e.header is None:
            if not e.rec.is_dicom:
                e.header = HeaderFacts()
            else:
                scanned = ScannedFile.of(e.rec)
                try:
                    check_header(scanned)
                    facts = read_header_facts(e.rec.path)
                    check_unchanged_after(scanned)
                    e.header = facts
                except (ImageReadError, OSError, ValueError) as exc:
                    e.header = getattr(exc, "reason", None) or str(exc)
        return e.header

    def note_text(self, e: _Exported, note: str | None) -> str:
        """A note as exported: as it is with PHI; else scrubbed of every identifier of the
        store and the image's header, or withheld when the header cannot be read."""
        if self.include_phi or not note:
            return note or ""
        if e.identifiers is None:
            facts = self.header(e)
            if isinstance(facts, str):
                self.result.n_notes_withheld += 1
                return NOTE_WITHHELD
            e.identifiers = patient_identifiers(e.rec, facts) + self.reviewer_names
        return scrub_text(note, e.identifiers)

    # -- models behind the exported predictions ----------------------------------------------

    def models_used(
        self, exported: list[_Exported], snap: StoreSnapshot, demo: bool
    ) -> list[dict[str, Any]]:
        """The distinct models (by role and sha256) behind the exported predictions; marks the
        result DEMO when any of their files is a demo model (or ``demo`` says so)."""
        used_preds = {
            v.prediction_id or e.rec.current_prediction_id
            for e in exported
            for v in e.rec.verdicts.values()
        } | {e.rec.current_prediction_id for e in exported}
        preds = snap.predictions
        used = [preds[i] for i in sorted(p for p in used_preds if p and p in preds)]
        model_rows: dict[tuple[str, str], dict[str, Any]] = {}
        for p in used:
            for m in p.models:
                model_rows.setdefault((str(m.get("role")), str(m.get("sha256"))), m)
        demo_models = any(
            is_demo_model(path)
            for rid in {p.run_id for p in used}
            for path in snap.run_paths.get(rid, [])
        )
        self.result.demo = bool(demo or demo_models)
        return list(model_rows.values())

    # -- images/ -----------------------------------------------------------------------------

    def copy_images(self, exported: list[_Exported]) -> Generator[ExportProgress, None, None]:
        """Write ``images/<ImageID>.png``; an image that cannot be read is a problem, not fatal."""
        from cxrlt_desktop.library.identity import ScannedFile, read_checked
        from engine.imageio import ImageReadError, read_source

        self.make_dir(IMAGES_DIR)
        result = self.result
        for k, e in enumerate(exported):
            self.check_stop()
            burned = self._burned_in(e)
            if burned is not None:
                result.n_images_burned_in += 1
                result.problems.append(
                    f"{e.rec.path}: not copied: {burned}; --allow-burned-in copies it"
                )
                self.readme_problems.append(f"{e.image_id}: image not copied: {burned}")
                yield ExportProgress("images", k + 1, len(exported), e.image_id)
                continue
            try:
                # Right patient or nothing: the file must still be the scanned one (size, time,
                # filing UIDs, a chest radiograph) before and after it is read.
                source = read_checked(ScannedFile.of(e.rec), read_source)
                arr, scaled = source_to_png_array(source)
                png = encode_png(arr)
            except (ImageReadError, ValueError, OSError) as exc:
                reason = getattr(exc, "reason", None) or str(exc)
                result.problems.append(f"{e.rec.path}: not copied: {reason}")
                # De-identified, the README gets the kind of problem only: the details can
                # quote the file's own bytes.
                shown = (
                    reason
                    if self.include_phi
                    else scrub_text(reason.split(": ")[0], patient_identifiers(e.rec))
                )
                self.readme_problems.append(f"{e.image_id}: image not copied: {shown}")
            else:
                self.write((IMAGES_DIR, f"{e.image_id}.png"), png)
                result.n_images_copied += 1
                result.n_images_scaled += int(scaled)
                result.n_images_unflagged += int(not e.rec.is_dicom)
            yield ExportProgress("images", k + 1, len(exported), e.image_id)

    def _burned_in(self, e: _Exported) -> str | None:
        """Why the image's PNG stays out of a de-identified export (burned-in text), or None.
        A header that cannot be read is left to the copy itself, which reports it."""
        if self.include_phi or self.allow_burned_in:
            return None
        facts = self.header(e)
        return None if isinstance(facts, str) else burned_in_reason(facts, e.rec.is_dicom)

    # -- sr/ ---------------------------------------------------------------------------------

    def write_srs(
        self, exported: list[_Exported], preds: dict[int, PredictionRecord]
    ) -> Generator[ExportProgress, None, None]:
        """Write ``sr/<ImageID>_ai.dcm`` (when scored) and ``sr/<ImageID>_review.dcm``; an SR
        that cannot be built is a problem, not fatal."""
        self.make_dir(SR_DIR)
        for k, e in enumerate(exported):
            self.check_stop()
            try:
                docs = self._srs(e, preds.get(e.rec.current_prediction_id or -1))
            except Exception as exc:  # noqa: BLE001 - one image's SR must not stop the rest
                first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
                self.result.problems.append(f"{e.rec.path}: no SR: {first_line}")
                self.readme_problems.append(f"{e.image_id}: no SR written ({type(exc).__name__})")
            else:
                for suffix, data in docs:
                    self.write((SR_DIR, f"{e.image_id}_{suffix}.dcm"), data)
                    self.result.n_sr += 1
            yield ExportProgress("sr", k + 1, len(exported), e.image_id)

    def _srs(self, e: _Exported, pred: PredictionRecord | None) -> list[tuple[str, bytes]]:
        """The SR files of one image: ("ai", bytes) when it was scored, ("review", bytes)."""
        phi, salt, rec = self.include_phi, self.salt, e.rec
        subject = sr_subject(
            rec,
            include_phi=phi,
            shift_days=e.shift,
            salt=salt,
            patient_id=e.patient_id,
            study_date=e.study_date,
        )
        deid = deid_declaration(rec, phi, self.shift_dates)
        demo = self.result.demo
        out: list[tuple[str, bytes]] = []
        ai = None
        if pred is not None and not all(math.isnan(float(p)) for p in pred.probs):
            ai = ai_sr_of(
                rec,
                pred,
                subject,
                deid=deid,
                shift_days=e.shift,
                thresholds=self.thresholds,
                demo=demo,
            )
            out.append(("ai", sr_bytes(ai)))
        review = review_sr_of(
            rec, subject, ai, include_phi=phi, deid=deid, shift_days=e.shift, salt=salt, demo=demo
        )
        if review is not None:
            out.append(("review", sr_bytes(review)))
        return out

    # -- labels.csv --------------------------------------------------------------------------

    def write_labels(self, exported: list[_Exported]) -> Generator[ExportProgress, None, None]:
        """Write labels.csv: 1 present, 0 absent, empty for uncertain or not reviewed."""
        self.check_stop()
        yield ExportProgress("csv", 0, 2, LABELS_CSV)
        result = self.result
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
            label_rows.append(
                [e.image_id, e.study_date, e.patient_id, *cells, *measurement_cells(e.rec)]
            )
        self.write((LABELS_CSV,), csv_bytes(LABEL_COLUMNS, label_rows))

    # -- disagreements.csv -------------------------------------------------------------------

    def write_disagreements(
        self, exported: list[_Exported], preds: dict[int, PredictionRecord]
    ) -> Generator[ExportProgress, None, None]:
        """Write disagreements.csv: verdicts that contradict the model, largest margin first."""
        self.check_stop()
        yield ExportProgress("csv", 1, 2, DISAGREEMENTS_CSV)
        dis: list[_Disagreement] = []
        for e in exported:
            for finding, v in e.rec.verdicts.items():
                if v.verdict not in ("present", "absent"):
                    continue
                pred = preds.get(v.prediction_id or e.rec.current_prediction_id or -1)
                if pred is None:
                    continue
                d = self._disagreement(e, finding, v, pred)
                if d is not None:
                    dis.append(d)
        # Largest margin first; ties in a stable, content-defined order.
        dis.sort(key=lambda d: (-d.margin, d.image_id, ALL_CLASSES.index(d.finding)))
        self.result.n_disagreements = len(dis)
        self.write((DISAGREEMENTS_CSV,), csv_bytes(DISAGREEMENT_COLUMNS, [d.row for d in dis]))
        yield ExportProgress("csv", 2, 2, DISAGREEMENTS_CSV)

    def _disagreement(
        self, e: _Exported, finding: str, v: VerdictRecord, pred: PredictionRecord
    ) -> _Disagreement | None:
        """The disagreements.csv row of a present/absent verdict, or None if the model agrees."""
        p = float(pred.probs[ALL_CLASSES.index(finding)])
        if math.isnan(p):
            return None  # the task's model was not configured: nothing to disagree with
        t = effective_thresholds(pred, self.thresholds)[finding]
        model_present = p >= t
        if (v.verdict == "present") == model_present:
            return None
        row = [
            e.image_id,
            finding,
            Numeric(_fmt_prob(p)),
            Numeric(_fmt_prob(t)),
            v.verdict,
            self.note_text(e, v.note),
            v.reviewer if self.include_phi else reviewer_pseudonym(v.reviewer, salt=self.salt),
            shift_timestamp(v.reviewed_at, e.shift),
            _models_text(pred.models),
            json.dumps(pred.settings, sort_keys=True, separators=(",", ":")),
        ]
        return _Disagreement(abs(p - t), e.image_id, finding, row)


def default_shift_dates(include_phi: bool) -> bool:
    """Whether an export shifts dates unless told: yes when de-identified.

    Study dates are identifiers (HIPAA's Safe Harbor keeps only the year), and training needs
    no calendar date; the per-patient shift keeps the intervals between a patient's studies.
    An export with PHI keeps the dates, like the other identifiers.
    """
    return not include_phi


def _read(store: Any) -> StoreSnapshot:
    """:func:`read_store`, with a damaged database reported as what to do about it."""
    from sqlalchemy.exc import DBAPIError

    from cxrlt_desktop.store import database_error_message

    try:
        return read_store(store)
    except DBAPIError as exc:
        raise ExportError(database_error_message(store, exc)) from exc


def _thresholds(overrides: Mapping[str, float] | None) -> dict[str, float]:
    try:
        return dict(zip(ALL_CLASSES, (float(v) for v in threshold_vector(overrides)), strict=True))
    except ValueError as e:
        raise ExportError(f"operating thresholds: {e}") from e


def iter_export(
    store: Any,
    out_dir: str | os.PathLike[str],
    *,
    include_phi: bool = False,
    shift_dates: bool | None = None,
    copy_images: bool = False,
    sr: bool = False,
    allow_burned_in: bool = False,
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
    th = _thresholds(thresholds)
    out = Path(out_dir).expanduser()
    created_dir = prepare_out_dir(out)
    options = {
        "include_phi": include_phi,
        "shift_dates": default_shift_dates(include_phi) if shift_dates is None else shift_dates,
        "copy_images": copy_images,
        "sr": sr,
        "allow_burned_in": allow_burned_in,
    }
    run = _ExportRun(out, options, th, salt, should_stop)
    complete = False
    try:
        yield ExportProgress("read", 0, 1, "reading verdicts from the database")
        snap = _read(store)
        run.check_stop()
        yield ExportProgress("read", 1, 1, f"{len(snap.images)} reviewed or measured images")
        exported = run.identities(snap.images)
        models = run.models_used(exported, snap, demo)
        if copy_images:
            yield from run.copy_images(exported)
        if sr:
            yield from run.write_srs(exported, snap.predictions)
        yield from run.write_labels(exported)
        yield from run.write_disagreements(exported, snap.predictions)
        # README.txt last: its presence marks a complete export.
        run.check_stop()
        readme = readme_text(run.result, th, models, run.readme_problems)
        run.write((README_TXT,), readme.encode("utf-8"))
        complete = True
        yield ExportProgress("done", 1, 1, str(out))
        return run.result
    except BaseException:
        if not complete:  # a consumer that stops after "done" keeps the finished export
            remove_written(run.result.files, run.made_dirs, out if created_dir else None)
        raise


def export_feedback(
    store: Any,
    out_dir: str | os.PathLike[str],
    *,
    include_phi: bool = False,
    shift_dates: bool | None = None,
    copy_images: bool = False,
    sr: bool = False,
    allow_burned_in: bool = False,
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
    shift_dates : bool, optional
        Shift each patient's dates by a per-patient offset (1 to 730 days back). Default
        (None): shifted when de-identified, kept with ``include_phi``
        (:func:`default_shift_dates`).
    copy_images : bool
        Write ``images/<ImageID>.png`` (the source arrays), so training reads the export as is.
    sr : bool
        Write one DICOM SR per image under ``sr/``.
    allow_burned_in : bool
        Copy images whose pixels may show burned-in text into a de-identified export too
        (left out by default, see :func:`.header_phi.burned_in_reason`).
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
        allow_burned_in=allow_burned_in,
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
