"""The 36 CXR-LT 2026 classes, in output order, with their GUI names, prevalence and thresholds.

The single source is ``resources/classes.csv`` (see ``resources/CLASSES.md`` for where the
figures come from).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources as importlib_resources


@dataclass(frozen=True)
class ClassInfo:
    name: str
    display_name: str
    task: int
    prevalence: float | None
    rare: bool
    threshold: float


@lru_cache(maxsize=1)
def class_table() -> tuple[ClassInfo, ...]:
    """All 36 classes in engine order: 30 Task 1 classes, then 6 zero-shot classes."""
    text = importlib_resources.files("resources").joinpath("classes.csv").read_text("utf-8")
    rows = []
    for r in csv.DictReader(text.splitlines()):
        rows.append(
            ClassInfo(
                name=r["name"],
                display_name=r["display_name"],
                task=int(r["task"]),
                prevalence=float(r["prevalence"]) if r["prevalence"] else None,
                rare=r["rare"] == "1",
                threshold=float(r["threshold"]),
            )
        )
    return tuple(rows)


TASK1_CLASSES: tuple[str, ...] = tuple(c.name for c in class_table() if c.task == 1)
TASK2_CLASSES: tuple[str, ...] = tuple(c.name for c in class_table() if c.task == 2)
ALL_CLASSES: tuple[str, ...] = TASK1_CLASSES + TASK2_CLASSES
NORMAL_INDEX = 0
DISPLAY_NAMES: dict[str, str] = {c.name: c.display_name for c in class_table()}
RARE_CLASSES: tuple[str, ...] = tuple(c.name for c in class_table() if c.rare)
DEFAULT_THRESHOLDS: dict[str, float] = {c.name: c.threshold for c in class_table()}

assert len(TASK1_CLASSES) == 30 and len(TASK2_CLASSES) == 6 and TASK1_CLASSES[0] == "Normal"
