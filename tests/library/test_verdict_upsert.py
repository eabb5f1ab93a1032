"""Two readers writing the same verdict (or note) at the same moment both succeed: the last
writer's value stays, both writes are in the audit trail, and the second one's "old" value is
the first one's verdict. Real concurrency: two threads, each with its own store (connections),
on PostgreSQL and on SQLite.

The race is made certain, not left to chance: a third connection holds the lock both writers
need (PostgreSQL: the study row; SQLite: the database write lock) until both are waiting, then
lets go. Written as "read the row, insert when missing", the second writer would fail with a
unique violation on PostgreSQL.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from cxrlt_desktop.library.reviews import image_note, image_verdicts, set_image_note, set_verdict
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.models import AuditEvent, Image, Series, Study


@pytest.fixture
def library(store_url, tmp_path, write_study):
    """(url, image ids, study id) of a library with one two-image study."""
    st = open_store(store_url)
    write_study(tmp_path / "r", 2)
    for _ in scan(st, [tmp_path / "r"]):
        pass
    with st.session() as s, s.begin():
        ids = s.scalars(select(Image.id).order_by(Image.id)).all()
        study = s.scalar(select(Series.study_id).join(Image, Image.series_id == Series.id))
    st.close()
    return store_url, ids, study


def _waiting_on_locks(admin, n: int, timeout: float = 30.0) -> None:
    """Wait until ``n`` other backends of this database wait on a lock (PostgreSQL)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        waiting = admin.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        ).scalar()
        if waiting >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"the {n} writers never waited on the held lock")


def _race(url: str, study_id: int, writes: list) -> list:
    """Run ``writes`` (functions of a store) in threads while a third connection holds the
    lock they need; returns what each returned or raised."""
    hold = open_store(url)
    stores = [open_store(url) for _ in writes]
    results: list = [None] * len(writes)

    def run(i: int) -> None:
        try:
            results[i] = writes[i](stores[i])
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(writes))]
    try:
        with hold.session(write=True) as s, s.begin():
            if hold.is_sqlite:
                s.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock is ours
            else:
                s.execute(select(Study.id).where(Study.id == study_id).with_for_update())
            for t in threads:
                t.start()
            if hold.is_sqlite:
                time.sleep(0.5)  # both reach BEGIN IMMEDIATE and wait on the busy timeout
            else:
                with hold.engine.connect() as admin:
                    _waiting_on_locks(admin, len(writes))
        for t in threads:
            t.join(60)
    finally:
        for st in (hold, *stores):
            st.close()
    return results


def _shown(value: dict) -> tuple:
    return value["verdict"], value["note"], value["reviewer"]


def _audit(url: str, image_id: int, action: str) -> list:
    st = open_store(url)
    try:
        with st.session() as s, s.begin():
            return s.execute(
                select(AuditEvent.actor, AuditEvent.old, AuditEvent.new)
                .where(AuditEvent.image_id == image_id, AuditEvent.action == action)
                .order_by(AuditEvent.id)
            ).all()
    finally:
        st.close()


def test_two_readers_mark_the_same_finding_at_once(library):
    url, (a, _b), study = library
    results = _race(
        url,
        study,
        [
            lambda st: set_verdict(st, a, "Pneumothorax", "present", reviewer="dr A"),
            lambda st: set_verdict(st, a, "Pneumothorax", "absent", reviewer="dr B"),
        ],
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    events = _audit(url, a, "verdict")
    assert len(events) == 2
    first, last = events
    assert first.old is None  # the first writer created the row
    # The second writer saw the first one's verdict as the old value.
    assert _shown(last.old) == _shown(first.new) and last.old["reviewer"] == first.actor
    st = open_store(url)
    try:
        v = image_verdicts(st, a)["Pneumothorax"]
        assert (v.verdict, v.reviewer) == (last.new["verdict"], last.actor)  # last writer wins
        assert {first.actor, last.actor} == {"dr A", "dr B"}
    finally:
        st.close()


def test_two_readers_mark_different_images_of_one_study_at_once(library):
    """Both verdicts count in the study's review status (computed after the other's commit)."""
    url, (a, b), study = library
    results = _race(
        url,
        study,
        [
            lambda st: set_verdict(st, a, "Mass", "present", reviewer="dr A"),
            lambda st: set_verdict(st, b, "Mass", "absent", reviewer="dr B"),
        ],
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.review_status for r in results) == ["partial", "reviewed"]
    st = open_store(url)
    try:
        with st.session() as s, s.begin():
            assert s.scalar(select(Study.review_status).where(Study.id == study)) == "reviewed"
    finally:
        st.close()


def test_two_readers_write_the_same_note_at_once(library):
    url, (a, _b), study = library
    results = _race(
        url,
        study,
        [
            lambda st: set_image_note(st, a, "old films first", reviewer="dr A"),
            lambda st: set_image_note(st, a, "compare with CT", reviewer="dr B"),
        ],
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    events = _audit(url, a, "note")
    assert len(events) == 2 and events[0].old is None
    assert events[1].old["note"] == events[0].new["note"]
    st = open_store(url)
    try:
        assert image_note(st, a) == events[1].new["note"]
    finally:
        st.close()


def test_many_readers_racing_on_one_finding(library):
    """Six writers released at once: all succeed, six audit events, each one's "old" is the
    previous one's "new", the stored verdict is the last one's."""
    url, (a, _b), study = library
    verdicts = ["present", "absent", "uncertain"] * 2
    writes = [
        (lambda st, v=v, i=i: set_verdict(st, a, "pleural effusion", v, reviewer=f"dr {i}"))
        for i, v in enumerate(verdicts)
    ]
    results = _race(url, study, writes)
    assert not [r for r in results if isinstance(r, Exception)], results
    events = _audit(url, a, "verdict")
    assert len(events) == 6
    for before, after in zip(events, events[1:], strict=False):
        assert _shown(after.old) == _shown(before.new)
    st = open_store(url)
    try:
        assert image_verdicts(st, a)["pleural effusion"].reviewer == events[-1].actor
    finally:
        st.close()
