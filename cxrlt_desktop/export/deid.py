"""De-identification of an export: pseudonyms, pseudonymous UIDs, date shifts and note scrubbing.

Unless the export includes PHI, ImageID and PatientID are salted SHA-256 pseudonyms
(:mod:`cxrlt_desktop.library.pseudonym`; the salt is per installation, so pseudonyms are stable
across exports), the SR's UIDs are pseudonymous ``2.25.`` UIDs from the same salted hash, and
free-text notes have the patient's known identifiers replaced by ``[removed]``. With date
shifting every date of a patient (study date, review time) moves by the same offset of 1 to
:data:`MAX_SHIFT_DAYS` days into the past, derived from the salt and the patient, so intervals
are kept.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from cxrlt_desktop.export.records import ImageRecord
from cxrlt_desktop.library.pseudonym import pseudonym

MAX_SHIFT_DAYS = 730
REMOVED = "[removed]"

# ----------------------------------------------------------------------------------------------
# pseudonyms, UIDs and date shifts (all derived from the installation's salt)


def patient_pseudonym(
    patient_id: str | None, patient_key: str, *, salt: bytes | None = None
) -> str:
    """The exported PatientID: the pseudonym the worklist shows for the patient.

    Salted SHA-256 of the PatientID, or of the store's patient key (``study:<UID>``,
    ``folder:<path>``) when the file had none (as ``cxrlt_desktop.library.worklist.patient_label``).
    """
    return pseudonym(patient_id or patient_key, kind="patient", salt=salt)


def image_pseudonym(image_key: str, *, salt: bytes | None = None) -> str:
    """The exported ImageID of an image (``image_key``: its SOPInstanceUID, else its path)."""
    return pseudonym(image_key, kind="image", salt=salt)


def pseudonymous_uid(uid: str, *, salt: bytes | None = None) -> str:
    """A DICOM UID standing for ``uid``: ``2.25.<128-bit integer>`` from the salted hash.

    The same original UID always maps to the same pseudonymous UID on this installation, so
    SRs of two exports reference the same (pseudonymous) study, series and image.
    """
    return "2.25." + str(int(pseudonym(uid, kind="uid", salt=salt, length=32), 16))


def export_uid(uid: str | None, include_phi: bool, salt: bytes | None) -> str:
    """The UID an SR references: the original (with PHI, when it is a valid UID), else its
    pseudonymous UID; a new random UID when there is none."""
    if not uid:
        from pydicom.uid import generate_uid

        return generate_uid(prefix="2.25.")
    return (
        uid
        if include_phi and re.fullmatch(r"[0-9.]{1,64}", uid)
        else pseudonymous_uid(uid, salt=salt)
    )


def date_shift_days(patient_key: str, *, salt: bytes | None = None) -> int:
    """The per-patient date offset: -1 to -``MAX_SHIFT_DAYS`` days, never 0."""
    h = int(pseudonym(patient_key, kind="date-shift", salt=salt, length=12), 16)
    return -(1 + h % MAX_SHIFT_DAYS)


def shift_da(value: str | None, days: int) -> str:
    """Shift a DICOM DA (``YYYYMMDD``) by ``days``; an unparseable date becomes empty."""
    if not value:
        return ""
    try:
        d = datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return ""  # keeping a malformed date could leak it; dropping it is the safe side
    return (d + timedelta(days=days)).strftime("%Y%m%d")


def shift_timestamp(ts: datetime | None, days: int) -> str:
    """A timestamp shifted by ``days``, in ISO form to the second; empty for None."""
    if ts is None:
        return ""
    return (ts + timedelta(days=days)).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------
# de-identification of free text


def patient_identifiers(rec: ImageRecord) -> list[str]:
    """The patient's known identifying strings, longest first, for scrubbing free text."""
    out: set[str] = set()
    raw = [
        rec.patient_id,
        rec.patient_name,
        rec.birth_date,
        rec.accession,
        rec.institution,
        rec.study_uid,
        rec.series_uid,
        rec.sop_uid,
        rec.study_date,
        rec.path,
        Path(rec.path).name if rec.path else None,
    ]
    for key in (
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "InstitutionName",
        "PatientBirthDate",
    ):
        v = rec.meta.get(key)
        if isinstance(v, str):
            raw.append(v)
    for da in (rec.study_date, rec.birth_date):
        if da:
            out.update(_date_forms(da.strip()))
    for v in raw:
        if not v:
            continue
        v = str(v).strip()
        if len(v) >= 2:
            out.add(v)
        if not ("^" in v or " " in v or "=" in v):
            continue
        # Person names: "Family^Given^Middle", with "=" between the alphabetic, ideographic
        # and phonetic groups -> each part, and per group the "Given Family" order too.
        for group in v.split("="):
            parts = [p for p in re.split(r"[\^\s]+", group) if len(p) >= 2]
            out.update(parts)
            if len(parts) >= 2:
                out.add(" ".join(parts))
                out.add(" ".join(reversed(parts)))
    return sorted(out, key=len, reverse=True)


