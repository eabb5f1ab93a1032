"""Procedural chest radiograph phantoms with findings drawn on purpose, and the demo DICOM writer.

A phantom is an attenuation map in [0, 1] (bright = dense, as a MONOCHROME2 radiograph shows it)
drawn from a :class:`PhantomSpec`: a seed and the set of findings to draw. The anatomy (body,
lungs, heart, mediastinum, trachea, spine, ribs, clavicles, diaphragm, vessels) comes from the
seed alone, each finding from its own random stream, so adding or removing one finding changes
only that finding's pixels. Geometry is written in normalised image coordinates (u = x / width,
v = y / height) and drawn at a working resolution of at most ``WORK_SIZE`` rows, then resized, so
a 2,500-row image and a 160-row training image show the same phantom.

The findings are deliberately large and high-contrast: they exist to show that the product works
end to end (the demo models must learn them at 80 px), not to imitate real pathology.
"""

from __future__ import annotations

import csv
import datetime as _dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engine.classes import ALL_CLASSES

#: Findings the phantoms can draw, by their CXR-LT class name.
DRAWN_FINDINGS: tuple[str, ...] = (
    "cardiomegaly",
    "pleural effusion",
    "Pneumothorax",
    "Nodule",
    "Mass",
    "atelectasis",
    "Support Devices",
    "central venous catheter",
    "sternotomy",
    "hyperinflated lung",
    "fracture",
    "Kyphosis",
    "Scoliosis",
    "hemidiaphragm elevation",
)
#: Findings that imply others in the labels (a catheter is a support device).
IMPLIED: dict[str, tuple[str, ...]] = {"central venous catheter": ("Support Devices",)}
DEMO_INSTITUTION = "CXR-LT DEMO (synthetic phantoms)"
#: The phantom is drawn at most this many rows high, then resized (keeps 2,500-row images cheap).
WORK_SIZE = 768
ASPECT = 0.8  # width / height of a portrait chest detector (e.g. 2,000 x 2,500)

_STREAM_ANATOMY = 0
_STREAM_NOISE = 1
_STREAM_FINDING0 = 100

assert set(DRAWN_FINDINGS) <= set(ALL_CLASSES)


@dataclass(frozen=True)
class PhantomSpec:
    """What to draw: ``seed`` fixes the anatomy, ``findings`` (CXR-LT class names) the findings.

    ``variant`` changes only the exposure and noise (a second image of the same study).
    """

    seed: int
    findings: frozenset[str] = frozenset()
    variant: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.findings) - set(DRAWN_FINDINGS)
        if unknown:
            raise ValueError(f"phantoms cannot draw {sorted(unknown)}; drawable: {DRAWN_FINDINGS}")


def label_set(findings: Iterable[str]) -> frozenset[str]:
    """The positive labels of a phantom: its findings, what they imply, or ``{"Normal"}``."""
    labels = set(findings)
    for f in list(labels):
        labels.update(IMPLIED.get(f, ()))
    return frozenset(labels) if labels else frozenset({"Normal"})


def sample_findings(
    rng: np.random.Generator,
    *,
    p_normal: float = 0.25,
    max_findings: int = 3,
    choices: tuple[str, ...] = DRAWN_FINDINGS,
) -> frozenset[str]:
    """Draw a random finding set: empty (normal) with probability ``p_normal``, else 1 to
    ``max_findings`` distinct findings, fewer being likelier."""
    if rng.random() < p_normal:
        return frozenset()
    ks = np.arange(1, max_findings + 1)
    probs = 1.0 / ks**1.3
    k = int(rng.choice(ks, p=probs / probs.sum()))
    picked = rng.choice(len(choices), size=min(k, len(choices)), replace=False)
    return frozenset(choices[i] for i in sorted(picked))


# --------------------------------------------------------------------------------------------
# Drawing helpers: normalised coordinates in, anti-aliased uint8 masks out.


def _bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


