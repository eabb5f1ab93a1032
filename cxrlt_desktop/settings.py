"""User settings in a TOML file (``cxrlt_desktop.paths.config_file()``).

Layout (every key optional)::

    database = "sqlite:////home/me/cxrlt.db"   # SQLAlchemy URL; default: data_dir()/cxrlt.db
    reviewer = "Dr Jane Smith"                  # the reader's name in verdicts and "being read by"
    scoring = "workstation"                     # workstation | workers (department queue)
    flag_for_processing = false                 # FOR PROCESSING images may raise the rare flag

    [models]
    task1_checkpoints = ["/models/mlp.safetensors", "/models/csra.safetensors"]
    task1_weights = [1.0, 1.5]                 # one per checkpoint; default by head (1.0 / 1.5)
    task1_arch = "convnextv2_base"             # default: detected from the checkpoint
    clip_model = "/models/WhyXrayCLIP"          # open_clip local-dir folder
    prompts = "/models/prompts.json"            # default: resources/ prompts
    calibration = "/models/calibration.json"

    [engine]
    mode = "paper"                              # paper | fast
    policy = "auto"                             # auto | progressive | paper | fast (see below)
    device = "auto"                             # auto | cpu | cuda
    precision = "bf16"                          # fp32 | bf16 | fp16; absent = bf16 GPU, fp32 CPU
    batch_size = 8
    normal_alpha = 0.5

    [thresholds]                                # operating thresholds t_c by class name
    "Pneumothorax" = 0.35

    [shortcuts]                                 # GUI action name -> key sequence (Qt text)
    verdict_present = "P"

    [paths]                                     # prefix rewrites a worker applies before reading
    "/mnt/pacs-cache" = "//server/pacs-cache"

    [dicom_node]                                # cxrlt listen / the GUI's DICOM node
    enabled = false
    aet = "CXRLT"
    port = 11112
    bind = "127.0.0.1"
    inbox = "/data/cxrlt-inbox"                 # default: data_dir()/inbox
    allow = ["MODALITY1", "PACS@10.0.0.5"]      # calling AE titles (AET or AET@HOST); empty: any
    min_free_mb = 1024                          # refuse storage below this much free disk
    max_associations = 8                        # associations at once
    max_pdu = 262144                            # largest PDU received, bytes
    tls_cert = "/etc/cxrlt/node.pem"            # TLS: this node's certificate and key ...
    tls_key = "/etc/cxrlt/node.key"
    tls_ca = "/etc/cxrlt/peers-ca.pem"          # ... and, to require client certificates, their CA

    [pacs.main]                                 # a PACS destination: DIMSE ...
    aet = "ORTHANC"
    host = "10.0.0.5"
    port = 4242
    [pacs.web]                                  # ... or DICOMweb
    url = "http://10.0.0.5:8042/dicom-web"

Every unknown key and every bad value is reported, each in one line naming it
(:class:`SettingsError` carries the list).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from engine.smallfiles import MAX_TEXT_BYTES, SmallFileError, read_small_text

MODES = ("paper", "fast")
# How this workstation scores: "progressive" (a fast pass over every image, then the paper pass in
# triage order), "paper" or "fast" alone; "auto": "fast" when mode is fast, else progressive on a
# CPU and paper on a GPU (cxrlt_desktop.library.progressive.default_policy).
POLICY_CHOICES = ("auto", "progressive", "paper", "fast")
SCORING_LOCATIONS = ("workstation", "workers")
DICOM_NODE_DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "aet": "CXRLT",
    "port": 11112,
    "bind": "127.0.0.1",
    "inbox": None,
    "allow": [],
    "min_free_mb": 1024,
    "max_associations": 8,
    "max_pdu": 262144,
    "tls_cert": None,
    "tls_key": None,
    "tls_ca": None,
}
# [hanging]: the reading layout at start ("single" or "comparison": the prior beside the current
# image) and the dock panels shown at start (the DICOM tag dock is hidden unless listed).
LAYOUTS = ("single", "comparison")
DOCKS = ("tags_dock", "problems_dock", "priors_dock")
HANGING_DEFAULTS: dict[str, Any] = {"layout": "single", "docks": ["problems_dock"]}
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
MAX_SETTINGS_BYTES = MAX_TEXT_BYTES  # a settings file is a few hundred bytes


class SettingsError(ValueError):
    """Invalid settings: ``.problems`` lists one message per bad key or value."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(problems))


