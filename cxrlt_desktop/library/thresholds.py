"""Operating thresholds per model set: a threshold belongs to one model version.

The thresholds in force for a model set are its ``model_set_threshold`` rows (each with the
``source`` it came from), and for a finding without a row the fallback the caller gives (the
settings' ``[thresholds]``, source ``"settings"``), else the class default from
resources/classes.csv (source ``"default"``).

Sources: ``"default"``, ``"settings"`` (not stored: the settings file's value in force),
``"migrated"`` (a library's thresholds copied from the settings when it was first opened after
migration 0005), ``"user"`` (set in Settings for this model set), ``"calibration <file>"``.

- :func:`thresholds_for` / :func:`vectors_for` - what is in force (by finding, or as vectors).
- :func:`write_thresholds` - set some findings' thresholds of one model set.
- :func:`migrate_settings_thresholds` - copy the settings' thresholds to the current model set
  of a library that has no threshold rows yet (existing libraries keep their thresholds).
- :func:`apply_settings_thresholds` - the user changed thresholds in Settings: they now belong
  to the current model set (the other model sets keep theirs).
- :func:`current_model_set` - the model set of the newest scoring run.
- :func:`sync_with_settings` - both of the above at a library's opening, and the settings'
  ``flag_for_processing``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cxrlt_desktop.store.models import ModelSet, ScoringRun, utcnow
from cxrlt_desktop.store.tables_thresholds import ModelSetThreshold
from engine.classes import ALL_CLASSES, DEFAULT_THRESHOLDS

DEFAULT, SETTINGS, MIGRATED, USER = "default", "settings", "migrated", "user"
CALIBRATION = "calibration"  # "calibration <file name>"


@dataclass(frozen=True)
class ThresholdSet:
    """Every finding's threshold in force for one model set and where each came from."""

    model_set_id: int | None
    model_set_key: str | None
    values: dict[str, float]
    sources: dict[str, str]

    def vector(self) -> np.ndarray:
        """The thresholds in ``engine.classes.ALL_CLASSES`` order (float64)."""
        return np.array([self.values[c] for c in ALL_CLASSES], dtype=np.float64)

    def counts(self) -> dict[str, int]:
        """How many findings take their threshold from each source, most first."""
        out: dict[str, int] = {}
        for src in self.sources.values():
            out[src] = out.get(src, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def describe(self) -> str:
        """One line for the GUI: which model set's thresholds are in force and their sources,
        e.g. ``"Thresholds of model set 3 (a1b2c3d4): 30 default, 6 migrated"``."""
        if self.model_set_id is None:
            owner = "Thresholds (no model set)"
        else:
            key = f" ({self.model_set_key[:8]})" if self.model_set_key else ""
            owner = f"Thresholds of model set {self.model_set_id}{key}"
        return owner + ": " + ", ".join(f"{n} {src}" for src, n in self.counts().items())


def validated(values: Mapping[str, float]) -> dict[str, float]:
    """``values`` checked: known class names, numbers in (0, 1]. Raises ValueError naming the
    finding."""
    out = {}
    for name, value in values.items():
        if name not in DEFAULT_THRESHOLDS:
            raise ValueError(f"threshold for unknown finding {name!r}")
        if isinstance(value, bool) or not (
            isinstance(value, int | float) and 0.0 < float(value) <= 1.0
        ):
            raise ValueError(f"threshold for {name!r} must be a number in (0, 1], got {value!r}")
        out[name] = float(value)
    return out


def _rows(s: Session, model_set_ids: Iterable[int]) -> dict[int, dict[str, tuple[float, str]]]:
    ids = sorted(set(model_set_ids))
    out: dict[int, dict[str, tuple[float, str]]] = {i: {} for i in ids}
    if not ids:
        return out
    for msid, finding, value, source in s.execute(
        select(
            ModelSetThreshold.model_set_id,
            ModelSetThreshold.finding,
            ModelSetThreshold.threshold,
            ModelSetThreshold.source,
        ).where(ModelSetThreshold.model_set_id.in_(ids))
    ):
        if finding in DEFAULT_THRESHOLDS:  # a class since removed from the list is ignored
            out[msid][finding] = (float(value), source)
    return out


def _merge(
    rows: Mapping[str, tuple[float, str]], fallback: Mapping[str, float] | None
) -> tuple[dict[str, float], dict[str, str]]:
    fb = validated(fallback or {})
    values, sources = {}, {}
    for c in ALL_CLASSES:
        if c in rows:
            values[c], sources[c] = rows[c]
        elif c in fb:
            values[c], sources[c] = fb[c], SETTINGS
        else:
            values[c], sources[c] = float(DEFAULT_THRESHOLDS[c]), DEFAULT
    return values, sources


def thresholds_for(
    s: Session, model_set_id: int | None, fallback: Mapping[str, float] | None = None
) -> ThresholdSet:
    """The thresholds in force for ``model_set_id`` (None: no model set, the fallback and the
    defaults only). ``fallback``: the settings' ``[thresholds]``."""
    rows: Mapping[str, tuple[float, str]] = {}
    key = None
    if model_set_id is not None:
        rows = _rows(s, [model_set_id])[model_set_id]
        key = s.scalar(select(ModelSet.key).where(ModelSet.id == model_set_id))
    values, sources = _merge(rows, fallback)
    return ThresholdSet(model_set_id, key, values, sources)


def vectors_for(
    s: Session, model_set_ids: Iterable[int], fallback: Mapping[str, float] | None = None
) -> dict[int, np.ndarray]:
    """Threshold vector (``ALL_CLASSES`` order) of each model set, in one query."""
    out = {}
    for msid, rows in _rows(s, model_set_ids).items():
        values, _ = _merge(rows, fallback)
        out[msid] = np.array([values[c] for c in ALL_CLASSES], dtype=np.float64)
    return out


def prediction_thresholds(
    store, prediction_id: int | None, fallback: Mapping[str, float] | None = None
) -> ThresholdSet:  # noqa: ANN001
    """The thresholds in force for the model set of a prediction (the findings panel)."""
    from cxrlt_desktop.store.models import Prediction

    with store.session() as s, s.begin():
        msid = (
            s.scalar(select(Prediction.model_set_id).where(Prediction.id == prediction_id))
            if prediction_id is not None
            else None
        )
        return thresholds_for(s, msid, fallback)


def current_model_set(s: Session) -> int | None:
    """The model set of the newest scoring run (None when the library was never scored)."""
    return s.scalar(select(ScoringRun.model_set_id).order_by(ScoringRun.id.desc()).limit(1))


def write_thresholds(
    s: Session, model_set_id: int, values: Mapping[str, float], source: str
) -> None:
    """Set these findings' thresholds of one model set (others unchanged). Raises ValueError
    for an unknown finding or a value outside (0, 1]."""
    now = utcnow()
    for finding, value in validated(values).items():
        row = s.get(ModelSetThreshold, (model_set_id, finding))
        if row is None:
            s.add(
                ModelSetThreshold(
                    model_set_id=model_set_id,
                    finding=finding,
                    threshold=value,
                    source=source,
                    updated_at=now,
                )
            )
        elif row.threshold != value or row.source != source:
            row.threshold, row.source, row.updated_at = value, source, now
    s.flush()


def migrate_settings_thresholds(store, overrides: Mapping[str, float] | None) -> int | None:  # noqa: ANN001
    """Existing libraries keep their thresholds: the settings' ``[thresholds]`` become the
    current model set's (source ``"migrated"``) when the library has no threshold rows at all.

    Returns the model set migrated to, or None (nothing to migrate, no model set yet, or the
    library has rows already). Safe when two programs open the library at once.
    """
    wanted = validated(overrides or {})
    if not wanted:
        return None

    def work(s: Session) -> int | None:
        if s.scalar(select(ModelSetThreshold.model_set_id).limit(1)) is not None:
            return None
        msid = current_model_set(s)
        if msid is None:
            return None
        write_thresholds(s, msid, wanted, MIGRATED)
        return msid

    try:
        return store.write(work)
    except IntegrityError:  # another program migrated at the same moment
        return None


def apply_settings_thresholds(store, overrides: Mapping[str, float] | None) -> int | None:  # noqa: ANN001
    """The settings' ``[thresholds]`` are the thresholds the user set for the current model set
    (the settings dialog edits them): make its rows agree. A finding whose value changes gets
    source ``"user"``; a finding the settings no longer override goes back to its default when
    its row came from the settings (``"user"``, ``"migrated"``), while a calibrated one keeps its
    value. Other model sets keep theirs. Returns the current model set, or None without one.
    """
    wanted = validated(overrides or {})

    def work(s: Session) -> int | None:
        msid = current_model_set(s)
        if msid is None:
            return None
        in_force = thresholds_for(s, msid, None)
        changed = {f: v for f, v in wanted.items() if in_force.values[f] != v}
        write_thresholds(s, msid, changed, USER)
        for f, src in in_force.sources.items():
            if f not in wanted and src in (USER, MIGRATED):
                row = s.get(ModelSetThreshold, (msid, f))
                if row is not None:
                    s.delete(row)
        s.flush()
        return msid

    try:
        return store.write(work)
    except IntegrityError:  # another program wrote the same rows at the same moment
        return store.write(work)


def sync_with_settings(store, settings) -> None:  # noqa: ANN001
    """What a program does when it opens a library with its settings: migrate the settings'
    thresholds (a library without threshold rows) and apply the ``flag_for_processing`` key to
    the library (re-summarising the studies with FOR PROCESSING images when it changes). Both
    are no-ops on a library already in step."""
    from cxrlt_desktop.library.triage import set_flag_for_processing

    migrate_settings_thresholds(store, getattr(settings, "thresholds", None) or {})
    set_flag_for_processing(store, bool(getattr(settings, "flag_for_processing", False)))


__all__ = [
    "CALIBRATION",
    "DEFAULT",
    "MIGRATED",
    "SETTINGS",
    "USER",
    "ThresholdSet",
    "apply_settings_thresholds",
    "current_model_set",
    "migrate_settings_thresholds",
    "prediction_thresholds",
    "sync_with_settings",
    "thresholds_for",
    "validated",
    "vectors_for",
    "write_thresholds",
]