class _Canvas:
    SHIFT = 4  # cv2 sub-pixel bits: smooth outlines at any size

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.scale = float(1 << self.SHIFT)
        v, u = np.mgrid[0:h, 0:w].astype(np.float32)
        self.u = (u + 0.5) / w
        self.v = (v + 0.5) / h

    def mask(self) -> np.ndarray:
        return np.zeros((self.h, self.w), np.uint8)

    def pts(self, uv) -> np.ndarray:
        a = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        xy = np.stack([a[:, 0] * self.w, a[:, 1] * self.h], axis=-1) * self.scale
        return np.round(xy).astype(np.int32)

    def thick(self, t: float) -> int:
        return max(1, int(round(t * self.h)))

    def fill(self, m: np.ndarray, uv, value: int = 255) -> np.ndarray:
        cv2.fillPoly(m, [self.pts(uv)], value, cv2.LINE_AA, self.SHIFT)
        return m

    def line(self, m: np.ndarray, uv, t: float, value: int = 255) -> np.ndarray:
        cv2.polylines(m, [self.pts(uv)], False, value, self.thick(t), cv2.LINE_AA, self.SHIFT)
        return m

    def ellipse(self, m, c, axes, angle=0.0, t: float | None = None, value: int = 255):
        center = tuple(int(x) for x in self.pts([c])[0])
        ax = (int(round(axes[0] * self.w * self.scale)), int(round(axes[1] * self.h * self.scale)))
        thickness = -1 if t is None else self.thick(t)
        cv2.ellipse(m, center, ax, angle, 0, 360, value, thickness, cv2.LINE_AA, self.SHIFT)
        return m

    def soft(self, m: np.ndarray, sigma: float) -> np.ndarray:
        """Mask to float [0, 1], blurred by ``sigma`` (fraction of the height)."""
        f = m.astype(np.float32) / 255.0
        s = sigma * self.h
        if s >= 0.3:
            f = cv2.GaussianBlur(f, (0, 0), s, borderType=cv2.BORDER_REPLICATE)
        return f


# --------------------------------------------------------------------------------------------
# Anatomy


@dataclass
class _Anatomy:
    cx: float
    scol_amp: float
    scol_phase: float
    apex_y: float
    dome: dict[int, float]  # side (-1 image left = patient right, +1) -> dome top v
    cp_depth: float
    lat: dict[int, float]
    heart_w: float
    heart_h: float
    heart_dx: float
    rib_y0: float
    rib_dy: float
    clav_y: float
    lung_air: float
    body_w: float
    gamma: float
    gain: float
    kyphosis: bool = False
    fractures: dict[tuple[int, int], float] = field(default_factory=dict)

    def xs(self, v):
        """Spine centre line u(v): an S-curve when scoliotic."""
        env = np.clip((np.asarray(v) - 0.04) / 0.2, 0, 1) * np.clip(
            (0.98 - np.asarray(v)) / 0.2, 0, 1
        )
        return self.cx + self.scol_amp * env * np.sin(
            2 * np.pi * (np.asarray(v) - 0.1) / 0.78 + self.scol_phase
        )

    def heart_y(self) -> float:
        return self.dome[1] - self.heart_h * 0.75


def _sample_anatomy(spec: PhantomSpec) -> _Anatomy:
    rng = np.random.default_rng([spec.seed, _STREAM_ANATOMY])
    f = spec.findings
    dome_r = rng.uniform(0.62, 0.68)
    a = _Anatomy(
        cx=rng.uniform(0.485, 0.515),
        scol_amp=rng.uniform(-0.004, 0.004),
        scol_phase=rng.uniform(-0.3, 0.3),
        apex_y=rng.uniform(0.10, 0.13),
        dome={-1: dome_r, 1: dome_r + rng.uniform(0.0, 0.03)},
        cp_depth=rng.uniform(0.06, 0.08),
        lat={-1: rng.uniform(0.37, 0.41), 1: rng.uniform(0.37, 0.41)},
        heart_w=rng.uniform(0.14, 0.16),
        heart_h=rng.uniform(0.10, 0.12),
        heart_dx=rng.uniform(0.04, 0.06),
        rib_y0=rng.uniform(0.13, 0.15),
        rib_dy=rng.uniform(0.05, 0.056),
        clav_y=rng.uniform(0.12, 0.14),
        lung_air=rng.uniform(0.26, 0.31),
        body_w=rng.uniform(0.45, 0.49),
        gamma=rng.uniform(0.85, 1.15),
        gain=rng.uniform(0.9, 1.05),
    )
    # Findings that change the anatomy take their parameters from their own stream.
    if "Scoliosis" in f:
        r = _finding_rng(spec, "Scoliosis")
        a.scol_amp = r.choice([-1, 1]) * r.uniform(0.055, 0.085)
        a.scol_phase = r.uniform(-0.5, 0.5)
    if "hyperinflated lung" in f:
        r = _finding_rng(spec, "hyperinflated lung")
        low = r.uniform(0.10, 0.13)
        a.dome = {s: min(d + low, 0.84) for s, d in a.dome.items()}
        a.cp_depth = r.uniform(0.015, 0.03)  # flattened domes
        a.heart_w *= 0.82
        a.lung_air += r.uniform(0.05, 0.07)
        a.rib_dy *= 1.08
    if "hemidiaphragm elevation" in f:
        r = _finding_rng(spec, "hemidiaphragm elevation")
        a.dome[int(r.choice([-1, 1]))] -= r.uniform(0.11, 0.15)
    if "cardiomegaly" in f:
        r = _finding_rng(spec, "cardiomegaly")
        a.heart_w = r.uniform(0.23, 0.27)
        a.heart_h = r.uniform(0.13, 0.15)
    if "Kyphosis" in f:
        r = _finding_rng(spec, "Kyphosis")
        a.kyphosis = True
        a.clav_y -= r.uniform(0.03, 0.045)
        a.apex_y -= 0.02
        a.rib_dy *= 0.85
    if "fracture" in f:
        r = _finding_rng(spec, "fracture")
        side = int(r.choice([-1, 1]))
        k0 = int(r.integers(2, 6))
        for k in range(k0, k0 + int(r.integers(3, 5))):
            a.fractures[(side, k)] = r.uniform(0.55, 0.72)
    return a