@dataclass
class Settings:
    """The validated settings. Paths are ``Path`` objects, absent values are ``None``."""

    database: str | None = None
    reviewer: str | None = None
    task1_checkpoints: list[Path] = field(default_factory=list)
    task1_weights: list[float] | None = None
    task1_arch: str | None = None  # None: detected from the checkpoint
    clip_model: Path | None = None
    prompts: Path | None = None
    calibration: Path | None = None
    mode: str = "paper"
    policy: str = "auto"
    device: str = "auto"
    precision: str | None = None
    batch_size: int = 8
    normal_alpha: float = 0.5
    thresholds: dict[str, float] = field(default_factory=dict)
    shortcuts: dict[str, str] = field(default_factory=dict)
    scoring: str = "workstation"
    flag_for_processing: bool = False
    paths: dict[str, str] = field(default_factory=dict)
    dicom_node: dict[str, Any] = field(default_factory=lambda: dict(DICOM_NODE_DEFAULTS))
    pacs: dict[str, dict[str, Any]] = field(default_factory=dict)
    hanging: dict[str, Any] = field(default_factory=lambda: dict(HANGING_DEFAULTS))

    # -- TOML structure ---------------------------------------------------------------------
    _TOP = ("database", "reviewer", "scoring", "flag_for_processing")
    _TABLES = ("thresholds", "shortcuts", "paths", "dicom_node", "pacs", "hanging")
    _MODELS = (
        "task1_checkpoints",
        "task1_weights",
        "task1_arch",
        "clip_model",
        "prompts",
        "calibration",
    )
    _ENGINE = ("mode", "policy", "device", "precision", "batch_size", "normal_alpha")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | None = None) -> Settings:
        """Validate a parsed TOML document; raise :class:`SettingsError` listing every problem."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        known_sections = {"models", "engine", *cls._TABLES}
        for key, value in data.items():
            if key in cls._TOP:
                values[key] = value
            elif key in known_sections:
                if not isinstance(value, dict):
                    problems.append(f"[{key}] must be a table, got {value!r}")
                    continue
                if key in ("models", "engine"):
                    allowed = cls._MODELS if key == "models" else cls._ENGINE
                    for sub, v in value.items():
                        if sub in allowed:
                            values[sub] = v
                        else:
                            problems.append(
                                f"unknown key {key}.{sub} (allowed: {', '.join(allowed)})"
                            )
                else:
                    values[key] = value
            else:
                problems.append(
                    f"unknown key {key!r} (allowed: {', '.join(cls._TOP)}, [models], [engine], "
                    + ", ".join(f"[{t}]" for t in cls._TABLES)
                    + ")"
                )
        out = cls()
        for name, value in values.items():
            try:
                setattr(out, name, _VALIDATORS[name](value))
            except ValueError as exc:
                problems.append(f"{_qualified(name)}: {exc}")
        if (
            out.task1_weights is not None
            and out.task1_checkpoints
            and len(out.task1_weights) != len(out.task1_checkpoints)
        ):
            problems.append(
                f"models.task1_weights: {len(out.task1_weights)} weights for "
                f"{len(out.task1_checkpoints)} checkpoints; give one per checkpoint"
            )
        if problems:
            raise SettingsError(problems, source)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The TOML document (absent values left out)."""
        flat = asdict(self)
        doc: dict[str, Any] = {}
        for k in self._TOP:
            if flat[k] is not None and not (k == "scoring" and flat[k] == "workstation"):
                if not (k == "flag_for_processing" and not flat[k]):
                    doc[k] = flat[k]
        for section, keys in (("models", self._MODELS), ("engine", self._ENGINE)):
            table = {}
            for k in keys:
                v = flat[k]
                if (
                    v is None
                    or (k == "task1_checkpoints" and not v)
                    or (k, v) == ("policy", "auto")
                ):
                    continue
                table[k] = (
                    [str(p) for p in v]
                    if k == "task1_checkpoints"
                    else (str(v) if isinstance(v, Path) else v)
                )
            if table:
                doc[section] = table
        for k in ("thresholds", "shortcuts", "paths"):
            if flat[k]:
                doc[k] = dict(flat[k])
        node = {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in flat["dicom_node"].items()
            if v is not None and DICOM_NODE_DEFAULTS.get(k) != v
        }
        if node:
            doc["dicom_node"] = node
        if flat["pacs"]:
            doc["pacs"] = {name: dict(dest) for name, dest in flat["pacs"].items()}
        hanging = {k: v for k, v in flat["hanging"].items() if HANGING_DEFAULTS.get(k) != v}
        if hanging:
            doc["hanging"] = hanging
        return doc

    def map_path(self, path: str) -> str:
        """``path`` with the longest matching ``[paths]`` prefix rewritten (unchanged if none).

        A prefix matches whole path components only: "/mnt/a" maps "/mnt/a/x.dcm", not
        "/mnt/ab/x.dcm"."""
        best = ""
        for prefix in self.paths:
            p = prefix.rstrip("/\\") or prefix
            if (path == p or path.startswith(p + "/") or path.startswith(p + "\\")) and len(
                p
            ) > len(best):
                best = p
        if not best:
            return path
        target = self.paths.get(best) or self.paths.get(best + "/") or self.paths[best + "\\"]
        return target.rstrip("/\\") + path[len(best) :]

    @classmethod
    def load(cls, path: Path | str | None = None) -> Settings:
        """Read the settings file (defaults when it does not exist).

        Raises
        ------
        SettingsError
            The file is not a regular file (a FIFO, a device, a folder), is over 1 MiB, is not
            valid UTF-8 TOML, or names an unknown key or a bad value.
        """
        p = Path(path) if path else default_path()
        if not p.exists():
            return cls()
        try:
            text = read_small_text(p, MAX_SETTINGS_BYTES)
        except SmallFileError as exc:
            raise SettingsError([exc.reason], str(p)) from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"not valid TOML: {exc}"], str(p)) from exc
        return cls.from_dict(data, source=str(p))

    def save(self, path: Path | str | None = None) -> Path:
        """Validate and write atomically (temporary file, then rename). Returns the path."""
        doc = self.to_dict()
        type(self).from_dict(doc)  # refuse to write what could not be read back
        p = Path(path) if path else default_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(tomli_w.dumps(doc), "utf-8")
        os.replace(tmp, p)
        return p

    def requested_policy(self) -> str | None:
        """The scoring policy the settings ask for; None: by the device (progressive on a CPU,
        paper on a GPU)."""
        if self.policy != "auto":
            return self.policy
        return "fast" if self.mode == "fast" else None

    def engine_config(self, **overrides: Any):  # noqa: ANN201 - engine imported lazily
        """An ``engine.predictor.EngineConfig`` from these settings (``overrides`` win)."""
        from cxrlt_desktop.paths import cache_dir
        from engine.predictor import EngineConfig

        kwargs: dict[str, Any] = {
            # prompt embeddings and ONNX exports persist in the user data folder
            "cache_dir": cache_dir(),
            "task1_checkpoints": list(self.task1_checkpoints),
            "task1_weights": self.task1_weights,
            "task1_arch": self.task1_arch,
            "clip_model": self.clip_model,
            "prompts": self.prompts,
            "mode": self.mode,
            "normal_alpha": self.normal_alpha,
            "device": self.device,
            "precision": self.precision,
            "batch_size": self.batch_size,
            "calibration": self.calibration,
        }
        if self.policy != "auto":  # the policy decides the main pass's mode
            kwargs["mode"] = "fast" if self.policy == "fast" else "paper"
        kwargs.update(overrides)
        names = {f.name for f in fields(EngineConfig)}
        return EngineConfig(**{k: v for k, v in kwargs.items() if k in names})


