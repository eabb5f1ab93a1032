"""Training and evaluation data: CXR-LT label CSVs, prediction CSVs and the image dataset.

Label CSV (the CXR-LT training format, also what ``cxrlt export`` writes): ``ImageID``,
``StudyDate_DICOM``, ``PatientID``, then one column per class named as in
:mod:`engine.classes`; a cell is ``1`` (present), ``0`` (absent) or empty (unknown: not
reviewed or uncertain). ``1.0``/``0.0`` are accepted, ``-1`` (the CheXpert "uncertain" code)
counts as unknown. Unknown cells become NaN and are masked out of the loss and the metrics.

Prediction CSV (what ``cxrlt score`` writes): ``ImageID`` then class columns of probabilities;
an empty cell is "not predicted".

Images are looked up as ``images_dir / ImageID``, then with ``.png``, ``.dcm`` appended (an
export with ``--copy-images`` names each 16-bit PNG by its ImageID). They are read with
:func:`engine.imageio.read_source` (16-bit PNG, DICOM, ...) and preprocessed exactly as the
engine does (:func:`engine.preprocess.task1_grey`, then :func:`engine.preprocess.task1_tensor`);
in training the augmentation runs on the resized uint8 grey image between those two steps.
"""

from __future__ import annotations

import csv
import hashlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.classes import ALL_CLASSES

META_COLUMNS = ("ImageID", "StudyDate_DICOM", "PatientID")
# The feedback export's measurement columns (Cobb angle, cardiothoracic ratio, the measurements
# as JSON): known, not labels, not reported as unknown.
MEASUREMENT_COLUMNS = ("Cobb_angle_deg", "Cardiothoracic_ratio", "Measurements")
IMAGE_SUFFIXES = ("", ".png", ".dcm", ".dicom")
_STRIP_SUFFIXES = (".png", ".dcm", ".dicom", ".jpg", ".jpeg", ".tif", ".tiff")
MAX_LISTED_PROBLEMS = 20


@dataclass
class LabelTable:
    """A parsed label CSV. ``labels`` is ``[N, C]`` float32 with 1, 0 or NaN (unknown)."""

    path: Path
    image_ids: list[str]
    patient_ids: list[str]
    study_dates: list[str]
    classes: tuple[str, ...]
    labels: np.ndarray
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, rows: Sequence[int]) -> LabelTable:
        """The table restricted to ``rows`` (in that order)."""
        rows = list(rows)
        return LabelTable(
            path=self.path,
            image_ids=[self.image_ids[i] for i in rows],
            patient_ids=[self.patient_ids[i] for i in rows],
            study_dates=[self.study_dates[i] for i in rows],
            classes=self.classes,
            labels=self.labels[rows] if rows else self.labels[:0],
            problems=list(self.problems),
        )

    def positive_counts(self) -> np.ndarray:
        """Positive labels per class (unknown cells count as not positive)."""
        return np.nansum(self.labels > 0.5, axis=0).astype(np.int64)


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _parse_label(text: str) -> float | None:
    """1.0 / 0.0 / NaN for a valid cell, None for an invalid one."""
    t = text.strip()
    if t == "" or t.lower() in ("nan", "na"):
        return math.nan
    try:
        v = float(t)
    except ValueError:
        return None
    if v == 1.0:
        return 1.0
    if v == 0.0:
        return 0.0
    if v == -1.0:
        return math.nan
    return None


def _open_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text CSV ({e.reason})") from e
    except csv.Error as e:
        raise ValueError(f"{path}: malformed CSV ({e})") from e
    if not rows:
        raise ValueError(f"{path}: empty file, expected a header row starting with ImageID")
    header = [h.strip() for h in rows[0]]
    if "ImageID" not in header:
        raise ValueError(f"{path}: no ImageID column in the header {header[:5]}")
    return header, rows[1:]


