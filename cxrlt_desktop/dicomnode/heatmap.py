"""The attention heatmap as a DICOM object a PACS can display: a Secondary Capture image.

Built from the image's current prediction in the store: the CSRA attention map of one Task 1
finding (by default the finding with the highest probability/threshold ratio, "Normal" left
out), normalised by its maximum, smoothed to the image size (bilinear) and coloured with the
turbo colour map, blended over the radiograph at its default window (the app's input layer
decodes it, MONOCHROME1 already inverted) as the viewer's overlay shows it: low attention stays
transparent, the strongest at 45 % opacity. The result is an RGB Secondary Capture (highdicom
``SCImage``) in the source image's patient and study, in a series of its own, with:

- Image Type ``DERIVED\\SECONDARY``, Conversion Type ``WSD``, Burned In Annotation ``NO`` (no
  text is drawn: the finding is named in the header);
- Source Image Sequence and Referenced Image Sequence pointing at the source image (SOP class
  and instance UIDs), Derivation Description naming the finding, its probability and threshold;
- Series Description "CXR-LT Desktop attention heatmap" and Image Comments saying it is an AI
  attention map, not for diagnosis.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS, TASK1_CLASSES

SERIES_NUMBER = 9003
SERIES_DESCRIPTION = "CXR-LT Desktop attention heatmap"
MANUFACTURER = "CXR-LT Desktop"
OPACITY = 0.45  # the strongest attention's weight (the viewer's overlay opacity)
TRANSPARENT_BELOW = 0.2  # normalised attention under this is not drawn
MAX_SIDE = 4096  # a larger source is scaled down to this long side
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


class HeatmapError(ValueError):
    """No heatmap can be made for the image (no prediction, no attention maps, no file)."""


@dataclass
class HeatmapSource:
    """What the heatmap of one image needs from the store."""

    image_id: int
    path: str
    attention: np.ndarray  # float [30, h, w]
    probs: np.ndarray  # [36]
    thresholds: dict[str, float]
    header: Any  # pydicom Dataset: patient, study, source image UIDs


def top_finding(probs: np.ndarray, thresholds: Mapping[str, float]) -> str | None:
    """The Task 1 finding (not "Normal") with the highest probability / threshold."""
    best, best_ratio = None, -np.inf
    for finding in TASK1_CLASSES:
        if finding == "Normal":
            continue
        p = float(probs[ALL_CLASSES.index(finding)])
        t = float(thresholds.get(finding, DEFAULT_THRESHOLDS[finding]))
        if np.isfinite(p) and t > 0 and p / t > best_ratio:
            best, best_ratio = finding, p / t
    return best


def turbo(values: np.ndarray) -> np.ndarray:
    """The turbo colour map of values in [0, 1]: uint8 RGB, shape ``values.shape + (3,)``."""
    import cv2

    grey = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(grey, cv2.COLORMAP_TURBO)
    return bgr[..., ::-1]


def blend(grey: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """The radiograph (uint8, h x w) with the attention map (any float, coarse) over it: RGB
    uint8, h x w x 3. Attention is divided by its maximum, resized bilinearly to the image,
    and drawn with weight ``OPACITY * (a - TRANSPARENT_BELOW) / (1 - TRANSPARENT_BELOW)``."""
    import cv2

    att = np.nan_to_num(np.asarray(attention, dtype=np.float32), nan=0.0)
    att = np.maximum(att, 0.0)
    top = float(att.max()) if att.size else 0.0
    norm = att / top if top > 0 else np.zeros_like(att)
    h, w = grey.shape
    norm = cv2.resize(norm, (w, h), interpolation=cv2.INTER_LINEAR)
    weight = OPACITY * np.clip((norm - TRANSPARENT_BELOW) / (1 - TRANSPARENT_BELOW), 0.0, 1.0)
    base = np.repeat(grey[..., None].astype(np.float32), 3, axis=2)
    out = base * (1.0 - weight[..., None]) + turbo(norm).astype(np.float32) * weight[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def read_source(store: Any, image_id: int, thresholds: Mapping[str, float] | None = None):
    """The image's attention maps, probabilities, effective thresholds and header.

    Raises
    ------
    HeatmapError
        No such image, not scored, or its prediction has no attention maps (no CSRA model).
    """
    from cxrlt_desktop.export.records import read_image
    from cxrlt_desktop.export.sr import effective_thresholds
    from cxrlt_desktop.store.models import Image, Prediction

    try:
        rec, pred = read_image(store, image_id)
    except LookupError as exc:
        raise HeatmapError(str(exc)) from exc
    if pred is None:
        raise HeatmapError(f"image {image_id}: not scored, no attention map")
    with store.session() as s, s.begin():
        image = s.get(Image, image_id)
        p = s.get(Prediction, image.current_prediction_id)
        attention = p.attention_maps() if p is not None else None
    if attention is None:
        raise HeatmapError(
            f"{rec.path}: the prediction has no attention maps (they come from a CSRA model)"
        )
    return HeatmapSource(
        image_id=image_id,
        path=rec.path,
        attention=np.asarray(attention, dtype=np.float32),
        probs=pred.probs,
        thresholds=effective_thresholds(pred, thresholds),
        header=_reference(rec),
    )


def _reference(rec: Any) -> Any:
    """A header-only dataset of the source image: patient, study and image UIDs."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientID = rec.patient_id or ""
    ds.PatientName = rec.patient_name or ""
    ds.PatientBirthDate = rec.birth_date or ""
    ds.PatientSex = rec.sex if rec.sex in ("M", "F", "O") else ""
    ds.StudyInstanceUID = rec.study_uid
    ds.StudyDate = rec.study_date or ""
    ds.StudyTime = rec.study_time or ""
    ds.AccessionNumber = rec.accession or ""
    ds.SOPClassUID = rec.sop_class_uid or ""
    ds.SOPInstanceUID = rec.sop_uid or ""
    ds.Modality = rec.modality or ""
    return ds


