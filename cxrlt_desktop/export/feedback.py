"""Running a feedback export: the radiologists' verdicts as labels, disagreements and DICOM SR.

An export is a folder holding

- ``labels.csv``: the CXR-LT training format (``ImageID``, ``StudyDate_DICOM``, ``PatientID``,
  then the 30 Task 1 and the 6 zero-shot classes of :data:`engine.classes.ALL_CLASSES`); a cell
  is ``1`` (verdict present), ``0`` (verdict absent) or empty (not reviewed or uncertain). Only
  images with at least one verdict appear; the model's scores never do.
- ``disagreements.csv``: one row per finding whose verdict contradicts the model at its
  operating threshold (present while p < t, absent while p >= t), largest ``|p - t|`` first.
- ``images/<ImageID>.png`` (``copy_images``): each image's source array
  (:func:`engine.imageio.read_source`), lossless where possible, see :mod:`.images`.
- ``sr/<ImageID>.dcm`` (``sr``): one DICOM Structured Report (TID 1500) per image, see
  :mod:`.sr`.
- ``README.txt`` (:mod:`.readme`): the options used, counts, the models (sha256) and whether
  they were DEMO models, and the per-image problems (by ImageID, never by path).

De-identification (unless ``include_phi``, see :mod:`.deid`): ImageID and PatientID are salted
SHA-256 pseudonyms (:mod:`cxrlt_desktop.library.pseudonym`; the salt is per installation, so
pseudonyms are stable across exports); no patient name, birth date, accession number,
institution, path or original UID is written; free-text notes have the patient's known
identifiers replaced by ``[removed]``; with ``shift_dates`` every date of a patient (study
date, review time) moves by the same offset of 1 to 730 days into the past, derived from the
salt and the patient, so intervals are kept.

Overwriting: an export goes into an empty (or new) folder only; a folder that holds anything
is refused with :class:`ExportError`, so an earlier export is never overwritten. Each file is
written to a temporary file in the same folder, fsynced and renamed (``os.replace``); if the
export fails or is cancelled, the files it wrote are removed again, so the folder is left as
it was and can be used for the next try (:mod:`.files`).

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

from cxrlt_desktop import __version__
from cxrlt_desktop.export.deid import (
    date_shift_days,
    export_uid,
    image_pseudonym,
    patient_identifiers,
    patient_pseudonym,
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
    csv_bytes,
    prepare_out_dir,
    remove_written,
)
from cxrlt_desktop.export.images import check_unchanged, encode_png, source_to_png_array
from cxrlt_desktop.export.readme import readme_text
from cxrlt_desktop.export.records import (
    ImageRecord,
    PredictionRecord,
    StoreSnapshot,
    VerdictRecord,
    read_store,
)
from cxrlt_desktop.export.sr import SRInput, build_sr, sr_bytes
from cxrlt_desktop.library.triage import threshold_vector
from engine.classes import ALL_CLASSES
from engine.manifest import is_demo_model

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
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # the SOP class of an image without one


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


@dataclass
class _Exported:
    """A reviewed image as it is exported: its exported IDs, date and date shift."""

    rec: ImageRecord
    image_id: str
    patient_id: str
    study_date: str
    shift: int
    identifiers: list[str]  # what to scrub from its notes (none with PHI included)


class _Disagreement(NamedTuple):
    margin: float  # |p - t|
    image_id: str
    finding: str
    row: list[str]  # the disagreements.csv row


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
        self.thresholds = thresholds
        self.salt = salt
        self.should_stop = should_stop
        self.result = ExportResult(out_dir=out, options=dict(options))
        self.made_dirs: list[Path] = []
        self.readme_problems: list[str] = []  # by ImageID, never by path

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise ExportCancelled(
                f"{self.out}: export cancelled; the files it had written were removed"
            )

    def write(self, path: Path, data: bytes | Callable[[io.BufferedWriter], Any]) -> None:
        try:
            atomic_write(path, data)
        except OSError as e:
            raise ExportError(f"{path}: cannot write ({e.strerror or e})") from e
        self.result.files.append(path)

    def make_dir(self, name: str) -> Path:
        folder = self.out / name
        folder.mkdir()
        self.made_dirs.append(folder)
        return folder

    # -- identities ------------------------------------------------------------------------

    def identities(self, images: list[ImageRecord]) -> list[_Exported]:
        """Exported IDs, dates and identifiers of the images, sorted by exported ImageID."""
        exported = [self._identity(rec) for rec in images]
        exported.sort(key=lambda e: e.image_id)
        self.result.n_images = len(exported)
        self.result.n_patients = len({e.rec.patient_key for e in exported})
        return exported

    def _identity(self, rec: ImageRecord) -> _Exported:
        salt = self.salt
        shift = date_shift_days(rec.patient_key, salt=salt) if self.shift_dates else 0
        if self.include_phi:
            image_id = rec.sop_uid or f"image{rec.id}"
            patient_id = rec.patient_id or ""
        else:
            image_id = image_pseudonym(rec.image_key, salt=salt)
            patient_id = patient_pseudonym(rec.patient_id, rec.patient_key, salt=salt)
        study_date = shift_da(rec.study_date, shift) if self.shift_dates else (rec.study_date or "")
        idents = [] if self.include_phi else patient_identifiers(rec)
        return _Exported(rec, image_id, patient_id, study_date, shift, idents)

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
        from engine.imageio import ImageReadError, read_source

        img_dir = self.make_dir(IMAGES_DIR)
        result = self.result
        for k, e in enumerate(exported):
            self.check_stop()
            try:
                check_unchanged(e.rec)
                arr, scaled = source_to_png_array(read_source(e.rec.path))
                png = encode_png(arr)
            except (ImageReadError, ValueError, OSError) as exc:
                reason = getattr(exc, "reason", None) or str(exc)
                result.problems.append(f"{e.rec.path}: not copied: {reason}")
                # De-identified, the README gets the kind of problem only: the details can
                # quote the file's own bytes.
                shown = (
                    reason if self.include_phi else scrub_text(reason.split(": ")[0], e.identifiers)
                )
                self.readme_problems.append(f"{e.image_id}: image not copied: {shown}")
            else:
                self.write(img_dir / f"{e.image_id}.png", png)
                result.n_images_copied += 1
                result.n_images_scaled += int(scaled)
            yield ExportProgress("images", k + 1, len(exported), e.image_id)

    # -- sr/ ---------------------------------------------------------------------------------

    def write_srs(
        self, exported: list[_Exported], preds: dict[int, PredictionRecord]
    ) -> Generator[ExportProgress, None, None]:
        """Write ``sr/<ImageID>.dcm``; an SR that cannot be built is a problem, not fatal."""
        sr_dir = self.make_dir(SR_DIR)
        for k, e in enumerate(exported):
            self.check_stop()
            pred = preds.get(e.rec.current_prediction_id or -1)
            try:
                data = sr_bytes(build_sr(self._sr_input(e, pred)))
            except Exception as exc:  # noqa: BLE001 - one image's SR must not stop the rest
                first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
                self.result.problems.append(f"{e.rec.path}: no SR: {first_line}")
                self.readme_problems.append(f"{e.image_id}: no SR written ({type(exc).__name__})")
            else:
                self.write(sr_dir / f"{e.image_id}.dcm", data)
                self.result.n_sr += 1
            yield ExportProgress("sr", k + 1, len(exported), e.image_id)

    def _sr_input(self, e: _Exported, pred: PredictionRecord | None) -> SRInput:
        phi, salt, rec = self.include_phi, self.salt, e.rec
        return SRInput(
            image_id=e.image_id,
            patient_id=e.patient_id,
            patient_name=(rec.patient_name or "") if phi else e.patient_id,
            patient_sex=rec.sex or "",
            birth_date=(rec.birth_date or "") if phi else "",
            study_uid=export_uid(rec.study_uid, phi, salt),
            series_uid=export_uid(rec.series_uid, phi, salt),
            sop_uid=export_uid(rec.sop_uid or rec.image_key, phi, salt),
            sop_class_uid=rec.sop_class_uid or _SECONDARY_CAPTURE,
            modality=rec.modality or "OT",
            study_date=e.study_date,
            study_time=(rec.study_time or "") if phi else "",
            accession=(rec.accession or "") if phi else "",
            verdicts={f: (v.verdict, v.reviewer, v.reviewed_at) for f, v in rec.verdicts.items()},
            probabilities=pred.probs if pred is not None else None,
            thresholds=self.thresholds,
            models=pred.models if pred is not None else [],
            settings=pred.settings if pred is not None else {},
            app_version=__version__,
            demo=self.result.demo,
            date_shift_days=e.shift,
        )

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
            label_rows.append([e.image_id, e.study_date, e.patient_id, *cells])
        self.write(self.out / LABELS_CSV, csv_bytes(LABEL_COLUMNS, label_rows))

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
        self.write(
            self.out / DISAGREEMENTS_CSV, csv_bytes(DISAGREEMENT_COLUMNS, [d.row for d in dis])
        )
        yield ExportProgress("csv", 2, 2, DISAGREEMENTS_CSV)

    def _disagreement(
        self, e: _Exported, finding: str, v: VerdictRecord, pred: PredictionRecord
    ) -> _Disagreement | None:
        """The disagreements.csv row of a present/absent verdict, or None if the model agrees."""
        p = float(pred.probs[ALL_CLASSES.index(finding)])
        if math.isnan(p):
            return None  # the task's model was not configured: nothing to disagree with
        t = self.thresholds[finding]
        model_present = p >= t
        if (v.verdict == "present") == model_present:
            return None
        note = (v.note or "") if self.include_phi else scrub_text(v.note, e.identifiers)
        row = [
            e.image_id,
            finding,
            _fmt_prob(p),
            _fmt_prob(t),
            v.verdict,
            note,
            v.reviewer,
            shift_timestamp(v.reviewed_at, e.shift),
            _models_text(pred.models),
            json.dumps(pred.settings, sort_keys=True, separators=(",", ":")),
        ]
        return _Disagreement(abs(p - t), e.image_id, finding, row)


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
    th = _thresholds(thresholds)
    out = Path(out_dir).expanduser()
    created_dir = prepare_out_dir(out)
    options = {
        "include_phi": include_phi,
        "shift_dates": shift_dates,
        "copy_images": copy_images,
        "sr": sr,
    }
    run = _ExportRun(out, options, th, salt, should_stop)
    complete = False
    try:
        yield ExportProgress("read", 0, 1, "reading verdicts from the database")
        snap = read_store(store)
        run.check_stop()
        yield ExportProgress("read", 1, 1, f"{len(snap.images)} reviewed images")
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
        run.write(out / README_TXT, readme.encode("utf-8"))
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