_MONTHS = (
    "January February March April May June July August September October November December"
).split()


def _date_forms(da: str) -> set[str]:
    """A DICOM date (YYYYMMDD) as people write it: 2023-04-17, 17/04/2023, 4/17/23,
    2023/04/17, 17.4.2023, 17 Apr 2023, April 17, 2023, 17th April 2023, 17-Apr-23 ..."""
    if not re.fullmatch(r"\d{8}", da):
        return set()
    y4, mm, dd = da[:4], da[4:6], da[6:8]
    if not (1 <= int(mm) <= 12 and 1 <= int(dd) <= 31):
        return set()
    out: set[str] = set()
    for y in (y4, y4[2:]):
        for m in {mm, str(int(mm))}:
            for d in {dd, str(int(dd))}:
                for sep in "-/.":
                    out |= {f"{d}{sep}{m}{sep}{y}", f"{m}{sep}{d}{sep}{y}"}
                    if y == y4:
                        out.add(f"{y}{sep}{m}{sep}{d}")
        day = int(dd)
        nth = f"{day}{'th' if 11 <= day <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')}"
        for name in {_MONTHS[int(mm) - 1], _MONTHS[int(mm) - 1][:3]}:
            for d in {dd, str(day), nth}:
                out |= {
                    f"{d} {name} {y}",
                    f"{d}-{name}-{y}",
                    f"{name} {d} {y}",
                    f"{name} {d}, {y}",
                    f"{d}. {name} {y}",
                }
    return out


def _word(ident: str) -> str:
    """A regex for ``ident`` as a whole word; ``_`` separates words (file and folder names).
    Ideographic and kana name parts are matched anywhere (those scripts have no spaces)."""
    body = re.escape(ident)
    if any(ord(c) > 0x2E7F and c.isalpha() for c in ident):
        return body
    return rf"(?<![^\W_]){body}(?![^\W_])"


@functools.lru_cache(maxsize=64)
def _scrubber(identifiers: tuple[str, ...]) -> re.Pattern[str] | None:
    # Longest first, so "Lee Ann" goes before "Lee".
    idents = sorted(set(identifiers), key=len, reverse=True)
    if not idents:
        return None
    return re.compile("|".join(_word(i) for i in idents), flags=re.IGNORECASE)


def scrub_text(text: str | None, identifiers: Iterable[str]) -> str:
    """``text`` with each identifier (case-insensitive) replaced by ``[removed]``.

    Free text cannot be de-identified in general; this removes what the store knows about the
    patient (name parts, IDs, accession, institution, UIDs, dates in the usual written forms,
    the file's path and name), matched as whole words ("_" counts as a separator, so
    "Smith_John" is caught; a short name part like "Lee" does not eat into "fleet").
    """
    if not text:
        return ""
    pattern = _scrubber(tuple(identifiers))
    return text if pattern is None else pattern.sub(REMOVED, text)