def _finding_rng(spec: PhantomSpec, name: str) -> np.random.Generator:
    return np.random.default_rng([spec.seed, _STREAM_FINDING0 + DRAWN_FINDINGS.index(name)])


def _lung_outline(a: _Anatomy, s: int) -> np.ndarray:
    xs = a.xs
    dome = a.dome[s]
    cp = dome + a.cp_depth
    lat = a.lat[s]
    med_top = (xs(0.17) + s * 0.06, 0.17)
    apex = (xs(a.apex_y) + s * 0.15, a.apex_y)
    lat_up = (xs(0.26) + s * (lat - 0.04), 0.26)
    lat_mid = (xs(0.45) + s * lat, 0.45)
    cp_pt = (xs(cp) + s * (lat - 0.015), cp)
    peak = (xs(dome) + s * 0.21, dome)
    med_bot = (xs(dome + 0.03) + s * 0.055, dome + 0.03)
    segs = [
        _bezier(med_top, (xs(0.14) + s * 0.08, a.apex_y - 0.005), apex),
        _bezier(apex, (xs(a.apex_y) + s * 0.30, a.apex_y + 0.005), lat_up),
        _bezier(lat_up, (xs(0.33) + s * (lat + 0.01), 0.33), lat_mid),
        _bezier(lat_mid, (xs(cp - 0.1) + s * (lat + 0.01), cp - 0.1), cp_pt),
        _bezier(cp_pt, (xs(dome) + s * 0.33, dome - 0.005), peak),
        _bezier(peak, (xs(dome) + s * 0.10, dome - 0.005), med_bot),
        np.array([med_bot, (xs(0.42) + s * 0.05, 0.42), med_top]),
    ]
    return np.concatenate(segs)


def _rib_points(a: _Anatomy, s: int, k: int) -> np.ndarray:
    y = a.rib_y0 + k * a.rib_dy
    xs = float(a.xs(y))
    lat = a.lat[s] + 0.02
    return _bezier(
        (xs + s * 0.03, y), (xs + s * 0.28, y - 0.05), (xs + s * lat, y + 0.05 + 0.008 * k), 32
    )


# --------------------------------------------------------------------------------------------
# Rendering


def render_phantom(spec: PhantomSpec, size: int = 2500) -> np.ndarray:
    """Draw a phantom ``size`` rows high (width ``round(0.8 * size)``) as float32 in [0, 1].

    Deterministic: the same spec and size give the same array on the same platform.
    """
    if size < 32:
        raise ValueError(f"phantom size must be at least 32 rows, got {size}")
    h, w = size, int(round(size * ASPECT))
    wh = min(h, WORK_SIZE)
    ww = int(round(wh * ASPECT))
    att = _draw(spec, _Canvas(wh, ww))
    if (wh, ww) != (h, w):
        att = cv2.resize(att, (w, h), interpolation=cv2.INTER_CUBIC if h > wh else cv2.INTER_AREA)
    rng = np.random.default_rng([spec.seed, _STREAM_NOISE, spec.variant])
    a = _sample_anatomy(spec)
    gain = a.gain * rng.uniform(0.95, 1.05)
    heel = np.linspace(1.03, 0.97, h, dtype=np.float32)[:, None]  # anode heel effect
    att = np.clip(att, 0.0, 1.0) ** a.gamma * gain * heel
    noise_sigma = rng.uniform(0.006, 0.012)
    att = att + rng.normal(0.0, noise_sigma, size=(h, w)).astype(np.float32)
    return np.clip(att, 0.0, 1.0).astype(np.float32)