def _cap(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_LISTED_PROBLEMS:
        return problems
    rest = len(problems) - MAX_LISTED_PROBLEMS
    return problems[:MAX_LISTED_PROBLEMS] + [f"... and {rest} more problems"]


def read_labels_csv(path: str | Path, classes: Sequence[str] | None = None) -> LabelTable:
    """Read a CXR-LT label CSV.

    Parameters
    ----------
    path : path-like
        The CSV file.
    classes : sequence of str, optional
        The columns to read, in this order (e.g. the 30 Task 1 classes). A listed class without
        a column is all-unknown and reported in ``problems``. Default: every engine class that
        has a column, in engine order.

    Returns
    -------
    LabelTable
        Rows without an ImageID and repeated ImageIDs are skipped; invalid cells become unknown;
        each is reported in ``problems`` as ``"<file>: row <n>: <what>"``.

    Raises
    ------
    ValueError
        ``"<file>: <reason>"`` when the file cannot be read, has no ImageID column, or has none
        of the requested class columns.
    """
    path = Path(path)
    header, rows = _open_csv(path)
    col = {name: i for i, name in enumerate(header)}
    problems: list[str] = []
    classes = _label_columns(path, header, col, classes, problems)
    ids: list[str] = []
    pids: list[str] = []
    dates: list[str] = []
    values: list[list[float]] = []
    seen: set[str] = set()
    i_id = col["ImageID"]
    for n, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        image_id = row[i_id].strip() if i_id < len(row) else ""
        if not image_id:
            problems.append(f"{path}: row {n}: no ImageID, row skipped")
            continue
        if image_id in seen:
            problems.append(f"{path}: row {n}: ImageID {image_id!r} repeated, row skipped")
            continue
        seen.add(image_id)
        values.append(_row_labels(path, n, row, col, classes, problems))
        ids.append(image_id)
        pid = _cell(row, col, "PatientID")
        pids.append(pid or image_id)  # no patient: each image is its own group in the split
        dates.append(_cell(row, col, "StudyDate_DICOM"))
    labels = np.array(values, dtype=np.float32).reshape(len(values), len(classes))
    return LabelTable(path, ids, pids, dates, classes, labels, _cap(problems))


def _label_columns(
    path: Path,
    header: list[str],
    col: dict[str, int],
    classes: Sequence[str] | None,
    problems: list[str],
) -> tuple[str, ...]:
    """The classes to read (default: every engine class with a column); reports the columns
    ignored or missing in ``problems``, and refuses a file with none of the classes."""
    if classes is None:
        classes = [c for c in ALL_CLASSES if c in col]
        known = (*META_COLUMNS, *MEASUREMENT_COLUMNS)
        unknown = [h for h in header if h not in ALL_CLASSES and h not in known]
        if unknown:
            problems.append(f"{path}: ignored columns that are not engine classes: {unknown}")
    classes = tuple(classes)
    present = [c for c in classes if c in col]
    if not present:
        raise ValueError(
            f"{path}: none of the class columns ({', '.join(classes[:3])}, ...) is in the header"
        )
    missing = [c for c in classes if c not in col]
    if missing:
        problems.append(f"{path}: no column for {missing}; those labels are unknown")
    return classes


def _row_labels(
    path: Path,
    n: int,
    row: list[str],
    col: dict[str, int],
    classes: tuple[str, ...],
    problems: list[str],
) -> list[float]:
    """One row's labels in ``classes`` order; an invalid cell is unknown (NaN) and reported."""
    vals = []
    for c in classes:
        j = col.get(c)
        cell = row[j] if j is not None and j < len(row) else ""
        v = _parse_label(cell)
        if v is None:
            problems.append(
                f"{path}: row {n}: {c} = {cell!r} is not 1, 0 or empty; taken as unknown"
            )
            v = math.nan
        vals.append(v)
    return vals


def _cell(row: list[str], col: dict[str, int], name: str) -> str:
    """The stripped cell of column ``name``; empty when there is no such column or cell."""
    return row[col[name]].strip() if name in col and col[name] < len(row) else ""


def read_predictions_csv(
    path: str | Path,
) -> tuple[list[str], tuple[str, ...], np.ndarray, list[str]]:
    """Read a ``cxrlt score`` CSV: ``(image_ids, classes, probs [N, C] float64, problems)``.

    Empty cells are NaN (not predicted); cells that are not numbers in [0, 1] become NaN and are
    reported. Columns that are not engine classes are ignored (and reported).
    """
    path = Path(path)
    header, rows = _open_csv(path)
    classes = tuple(c for c in ALL_CLASSES if c in header)
    if not classes:
        raise ValueError(f"{path}: no class column (expected {ALL_CLASSES[0]}, ...) in the header")
    problems: list[str] = []
    other = [h for h in header if h != "ImageID" and h not in ALL_CLASSES]
    if other:
        problems.append(f"{path}: ignored columns that are not engine classes: {other}")
    col = {name: i for i, name in enumerate(header)}
    ids: list[str] = []
    values: list[list[float]] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        image_id = row[col["ImageID"]].strip() if col["ImageID"] < len(row) else ""
        if not image_id or image_id in seen:
            problems.append(f"{path}: row {n}: missing or repeated ImageID, row skipped")
            continue
        seen.add(image_id)
        vals = []
        for c in classes:
            cell = row[col[c]].strip() if col[c] < len(row) else ""
            if cell == "":
                vals.append(math.nan)
                continue
            try:
                v = float(cell)
            except ValueError:
                v = math.nan
            if not 0.0 <= v <= 1.0:  # also catches NaN
                problems.append(f"{path}: row {n}: {c} = {cell!r} is not a probability; ignored")
                v = math.nan
            vals.append(v)
        ids.append(image_id)
        values.append(vals)
    probs = np.array(values, dtype=np.float64).reshape(len(values), len(classes))
    return ids, classes, probs, _cap(problems)


def _stem_key(image_id: str) -> str:
    low = image_id.lower()
    for suffix in _STRIP_SUFFIXES:
        if low.endswith(suffix):
            return image_id[: -len(suffix)]
    return image_id


def align_predictions(
    table: LabelTable, pred_ids: Sequence[str], pred_classes: Sequence[str], probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], list[str]]:
    """Rows of labels and predictions for the same images, on the classes both files have.

    ImageIDs match exactly, else with a file extension (``.png``, ``.dcm``, ...) removed from
    either side, so labels exported by ImageID match scores of the exported ``images/``.

    Returns
    -------
    (labels [M, K], probs [M, K], classes, problems)
        Labelled images without a prediction are counted in ``problems``.
    """
    classes = tuple(c for c in table.classes if c in pred_classes)
    if not classes:
        raise ValueError(
            f"{table.path}: no class column in common with the predictions "
            f"({', '.join(pred_classes[:3])}, ...)"
        )
    exact = {pid: i for i, pid in enumerate(pred_ids)}
    by_stem: dict[str, int] = {}
    for i, pid in enumerate(pred_ids):
        by_stem.setdefault(_stem_key(pid), i)
    rows_l, rows_p, unmatched = [], [], []
    for i, image_id in enumerate(table.image_ids):
        j = exact.get(image_id)
        if j is None:
            j = by_stem.get(_stem_key(image_id))
        if j is None:
            unmatched.append(image_id)
            continue
        rows_l.append(i)
        rows_p.append(j)
    li = [table.classes.index(c) for c in classes]
    pi = [list(pred_classes).index(c) for c in classes]
    labels = (
        table.labels[np.ix_(rows_l, li)].astype(np.float64)
        if rows_l
        else np.zeros((0, len(classes)))
    )
    preds = probs[np.ix_(rows_p, pi)] if rows_p else np.zeros((0, len(classes)))
    problems = []
    if unmatched:
        problems.append(
            f"{table.path}: {len(unmatched)} labelled images have no prediction and are left out "
            f"(e.g. {unmatched[0]!r})"
        )
    return labels, preds, classes, problems