def build_heatmap(
    store: Any,
    image_id: int,
    *,
    finding: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    app_version: str | None = None,
) -> Any:
    """The Secondary Capture of image ``image_id``'s attention map for ``finding`` (default:
    :func:`top_finding`).

    Returns
    -------
    highdicom.sc.SCImage
        A pydicom Dataset, ready to send or save.

    Raises
    ------
    HeatmapError
        No prediction or attention maps, a finding without an attention map, or a file that
        cannot be decoded (or changed since the scan).
    """
    src = read_source(store, image_id, thresholds)
    finding = finding or top_finding(src.probs, src.thresholds)
    if finding not in TASK1_CLASSES or TASK1_CLASSES.index(finding) >= src.attention.shape[0]:
        raise HeatmapError(f"{src.path}: no attention map for finding {finding!r}")
    if not src.header.SOPInstanceUID or not src.header.StudyInstanceUID:
        raise HeatmapError(f"{src.path}: the image has no DICOM UIDs to reference")
    grey = _display_pixels(store, image_id, src.path)
    rgb = blend(grey, src.attention[TASK1_CLASSES.index(finding)])
    return _sc_image(src, finding, rgb, app_version, _source_extras(src.path))


EXTRA_KEYWORDS = (
    "PatientOrientation",
    "StudyID",
    "ReferringPhysicianName",
    "Laterality",
    "ImageLaterality",
    "BodyPartExamined",
)