def _draw(spec: PhantomSpec, c: _Canvas) -> np.ndarray:
    a = _sample_anatomy(spec)
    f = spec.findings
    xs = a.xs
    att = np.full((c.h, c.w), 0.03, np.float32)

    # Body soft tissue with shoulders; arms are out of the field.
    cx, bw = a.cx, a.body_w
    body = [
        (cx - 0.09, 0.0),
        (cx + 0.09, 0.0),
        (cx + 0.11, 0.04),
        (cx + 0.30, 0.07),
        (cx + bw, 0.12),
        (cx + bw - 0.01, 0.5),
        (cx + bw - 0.03, 1.0),
        (cx - bw + 0.03, 1.0),
        (cx - bw + 0.01, 0.5),
        (cx - bw, 0.12),
        (cx - 0.30, 0.07),
        (cx - 0.11, 0.04),
    ]
    body_m = c.soft(c.fill(c.mask(), body), 0.012)
    att += 0.42 * body_m
    # Soft tissue gets thicker to the bases and laterally (breasts, chest wall).
    att += 0.05 * body_m * np.clip((c.v - 0.3) / 0.5, 0, 1)

    # Lungs minus mediastinum and heart.
    lungs = {s: c.fill(c.mask(), _lung_outline(a, s)) for s in (-1, 1)}
    vv = np.linspace(0.0, 0.5, 12)
    media_left = [(float(xs(v)) - 0.05, v) for v in vv]
    media_right = [(float(xs(v)) + 0.05 + 0.04 * np.clip((v - 0.15) / 0.12, 0, 1), v) for v in vv]
    medi = c.fill(c.mask(), media_left + media_right[::-1])
    hy = a.heart_y()
    heart = c.ellipse(c.mask(), (float(xs(hy)) + a.heart_dx, hy), (a.heart_w, a.heart_h), -12)
    blocked = cv2.bitwise_or(medi, heart)
    lung_bin = {s: cv2.bitwise_and(m, cv2.bitwise_not(blocked)) for s, m in lungs.items()}
    lung_all = cv2.bitwise_or(lung_bin[-1], lung_bin[1])
    lung_soft = c.soft(lung_all, 0.006)
    base_grad = np.clip((c.v - a.apex_y) / 0.6, 0, 1)
    att -= lung_soft * (a.lung_air - 0.08 * base_grad)
    att += 0.05 * c.soft(heart, 0.01)

    # Pneumothorax geometry first: the lung markings stop at the pleural line.
    ptx_region = np.zeros_like(att)
    ptx_line = np.zeros_like(att)
    if "Pneumothorax" in f:
        r = _finding_rng(spec, "Pneumothorax")
        s = int(r.choice([-1, 1]))
        dist = cv2.distanceTransform(lung_bin[s], cv2.DIST_L2, 5) / c.w
        d = r.uniform(0.11, 0.15)
        lateral = (s * (c.u - xs(c.v)) > 0.14) | (c.v < a.apex_y + 0.09)
        upper = c.v < a.dome[s] - 0.08
        keep = lateral & upper & (lung_bin[s] > 0)
        ptx_region = c.soft(((dist < d) & keep).astype(np.uint8) * 255, 0.003)
        line = (np.abs(dist - d) < 0.005) & keep & (dist > 0.01)
        ptx_line = c.soft(line.astype(np.uint8) * 255, 0.0015)

    # Vessels (lung markings) branching from the hila.
    vr = np.random.default_rng([spec.seed, _STREAM_ANATOMY, 7])
    vessels = c.mask()
    for s in (-1, 1):
        hil = np.array([float(xs(0.40)) + s * 0.09, 0.40])
        for _ in range(12):
            ang = vr.uniform(-1.9, 1.9)  # radians from the lateral direction
            p = hil.copy()
            direction = np.array([s * np.cos(ang), -np.sin(ang) * 1.2])
            thick = 0.007
            for _step in range(6):
                direction = direction + vr.normal(0, 0.25, 2)
                direction /= np.linalg.norm(direction)
                q = p + direction * vr.uniform(0.03, 0.05)
                c.line(vessels, [p, q], thick, 255)
                p, thick = q, max(thick * 0.75, 0.0015)
    vessel_f = c.soft(vessels, 0.002) * (lung_all > 0) * (1.0 - ptx_region)
    att += 0.08 * vessel_f
    for s in (-1, 1):
        att += 0.06 * c.soft(
            c.ellipse(c.mask(), (float(xs(0.41)) + s * 0.085, 0.41), (0.035, 0.035)), 0.012
        )

    # Trachea and main bronchi (air in the mediastinum).
    ty = 0.27
    airway = c.line(c.mask(), [(float(xs(v)), v) for v in np.linspace(0.0, ty, 8)], 0.03)
    for s in (-1, 1):
        c.line(airway, [(float(xs(ty)), ty), (float(xs(ty)) + s * 0.06, ty + 0.07)], 0.018)
    att -= 0.09 * c.soft(airway, 0.004)

    # Abdomen under the domes; gastric bubble under the left (image right) dome.
    gb = (float(xs(a.dome[1])) + 0.16, a.dome[1] + 0.07)
    if gb[1] < 0.96:
        att -= 0.14 * c.soft(c.ellipse(c.mask(), gb, (0.055, 0.025)), 0.006)

    # Spine: vertebral bodies with pedicles, following the centre line.
    spine = c.mask()
    kypho = c.mask()
    v = 0.03
    while v < 0.93:
        x = float(xs(v))
        tilt = float(np.degrees(np.arctan2((xs(v + 0.01) - xs(v - 0.01)) * c.w, 0.02 * c.h)))
        wedge = a.kyphosis and 0.28 < v < 0.56
        hgt = 0.019 if wedge else 0.034
        target = kypho if wedge else spine
        c.ellipse(target, (x, v), (0.036, hgt / 2), -tilt)
        for s in (-1, 1):
            c.ellipse(spine, (x + s * 0.022, v - 0.004), (0.007, 0.007), 0, t=0.003)
        v += 0.028 if wedge else 0.046
    att += 0.11 * c.soft(spine, 0.003) + 0.26 * c.soft(kypho, 0.002)

    # Ribs (posterior, bright; anterior, faint) and clavicles.
    ribs = c.mask()
    front = c.mask()
    callus = c.mask()
    for s in (-1, 1):
        for k in range(10):
            pts = _rib_points(a, s, k)
            if (s, k) in a.fractures:
                i = int(a.fractures[(s, k)] * len(pts))
                # A clear break: a gap of several rib widths and a displaced lateral fragment.
                c.line(ribs, pts[: i - 2], 0.013)
                c.line(ribs, pts[i + 3 :] + np.array([0.0, 0.03]), 0.013)
                # Callus: a fusiform thickening along the rib, unlike a round nodule.
                d = pts[min(i + 1, len(pts) - 1)] - pts[max(i - 1, 0)]
                ang = float(np.degrees(np.arctan2(d[1] * c.h, d[0] * c.w)))
                c.ellipse(callus, tuple(pts[i] + np.array([0.0, 0.015])), (0.065, 0.024), ang)
            else:
                c.line(ribs, pts, 0.013)
            end = pts[-1]
            c.line(
                front,
                _bezier(
                    end,
                    (end[0] - s * 0.12, end[1] + 0.05),
                    (float(xs(end[1])) + s * 0.1, end[1] + 0.13),
                ),
                0.01,
            )
    att += 0.10 * c.soft(ribs, 0.002) + 0.035 * c.soft(front, 0.004) + 0.38 * c.soft(callus, 0.004)
    clav = c.mask()
    for s in (-1, 1):
        cy = a.clav_y
        c.line(
            clav,
            _bezier(
                (float(xs(cy)) + s * 0.035, cy + 0.02),
                (float(xs(cy)) + s * 0.18, cy + 0.025),
                (float(xs(cy)) + s * 0.31, cy - 0.03),
            ),
            0.022,
        )
    att += 0.12 * c.soft(clav, 0.002)

    # ---- findings --------------------------------------------------------------------------
    if "Pneumothorax" in f:
        att -= 0.18 * ptx_region
        att += 0.18 * ptx_line
    if "pleural effusion" in f:
        r = _finding_rng(spec, "pleural effusion")
        sides = [-1, 1] if r.random() < 0.35 else [int(r.choice([-1, 1]))]
        fluid = np.zeros_like(att)
        for s in sides:
            top = a.dome[s] + a.cp_depth - r.uniform(0.16, 0.24)
            lat_u = xs(c.v) + s * a.lat[s]
            meniscus = top + 0.35 * ((c.u - lat_u) / 0.35) ** 2
            region = (c.v > meniscus) & (lungs[s] > 0)
            fluid = np.maximum(fluid, region.astype(np.float32))
        fluid = cv2.GaussianBlur(fluid, (0, 0), 0.012 * c.h)
        att += 0.30 * fluid * (lung_soft + 0.3)
    if "Nodule" in f:
        r = _finding_rng(spec, "Nodule")
        nod = c.mask()
        for _ in range(int(r.integers(2, 5))):
            rad = r.uniform(0.045, 0.06)
            cen = _point_in(lung_all, c, r, margin=rad * 1.1)
            c.ellipse(nod, cen, (rad, rad * ASPECT))
        att += 0.40 * c.soft(nod, 0.004)
    if "Mass" in f:
        r = _finding_rng(spec, "Mass")
        mass = c.mask()
        rad = r.uniform(0.10, 0.13)
        cen = np.array(_point_in(lung_all, c, r, margin=rad * 0.6))
        for _ in range(5):
            off = r.normal(0, rad * 0.3, 2)
            rr = rad * r.uniform(0.65, 0.95)
            c.ellipse(mass, tuple(cen + off), (rr, rr * ASPECT))
        att += 0.45 * c.soft(mass, 0.005)
    if "atelectasis" in f:
        r = _finding_rng(spec, "atelectasis")
        band = c.mask()
        for s in [-1, 1] if r.random() < 0.4 else [int(r.choice([-1, 1]))]:
            for _ in range(int(r.integers(2, 4))):
                vy = a.dome[s] - r.uniform(0.05, 0.16)
                ux = float(xs(vy)) + s * r.uniform(0.15, 0.26)
                half = r.uniform(0.09, 0.13)
                tilt = r.uniform(-0.03, 0.03)
                c.line(
                    band, [(ux - half, vy - tilt), (ux + half, vy + tilt)], r.uniform(0.03, 0.04)
                )
        att += 0.36 * c.soft(band, 0.003) * (c.soft(lung_all, 0.01) > 0.3)
    if "central venous catheter" in f:
        r = _finding_rng(spec, "central venous catheter")
        tip = (float(xs(0.38)) - 0.035, 0.38 + r.uniform(-0.02, 0.03))
        if r.random() < 0.5:  # subclavian approach
            s = int(r.choice([-1, 1]))
            p0 = (float(xs(0.1)) + s * 0.33, a.clav_y - 0.02)
            route = np.concatenate(
                [
                    _bezier(
                        p0,
                        (float(xs(0.15)) + s * 0.15, a.clav_y + 0.03),
                        (float(xs(0.2)) - 0.03, 0.2),
                    ),
                    _bezier((float(xs(0.2)) - 0.03, 0.2), (float(xs(0.3)) - 0.04, 0.3), tip),
                ]
            )
        else:  # internal jugular approach
            p0 = (float(xs(0.0)) - 0.07, 0.0)
            route = _bezier(p0, (float(xs(0.18)) - 0.05, 0.18), tip)
        att += 0.45 * c.soft(c.line(c.mask(), route, 0.009), 0.0015)
    elif "Support Devices" in f:  # a pacemaker: generator in the upper chest, leads to the heart
        r = _finding_rng(spec, "Support Devices")
        s = 1 if r.random() < 0.8 else -1
        gx, gy = float(xs(0.17)) + s * r.uniform(0.24, 0.3), r.uniform(0.15, 0.19)
        dev = c.mask()
        box = [
            (gx - 0.05, gy - 0.03),
            (gx + 0.05, gy - 0.03),
            (gx + 0.05, gy + 0.03),
            (gx - 0.05, gy + 0.03),
        ]
        c.fill(dev, box)
        for end in ((float(xs(hy)) + 0.02, hy + 0.04), (float(xs(hy)) - 0.02, hy - 0.03)):
            c.line(dev, _bezier((gx, gy), (float(xs(0.22)) - 0.02, 0.22), end), 0.006)
        att += 0.55 * c.soft(dev, 0.0015)
    if "sternotomy" in f:
        r = _finding_rng(spec, "sternotomy")
        wires = c.mask()
        n = int(r.integers(5, 8))
        for vy in np.linspace(0.23, 0.23 + 0.05 * n, n) + r.normal(0, 0.004, n):
            x = float(xs(vy)) + r.normal(0, 0.003)
            c.ellipse(wires, (x, vy), (0.024, 0.009), r.uniform(-8, 8), t=0.005)
            c.ellipse(wires, (x + 0.026, vy), (0.006, 0.006))  # the twisted knot
        att += 0.5 * c.soft(wires, 0.001)
    return att


