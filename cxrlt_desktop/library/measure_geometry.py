"""Measurement geometry and honest calibration: distance, angle, Cobb angle, cardiothoracic ratio.

No Qt, no store: points in, numbers and labels out.

Points are image coordinates of the stored image as DICOM spatial coordinates (SCOORD) name
them: ``(column, row)`` as floats, (0, 0) the top-left corner of the top-left pixel, (0.5, 0.5)
its centre. The viewer's display rotation and flip are undone before a point reaches here.

Calibration (what a length is measured at), from the image's header:

- ``PixelSpacing`` present: millimetres in the patient ("mm").
- only ``ImagerPixelSpacing`` present: millimetres at the detector ("mm at detector"): a chest
  on a detector is magnified, so these are not patient lengths.
- ``ImagerPixelSpacing`` and ``EstimatedRadiographicMagnificationFactor``: the detector spacing
  divided by the factor, "mm (magnification-corrected, x1.10)".
- neither: pixels ("px").

Both spacings are (row spacing, column spacing) in mm, as DICOM orders them. Angles are computed
on the calibrated vectors (they only differ from pixel angles with non-square pixels); the
cardiothoracic ratio is a ratio of two horizontal widths and has no unit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("distance", "angle", "cobb", "ctr")
# How many points each kind takes: distance a-b; angle a-vertex-c; Cobb: line 1 (a, b) along one
# end plate, line 2 (c, d) along the other; CTR: heart width (a, b), thorax width (c, d).
N_POINTS = {"distance": 2, "angle": 3, "cobb": 4, "ctr": 4}
# The finding a measurement informs (the findings panel shows it next to that finding).
FINDING_OF_KIND = {"cobb": "Scoliosis", "ctr": "cardiomegaly"}
KIND_NAMES = {
    "distance": "Distance",
    "angle": "Angle",
    "cobb": "Cobb angle",
    "ctr": "Cardiothoracic ratio",
}

Point = tuple[float, float]


class MeasurementError(ValueError):
    """Points that do not make the measurement (wrong count, a zero-length line)."""


@dataclass(frozen=True)
class Calibration:
    """How image pixels turn into millimetres.

    ``spacing`` is (row, column) spacing in mm, None for pixels; ``basis`` is "patient",
    "detector", "magnification-corrected" or "pixels"; ``factor`` the magnification factor
    applied (1.0 when none).
    """

    spacing: tuple[float, float] | None
    basis: str
    factor: float = 1.0

    @property
    def unit(self) -> str:
        """The length unit's label."""
        if self.basis == "patient":
            return "mm"
        if self.basis == "detector":
            return "mm at detector"
        if self.basis == "magnification-corrected":
            return f"mm (magnification-corrected, x{self.factor:.3g})"
        return "px"

    def as_dict(self) -> dict[str, Any]:
        return {
            "spacing": list(self.spacing) if self.spacing else None,
            "basis": self.basis,
            "factor": self.factor,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Calibration:
        if not d:
            return PIXELS
        sp = d.get("spacing")
        return cls(
            (float(sp[0]), float(sp[1])) if sp else None,
            str(d.get("basis") or "pixels"),
            float(d.get("factor") or 1.0),
        )


PIXELS = Calibration(None, "pixels")


def _get(header: Any, key: str) -> Any:
    if header is None:
        return None
    if isinstance(header, Mapping):
        return header.get(key)
    return getattr(header, key, None) if key in header else None


def _spacing(value: Any) -> tuple[float, float] | None:
    """(row, column) spacing from a header value, None when absent or not two positive numbers."""
    if value is None:
        return None
    try:
        items = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(items) != 2 or not all(math.isfinite(v) and v > 0 for v in items):
        return None
    return items[0], items[1]


def calibration_of(header: Any) -> Calibration:
    """The calibration of an image from its header: a pydicom dataset or a keyword -> value
    mapping (the library's stored ``image.meta`` works, plus the magnification factor when
    known). See the module docstring for the order."""
    ps = _spacing(_get(header, "PixelSpacing"))
    if ps is not None:
        return Calibration(ps, "patient")
    ips = _spacing(_get(header, "ImagerPixelSpacing"))
    if ips is None:
        return PIXELS
    factor = _get(header, "EstimatedRadiographicMagnificationFactor")
    try:
        f = float(factor) if factor not in (None, "") else None
    except (TypeError, ValueError):
        f = None
    if f is not None and math.isfinite(f) and f > 0 and f != 1.0:
        return Calibration((ips[0] / f, ips[1] / f), "magnification-corrected", f)
    return Calibration(ips, "detector")


def _vec(a: Point, b: Point, cal: Calibration) -> tuple[float, float]:
    """b - a in calibrated units (x along columns, y along rows)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    if cal.spacing is None:
        return dx, dy
    row_mm, col_mm = cal.spacing
    return dx * col_mm, dy * row_mm


def _check(kind: str, points: Sequence[Point]) -> list[Point]:
    if kind not in N_POINTS:
        raise MeasurementError(f"unknown measurement kind {kind!r}")
    pts = [(float(p[0]), float(p[1])) for p in points]
    if len(pts) != N_POINTS[kind]:
        raise MeasurementError(f"a {kind} takes {N_POINTS[kind]} points, not {len(pts)}")
    return pts


def distance(a: Point, b: Point, cal: Calibration = PIXELS) -> float:
    """Length of a-b in the calibration's unit."""
    return math.hypot(*_vec(a, b, cal))


def angle(a: Point, vertex: Point, c: Point, cal: Calibration = PIXELS) -> float:
    """The angle a-vertex-c in degrees (0..180)."""
    u, v = _vec(vertex, a, cal), _vec(vertex, c, cal)
    nu, nv = math.hypot(*u), math.hypot(*v)
    if nu == 0 or nv == 0:
        raise MeasurementError("an angle's arm has no length")
    cos = (u[0] * v[0] + u[1] * v[1]) / (nu * nv)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def cobb(a: Point, b: Point, c: Point, d: Point, cal: Calibration = PIXELS) -> float:
    """The Cobb angle in degrees (0..90) between line a-b and line c-d (each along an end
    plate): the angle between their perpendiculars, which equals the angle between the lines."""
    u, v = _vec(a, b, cal), _vec(c, d, cal)
    nu, nv = math.hypot(*u), math.hypot(*v)
    if nu == 0 or nv == 0:
        raise MeasurementError("a Cobb line has no length")
    # The perpendiculars (-y, x) of both lines; their acute angle.
    pu, pv = (-u[1], u[0]), (-v[1], v[0])
    cos = abs(pu[0] * pv[0] + pu[1] * pv[1]) / (nu * nv)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def horizontal_width(a: Point, b: Point, cal: Calibration = PIXELS) -> float:
    """The horizontal (column-direction) width between a and b in the calibration's unit."""
    return abs(_vec(a, b, cal)[0])


def ctr(a: Point, b: Point, c: Point, d: Point) -> float:
    """Cardiothoracic ratio: heart width (a-b) over thorax width (c-d), both horizontal. A
    ratio of two lengths along the same axis: the calibration cancels."""
    thorax = abs(d[0] - c[0])
    if thorax == 0:
        raise MeasurementError("the thorax width is zero")
    return abs(b[0] - a[0]) / thorax


@dataclass(frozen=True)
class Result:
    """A measurement's value, its unit and the text shown on the image and in the panel."""

    kind: str
    value: float
    unit: str
    text: str
    extra: dict[str, float]


def measure(kind: str, points: Sequence[Point], cal: Calibration = PIXELS) -> Result:
    """The value of a measurement of ``kind`` from its points."""
    pts = _check(kind, points)
    if kind == "distance":
        v = distance(pts[0], pts[1], cal)
        prec = 0 if cal.basis == "pixels" else 1
        return Result(kind, v, cal.unit, f"{v:.{prec}f} {cal.unit}", {})
    if kind == "angle":
        v = angle(pts[0], pts[1], pts[2], cal)
        return Result(kind, v, "deg", f"{v:.1f}\u00b0", {})
    if kind == "cobb":
        v = cobb(*pts, cal)
        return Result(kind, v, "deg", f"Cobb {v:.1f}\u00b0", {})
    heart = horizontal_width(pts[0], pts[1], cal)
    thorax = horizontal_width(pts[2], pts[3], cal)
    v = ctr(*pts)
    prec = 0 if cal.basis == "pixels" else 1
    text = f"CTR {v:.2f} (heart {heart:.{prec}f} / thorax {thorax:.{prec}f} {cal.unit})"
    return Result(kind, v, "ratio", text, {"heart": heart, "thorax": thorax})


def moved(kind: str, points: Sequence[Point], index: int, dx: float, dy: float) -> list[Point]:
    """The points with point ``index`` moved by (dx, dy) image pixels (a keyboard edit). A
    CTR's widths stay horizontal: a move up or down takes both points of its width along."""
    pts = _check(kind, points)
    if not 0 <= index < len(pts):
        raise MeasurementError(f"a {kind} has no point {index + 1}")
    x, y = pts[index]
    pts[index] = (x + dx, y + dy)
    if kind == "ctr":
        other = index ^ 1  # the other end of the same width: (0, 1), (2, 3)
        pts[other] = (pts[other][0], y + dy)
    return pts


__all__ = [
    "FINDING_OF_KIND",
    "KINDS",
    "KIND_NAMES",
    "N_POINTS",
    "PIXELS",
    "Calibration",
    "MeasurementError",
    "Result",
    "angle",
    "calibration_of",
    "cobb",
    "ctr",
    "distance",
    "horizontal_width",
    "measure",
    "moved",
]
