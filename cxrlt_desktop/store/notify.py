"""The change feed: other workstations' writes reach an open window within about a second.

Writers
-------
On PostgreSQL every write transaction of a :class:`~cxrlt_desktop.store.Store` announces what
it changed with ``pg_notify('cxrlt_changes', payload)`` just before it commits, in the same
transaction (so a listener never hears of a change it cannot read yet, and a rolled-back
transaction announces nothing). :func:`install` (called by the store for every engine) watches
the INSERT/UPDATE/DELETE statements of each transaction and maps their tables to a few kinds
of change (:data:`TABLE_KINDS`); :func:`notify` adds what a writer knows beyond that (the
studies it touched). The payload is a small JSON object: ``{"what": "verdict", "study_ids":
[12]}``; too many ids are left out (``"study_ids"`` absent means "any study"). On SQLite
nothing is sent: a listener polls ``PRAGMA data_version``, which changes with every commit of
another connection.

Listeners
---------
``ChangeFeed(store).start(callback)`` calls ``callback(change)`` on its own thread for every
change (a :class:`Change`); ``stop()`` ends the thread. On PostgreSQL a dedicated connection
LISTENs; when it is lost the feed reconnects with a growing delay and then reports
``Change("all")``, since notifications sent meanwhile are not replayed. On SQLite a dedicated
connection polls ``PRAGMA data_version`` every :data:`POLL_S` seconds and reports
``Change("all")`` when it moved.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "cxrlt_changes"
POLL_S = 0.5  # SQLite: how often data_version is read
LISTEN_TIMEOUT_S = 0.5  # PostgreSQL: how long one wait for notifications lasts (stop latency)
MAX_IDS = 200  # more study ids than this: the payload says "any study"
RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)
KINDS = ("verdict", "prediction", "study", "claim", "jobs", "measurement", "all")

# Which kind of change a write to each table is. Tables not listed (audit trail, scoring
# bookkeeping) announce nothing of their own.
TABLE_KINDS = {
    "review": "verdict",
    "image_note": "verdict",
    "prediction": "prediction",
    "finding_hit": "prediction",
    "patient": "study",
    "study": "study",
    "series": "study",
    "image": "study",
    "study_claim": "claim",
    "score_job": "jobs",
    "worker": "jobs",
    "measurement": "measurement",
}

_PENDING = "cxrlt_notify_pending"  # Connection.info key: {kind: set of study ids | None}


@dataclass(frozen=True)
class Change:
    """One announced change: its kind (:data:`KINDS`) and the studies it touched (empty: any
    study, or not known)."""

    what: str
    study_ids: frozenset[int] = field(default_factory=frozenset)

    def touches(self, study_id: int | None) -> bool:
        """True when the change may concern ``study_id`` (unknown studies: always)."""
        return not self.study_ids or study_id in self.study_ids


def payload(what: str, study_ids: Iterable[int] | None = None) -> str:
    """The JSON text sent for one kind of change (ids left out beyond :data:`MAX_IDS`)."""
    body: dict = {"what": what}
    ids = sorted(set(study_ids or ()))
    if ids and len(ids) <= MAX_IDS:
        body["study_ids"] = ids
    return json.dumps(body, separators=(",", ":"))


def parse(text: str) -> Change:
    """The :class:`Change` of a payload; anything unreadable is ``Change("all")``."""
    try:
        body = json.loads(text)
        what = body["what"] if body.get("what") in KINDS else "all"
        ids = frozenset(int(i) for i in body.get("study_ids") or ())
    except (ValueError, TypeError, KeyError, AttributeError):
        return Change("all")
    return Change(what, ids)


# ---------------------------------------------------------------------------------- writers
def _pending(conn) -> tuple[set[str], dict[str, set[int]]]:  # noqa: ANN001 - Connection
    """(kinds written by statements, {kind: studies named by notify()}) of the transaction."""
    return conn.info.setdefault(_PENDING, (set(), {}))


def notify(
    session: Session,
    what: str,
    *,
    study_ids: Iterable[int] | None = None,
    study_id: int | None = None,
) -> None:
    """Announce, when ``session``'s transaction commits, a change of kind ``what`` to these
    studies (PostgreSQL; nothing on SQLite, where listeners poll).

    Writes through the store are announced by table already (:data:`TABLE_KINDS`, "any
    study"); a writer calls this to name the studies of a kind, so a window refreshes only
    what concerns it. Naming no study announces the kind for any study.
    """
    if what not in KINDS:
        raise ValueError(f"unknown change kind {what!r}")
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return
    ids = {int(i) for i in study_ids or ()}
    if study_id is not None:
        ids.add(int(study_id))
    _tables, named = _pending(conn)
    named.setdefault(what, set()).update(ids)


def install(engine: Engine) -> None:
    """Make every transaction on ``engine`` (PostgreSQL) announce its writes at commit."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(conn, _cursor, _statement, _params, context, _executemany) -> None:  # noqa: ANN001
        compiled = getattr(context, "compiled", None)
        if compiled is None or not (context.isinsert or context.isupdate or context.isdelete):
            return
        table = getattr(getattr(compiled, "statement", None), "table", None)
        what = TABLE_KINDS.get(getattr(table, "name", None))
        if what is not None:
            _pending(conn)[0].add(what)

    @event.listens_for(engine, "commit")
    def _send(conn) -> None:  # noqa: ANN001 - runs before the DBAPI commit, in the transaction
        pending = conn.info.pop(_PENDING, None)
        if not pending:
            return
        tables, named = pending
        cur = conn.connection.driver_connection.cursor()
        try:
            for what in sorted(tables | set(named)):
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload(what, named.get(what))))
        finally:
            cur.close()

    @event.listens_for(engine, "rollback")
    def _drop(conn) -> None:  # noqa: ANN001
        if not conn.invalidated:  # a dropped connection's record is discarded anyway
            conn.info.pop(_PENDING, None)

    @event.listens_for(engine, "begin")
    def _fresh(conn) -> None:  # noqa: ANN001
        conn.info.pop(_PENDING, None)


