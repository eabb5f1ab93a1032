"""Coded concepts of the 36 findings in the SR documents: ``resources/finding_codes.csv``.

Each row maps a class key (the class name of :data:`engine.classes.ALL_CLASSES`, which never
changes when the list is reordered) to a coding scheme, a code value and an English code
meaning:

- ``SCT`` (SNOMED CT) where pydicom's concept dictionary (``pydicom.sr.codedict.codes.SCT``)
  holds a concept for exactly that finding; the meaning is the dictionary's.
- ``99CXRLT`` (this application's private scheme) otherwise: the code value is a fixed
  mnemonic written in the table (``PNEUMOPERITONEUM``, at most 16 characters as DICOM's SH
  allows), never the class's position in the list; the meaning is the English name.

RadLex would come next, but pydicom's dictionary holds no RadLex concept for any of the 36.
The table and its rationale are in docs/export.md.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources as importlib_resources
from typing import Any

PRIVATE_SCHEME = "99CXRLT"
STANDARD_SCHEMES = ("SCT", "RADLEX")
TABLE = "finding_codes.csv"


@dataclass(frozen=True)
class FindingCode:
    """One row of the table: a class key and its coded concept."""

    key: str
    scheme: str
    value: str
    meaning: str

    @property
    def standard(self) -> bool:
        return self.scheme in STANDARD_SCHEMES

    def concept(self) -> Any:
        """The concept as a :class:`highdicom.sr.CodedConcept`."""
        from highdicom.sr import CodedConcept

        return CodedConcept(self.value, self.scheme, self.meaning)


def _check(rows: list[FindingCode]) -> None:
    from engine.classes import ALL_CLASSES

    keys = [r.key for r in rows]
    if sorted(keys) != sorted(ALL_CLASSES):
        missing = sorted(set(ALL_CLASSES) - set(keys))
        extra = sorted(set(keys) - set(ALL_CLASSES))
        raise ValueError(f"{TABLE}: classes missing {missing}, unknown or repeated {extra}")
    codes = [(r.scheme, r.value) for r in rows]
    if len(set(codes)) != len(codes):
        raise ValueError(f"{TABLE}: a code is used for two classes")
    for r in rows:
        if r.scheme not in (*STANDARD_SCHEMES, PRIVATE_SCHEME):
            raise ValueError(f"{TABLE}: {r.key}: unknown coding scheme {r.scheme!r}")
        if not r.value or len(r.value) > 16 or not r.meaning or len(r.meaning) > 64:
            raise ValueError(f"{TABLE}: {r.key}: code value (1-16) or meaning (1-64) length")


def parse_table(text: str) -> dict[str, FindingCode]:
    """class key -> its :class:`FindingCode` from the CSV text of the table (checked: every
    class exactly once, no code used twice, known schemes, DICOM lengths)."""
    rows = [
        FindingCode(r["key"], r["scheme"], r["code_value"], r["code_meaning"])
        for r in csv.DictReader(text.splitlines())
    ]
    _check(rows)
    return {r.key: r for r in rows}


@lru_cache(maxsize=1)
def finding_codes() -> dict[str, FindingCode]:
    """class key -> its :class:`FindingCode`, from ``resources/finding_codes.csv``."""
    return parse_table(importlib_resources.files("resources").joinpath(TABLE).read_text("utf-8"))


def finding_code(key: str) -> FindingCode:
    """The code of class ``key`` (a class name of :data:`engine.classes.ALL_CLASSES`)."""
    try:
        return finding_codes()[key]
    except KeyError:
        raise KeyError(f"no code for finding {key!r}") from None


def finding_concept(key: str) -> Any:
    """The coded concept of class ``key`` (:class:`highdicom.sr.CodedConcept`)."""
    return finding_code(key).concept()