def _point_in(
    mask: np.ndarray, c: _Canvas, r: np.random.Generator, margin: float
) -> tuple[float, float]:
    """A random point of ``mask`` at least ``margin`` (width fraction) from its edge."""
    dist = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 5) / c.w
    ys, xs = np.nonzero(dist > margin)
    if len(ys) == 0:
        ys, xs = np.nonzero(dist >= dist.max() * 0.8)
    i = int(r.integers(len(ys)))
    return ((xs[i] + 0.5) / c.w, (ys[i] + 0.5) / c.h)


# --------------------------------------------------------------------------------------------
# The demo study set


@dataclass(frozen=True)
class DemoImage:
    """One written demo image and its ground truth."""

    image_id: str  # path relative to the output folder, "/"-separated (the labels CSV ImageID)
    path: Path
    spec: PhantomSpec
    labels: frozenset[str]
    patient_id: str
    study_date: str
    modality: str
    photometric: str
    bits_stored: int
    transfer_syntax: str
    view_position: str


_FIRST = (
    "Alex",
    "Sam",
    "Robin",
    "Kim",
    "Jordan",
    "Taylor",
    "Casey",
    "Morgan",
    "Jamie",
    "Avery",
    "Riley",
    "Quinn",
    "Drew",
    "Sky",
    "Reese",
    "Parker",
)
_LAST = ("Phantom", "Sample", "Testcase", "Synthetic", "Example", "Mock", "Placeholder", "Specimen")
_TITLES = {"PA": "DEMO CHEST PA", "AP": "DEMO CHEST AP PORTABLE"}