def default_path() -> Path:
    """``cxrlt_desktop.paths.config_file()``."""
    from cxrlt_desktop.paths import config_file

    return config_file()


def _qualified(name: str) -> str:
    if name in Settings._MODELS:
        return f"models.{name}"
    if name in Settings._ENGINE:
        return f"engine.{name}"
    return name


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"must be a non-empty string, got {v!r}")
    return v


def _short_str(v: Any, limit: int) -> str:
    s = _str(v)
    if len(s.strip()) > limit:
        raise ValueError(f"must have at most {limit} characters, got {len(s.strip())}")
    return s


def _path(v: Any) -> Path:
    return Path(_str(v)).expanduser()


def _choice(options: tuple[str, ...]):  # noqa: ANN202
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {v!r}")
        return v

    return check


def _number(lo: float, hi: float, *, integer: bool = False):  # noqa: ANN202
    def check(v: Any) -> float | int:
        ok_type = isinstance(v, int) if integer else isinstance(v, int | float)
        if isinstance(v, bool) or not ok_type or not (lo <= v <= hi):
            kind = "an integer" if integer else "a number"
            raise ValueError(f"must be {kind} in [{lo}, {hi}], got {v!r}")
        return int(v) if integer else float(v)

    return check


def _checkpoints(v: Any) -> list[Path]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise ValueError(f"must be a list of file paths, got {v!r}")
    return [_path(x) for x in v]


