"""Soft study claims: "being read by NAME" marks that warn other readers and never block.

Opening a study claims it for the reader (:func:`claim_study`), with a lease the workstation
renews while the study stays open (:func:`renew`) and gives back on close or switch
(:func:`release`). A claim whose lease ran out (the workstation crashed, the network went)
counts for nothing: :func:`readers_of` lists only live claims, and every claim removes the
expired ones. Nothing here stops a second reader from opening the study: the mark is
information, not a lock.

Lease times come from the database server's clock on PostgreSQL (workstations' clocks may
differ), from this machine's on SQLite. Every change NOTIFYs the other workstations
(:mod:`cxrlt_desktop.store.notify`, kind ``"claim"``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cxrlt_desktop.store import Store
from cxrlt_desktop.store.notify import notify
from cxrlt_desktop.store.tables_department import StudyClaim

DEFAULT_LEASE_S = 90.0  # the GUI renews every third of this while a study is open


@dataclass(frozen=True)
class Reader:
    """A live claim: who reads the study, where, since when (UTC)."""

    name: str
    workstation: str | None
    since: datetime


def _now(s: Session) -> datetime:
    """The time leases are measured in: the server's clock on PostgreSQL, else this machine's."""
    if s.get_bind().dialect.name == "postgresql":
        return _aware(s.scalar(select(func.now())))
    return datetime.now(UTC)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _check(reader: str, lease_s: float) -> str:
    if not isinstance(reader, str) or not reader.strip():
        raise ValueError('a reader name is needed (set it in the settings: reviewer = "...")')
    if not lease_s > 0:
        raise ValueError(f"the lease must be positive, got {lease_s!r} s")
    return reader.strip()


def claim_study(
    store: Store,
    study_id: int,
    reader: str,
    workstation: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> datetime:
    """Mark ``study_id`` as being read by ``reader`` until ``lease_s`` seconds from now (an
    upsert: claiming again moves the lease and keeps the first claim's time). Returns the
    lease's end. Expired claims of every study are removed on the way."""
    reader = _check(reader, lease_s)

    def work(s: Session) -> datetime:
        now = _now(s)
        until = now + timedelta(seconds=lease_s)
        s.execute(delete(StudyClaim).where(StudyClaim.lease_until < now))
        dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(StudyClaim).values(
            study_id=study_id,
            reader=reader,
            workstation=workstation,
            claimed_at=now,
            lease_until=until,
        )
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["study_id", "reader"],
                set_={"workstation": workstation, "lease_until": until},
            )
        )
        notify(s, "claim", study_id=study_id)
        return until

    return store.write(work)


def renew(
    store: Store,
    study_id: int,
    reader: str,
    workstation: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> datetime:
    """Extend the reader's claim of the study (claiming it again if it expired meanwhile and
    was removed). Returns the lease's end."""
    reader = _check(reader, lease_s)

    def work(s: Session) -> datetime | None:
        until = _now(s) + timedelta(seconds=lease_s)
        n = s.execute(
            update(StudyClaim)
            .where(StudyClaim.study_id == study_id, StudyClaim.reader == reader)
            .values(lease_until=until, workstation=workstation)
        ).rowcount
        return until if n else None

    until = store.write(work)  # a renewal changes nothing others see: no notification
    return until or claim_study(store, study_id, reader, workstation, lease_s)


def release(store: Store, study_id: int, reader: str) -> bool:
    """Remove the reader's claim of the study; True when there was one."""

    def work(s: Session) -> bool:
        n = s.execute(
            delete(StudyClaim).where(
                StudyClaim.study_id == study_id, StudyClaim.reader == reader.strip()
            )
        ).rowcount
        if n:
            notify(s, "claim", study_id=study_id)
        return bool(n)

    return store.write(work)


def readers_of(
    store: Store, study_ids: Iterable[int] | None = None, *, exclude: str | None = None
) -> dict[int, list[Reader]]:
    """The live claims of these studies (None: of every study), by study, oldest first;
    ``exclude`` leaves out one reader (the workstation's own)."""
    ids = None if study_ids is None else sorted(set(study_ids))
    out: dict[int, list[Reader]] = {}
    if ids == []:
        return out
    with store.session() as s, s.begin():
        q = select(StudyClaim).where(StudyClaim.lease_until >= _now(s))
        if ids is not None:
            q = q.where(StudyClaim.study_id.in_(ids))
        if exclude:
            q = q.where(StudyClaim.reader != exclude.strip())
        for c in s.scalars(q.order_by(StudyClaim.claimed_at, StudyClaim.reader)):
            out.setdefault(c.study_id, []).append(
                Reader(c.reader, c.workstation, _aware(c.claimed_at))
            )
    return out


def being_read_text(readers: list[Reader]) -> str:
    """ "being read by NAME" (several: "NAME and NAME", "NAME, NAME and NAME"); "" for none."""
    names = [r.name for r in readers]
    if not names:
        return ""
    shown = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"being read by {shown}"


__all__ = [
    "DEFAULT_LEASE_S",
    "Reader",
    "being_read_text",
    "claim_study",
    "readers_of",
    "release",
    "renew",
]
