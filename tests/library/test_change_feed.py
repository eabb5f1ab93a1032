"""The change feed: a commit made through one store reaches a listener on another (PostgreSQL:
NOTIFY sent in the writer's transaction; SQLite: PRAGMA data_version polling); a rolled-back
transaction announces nothing; a listener whose connection the server kills reconnects and
reports "reload everything"."""

from __future__ import annotations

import json
import queue
import time

import pytest
from sqlalchemy import select, text

from cxrlt_desktop.library.reviews import set_verdict
from cxrlt_desktop.library.scanning import scan
from cxrlt_desktop.store import open_store
from cxrlt_desktop.store.models import Image, Patient, Series
from cxrlt_desktop.store.notify import MAX_IDS, POLL_S, Change, ChangeFeed, notify, parse, payload

WAIT_S = 20.0  # an upper bound for a failing test, not a timing claim


@pytest.fixture
def two_stores(store_url):
    """(writer, listener): two stores (engines, connections) on one library."""
    writer = open_store(store_url)
    listener = open_store(store_url)
    yield writer, listener
    writer.close()
    listener.close()


@pytest.fixture
def feed(two_stores):
    got: queue.Queue = queue.Queue()
    f = ChangeFeed(two_stores[1]).start(got.put)
    assert f.connected.wait(WAIT_S)
    yield f, got
    f.stop()
    assert not f.running


def _next(got: queue.Queue) -> Change:
    return got.get(timeout=WAIT_S)


def _drain(got: queue.Queue) -> list[Change]:
    out = []
    while not got.empty():
        out.append(got.get_nowait())
    return out


def _one_image(store, tmp_path, write_study) -> tuple[int, int]:
    write_study(tmp_path / "r", 1)
    for _ in scan(store, [tmp_path / "r"]):
        pass
    with store.session() as s, s.begin():
        image = s.scalar(select(Image.id))
        study = s.scalar(select(Series.study_id))
    return image, study


def _add_patient(key: str):
    def work(s) -> None:  # noqa: ANN001
        s.add(Patient(key=key, patient_id=key))

    return work


def test_another_stores_verdict_reaches_the_listener(two_stores, feed, tmp_path, write_study):
    writer, _listener = two_stores
    f, got = feed
    image, study = _one_image(writer, tmp_path, write_study)
    # The scan's commits (patients, studies, images) were announced: "study" on PostgreSQL,
    # "all" on SQLite (data_version says that something changed, not what).
    first = _next(got)
    assert first.what == ("all" if writer.is_sqlite else "study")
    if writer.is_sqlite:  # quiet once the scan's commits are read: no change, no report
        time.sleep(3 * POLL_S)
        _drain(got)
        time.sleep(3 * POLL_S)
        assert _drain(got) == []
    set_verdict(writer, image, "Mass", "present", reviewer="dr A")
    changes = [_next(got)]
    if writer.is_sqlite:
        assert changes[0] == Change("all")
    else:
        while changes[-1].what != "verdict":
            changes.append(_next(got))
        assert changes[-1] == Change("verdict", frozenset({study}))
        assert changes[-1].touches(study) and not changes[-1].touches(study + 1)


def test_a_rolled_back_transaction_announces_nothing(two_stores, feed):
    writer, _listener = two_stores
    _f, got = feed

    def fails(s) -> None:  # noqa: ANN001
        _add_patient("rolled-back")(s)
        s.flush()
        notify(s, "study", study_ids=[77])
        raise RuntimeError("the writer changed its mind")

    with pytest.raises(RuntimeError):
        writer.write(fails)
    writer.write(_add_patient("kept"))  # a marker: everything before it has been delivered
    change = _next(got)
    assert change.what in ("study", "all")
    assert 77 not in change.study_ids
    with writer.session() as s, s.begin():
        assert s.scalars(select(Patient.key)).all() == ["kept"]


def test_listener_reconnects_and_reloads_everything(postgres_url):
    writer, listener = open_store(postgres_url), open_store(postgres_url)
    got: queue.Queue = queue.Queue()
    f = ChangeFeed(listener).start(got.put)
    try:
        assert f.connected.wait(WAIT_S)
        first_pid = f.backend_pid
        with writer.engine.connect() as admin:
            killed = admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first_pid})
            assert killed.scalar() is True
        assert _next(got) == Change("all")  # notifications meanwhile are lost: re-read all
        assert f.reconnects == 1 and f.backend_pid != first_pid
        writer.write(_add_patient("after"))
        assert _next(got).what == "study"  # listening again
    finally:
        f.stop()
        writer.close()
        listener.close()


def test_listener_waits_for_the_server_and_resumes(postgres_url, monkeypatch):
    """A listener that cannot connect keeps trying (with a growing delay), then listens."""
    import cxrlt_desktop.store.notify as notify_mod

    listener = open_store(postgres_url)
    monkeypatch.setattr(notify_mod, "RECONNECT_DELAYS_S", (0.05,))
    f = ChangeFeed(listener)
    real = f._connect_postgresql
    calls = []

    def flaky():  # noqa: ANN202 - the first two attempts meet a server that is not there
        calls.append(1)
        if len(calls) <= 2:
            import psycopg

            return psycopg.connect("host=/nonexistent-socket-dir dbname=x connect_timeout=1")
        return real()

    f._connect_postgresql = flaky
    got: queue.Queue = queue.Queue()
    f.start(got.put)
    try:
        assert f.connected.wait(WAIT_S)
        assert len(calls) == 3
        writer = open_store(postgres_url)
        writer.write(_add_patient("x"))
        assert _next(got).what == "study"
        writer.close()
    finally:
        f.stop()
        listener.close()


def test_payload_round_trip_and_limits():
    assert parse(payload("verdict", [3, 1, 3])) == Change("verdict", frozenset({1, 3}))
    many = payload("prediction", range(MAX_IDS + 1))
    assert json.loads(many) == {"what": "prediction"}  # too many ids: any study
    assert parse(many).touches(123456)
    assert parse("not json") == Change("all")
    assert parse('{"what": "bogus"}') == Change("all")
    assert len(payload("prediction", range(MAX_IDS))) < 8000  # PostgreSQL's payload limit
