"""De-identification of an export: pseudonyms, pseudonymous UIDs, date shifts and note scrubbing.

Unless the export includes PHI, ImageID and PatientID are salted SHA-256 pseudonyms
(:mod:`cxrlt_desktop.library.pseudonym`; the salt is per installation, so pseudonyms are stable
across exports), the SR's UIDs are pseudonymous ``2.25.`` UIDs from the same salted hash, and
free-text notes have the patient's known identifiers replaced by ``[removed]``. With date
shifting every date of a patient (study date, review time) moves by the same offset of 1 to
:data:`MAX_SHIFT_DAYS` days into the past, derived from the salt and the patient, so intervals
are kept.

Every de-identified DICOM object the app writes declares what was done
(:class:`DeidDeclaration`): PatientIdentityRemoved ``YES``, DeidentificationMethod and the
DeidentificationMethodCodeSequence (PS3.15 E.1: the Basic Application Confidentiality Profile
and the options the export actually used). Reviewer names are pseudonymised like patients
(:func:`reviewer_pseudonym`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cxrlt_desktop.export.header_phi import HeaderFacts
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


def reviewer_pseudonym(reviewer: str, *, salt: bytes | None = None) -> str:
    """The exported name of a reviewer: the salted SHA-256 pseudonym of the name as stored
    (trimmed), stable across exports of this installation like the patient pseudonyms."""
    return pseudonym(reviewer.strip(), kind="reviewer", salt=salt)


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


def patient_identifiers(rec: ImageRecord, header: HeaderFacts | None = None) -> list[str]:
    """The patient's known identifying strings, longest first, for scrubbing free text.

    From the store's record (name, IDs, accession, institution, dates, UIDs, the file's path
    and name) and, when given, the image's own header (:mod:`.header_phi`: every person name,
    identifier, address, place, date and UID in it), each expanded into the forms people
    write: name parts and orders (:func:`_name_forms`), an ID with and without its letters
    (:func:`_id_forms`), address parts (:func:`_place_forms`), dates in the usual written
    forms (:func:`_date_forms`).
    """
    meta = rec.meta
    names = [rec.patient_name, *_meta_texts(meta, "PatientName")]
    ids = [rec.patient_id, rec.accession, *_meta_texts(meta, "PatientID", "AccessionNumber")]
    places = [rec.institution, *_meta_texts(meta, "InstitutionName")]
    dates = [rec.study_date, rec.birth_date, *_meta_texts(meta, "PatientBirthDate", "StudyDate")]
    plain = [rec.study_uid, rec.series_uid, rec.sop_uid, rec.path]
    plain.append(Path(rec.path).name if rec.path else None)
    if header is not None:
        names += header.names
        ids += header.ids
        places += header.places
        dates += header.dates
        plain += header.uids
    out: set[str] = set()
    for forms, values in (
        (_name_forms, names),
        (_id_forms, ids),
        (_place_forms, places),
        (_dates, dates),
        (_plain_forms, plain),
    ):
        for v in values:
            if v:
                out |= forms(str(v).strip())
    return sorted((o for o in out if len(o) >= 2), key=len, reverse=True)


_TITLES = {"dr", "prof", "mr", "mrs", "ms", "md", "phd", "sir"}


def reviewer_identifiers(names: Iterable[str]) -> list[str]:
    """Reviewers' names as a note might quote them, for :func:`scrub_text`: each name as
    entered and, with titles (Dr, Prof, ...) dropped, "Given Family", "Family Given" and
    "Family, Given" when two or more words remain. Single words are left: a reviewer called
    "One" must not take "one nodule" out of every note. A "name" that is not written like one
    (digits, symbols: ``=cmd|...``, ``+1+1``) is left too: a note quoting it is not naming a
    person."""
    out: set[str] = set()
    for name in names:
        name = " ".join(name.replace("^", " ").split())
        if len(name) < 2 or not re.fullmatch(
            r"[^\W\d_][^\W\d_ .,'’-]*(?:[ .,'’-]+[^\W\d_]+)*\.?", name
        ):
            continue
        out.add(name)
        if "," in name:  # "Family, Given"
            family_part, given_part = (p.strip() for p in name.split(",", 1))
            ordered = given_part.split() + family_part.split()
        else:
            ordered = name.split()
        words = [w for w in ordered if w.lower().rstrip(".") not in _TITLES]
        if len(words) >= 2:
            given, family = " ".join(words[:-1]), words[-1]
            out |= {
                " ".join(words),
                f"{family} {given}",
                f"{family}, {given}",
                f"{given}, {family}",
            }
        if len(words) == 1 and len(words[0]) >= 2 and words[0] != name:
            out |= {f"{t} {words[0]}" for t in ("Dr", "Dr.", "Prof", "Prof.")}
    return sorted(out, key=len, reverse=True)


def _meta_texts(meta: dict, *keys: str) -> list[str]:
    """The string values of ``keys`` in a stored header (lists flattened)."""
    out: list[str] = []
    for key in keys:
        v = meta.get(key)
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, str) and item.strip():
                out.append(item)
    return out


def _plain_forms(value: str) -> set[str]:
    return {value}


def _name_forms(value: str) -> set[str]:
    """A DICOM person name (``Family^Given^Middle^Prefix^Suffix``, ``=`` between the
    alphabetic, ideographic and phonetic groups) as people write it: the whole value, each
    name part, each part of a hyphenated or multi-word part, and per group "Given Family",
    "Family Given", "Family, Given" and "Given Middle Family". Prefixes and suffixes (Dr, Jr)
    are left out: they identify nobody and would remove those words from every note."""
    out = {value}
    for group in value.split("="):
        comps = [c.strip() for c in group.split("^")]
        if len(comps) == 1:  # no "^": a name written freely ("John Smith", "Smith, John")
            comps = [w for w in re.split(r"[\s,]+", group) if w]
        comps = [c for c in comps[:3] if c]
        for comp in comps:
            out.add(comp)
            out.update(w for w in re.split(r"[\s\-,.'’]+", comp) if len(w) >= 2)
        if len(comps) >= 2:
            family, given, middle = comps[0], comps[1], comps[2:]
            out |= {
                f"{given} {family}",
                f"{family} {given}",
                f"{family}, {given}",
                " ".join([given, *middle, family]),
                " ".join([family, given, *middle]),
            }
    return out


def _id_forms(value: str) -> set[str]:
    """An identifier with and without its letters and separators: ``MRN-0012345`` also as
    ``0012345``, ``12345``, ``MRN0012345`` and ``MRN 0012345``; each letter-and-digit token of
    4 or more characters alone (``AB-1234-XY`` -> ``1234``). Shorter pieces (and IDs shorter
    than 3 characters) are left: a bare "12" in a note is a measurement more often than an
    ID."""
    out = {value} if len(value) >= 3 else set()  # "12" alone is a measurement more often
    tokens = [t for t in re.split(r"[^0-9A-Za-z]+", value) if t]
    if len(tokens) > 1:
        out |= {"".join(tokens), " ".join(tokens), "-".join(tokens)}
    out.update(t for t in tokens if len(t) >= 4 and any(c.isdigit() for c in t))
    for run in re.findall(r"\d{4,}", value):
        out.add(run)
        stripped = run.lstrip("0")
        if len(stripped) >= 4:
            out.add(stripped)
    return out


def _place_forms(value: str) -> set[str]:
    """An address or place: the whole value and each of its parts between ``^``, commas,
    semicolons and line breaks (street, town, postcode) of 3 or more characters."""
    out = {value, " ".join(value.split())}
    parts = [p.strip() for p in re.split(r"[\^,;\r\n]+", value)]
    out.update(p for p in parts if len(p) >= 3)
    return out


def _dates(value: str) -> set[str]:
    """A DICOM date (DA ``YYYYMMDD`` or the start of a DT) and its written forms."""
    da = value.strip()[:8]
    return {da, *_date_forms(da)} if re.fullmatch(r"\d{8}", da) else set()


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
            if y == y4:  # month and year alone ("March 2024") still date the study
                out |= {f"{name} {y}", f"{name}, {y}", f"{name}-{y}"}
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


# ----------------------------------------------------------------------------------------------
# the de-identification declared in exported DICOM (PS3.3 C.7.1.1, PS3.15 E.1, CID 7050)

METHOD = "CXR-LT Desktop export, PS3.15 Basic Profile"


@dataclass(frozen=True)
class DeidDeclaration:
    """What a de-identified export did to the DICOM objects it writes, as declared in them.

    Attributes
    ----------
    dates_shifted : bool
        Every date of a patient moved by the patient's offset: option 113107 (Retain
        Longitudinal Temporal Information Modified Dates); else the dates are kept as they
        were, option 113106 (Full Dates).
    sex_kept : bool
        PatientSex written: option 113108 (Retain Patient Characteristics).
    structured_content : bool
        The object carries SR content written by the app with pseudonymous observers and no
        free text from the patient's record: option 113104 (Clean Structured Content).
    """

    dates_shifted: bool
    sex_kept: bool = True
    structured_content: bool = False

    def codes(self) -> list[tuple[str, str]]:
        """(code value, meaning) of the profile and each option used, scheme DCM."""
        out = [("113100", "Basic Application Confidentiality Profile")]
        if self.structured_content:
            out.append(("113104", "Clean Structured Content Option"))
        if self.dates_shifted:
            out.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
        else:
            out.append(("113106", "Retain Longitudinal Temporal Information Full Dates Option"))
        if self.sex_kept:
            out.append(("113108", "Retain Patient Characteristics Option"))
        return out

    def methods(self) -> list[str]:
        """DeidentificationMethod: one LO value (at most 64 characters) per step taken."""
        out = [
            METHOD,
            "IDs and UIDs replaced by salted-hash pseudonyms",
            "names, birth date, accession, institution removed",
        ]
        out.append("dates shifted by a per-patient offset" if self.dates_shifted else "dates kept")
        if self.structured_content:
            out.append("observer names pseudonymised")
        return out

    def apply(self, ds: Any) -> None:
        """Write the declaration into ``ds`` (a pydicom Dataset)."""
        from pydicom.dataset import Dataset

        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = self.methods()
        items = []
        for value, meaning in self.codes():
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = items
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.dates_shifted else "UNMODIFIED"
        )
