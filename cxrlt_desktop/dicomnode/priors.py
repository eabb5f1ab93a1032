"""Fetching a patient's earlier studies from a PACS (the priors already in the library are
:func:`cxrlt_desktop.library.priors.prior_studies`).

- :func:`fetch_priors` - ask a PACS for the patient's CR/DX studies dated up to the open study's
  date, retrieve those the library does not hold (:func:`.qr.retrieve_study`) and add them to
  the library; a generator of :class:`PriorsProgress` (the GUI runs it in a background worker,
  ``should_stop`` cancels between objects).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cxrlt_desktop.dicomnode.destinations import Destination
from cxrlt_desktop.dicomnode.inbox import Inbox

PRIOR_MODALITIES = ("CR", "DX")


@dataclass
class PriorsProgress:
    """Where a fetch is: ``stage`` is "query", "retrieve", "library" or "done"."""

    stage: str
    done: int = 0
    total: int = 0
    text: str = ""
    found: int = 0  # earlier studies the PACS reported
    retrieved: int = 0  # studies retrieved now
    images: int = 0  # images added to the library
    problems: list[str] = field(default_factory=list)
    cancelled: bool = False


@dataclass(frozen=True)
class Subject:
    """The open study's patient as the PACS knows it."""

    study_uid: str
    patient_id: str | None
    study_date: str | None


def subject(store: Any, study_uid: str) -> Subject | None:
    """The patient ID and date of ``study_uid`` (None when the library has no such study)."""
    from sqlalchemy import select

    from cxrlt_desktop.store.models import Patient, Study

    with store.session() as s, s.begin():
        row = s.execute(
            select(Patient.patient_id, Patient.synthetic, Study.study_date)
            .join(Study, Study.patient_id == Patient.id)
            .where(Study.study_uid == study_uid)
        ).first()
    if row is None:
        return None
    pid, synthetic, date = row
    return Subject(study_uid, None if synthetic else (pid or None), date or None)


def _in_library(store: Any, uids: list[str]) -> set[str]:
    from sqlalchemy import select

    from cxrlt_desktop.store.models import Study

    if not uids:
        return set()
    with store.session() as s, s.begin():
        return set(s.scalars(select(Study.study_uid).where(Study.study_uid.in_(uids))))


def fetch_priors(
    store: Any,
    dest: Destination,
    calling_aet: str,
    inbox: Inbox,
    study_uid: str,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[PriorsProgress]:
    """Query ``dest`` for the patient's earlier CR/DX studies and retrieve the ones the library
    lacks. Yields progress; the last record has ``stage == "done"``.

    Raises
    ------
    QRError
        The study has no patient ID to ask for, or the PACS could not be reached.
    """
    from cxrlt_desktop.dicomnode.qr import QRError, add_to_library, find_studies, retrieve_study

    who = subject(store, study_uid)
    if who is None or not who.patient_id:
        raise QRError("the open study has no patient ID to ask the PACS for")
    prog = PriorsProgress("query", text=f"asking {dest.name} for earlier studies")
    yield prog
    date_range = f"-{who.study_date}" if who.study_date else None
    matches, problems = find_studies(
        dest,
        calling_aet,
        patient_id=who.patient_id,
        study_date=date_range,
        modalities=PRIOR_MODALITIES,
    )
    prog.problems.extend(problems)
    candidates = [
        m for m in matches if m.study_uid != study_uid and m.patient_id in ("", who.patient_id)
    ]
    prog.found = len(candidates)
    have = _in_library(store, [m.study_uid for m in candidates])
    todo = [m for m in candidates if m.study_uid not in have]
    results = []
    for k, match in enumerate(todo):
        if should_stop is not None and should_stop():
            prog.cancelled = True
            break
        prog.stage, prog.done, prog.total = "retrieve", k, len(todo)
        prog.text = f"retrieving the study of {match.study_date or 'unknown date'}"
        yield prog
        result = retrieve_study(dest, calling_aet, match.study_uid, inbox, should_stop=should_stop)
        results.append(result)
        prog.problems.extend(result.problems)
        if result.cancelled:
            prog.cancelled = True
            break
        prog.retrieved += 1
    prog.stage, prog.done = "library", len(results)
    prog.text = "adding to the library"
    yield prog
    image_ids, lib_problems = add_to_library(store, results)
    prog.images = len(image_ids)
    prog.problems.extend(lib_problems)
    prog.stage, prog.text = (
        "done",
        (
            f"{prog.found} earlier stud{'y' if prog.found == 1 else 'ies'} on {dest.name}, "
            f"{prog.retrieved} retrieved, {prog.images} image(s) added"
            + (" (cancelled)" if prog.cancelled else "")
        ),
    )
    yield prog