# ---------------------------------------------------------------------------------- listeners
class ChangeFeed:
    """Calls ``callback(Change)`` on a thread of its own for every change made to the store
    by any connection (PostgreSQL: LISTEN/NOTIFY; SQLite: ``PRAGMA data_version`` polling)."""

    def __init__(self, store) -> None:  # noqa: ANN001 - Store (no import cycle)
        self.store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn = None
        self.connected = threading.Event()  # set while listening (tests wait on it)
        self.reconnects = 0
        self.backend_pid: int | None = None  # PostgreSQL: the listening connection's server pid

    def start(self, callback: Callable[[Change], None]) -> ChangeFeed:
        if self._thread is not None:
            raise RuntimeError("the change feed is already running")
        self._stop.clear()
        target = self._run_sqlite if self.store.is_sqlite else self._run_postgresql
        self._thread = threading.Thread(
            target=target, args=(callback,), name="cxrlt-change-feed", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and wait for the thread (at most ``timeout`` seconds)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ SQLite
    def _run_sqlite(self, callback: Callable[[Change], None]) -> None:
        from cxrlt_desktop.store.db import BUSY_TIMEOUT_MS, sqlite_path

        path = sqlite_path(self.store.url)
        conn = None
        last = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    uri = f"{path.resolve().as_uri()}?mode=ro"
                    conn = sqlite3.connect(
                        uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
                    )
                    last = conn.execute("PRAGMA data_version").fetchone()[0]
                    self.connected.set()
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version
                    _call(callback, Change("all"))
            except sqlite3.Error as exc:
                log.warning("change feed: %s: %s", path, exc)
                self.connected.clear()
                if conn is not None:
                    conn.close()
                    conn = None
                    _call(callback, Change("all"))
            self._stop.wait(POLL_S)
        if conn is not None:
            conn.close()
        self.connected.clear()

    # ------------------------------------------------------------------ PostgreSQL
    def _connect_postgresql(self):  # noqa: ANN202 - psycopg.Connection
        import psycopg

        from cxrlt_desktop.store.db import CONNECT_TIMEOUT_S

        engine = self.store.engine
        _args, kwargs = engine.dialect.create_connect_args(engine.url)
        kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        conn = psycopg.connect(**kwargs, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _run_postgresql(self, callback: Callable[[Change], None]) -> None:
        import psycopg

        failures = 0
        lost = False
        while not self._stop.is_set():
            try:
                self._conn = self._connect_postgresql()
            except psycopg.Error as exc:
                delay = RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S) - 1)]
                failures += 1
                log.warning(
                    "change feed: cannot listen (%s); again in %.1f s", _one_line(exc), delay
                )
                self._stop.wait(delay)
                continue
            failures = 0
            self.backend_pid = self._conn.info.backend_pid
            self.connected.set()
            if lost:  # notifications sent while away are not replayed: re-read everything
                self.reconnects += 1
                _call(callback, Change("all"))
            try:
                while not self._stop.is_set():
                    for note in self._conn.notifies(timeout=LISTEN_TIMEOUT_S):
                        _call(callback, parse(note.payload))
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning("change feed: connection lost (%s); reconnecting", _one_line(exc))
                lost = True
            finally:
                self.connected.clear()
                try:
                    self._conn.close()
                except psycopg.Error:
                    pass
                self._conn = None


def _call(callback: Callable[[Change], None], change: Change) -> None:
    try:
        callback(change)
    except Exception:  # noqa: BLE001 - a listener's bug must not end the feed
        log.exception("change feed callback failed")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = [
    "CHANNEL",
    "Change",
    "ChangeFeed",
    "TABLE_KINDS",
    "install",
    "notify",
    "parse",
    "payload",
]