def _stored(att: np.ndarray, bits: int, photometric: str) -> np.ndarray:
    top = (1 << bits) - 1
    v = np.round(att.astype(np.float64) * top * 0.94 + top * 0.03).astype(np.uint16)
    return (top - v).astype(np.uint16) if photometric == "MONOCHROME1" else v


def plan_demo(n: int = 48, seed: int = 0) -> list[dict]:
    """The demo set's plan (no pixels): one dict per image, in writing order.

    Patients have one or two studies, studies one or two images; the first image of each study
    is a PA or AP chest radiograph, the second a repeat exposure of the same chest.
    """
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

    rng = np.random.default_rng([seed, 9001])
    plans: list[dict] = []
    pat = 0
    while len(plans) < n:
        pat += 1
        pid = f"DEMO{seed:02d}{pat:04d}"
        name = (
            f"DEMO^{_FIRST[int(rng.integers(len(_FIRST)))]} {_LAST[int(rng.integers(len(_LAST)))]}"
        )
        sex = str(rng.choice(["F", "M"]))
        birth = _dt.date(1935, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 365 * 65)))
        n_studies = 2 if rng.random() < 0.2 else 1
        day0 = _dt.date(2019, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 365 * 6)))
        for st in range(n_studies):
            if len(plans) >= n:
                break
            date = day0 + _dt.timedelta(days=int(rng.integers(30, 400)) * st)
            findings = sample_findings(rng)
            anat_seed = int(np.random.SeedSequence([seed, pat, st]).generate_state(1)[0])
            study_uid = generate_uid(entropy_srcs=[f"cxrlt-demo/{seed}/{pid}/{st}"])
            view = "AP" if rng.random() < 0.3 else "PA"
            modality = "DX" if rng.random() < 0.5 else "CR"
            n_img = 2 if rng.random() < 0.25 else 1
            for im in range(n_img):
                if len(plans) >= n:
                    break
                idx = len(plans)
                # Cycle through every combination of compression, photometric and depth.
                ts = JPEG2000Lossless if idx % 2 == 1 else ExplicitVRLittleEndian
                photometric = "MONOCHROME1" if idx % 4 in (1, 2) else "MONOCHROME2"
                bits = (12, 14, 15, 16)[(idx // 4) % 4]
                image_id = f"{pid}/{date:%Y%m%d}_{st + 1}/IM{im + 1:02d}.dcm"
                plans.append(
                    dict(
                        image_id=image_id,
                        spec=PhantomSpec(anat_seed, findings, variant=im),
                        patient_id=pid,
                        patient_name=name,
                        patient_sex=sex,
                        patient_birth_date=f"{birth:%Y%m%d}",
                        study_date=f"{date:%Y%m%d}",
                        study_uid=study_uid,
                        series_uid=generate_uid(
                            entropy_srcs=[f"cxrlt-demo/{seed}/{image_id}/series"]
                        ),
                        sop_uid=generate_uid(entropy_srcs=[f"cxrlt-demo/{seed}/{image_id}"]),
                        accession=f"DA{seed:02d}{pat:04d}{st}",
                        modality=modality,
                        view=view,
                        photometric=photometric,
                        bits=bits,
                        transfer_syntax=str(ts),
                    )
                )
    return plans


def iter_demo_data(
    out: str | Path, n: int = 48, seed: int = 0, *, size: int = 2500
) -> Iterator[DemoImage]:
    """Write the demo images one by one (yielding each), then ``labels.csv``.

    Deterministic for ``(n, seed, size)``: the same files, byte for byte.
    """
    from pydicom.uid import UID

    from engine.dicomwrite import make_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images: list[DemoImage] = []
    spacing = round(0.175 * 2500 / size, 4)
    for p in plan_demo(n, seed):
        spec: PhantomSpec = p["spec"]
        att = render_phantom(spec, size)
        pixels = _stored(att, p["bits"], p["photometric"])
        top = (1 << p["bits"]) - 1
        center = top / 2.0
        path = out / p["image_id"]
        desc = _TITLES[p["view"]]
        extra = {
            "SeriesDescription": f"DEMO {p['view']} synthetic phantom",
            "Manufacturer": "CXR-LT Desktop demo",
            "ImageComments": "DEMO: synthetic phantom, not a patient image",
            "PatientIdentityRemoved": "YES",
            "InstanceNumber": int(p["image_id"][-6:-4]),
            "PresentationIntentType": "FOR PRESENTATION" if p["modality"] == "DX" else None,
        }
        extra = {k: v for k, v in extra.items() if v is not None}
        ds = make_dataset(
            pixels,
            photometric=p["photometric"],
            bits_stored=p["bits"],
            modality=p["modality"],
            patient_id=p["patient_id"],
            patient_name=p["patient_name"],
            patient_birth_date=p["patient_birth_date"],
            patient_sex=p["patient_sex"],
            study_uid=p["study_uid"],
            series_uid=p["series_uid"],
            sop_uid=p["sop_uid"],
            study_date=p["study_date"],
            study_description=desc,
            accession_number=p["accession"],
            institution_name=DEMO_INSTITUTION,
            body_part="CHEST",
            view_position=p["view"],
            rescale=(1.0, 0.0) if p["modality"] == "DX" else None,
            window=(center, top * 0.9),
            pixel_spacing=(spacing, spacing),
            extra=extra,
        )
        # pydicom's set_pixel_data/compress replace the SOP Instance UID with a random one by
        # default; the demo files must be byte-identical for a seed, so put ours back.
        ds.SOPInstanceUID = p["sop_uid"]
        ds.file_meta.MediaStorageSOPInstanceUID = p["sop_uid"]
        if UID(p["transfer_syntax"]).is_compressed:
            ds.compress(p["transfer_syntax"], generate_instance_uid=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        img = DemoImage(
            image_id=p["image_id"],
            path=path,
            spec=spec,
            labels=label_set(spec.findings),
            patient_id=p["patient_id"],
            study_date=p["study_date"],
            modality=p["modality"],
            photometric=p["photometric"],
            bits_stored=p["bits"],
            transfer_syntax=p["transfer_syntax"],
            view_position=p["view"],
        )
        images.append(img)
        yield img
    write_labels_csv(out / "labels.csv", images)


def write_demo_data(
    out: str | Path,
    n: int = 48,
    seed: int = 0,
    *,
    size: int = 2500,
    progress: Callable[[int, int, DemoImage], None] | None = None,
) -> list[DemoImage]:
    """Write ``n`` demo DICOM images under ``out`` plus ``out/labels.csv``; return them.

    Parameters
    ----------
    out : folder to write (created if missing; existing files of the same names are replaced).
    n : number of images (grouped into patients, studies of one or two images).
    seed : the random seed; the output is byte-identical for the same ``(n, seed, size)``.
    size : image height in pixels (width is 0.8 x height); 2,500 by default, small for tests.
    progress : called as ``progress(done, n, image)`` after each image.
    """
    images = []
    for i, img in enumerate(iter_demo_data(out, n, seed, size=size), start=1):
        images.append(img)
        if progress is not None:
            progress(i, n, img)
    return images


def write_labels_csv(path: str | Path, images: Iterable[DemoImage]) -> Path:
    """The ground truth in the CXR-LT label format: ImageID, StudyDate_DICOM, PatientID, 36 classes."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(["ImageID", "StudyDate_DICOM", "PatientID", *ALL_CLASSES])
        for img in images:
            wr.writerow(
                [
                    img.image_id,
                    img.study_date,
                    img.patient_id,
                    *(int(c in img.labels) for c in ALL_CLASSES),
                ]
            )
    return path


def read_labels_csv(path: str | Path) -> dict[str, frozenset[str]]:
    """ImageID -> positive classes, from a CXR-LT format label CSV."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return {
            row["ImageID"]: frozenset(
                cls for cls in ALL_CLASSES if row.get(cls, "0").strip() in ("1", "1.0")
            )
            for row in csv.DictReader(fh)
        }
