"""A study's priors in the library: the same patient's earlier chest radiograph studies.

- :func:`prior_studies` - the patient's other chest studies (same PatientID: the library's
  patient row), newest first, with their dates, views and the image to show.
- :func:`choose_prior` - the most recent study dated before the open one (what the comparison
  layout shows first; the reader can pick another from :func:`prior_studies`).
- :func:`prior_image` - in a prior study, the image of the same view as the current image, else
  the first in reading order.
- :func:`interval_text` - "4 years 2 months earlier".

A study without a PatientID has a patient of its own (``study:<uid>``), so it never gets a
prior; another patient's study never qualifies. "Chest" is what the library holds as usable: a
usable radiograph (CR/DX or unspecified modality) whose body part is CHEST or not given.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from cxrlt_desktop.store import Store
from cxrlt_desktop.store.models import Image, Series, Study

CHEST_MODALITIES = ("CR", "DX")


@dataclass(frozen=True)
class PriorImage:
    image_id: int
    path: str
    view: str | None


@dataclass(frozen=True)
class PriorCandidate:
    """A study of the same patient the comparison layout can show."""

    study_uid: str
    study_date: str  # DICOM DA, "" when undated
    description: str
    images: tuple[PriorImage, ...]  # usable chest images, reading order

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.view for i in self.images if i.view))

    def label(self) -> str:
        """ "2019-03-04  PA, LL  CHEST PA" (the prior list's text)."""
        views = ", ".join(self.views) or "view ?"
        return f"{format_date(self.study_date)}  {views}  {self.description}".rstrip()


def format_date(da: str | None) -> str:
    """DICOM DA "YYYYMMDD" as "YYYY-MM-DD" ("undated" when absent or malformed)."""
    if not da or len(da) != 8 or not da.isdigit():
        return "undated"
    return f"{da[:4]}-{da[4:6]}-{da[6:]}"


def _is_chest(modality: str | None, body_part: str | None) -> bool:
    if modality and modality.upper() not in CHEST_MODALITIES:
        return False
    return not body_part or body_part.strip().upper() == "CHEST"


def prior_studies(store: Store, study_uid: str) -> list[PriorCandidate]:
    """The patient's other chest studies in the library, newest first (undated last)."""
    with store.session() as s, s.begin():
        patient = s.scalar(select(Study.patient_id).where(Study.study_uid == study_uid))
        if patient is None:
            return []
        rows = s.execute(
            select(
                Study.id,
                Study.study_uid,
                Study.study_date,
                Study.description,
                Series.modality,
                Series.body_part,
                Series.series_number,
                Image.id,
                Image.path,
                Image.view_position,
                Image.instance_number,
            )
            .join(Series, Series.study_id == Study.id)
            .join(Image, Image.series_id == Series.id)
            .where(
                Study.patient_id == patient,
                Study.study_uid != study_uid,
                Image.usable.is_(True),
                Image.missing.is_(False),
            )
        ).all()
    studies: dict[int, dict] = {}
    for sid, uid, date, desc, mod, part, sn, iid, path, view, inst in rows:
        if not _is_chest(mod, part):
            continue
        st = studies.setdefault(sid, {"uid": uid, "date": date or "", "desc": desc or "", "im": []})
        st["im"].append((sn is None, sn or 0, inst is None, inst or 0, iid, path, view))
    out = []
    for sid, st in studies.items():
        images = tuple(PriorImage(i[4], i[5], i[6]) for i in sorted(st["im"]))
        out.append(
            (
                st["date"] == "",
                st["date"],
                sid,
                PriorCandidate(st["uid"], st["date"], st["desc"], images),
            )
        )
    # newest first, undated last; ties: the later-added study first
    out.sort(key=lambda t: (t[0], _neg(t[1]), -t[2]))
    return [t[3] for t in out]


def _neg(date: str) -> str:
    # descending order of "YYYYMMDD" strings through an ascending sort
    return "".join(chr(ord("9") - ord(c) + ord("0")) if c.isdigit() else c for c in date)


def study_date(store: Store, study_uid: str) -> str:
    with store.session() as s, s.begin():
        return s.scalar(select(Study.study_date).where(Study.study_uid == study_uid)) or ""


def choose_prior(
    store: Store, study_uid: str, candidates: list[PriorCandidate] | None = None
) -> PriorCandidate | None:
    """The most recent chest study of the same patient dated before ``study_uid``'s date (None
    when there is none, or the open study is undated)."""
    current = study_date(store, study_uid)
    if not current:
        return None
    for c in prior_studies(store, study_uid) if candidates is None else candidates:
        if c.study_date and c.study_date < current:
            return c
    return None


def prior_image(candidate: PriorCandidate, view: str | None) -> PriorImage | None:
    """The prior's image of the same view as the current image, else its first image."""
    if not candidate.images:
        return None
    if view:
        for im in candidate.images:
            if (im.view or "").upper() == view.upper():
                return im
    return candidate.images[0]


def interval_text(current: str | None, prior: str | None) -> str:
    """How long before ``current`` the ``prior`` was taken (DICOM DA dates): "4 years 2 months
    earlier", "3 months earlier", "12 days earlier", "same day", or "" when either is undated."""
    from datetime import date

    def parse(da: str | None) -> date | None:
        try:
            return date(int(da[:4]), int(da[4:6]), int(da[6:8])) if da and len(da) == 8 else None
        except ValueError:
            return None

    a, b = parse(current), parse(prior)
    if a is None or b is None:
        return ""
    later = a >= b
    hi, lo = (a, b) if later else (b, a)
    months = (hi.year - lo.year) * 12 + (hi.month - lo.month) - (hi.day < lo.day)
    word = "earlier" if later else "later"
    if months <= 0:
        days = (hi - lo).days
        if days == 0:
            return "same day"
        return f"{days} day{'s' if days != 1 else ''} {word}"
    years, months = divmod(months, 12)
    parts = []
    if years:
        parts.append(f"{years} year{'s' if years != 1 else ''}")
    if months:
        parts.append(f"{months} month{'s' if months != 1 else ''}")
    return " ".join(parts) + f" {word}"


__all__ = [
    "PriorCandidate",
    "PriorImage",
    "choose_prior",
    "format_date",
    "interval_text",
    "prior_image",
    "prior_studies",
    "study_date",
]