def resolve_image(images_dir: Path, image_id: str) -> Path | None:
    """The file of ``image_id`` under ``images_dir`` (see module docstring), or None."""
    for suffix in IMAGE_SUFFIXES:
        p = images_dir / (image_id + suffix)
        if p.is_file():
            return p
    return None


def read_source(path: Path) -> np.ndarray:
    """The image's 2-D source array, via the engine's reader (DICOM, 16-bit PNG, ...)."""
    try:
        from engine.imageio import read_source as engine_read
    except ImportError:  # the input layer is built in parallel; PNGs still load without it
        import cv2

        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None or arr.ndim != 2:
            raise ValueError(f"{path}: not a readable grey image") from None
        return arr
    return engine_read(path)


def build_augmentation(seed: int | None = None) -> Any:
    """The paper's training augmentation on the resized uint8 grey image (albumentations).

    Flip (p 0.5); affine shift 3 %, scale 5 %, rotation 7 degrees, black border (p 0.4);
    CLAHE clip 2, 8 x 8 tiles (p 0.2); brightness/contrast 8 % (p 0.2); Gaussian noise with a
    standard deviation of 1 to 2.2 grey levels (variance 1-5, p 0.15); 6 holes of 24/512 of the
    side (p 0.15). These are the authors' settings, with albumentations 2 parameter names.
    """
    import albumentations as A
    import cv2

    hole = 24.0 / 512.0
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                translate_percent=(-0.03, 0.03),
                scale=(0.95, 1.05),
                rotate=(-7, 7),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=0.4,
            ),
            A.CLAHE(clip_limit=2.0, tile_grid_size=(8, 8), p=0.2),
            A.RandomBrightnessContrast(brightness_limit=0.08, contrast_limit=0.08, p=0.2),
            A.GaussNoise(
                std_range=(1.0 / 255.0, math.sqrt(5.0) / 255.0), per_channel=False, p=0.15
            ),
            A.CoarseDropout(
                num_holes_range=(6, 6),
                hole_height_range=(hole, hole),
                hole_width_range=(hole, hole),
                fill=0,
                p=0.15,
            ),
        ],
        seed=seed,
    )