def _weights(v: Any) -> list[float]:
    if not isinstance(v, list) or not v:
        raise ValueError(f"must be a list of positive numbers, got {v!r}")
    out = [_number(0.0, 1e6)(x) for x in v]
    if any(x <= 0 for x in out):
        raise ValueError(f"weights must be positive, got {v!r}")
    return out


def _thresholds(v: Any) -> dict[str, float]:
    """Thresholds keyed by engine class name; keys may be class or display names, any case
    (as ``cxrlt worklist --finding`` accepts them: "Pneumoperitoneum" means "pneumoperitoneo")."""
    from engine.classes import ALL_CLASSES, DISPLAY_NAMES

    names = {c.lower(): c for c in ALL_CLASSES}
    names.update({DISPLAY_NAMES[c].lower(): c for c in ALL_CLASSES})
    bad = []
    out: dict[str, float] = {}
    for name, t in v.items():
        cls = name if name in ALL_CLASSES else names.get(str(name).strip().lower())
        if cls is None:
            bad.append(f"unknown finding {name!r} (use a finding name as the worklist shows it)")
        elif isinstance(t, bool) or not isinstance(t, int | float) or not (0.0 < t <= 1.0):
            bad.append(f"{name!r} must be a number in (0, 1], got {t!r}")
        else:
            out[cls] = float(t)
    if bad:
        raise ValueError("; ".join(bad))
    return out


def _shortcuts(v: Any) -> dict[str, str]:
    bad = [k for k, s in v.items() if not isinstance(s, str) or not s]
    if bad:
        raise ValueError(f"key sequences must be non-empty strings: {', '.join(bad)}")
    return dict(v)


def _database(v: Any) -> str:
    from sqlalchemy.engine import make_url

    s = _str(v)
    try:
        make_url(s)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"not a database URL ({exc})") from exc
    return s


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def _path_map(v: Any) -> dict[str, str]:
    bad = [k for k, t in v.items() if not str(k).strip() or not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"prefixes and their targets must be non-empty strings: {bad!r}")
    return {str(k): t for k, t in v.items()}


def _ae_title(v: Any) -> str:
    """A DICOM AE title (PS3.5 AE: at most 16 characters, no backslash or control characters,
    not all spaces)."""
    if not isinstance(v, str) or not v.strip() or len(v) > 16:
        raise ValueError(f"must be an AE title of 1-16 characters, got {v!r}")
    if any(c == "\\" or ord(c) < 32 or ord(c) > 126 for c in v):
        raise ValueError(f"an AE title has printable ASCII characters only, got {v!r}")
    return v.strip()


def _allow_entry(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"must be AET or AET@HOST, got {v!r}")
    aet, _, host = v.partition("@")
    _ae_title(aet)
    if "@" in v and not host.strip():
        raise ValueError(f"must be AET or AET@HOST, got {v!r}")
    return v.strip()


_NODE_KEYS: dict[str, Any] = {}