def _source_extras(path: str) -> dict[str, Any]:
    """Attributes of the source header the store does not keep: Patient Orientation (when it
    is one highdicom accepts), Study ID, Referring Physician, laterality, body part. Empty for a
    header that cannot be read (the pixels were read through the input layer already)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(EXTRA_KEYWORDS))
    except Exception:  # noqa: BLE001 - optional details; the heatmap goes on without them
        return {}
    out: dict[str, Any] = {}
    orientation = [str(v) for v in (ds.get("PatientOrientation") or [])]
    if len(orientation) == 2 and all(v and set(v) <= set("LRAPHF") for v in orientation):
        out["PatientOrientation"] = (orientation[0], orientation[1])
    for kw in EXTRA_KEYWORDS[1:]:
        value = ds.get(kw)
        if value not in (None, ""):
            out[kw] = str(value)[:64]
    return out


def _display_pixels(store: Any, image_id: int, path: str) -> np.ndarray:
    """The radiograph at its default window (uint8), scaled down to ``MAX_SIDE`` if larger."""
    import cv2

    from cxrlt_desktop.library.identity import FileChanged, read_checked, scanned_file
    from engine.imageio import ImageReadError, read_display

    scanned = scanned_file(store, image_id)
    if scanned is None:
        raise HeatmapError(f"image {image_id}: not in the library")
    try:
        display = read_checked(scanned, read_display)
    except (FileChanged, ImageReadError) as exc:
        raise HeatmapError(" ".join(str(exc).split())) from exc
    grey = np.asarray(display.pixels, dtype=np.uint8)
    if grey.ndim == 3:  # a colour source: its luminance
        grey = cv2.cvtColor(grey[..., :3], cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = MAX_SIDE / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey


def _sc_image(
    src: HeatmapSource,
    finding: str,
    rgb: np.ndarray,
    app_version: str | None,
    extras: dict[str, Any],
) -> Any:
    import highdicom as hd

    ref = src.header
    with warnings.catch_warnings():
        # the source's Referring Physician's Name is copied as it is, one component or not
        warnings.simplefilter("ignore", UserWarning)
        sc = _new_sc(hd, ref, rgb, extras)
    return _describe(sc, src, finding, app_version, extras)


def _new_sc(hd: Any, ref: Any, rgb: np.ndarray, extras: dict[str, Any]) -> Any:
    return hd.sc.SCImage(
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        # highdicom needs an orientation for a patient image; an unknown one is left empty
        # below (Patient Orientation is type 2: present, possibly empty).
        coordinate_system="PATIENT",
        patient_orientation=extras.get("PatientOrientation") or ("L", "F"),
        study_instance_uid=ref.StudyInstanceUID,
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_id=ref.PatientID,
        patient_name=ref.PatientName,
        patient_birth_date=ref.PatientBirthDate,
        patient_sex=ref.PatientSex or None,
        accession_number=ref.AccessionNumber,
        study_id=extras.get("StudyID", ""),
        study_date=ref.StudyDate or None,
        study_time=ref.StudyTime or None,
        referring_physician_name=extras.get("ReferringPhysicianName", ""),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )


def _describe(
    sc: Any, src: HeatmapSource, finding: str, app_version: str | None, extras: dict[str, Any]
) -> Any:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from cxrlt_desktop import __version__
    from engine.classes import DISPLAY_NAMES

    ref = src.header
    if "PatientOrientation" not in extras:
        sc.PatientOrientation = ""
    # Laterality (type 2C, paired body parts): the source's; absent for a known body part
    # without one (the chest is unpaired); empty when neither is known.
    laterality = extras.get("Laterality") or extras.get("ImageLaterality")
    if laterality in ("R", "L"):
        sc.Laterality = laterality
    elif not extras.get("BodyPartExamined"):
        sc.Laterality = ""
    if extras.get("BodyPartExamined"):
        sc.BodyPartExamined = extras["BodyPartExamined"]
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ConversionType = "WSD"
    sc.BurnedInAnnotation = "NO"
    sc.SeriesDescription = SERIES_DESCRIPTION
    sc.ManufacturerModelName = "CXR-LT Desktop"
    sc.SoftwareVersions = app_version or __version__
    p = float(src.probs[ALL_CLASSES.index(finding)])
    t = float(src.thresholds.get(finding, DEFAULT_THRESHOLDS[finding]))
    name = DISPLAY_NAMES.get(finding, finding)
    sc.DerivationDescription = (
        f"AI attention map of {name} (probability {p:.3f}, threshold {t:.3f}) over the source image"
    )[:1024]
    sc.ImageComments = (
        f"CXR-LT Desktop attention heatmap: {name}. Where the model looked; not a diagnosis."
    )[:10240]
    item = Dataset()
    item.ReferencedSOPClassUID = ref.SOPClassUID
    item.ReferencedSOPInstanceUID = ref.SOPInstanceUID
    sc.SourceImageSequence = Sequence([item])
    ref_item = Dataset()
    ref_item.ReferencedSOPClassUID = ref.SOPClassUID
    ref_item.ReferencedSOPInstanceUID = ref.SOPInstanceUID
    sc.ReferencedImageSequence = Sequence([ref_item])
    return sc
