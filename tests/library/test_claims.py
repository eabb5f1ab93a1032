"""Soft study claims ("being read by"): claim, renew, release, expiry, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from cxrlt_desktop.library.claims import (
    Reader,
    being_read_text,
    claim_study,
    readers_of,
    release,
    renew,
)
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.store.models import Study
from cxrlt_desktop.store.tables_department import StudyClaim


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def studies(store, tmp_path, write_study):
    for name in ("a", "b"):
        write_study(tmp_path / name, 1, patient_id=f"P{name}")
    for _ in scan(store, [tmp_path]):
        pass
    with store.session() as s, s.begin():
        return s.scalars(select(Study.id).order_by(Study.id)).all()


def _names(store, ids, exclude=None):
    return {k: [r.name for r in v] for k, v in readers_of(store, ids, exclude=exclude).items()}


def _expire(store, study_id, reader):
    """Move a claim's lease an hour into the past (a workstation that crashed long ago)."""
    past = datetime.now(UTC) - timedelta(hours=1)
    store.write(
        lambda s: s.execute(
            update(StudyClaim)
            .where(StudyClaim.study_id == study_id, StudyClaim.reader == reader)
            .values(lease_until=past)
        )
    )


def test_claim_is_seen_by_others_and_released(store, studies):
    a, b = studies
    until = claim_study(store, a, "dr A", "ws-1", lease_s=60)
    assert until > datetime.now(UTC) + timedelta(seconds=30)
    assert _names(store, studies) == {a: ["dr A"]}
    assert _names(store, studies, exclude="dr A") == {}  # the workstation's own claim
    [reader] = readers_of(store, [a])[a]
    assert (reader.name, reader.workstation) == ("dr A", "ws-1")
    assert release(store, a, "dr A") is True
    assert release(store, a, "dr A") is False
    assert readers_of(store, studies) == {}


def test_claims_never_block_a_second_reader(store, studies):
    a, _b = studies
    claim_study(store, a, "dr A", "ws-1")
    claim_study(store, a, "dr B", "ws-2")
    assert _names(store, [a]) == {a: ["dr A", "dr B"]}
    assert _names(store, [a], exclude="dr B") == {a: ["dr A"]}
    assert being_read_text(readers_of(store, [a])[a]) == "being read by dr A and dr B"


def test_expired_claims_are_ignored_and_removed(store, studies):
    a, b = studies
    claim_study(store, a, "dr A", "ws-1")
    claim_study(store, b, "dr B", "ws-2")
    _expire(store, a, "dr A")
    assert _names(store, studies) == {b: ["dr B"]}
    claim_study(store, b, "dr C", "ws-3")  # any claim sweeps the expired ones away
    with store.session() as s, s.begin():
        rows = s.execute(select(StudyClaim.study_id, StudyClaim.reader)).all()
    assert sorted(rows) == [(b, "dr B"), (b, "dr C")]


def test_renew_moves_the_lease_and_claims_again_after_expiry(store, studies):
    a, _b = studies
    claim_study(store, a, "dr A", "ws-1", lease_s=5)
    with store.session() as s, s.begin():
        first = s.scalar(select(StudyClaim.claimed_at))
    later = renew(store, a, "dr A", "ws-1", lease_s=600)
    assert later > datetime.now(UTC) + timedelta(seconds=300)
    with store.session() as s, s.begin():
        row = s.scalar(select(StudyClaim))
        assert row.claimed_at == first  # the claim's start stays
    _expire(store, a, "dr A")
    assert readers_of(store, [a]) == {}
    renew(store, a, "dr A", "ws-1", lease_s=600)
    assert _names(store, [a]) == {a: ["dr A"]}
    # A claim swept away by another reader's claim is made again by the renewal.
    _expire(store, a, "dr A")
    claim_study(store, a, "dr B")
    renew(store, a, "dr A", "ws-1")
    assert _names(store, [a]) == {a: ["dr B", "dr A"]}  # oldest claim first


def test_bad_claims_named(store, studies):
    with pytest.raises(ValueError, match="reader name"):
        claim_study(store, studies[0], "  ")
    with pytest.raises(ValueError, match="lease"):
        claim_study(store, studies[0], "dr A", lease_s=0)


def test_being_read_text():
    t = datetime.now(UTC)
    assert being_read_text([]) == ""
    assert being_read_text([Reader("dr A", None, t)]) == "being read by dr A"
    three = [Reader(n, None, t) for n in ("A", "B", "C")]
    assert being_read_text(three) == "being read by A, B and C"
