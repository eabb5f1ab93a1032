"""Engine, sessions, SQLite pragmas, write retries and Alembic migrations of the store.

The URL stays portable: SQLite-specific work (pragmas, ``BEGIN IMMEDIATE``) happens only when
the dialect is sqlite, and queries elsewhere use the ORM / Core expression language only, so a
department can point several workstations at one PostgreSQL database.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class StoreError(Exception):
    """The database URL or file cannot be used (the message says why and how to fix it)."""


def default_url() -> str:
    """``sqlite:///<data_dir()>/cxrlt.db``: the store unless ``--db URL`` or settings say otherwise."""
    from cxrlt_desktop.paths import data_dir

    return f"sqlite:///{(data_dir() / 'cxrlt.db').as_posix()}"


def _is_locked(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def make_engine(url: str, *, create: bool = True) -> Engine:
    """Create the SQLAlchemy engine for ``url`` with the store's connection settings.

    For SQLite: a file database only (an in-memory database is not shared between the threads
    and processes the app uses), WAL journal, foreign keys on, a 30 s busy timeout, and
    transactions begun with ``BEGIN`` (reads) or ``BEGIN IMMEDIATE`` (writes, see
    :meth:`Store.session`) so that two writers queue on the busy timeout instead of failing
    when one upgrades a read snapshot to a write. With ``create=False`` a SQLite file that does
    not exist is an error instead of a new empty database.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError/ValueError
        raise StoreError(f"database URL {url!r} is not valid: {exc}") from exc
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # noqa: BLE001 - unknown dialect, missing driver
            raise StoreError(f"database URL {url!r} cannot be used: {exc}") from exc
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise StoreError(
            f"database URL {url!r} is an in-memory SQLite database; give a file, "
            "e.g. sqlite:////path/to/cxrlt.db"
        )
    path = Path(database).expanduser()
    if not create and not database.startswith("file:") and not path.is_file():
        raise StoreError(
            f"the database {str(path)!r} does not exist (nothing has been scanned into it); "
            "check --db, or create it with `cxrlt scan FOLDER`"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder {str(path.parent)!r} for the database: {exc.strerror or exc}"
        ) from exc
    engine = create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI types
        # Take transaction control from the sqlite3 module, so "begin" below decides the mode.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        # FULL: a committed verdict survives a power cut, not only a crash of the app.
        cur.execute("PRAGMA synchronous = FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


class Store:
    """One database: the engine plus session factories.

    Use one session per user action or worker batch::

        with store.session() as s, s.begin():          # read (or small write)
            ...
        with store.session(write=True) as s, s.begin():  # write: BEGIN IMMEDIATE on SQLite
            ...
        store.write(lambda s: ...)                      # write with retry on "database is locked"
    """

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._read = sessionmaker(bind=engine, expire_on_commit=False)
        writer = engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else engine
        self._write = sessionmaker(bind=writer, expire_on_commit=False)

    def session(self, *, write: bool = False) -> Session:
        """A new Session; ``write=True`` takes the write lock at BEGIN (SQLite)."""
        return (self._write if write else self._read)()

    def write(self, fn: Callable[[Session], T], *, retries: int = 8) -> T:
        """Run ``fn(session)`` in one write transaction, retrying when the database is locked.

        The busy timeout already waits 30 s for another writer; a retry covers the rare case
        where SQLite reports ``database is locked`` without waiting (e.g. a checkpoint in
        progress) or the timeout ran out under heavy load. ``fn`` must be safe to re-run: the
        failed attempt's transaction was rolled back.
        """
        for attempt in range(retries + 1):
            try:
                with self.session(write=True) as s, s.begin():
                    return fn(s)
            except OperationalError as exc:
                if attempt == retries or not _is_locked(exc):
                    raise
                delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
                log.warning("database locked, retrying in %.2f s (%s)", delay, exc.orig)
                time.sleep(delay)
        raise AssertionError("unreachable")

    @contextmanager
    def raw_connection(self) -> Iterator:
        """A DBAPI connection (for PRAGMA checks in tests and tools)."""
        conn = self.engine.raw_connection()
        try:
            yield conn
        finally:
            conn.close()

    def close(self) -> None:
        """Release all pooled connections."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"


def alembic_config(url: str | None = None):  # noqa: ANN201 - alembic imported lazily
    """An Alembic Config whose script_location is inside the package (works frozen too)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(store: Store, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (idempotent; concurrent openers wait for each other)."""
    from alembic import command

    cfg = alembic_config()
    writer = (
        store.engine.execution_options(sqlite_begin="IMMEDIATE")
        if store.is_sqlite
        else store.engine
    )
    for attempt in range(6):
        try:
            with writer.connect() as conn:
                if store.is_sqlite:
                    # SQLite's documented procedure for schema changes that rebuild tables
                    # (Alembic batch mode): foreign keys off outside the transaction, checked
                    # before commit.
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
                try:
                    with conn.begin():
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, revision)
                        if store.is_sqlite:
                            bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                            if bad:
                                raise StoreError(f"migration left broken foreign keys: {bad[:5]}")
                finally:
                    if store.is_sqlite:
                        conn.connection.driver_connection.execute("PRAGMA foreign_keys = ON")
            return
        except OperationalError as exc:
            if attempt == 5 or not _is_locked(exc):
                raise
            time.sleep(0.1 * 2**attempt)


def current_revision(store: Store) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