class CXRDataset:
    """Images and labels for training or validation (a map-style dataset for DataLoader).

    ``dataset[i]`` is ``(image [3, S, S] float32, labels [C] float32 with NaN, i)``.
    An image that fails to decode at run time is reported once on stderr and returned as
    zeros with all labels unknown, so it contributes nothing and the run goes on.

    Parameters
    ----------
    table : LabelTable
        Labels, one row per image.
    paths : sequence of Path
        The image file of each row.
    image_size : int
        Model input side (512 for the published models).
    augment : bool
        Apply :func:`build_augmentation`.
    seed : int, optional
        Augmentation seed (each DataLoader worker offsets it by its id).
    """

    def __init__(
        self,
        table: LabelTable,
        paths: Sequence[Path],
        image_size: int,
        augment: bool = False,
        seed: int | None = None,
    ) -> None:
        if len(paths) != len(table):
            raise ValueError("one image path per label row is needed")
        self.table = table
        self.paths = list(paths)
        self.image_size = int(image_size)
        self.augment = augment
        self.seed = seed
        self._aug: Any = None
        self._reported: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def reseed(self, seed: int | None) -> None:
        """New augmentation seed (per epoch and rank, so epochs do not repeat their draws)."""
        self.seed = seed
        self._aug = None

    def grey(self, i: int) -> np.ndarray:
        """Row ``i``'s image as the engine's resized uint8 grey array (before normalising)."""
        from engine.preprocess import task1_grey

        return task1_grey(read_source(self.paths[i]), self.image_size)

    def __getitem__(self, i: int) -> tuple[Any, Any, int]:
        import torch

        from engine.preprocess import task1_tensor

        labels = torch.from_numpy(self.table.labels[i].copy())
        try:
            grey = self.grey(i)
        except Exception as e:  # a bad file must not stop the epoch; see class docstring
            if i not in self._reported:
                self._reported.add(i)
                print(f"warning: {self.paths[i]}: {e}; skipped", file=sys.stderr)
            grey = np.zeros((self.image_size, self.image_size), np.uint8)
            labels = torch.full_like(labels, float("nan"))
        if self.augment:
            if self._aug is None:
                worker = _worker_id()
                seed = None if self.seed is None else self.seed + 1000 * worker
                self._aug = build_augmentation(seed)
            grey = np.ascontiguousarray(self._aug(image=grey)["image"])
        image = task1_tensor(torch.from_numpy(grey)[None])[0]
        return image, labels, i


def _worker_id() -> int:
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    return 0 if info is None else int(info.id)


def find_images(
    table: LabelTable, images_dir: str | Path
) -> tuple[LabelTable, list[Path], list[str]]:
    """Keep the rows whose image file exists: ``(table, paths, problems)``."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ValueError(f"{images_dir}: images folder not found")
    keep, paths, missing = [], [], []
    for i, image_id in enumerate(table.image_ids):
        p = resolve_image(images_dir, image_id)
        if p is None:
            missing.append(image_id)
        else:
            keep.append(i)
            paths.append(p)
    problems = []
    if missing:
        problems.append(
            f"{images_dir}: no image file for {len(missing)} labelled ImageIDs, left out "
            f"(e.g. {missing[0]!r}; looked for ImageID, ImageID.png, ImageID.dcm)"
        )
    return table.subset(keep), paths, problems


def split_by_patient(
    patient_ids: Sequence[str], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split rows into train and validation with no patient in both.

    About ``val_fraction`` of the patients (at least one, and at least one left for training)
    go to validation, chosen by a generator seeded with ``seed``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {val_fraction}")
    patients = sorted(set(patient_ids))
    if len(patients) < 2:
        raise ValueError(
            "a patient-wise validation split needs at least 2 patients; pass --val-labels"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(patients))
    n_val = min(len(patients) - 1, max(1, round(val_fraction * len(patients))))
    val_patients = {patients[k] for k in order[:n_val]}
    train = [i for i, p in enumerate(patient_ids) if p not in val_patients]
    val = [i for i, p in enumerate(patient_ids) if p in val_patients]
    return train, val
