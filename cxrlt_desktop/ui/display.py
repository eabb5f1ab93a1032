"""The grayscale display pipeline of PS3.4 N.2 for one image: what the viewer puts on screen.

No Qt here: the steps are numpy and pydicom, testable without a window.

Order of the steps (docs/io.md, "Display pipeline")::

    stored values --(padding mask: Pixel Padding Value .. Pixel Padding Range Limit)
      -> Modality LUT      pydicom ``apply_modality_lut`` (Rescale Slope/Intercept or the
                           Modality LUT Sequence); the viewer takes these values from the engine,
                           which computes them the same way
      -> VOI               a window (pydicom ``apply_windowing``: LINEAR, LINEAR_EXACT, SIGMOID)
                           or one item of the VOI LUT Sequence (pydicom ``apply_voi``), to 0..255
      -> Presentation LUT  inverted for MONOCHROME1 / Presentation LUT Shape INVERSE (and by the
                           reader's Invert)
      -> padding           padding pixels shown as background (black), whatever the window
      -> shutters          rectangular, circular, polygonal and bitmap shutters: the pixels
                           outside the aperture take the Shutter Presentation Value
      -> overlays          overlay planes (60xx) drawn white on top, when switched on

The padding pixels are left out of every window computed from the image (auto, full range,
lung / mediastinum / bone). The engine's source array is not touched: this module only reads
the modality values the engine decoded.

For speed the window is applied through a lookup table when the modality values are integers
over a bounded range (the usual CR/DX case): pydicom computes the table over every value of the
range, and the image indexes it, which gives exactly what pydicom computes on the image itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
# Percentile presets (name, lower, upper percentile of the non-padding modality values): lung
# opens the dark end, mediastinum the bright soft tissue, bone the brightest values (CR/DX
# modality values are detector counts, so fixed Hounsfield-like presets would mean nothing).
RELATIVE_PRESETS: tuple[tuple[str, float, float], ...] = (
    ("Lung", 2.0, 75.0),
    ("Mediastinum", 35.0, 99.0),
    ("Bone", 60.0, 99.9),
)
AUTO_NAME = "Auto (0.5-99.5 percentile)"
FULL_NAME = "Full range"
_MAX_LUT = 1 << 20  # integer value ranges up to this many entries are windowed through a table
# Limits on what a header may ask of the viewer (crafted files): the pixels of one overlay plane
# (the largest digital radiograph has ~18 Mpixel) and the vertices of a polygonal shutter.
MAX_OVERLAY_PIXELS = 64 * 2**20
MAX_POLYGON_VERTICES = 256
_BACKGROUND = 0


@dataclass(frozen=True)
class Preset:
    """A VOI choice the reader can pick.

    ``kind`` is ``"window"`` (``center``/``width`` with ``function``) or ``"lut"`` (item
    ``lut_index`` of the VOI LUT Sequence; ``center``/``width`` then describe the range the LUT
    covers, where a drag starts from). ``origin`` is ``"header"`` for what the file carries,
    ``"image"`` for a window computed from its values.
    """

    name: str
    center: float
    width: float
    function: str = "LINEAR"
    kind: str = "window"
    lut_index: int | None = None
    origin: str = "image"


@dataclass
class Shutter:
    """The display shutters of the file: ``mask`` is True where a pixel is shuttered (outside
    the aperture), ``value`` the 8-bit grey shown there, ``shapes`` the shapes applied."""

    mask: np.ndarray
    value: int
    shapes: tuple[str, ...]


@dataclass
class OverlayPlane:
    """One overlay plane placed on the image grid: ``mask`` True where the overlay bit is 1."""

    group: int
    mask: np.ndarray
    label: str


@dataclass
class DisplayPipeline:
    """One image's display pipeline (modality values onwards); see the module docstring.

    Build it with :meth:`from_dataset` (a DICOM header, the modality values optional) or
    :meth:`from_values` (a PNG/JPEG/TIFF or anything without a header), then :meth:`render`.
    ``warnings`` lists header parts that could not be applied (one line each).
    """

    modality: np.ndarray
    invert: bool = False
    padding: np.ndarray | None = None
    shutter: Shutter | None = None
    overlays: list[OverlayPlane] = field(default_factory=list)
    presets: list[Preset] = field(default_factory=list)
    default: Preset | None = None
    header_function: str = "LINEAR"
    warnings: list[str] = field(default_factory=list)
    intent: str | None = None  # Presentation Intent Type ("FOR PROCESSING", ...)
    _ds: Any = None
    _lut_base: np.ndarray | None = None  # modality - min as int32, for table windowing
    _lut_min: int = 0
    _lut_size: int = 0
    # the latest render and its arguments: the viewer's first render of an image is usually the
    # one the decode thread made ahead (:meth:`prerender`), and a repeat costs nothing
    _rendered: tuple[tuple, np.ndarray] | None = field(default=None, repr=False, compare=False)
    _sample: np.ndarray | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dataset(cls, ds: Any, modality: np.ndarray | None = None) -> DisplayPipeline:
        """The pipeline of a DICOM image.

        Parameters
        ----------
        ds
            The pydicom dataset (the header is enough when ``modality`` is given: overlay data
            comes before the pixel data, so ``stop_before_pixels`` keeps it).
        modality
            Modality-LUT values (2-D); None computes them with pydicom's ``apply_modality_lut``
            from ``ds.pixel_array``.
        """
        from pydicom.pixels import apply_modality_lut

        if modality is None:
            modality = apply_modality_lut(ds.pixel_array, ds)
        values = np.asarray(modality, dtype=np.float32)
        warnings: list[str] = []
        invert = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1" or (
            str(ds.get("PresentationLUTShape", "") or "").upper() == "INVERSE"
        )
        padding = _padding_mask(ds, values, warnings)
        shutter = _shutter(ds, values.shape, warnings)
        overlays = _overlays(ds, values.shape, warnings)
        function = str(ds.get("VOILUTFunction", "") or "LINEAR").upper()
        if function not in VOI_FUNCTIONS:
            warnings.append(f"VOI LUT Function {function!r} is not a known one: LINEAR used")
            function = "LINEAR"
        out = cls(
            values,
            invert,
            padding,
            shutter,
            overlays,
            header_function=function,
            warnings=warnings,
            intent=str(ds.get("PresentationIntentType") or "").strip().upper() or None,
            _ds=_voi_dataset(ds),
        )
        header = _header_presets(ds, function, warnings)
        out._finish(header)
        return out

    @classmethod
    def from_values(
        cls, modality: np.ndarray, *, invert: bool = False, presets: list[Preset] | None = None
    ) -> DisplayPipeline:
        """A pipeline without a DICOM header (raster images, hand-made arrays): windows only."""
        out = cls(np.asarray(modality, dtype=np.float32), bool(invert))
        out._finish(list(presets or []))
        return out

    @classmethod
    def from_display(cls, display: Any, header: Any | None = None) -> DisplayPipeline:
        """The pipeline of an image the engine decoded (``engine.imageio.DisplayImage``: its
        modality values), with the file's DICOM ``header`` when there is one.

        Without a header (PNG/JPEG/TIFF, or a header pydicom cannot read) the windows are the
        engine's: its default window first, as ``"Header"``. A header part that cannot be
        applied never hides the image: the pipeline falls back to the engine's windows and says
        why in ``warnings``.
        """
        problem = None
        if header is not None:
            try:
                return cls.from_dataset(header, display.modality)
            except Exception as exc:  # noqa: BLE001 - the image is shown with plain windows
                problem = f"display header not applied ({_reason(exc)}): plain windows"
        c, w = (float(v) for v in display.window)
        presets = [Preset("Header", c, max(w, 1e-6), origin="header")]
        for name, pc, pw in display.presets or []:
            if name in (AUTO_NAME, FULL_NAME) or (float(pc), float(pw)) == (c, w):
                continue  # computed again below (without padding) or the same as "Header"
            presets.append(Preset(str(name), float(pc), float(pw), origin="header"))
        out = cls.from_values(display.modality, invert=bool(display.invert), presets=presets)
        if problem:
            out.warnings.append(problem)
        return out

    def _finish(self, header: list[Preset]) -> None:
        m = self.modality
        finite = m[np.isfinite(m)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if finite.size == m.size and hi - lo + 1 <= _MAX_LUT and np.array_equal(m, np.rint(m)):
            self._lut_min = int(lo)
            self._lut_size = int(hi - lo) + 1
            self._lut_base = (m - np.float32(lo)).astype(np.int32)
        sample = self.sample()
        computed = [Preset(AUTO_NAME, *_percentile_window(sample, 0.5, 99.5))]
        for name, lo_p, hi_p in RELATIVE_PRESETS:
            if self.invert:  # MONOCHROME1: keep "lung" on the dark (air) part of the display
                lo_p, hi_p = 100.0 - hi_p, 100.0 - lo_p
            computed.append(Preset(name, *_percentile_window(sample, lo_p, hi_p)))
        s_lo, s_hi = (float(sample.min()), float(sample.max())) if sample.size else (lo, hi)
        computed.append(Preset(FULL_NAME, (s_lo + s_hi) / 2.0, max(s_hi - s_lo, 1.0)))
        fn = self.header_function
        computed = [Preset(p.name, p.center, p.width, fn) for p in computed]
        self.presets = header + computed
        self.default = header[0] if header else computed[0]

    # ------------------------------------------------------------------ queries
    def sample(self) -> np.ndarray:
        """The non-padding modality values (subsampled on large images) that computed windows
        use, as float64."""
        if self._sample is not None:
            return self._sample
        m = self.modality
        step = max(1, int(np.sqrt(m.size / 250_000)))
        values = m[::step, ::step]
        if self.padding is not None:
            values = values[~self.padding[::step, ::step]]
        values = values[np.isfinite(values)]
        out = values.astype(np.float64).ravel()
        out.setflags(write=False)
        self._sample = out
        return out

    def preset(self, name: str) -> Preset:
        """The preset of that name (case-insensitive). Raises KeyError."""
        for p in self.presets:
            if p.name.lower() == name.lower():
                return p
        raise KeyError(f"no window preset named {name!r}")

    # ------------------------------------------------------------------ rendering
    def voi(self, preset: Preset) -> np.ndarray:
        """The VOI step alone: float64 in 0..255 (no inversion, padding, shutter or overlay)."""
        if preset.kind == "lut":
            return self._voi_lut(None, preset.lut_index or 0)
        return self._window(preset.center, preset.width, preset.function)

    def render(
        self,
        preset: Preset,
        *,
        invert: bool = False,
        overlays: bool = False,
        shutters: bool = True,
    ) -> np.ndarray:
        """The displayed uint8 image: VOI, inversion (the header's, flipped again by
        ``invert``), padding as background, shutters, overlays (when ``overlays``). Read-only:
        the latest render is kept and returned again for the same arguments."""
        key = (preset, bool(invert), bool(overlays), bool(shutters))
        last = self._rendered
        if last is not None and last[0] == key:
            return last[1]
        out = self._voi_u8(preset)
        if self.invert != bool(invert):
            np.subtract(255, out, out=out)
        if self.padding is not None:
            out[self.padding] = _BACKGROUND
        if shutters and self.shutter is not None:
            out[self.shutter.mask] = self.shutter.value
        if overlays:
            for plane in self.overlays:
                out[plane.mask] = 255
        out.setflags(write=False)
        self._rendered = (key, out)
        return out

    def prerender(self) -> None:
        """Render the default preset the way a viewer first shows it (no user inversion, no
        overlay planes), so that the decode thread, not the GUI thread, does the work."""
        if self.default is not None:
            self.render(self.default)

    def _voi_u8(self, preset: Preset) -> np.ndarray:
        """The VOI step rounded to uint8; through a uint8 table when the values allow one."""
        if self._lut_base is None:
            return np.rint(self.voi(preset)).astype(np.uint8)
        values = np.arange(self._lut_min, self._lut_min + self._lut_size, dtype=np.float64)
        table = np.rint(self._voi_of(values, preset)).astype(np.uint8)
        return table[self._lut_base]

    def _voi_of(self, values: np.ndarray, preset: Preset) -> np.ndarray:
        if preset.kind == "lut":
            return self._voi_lut(values, preset.lut_index or 0)
        from pydicom.pixels import apply_windowing

        ds = _window_dataset(preset.center, preset.width, preset.function)
        return apply_windowing(values, ds)

    def _window(self, center: float, width: float, function: str) -> np.ndarray:
        preset = Preset("", center, width, function)
        if self._lut_base is not None:
            values = np.arange(self._lut_min, self._lut_min + self._lut_size, dtype=np.float64)
            return self._voi_of(values, preset)[self._lut_base]
        return self._voi_of(self.modality, preset)

    def _voi_lut(self, values: np.ndarray | None, index: int) -> np.ndarray:
        """VOI LUT Sequence item ``index`` (pydicom ``apply_voi``) scaled from its output range
        (LUT Descriptor's bits) to 0..255."""
        from pydicom.pixels import apply_voi

        ds = self._ds
        item = ds.VOILUTSequence[index]
        bits = int(item.LUTDescriptor[2]) or 16
        top = float((1 << bits) - 1)
        if values is None:
            if self._lut_base is not None:
                values = np.arange(self._lut_min, self._lut_min + self._lut_size)
                table = self._voi_lut(values, index)
                return table[self._lut_base]
            values = self.modality
        mapped = apply_voi(np.rint(values).astype(np.int64), ds, index)
        return np.clip(mapped.astype(np.float64) * (255.0 / top), 0.0, 255.0)


# ---------------------------------------------------------------------- header parts
def _reason(exc: BaseException) -> str:
    """An exception as a short single line for a warning (its message, else its type)."""
    text = " ".join(str(exc).split())
    if not text or len(text) > 100:
        return type(exc).__name__ if not text else text[:97] + "..."
    return text


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _header_presets(ds: Any, function: str, warnings: list[str]) -> list[Preset]:
    """Every VOI LUT Sequence item, then every window of the header, named by the file."""
    out: list[Preset] = []
    for i, item in enumerate(ds.get("VOILUTSequence") or []):
        try:
            n, first, _bits = (int(v) for v in item.LUTDescriptor)
            n = n or 65536
            _ = item.LUTData
        except Exception as exc:  # noqa: BLE001 - a broken item is skipped, the rest shown
            warnings.append(f"VOI LUT item {i + 1} unusable ({_reason(exc)}): skipped")
            continue
        name = str(item.get("LUTExplanation") or "").strip() or f"VOI LUT {i + 1}"
        out.append(Preset(name, first + n / 2.0, float(n), "LINEAR", "lut", i, "header"))
    centers = _as_list(ds.get("WindowCenter"))
    widths = _as_list(ds.get("WindowWidth"))
    names = _as_list(ds.get("WindowCenterWidthExplanation"))
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        try:
            c, w = float(c), float(w)
        except (TypeError, ValueError):
            warnings.append(f"window {i + 1}: centre {c!r} / width {w!r} not numbers: skipped")
            continue
        if w <= 0 or (function == "LINEAR" and w < 1):
            warnings.append(f"window {i + 1}: width {w:g} not allowed for {function}: skipped")
            continue
        name = str(names[i]).strip() if i < len(names) and names[i] else ""
        out.append(Preset(name or f"Window {i + 1}", c, w, function, "window", None, "header"))
    seen: dict[str, int] = {}
    unique = []
    for p in out:  # two windows with one explanation stay two presets
        k = seen.get(p.name.lower(), 0)
        seen[p.name.lower()] = k + 1
        unique.append(p if k == 0 else Preset(f"{p.name} ({k + 1})", *_rest(p)))
    return unique


def _rest(p: Preset) -> tuple:
    return (p.center, p.width, p.function, p.kind, p.lut_index, p.origin)


def _voi_dataset(ds: Any) -> Any:
    """The part of the header pydicom's ``apply_voi`` needs (the VOI LUT Sequence)."""
    from pydicom import Dataset

    out = Dataset()
    if "VOILUTSequence" in ds:
        out.VOILUTSequence = ds.VOILUTSequence
        if hasattr(ds, "file_meta"):
            out.file_meta = ds.file_meta
    return out


def _window_dataset(center: float, width: float, function: str) -> Any:
    """A VOI LUT module with one window and an 8-bit output range, for ``apply_windowing``:
    MONOCHROME2, 8 bits unsigned, no rescale, so pydicom's output is 0..255."""
    from pydicom import Dataset

    # LINEAR needs a width of at least 1 (a width of 1 is a threshold at c - 0.5); the other
    # functions any positive width.
    width = max(float(width), 1.0) if function == "LINEAR" else max(float(width), 1e-6)
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored = 8
    ds.PixelRepresentation = 0
    ds.WindowCenter = float(center)
    ds.WindowWidth = width
    ds.VOILUTFunction = function
    return ds


def _percentile_window(values: np.ndarray, lo_p: float, hi_p: float) -> tuple[float, float]:
    if values.size == 0:
        return 0.5, 1.0
    lo, hi = np.percentile(values, (lo_p, hi_p))
    return (float(lo) + float(hi)) / 2.0, max(float(hi) - float(lo), 1.0)


def _padding_mask(ds: Any, modality: np.ndarray, warnings: list[str]) -> np.ndarray | None:
    """True where a pixel is padding (PS3.3 C.7.5.1.1.2): a stored value equal to Pixel Padding
    Value, or between it and Pixel Padding Range Limit (inclusive), mapped through the same
    modality LUT as the image."""
    if "PixelPaddingValue" not in ds:
        return None
    try:
        first = int(ds.PixelPaddingValue)
        last = int(ds.PixelPaddingRangeLimit) if "PixelPaddingRangeLimit" in ds else first
    except (TypeError, ValueError):
        warnings.append("Pixel Padding Value is not a number: padding not applied")
        return None
    from pydicom.pixels import apply_modality_lut

    lo, hi = min(first, last), max(first, last)
    if "ModalityLUTSequence" not in ds or not ds.ModalityLUTSequence:
        stored = np.array([lo, hi], dtype=np.int64)  # a linear rescale: the ends suffice
    elif hi - lo >= _MAX_LUT:
        warnings.append(f"padding range {lo}..{hi} too wide: padding not applied")
        return None
    else:
        stored = np.arange(lo, hi + 1, dtype=np.int64)
    mapped = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    if len(mapped) == 0:
        return None
    if "ModalityLUTSequence" in ds and ds.ModalityLUTSequence:
        mask = np.isin(modality, np.unique(mapped))
    else:  # a linear rescale maps the stored range onto one interval
        m_lo, m_hi = float(mapped.min()), float(mapped.max())
        mask = (modality >= m_lo) & (modality <= m_hi)
    return mask if mask.any() else None


_GREY_MAX = 0xFFFF


def _shutter(ds: Any, shape: tuple[int, ...], warnings: list[str]) -> Shutter | None:
    """The Display Shutter module (PS3.3 C.7.6.11) as a mask: a pixel is shown when it is inside
    every shape's aperture (edges included); coordinates are 1-based (row, column)."""
    shapes = [str(s).upper() for s in _as_list(ds.get("ShutterShape"))]
    if not shapes:
        return None
    rows, cols = shape
    r, c = np.mgrid[1 : rows + 1, 1 : cols + 1]
    visible = np.ones(shape, dtype=bool)
    applied = []
    for s in shapes:
        try:
            if s == "RECTANGULAR":
                _need(ds, "ShutterLeftVerticalEdge", "ShutterRightVerticalEdge")
                _need(ds, "ShutterUpperHorizontalEdge", "ShutterLowerHorizontalEdge")
                left, right = int(ds.ShutterLeftVerticalEdge), int(ds.ShutterRightVerticalEdge)
                upper = int(ds.ShutterUpperHorizontalEdge)
                lower = int(ds.ShutterLowerHorizontalEdge)
                visible &= (c >= left) & (c <= right) & (r >= upper) & (r <= lower)
            elif s == "CIRCULAR":
                _need(ds, "CenterOfCircularShutter", "RadiusOfCircularShutter")
                cr, cc = (float(v) for v in ds.CenterOfCircularShutter)
                radius = float(ds.RadiusOfCircularShutter)
                visible &= (r - cr) ** 2 + (c - cc) ** 2 <= radius**2
            elif s == "POLYGONAL":
                _need(ds, "VerticesOfThePolygonalShutter")
                v = [float(x) for x in ds.VerticesOfThePolygonalShutter]
                if len(v) > 2 * MAX_POLYGON_VERTICES:
                    raise ValueError("too many vertices")
                visible &= polygon_mask(list(zip(v[0::2], v[1::2], strict=True)), shape)
            elif s == "BITMAP":
                _need(ds, "ShutterOverlayGroup")
                group = int(ds.ShutterOverlayGroup)
                plane = _overlay_plane(ds, group, shape)
                visible &= ~plane
            else:
                warnings.append(f"shutter shape {s!r} is not a known one: ignored")
                continue
        except Exception as exc:  # noqa: BLE001 - one malformed shape must not hide the image
            warnings.append(f"{s.lower()} shutter unusable ({_reason(exc)}): ignored")
            continue
        applied.append(s)
    if not applied:
        return None
    return Shutter(~visible, _shutter_grey(ds), tuple(applied))


def _need(ds: Any, *keywords: str) -> None:
    missing = [k for k in keywords if k not in ds]
    if missing:
        raise ValueError("missing " + ", ".join(missing))


def _shutter_grey(ds: Any) -> int:
    """Shutter Presentation Value (a 16-bit P-value) as an 8-bit grey; else the L* of the
    CIELab value; else black."""
    if "ShutterPresentationValue" in ds:
        p = int(ds.ShutterPresentationValue)
    elif "ShutterPresentationColorCIELabValue" in ds:
        p = int(_as_list(ds.ShutterPresentationColorCIELabValue)[0])
    else:
        return 0
    return int(round(min(max(p, 0), _GREY_MAX) * 255 / _GREY_MAX))


def polygon_mask(vertices: list[tuple[float, float]], shape: tuple[int, ...]) -> np.ndarray:
    """Pixels whose centre lies inside or on the polygon; vertices are 1-based (row, column).

    Scanline fill: on each row the crossings of the edges (half-open, so a vertex is crossed
    once) pair up into runs; pixels on an edge count as inside.
    """
    rows, cols = shape
    out = np.zeros(shape, dtype=bool)
    n = len(vertices)
    if n < 3:
        raise ValueError("a polygonal shutter needs at least 3 vertices")
    edges = [(vertices[i], vertices[(i + 1) % n]) for i in range(n)]
    for row in range(1, rows + 1):
        xs = []
        for (r0, c0), (r1, c1) in edges:
            if (r0 <= row < r1) or (r1 <= row < r0):
                xs.append(c0 + (row - r0) * (c1 - c0) / (r1 - r0))
        xs.sort()
        for a, b in zip(xs[0::2], xs[1::2], strict=False):
            lo, hi = max(int(np.ceil(a)), 1), min(int(np.floor(b)), cols)
            if lo <= hi:
                out[row - 1, lo - 1 : hi] = True
        for (r0, c0), (r1, c1) in edges:  # edges themselves, horizontal ones included
            if min(r0, r1) <= row <= max(r0, r1):
                if r0 == r1:
                    lo, hi = min(c0, c1), max(c0, c1)
                else:
                    x = c0 + (row - r0) * (c1 - c0) / (r1 - r0)
                    lo = hi = x
                a, b = max(int(np.ceil(lo)), 1), min(int(np.floor(hi)), cols)
                if a <= b:
                    out[row - 1, a - 1 : b] = True
    return out


def _overlay_plane(ds: Any, group: int, shape: tuple[int, ...]) -> np.ndarray:
    """Overlay ``group`` (frame 1) placed on the image grid at its Overlay Origin (1-based).

    Raises ValueError for a plane larger than :data:`MAX_OVERLAY_PIXELS` (a crafted header
    must not make the viewer unpack gigabytes) or whose data is shorter than its size."""
    o_rows, o_cols = int(ds[group, 0x0010].value), int(ds[group, 0x0011].value)
    if o_rows * o_cols > MAX_OVERLAY_PIXELS:
        raise ValueError(f"{o_cols} x {o_rows} overlay plane is too large")
    if len(ds[group, 0x3000].value) * 8 < o_rows * o_cols:
        raise ValueError("overlay data shorter than the plane")
    bits = np.asarray(ds.overlay_array(group)).astype(bool)
    if bits.ndim == 3:
        bits = bits[0]
    origin = ds[group, 0x0050].value if (group, 0x0050) in ds else [1, 1]
    r0, c0 = int(origin[0]) - 1, int(origin[1]) - 1
    out = np.zeros(shape, dtype=bool)
    rows, cols = shape
    h, w = bits.shape
    # clip the plane to the image (an origin may be negative or push it past the edge)
    sr0, sc0 = max(0, -r0), max(0, -c0)
    dr0, dc0 = max(0, r0), max(0, c0)
    dh, dw = min(h - sr0, rows - dr0), min(w - sc0, cols - dc0)
    if dh > 0 and dw > 0:
        out[dr0 : dr0 + dh, dc0 : dc0 + dw] = bits[sr0 : sr0 + dh, sc0 : sc0 + dw]
    return out


def _overlays(ds: Any, shape: tuple[int, ...], warnings: list[str]) -> list[OverlayPlane]:
    """Every overlay plane with Overlay Data (groups 6000-601E, even), graphics or ROI."""
    out = []
    shutter_group = int(ds.ShutterOverlayGroup) if "ShutterOverlayGroup" in ds else None
    for group in range(0x6000, 0x6020, 2):
        if (group, 0x3000) not in ds or group == shutter_group:
            continue
        try:
            mask = _overlay_plane(ds, group, shape)
        except Exception as exc:  # noqa: BLE001 - a broken plane is reported, the image shown
            warnings.append(f"overlay {group:04X} unusable ({_reason(exc)}): not shown")
            continue
        label = ""
        for elem in ((group, 0x1500), (group, 0x0022)):  # Overlay Label, Description
            if elem in ds and ds[elem].value:
                label = str(ds[elem].value).strip()
                break
        out.append(OverlayPlane(group, mask, label or f"Overlay {group:04X}"))
    return out


def read_header(path: str) -> Any | None:
    """The DICOM header of ``path`` without its pixel data (overlay planes included), or None
    for a file pydicom cannot read as DICOM."""
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - the engine already decoded it; no header: windows only
        return None


__all__ = [
    "AUTO_NAME",
    "MAX_OVERLAY_PIXELS",
    "MAX_POLYGON_VERTICES",
    "FULL_NAME",
    "RELATIVE_PRESETS",
    "VOI_FUNCTIONS",
    "DisplayPipeline",
    "OverlayPlane",
    "Preset",
    "Shutter",
    "polygon_mask",
    "read_header",
]