def _dicom_node(v: Any) -> dict[str, Any]:
    out = dict(DICOM_NODE_DEFAULTS)
    bad = []
    for k, x in v.items():
        check = _NODE_KEYS.get(k)
        if check is None:
            bad.append(f"unknown key {k!r} (allowed: {', '.join(_NODE_KEYS)})")
            continue
        try:
            out[k] = check(x)
        except ValueError as exc:
            bad.append(f"{k}: {exc}")
    if bad:
        raise ValueError("; ".join(bad))
    return out


def _pacs(v: Any) -> dict[str, dict[str, Any]]:
    """``[pacs.NAME]`` tables: ``aet``/``host``/``port`` (DIMSE) or ``url`` (DICOMweb)."""
    out: dict[str, dict[str, Any]] = {}
    bad = []
    for name, dest in v.items():
        if not isinstance(dest, dict):
            bad.append(f"pacs.{name} must be a table")
            continue
        unknown = set(dest) - {"aet", "host", "port", "url"}
        if unknown:
            bad.append(
                f"pacs.{name}: unknown keys {sorted(unknown)} (allowed: aet, host, port, url)"
            )
            continue
        try:
            if "url" in dest:
                if set(dest) != {"url"}:
                    raise ValueError("give url alone (DICOMweb) or aet, host and port (DIMSE)")
                url = _str(dest["url"])
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"url must start with http:// or https://, got {url!r}")
                out[name] = {"url": url}
            else:
                if set(dest) != {"aet", "host", "port"}:
                    raise ValueError("give aet, host and port (DIMSE) or url alone (DICOMweb)")
                out[name] = {
                    "aet": _ae_title(dest["aet"]),
                    "host": _str(dest["host"]),
                    "port": _number(1, 65535, integer=True)(dest["port"]),
                }
        except ValueError as exc:
            bad.append(f"pacs.{name}: {exc}")
    if bad:
        raise ValueError("; ".join(bad))
    return out


_NODE_KEYS.update(
    {
        "enabled": _bool,
        "aet": _ae_title,
        "port": _number(1, 65535, integer=True),
        "bind": _str,
        "inbox": _path,
        "allow": lambda v: [_allow_entry(x) for x in (v if isinstance(v, list) else [v])],
        "min_free_mb": _number(0, 1 << 30, integer=True),
        "max_associations": _number(1, 1000, integer=True),
        "max_pdu": _number(4096, 1 << 26, integer=True),
        "tls_cert": _path,
        "tls_key": _path,
        "tls_ca": _path,
    }
)


def _hanging(v: Any) -> dict[str, Any]:
    """``[hanging]``: ``layout`` (single, comparison) and ``docks`` (those shown at start)."""
    out = dict(HANGING_DEFAULTS)
    bad = []
    for k, x in v.items():
        if k == "layout":
            try:
                out[k] = _choice(LAYOUTS)(x)
            except ValueError as exc:
                bad.append(f"layout: {exc}")
        elif k == "docks":
            items = x if isinstance(x, list) else [x]
            unknown = [d for d in items if d not in DOCKS]
            if unknown:
                bad.append(f"docks: unknown {unknown} (allowed: {', '.join(DOCKS)})")
            else:
                out[k] = list(dict.fromkeys(items))
        else:
            bad.append(f"unknown key {k!r} (allowed: layout, docks)")
    if bad:
        raise ValueError("; ".join(bad))
    return out


_VALIDATORS: dict[str, Any] = {
    "database": _database,
    "reviewer": lambda v: _short_str(v, 128),
    "task1_checkpoints": _checkpoints,
    "task1_weights": _weights,
    "task1_arch": _str,
    "clip_model": _path,
    "prompts": _path,
    "calibration": _path,
    "mode": _choice(MODES),
    "policy": _choice(POLICY_CHOICES),
    "device": _choice(DEVICES),
    "precision": _choice(PRECISIONS),
    "batch_size": _number(1, 4096, integer=True),
    "normal_alpha": _number(0.0, 10.0),
    "thresholds": _thresholds,
    "shortcuts": _shortcuts,
    "scoring": _choice(SCORING_LOCATIONS),
    "flag_for_processing": _bool,
    "paths": _path_map,
    "dicom_node": _dicom_node,
    "pacs": _pacs,
    "hanging": _hanging,
}
