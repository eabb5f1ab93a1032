"""Engine, sessions, SQLite pragmas, write retries and Alembic migrations of the store.

The URL stays portable: SQLite-specific work (pragmas, ``BEGIN IMMEDIATE``) happens only when
the dialect is sqlite, and queries elsewhere use the ORM / Core expression language only, so a
department can point several workstations at one PostgreSQL database.
"""

from __future__ import annotations

import logging
import os
import random
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cxrlt_desktop.store import notify

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10  # PostgreSQL: give up on an unreachable server (unless the URL says)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
DB_FILE_MODE = 0o600  # the database holds names, birth dates and IDs: the user's only
DB_DIR_MODE = 0o700
# What SQLite says about a file it cannot read as a database (sqlite3.DatabaseError texts).
_DAMAGE_WORDS = ("malformed", "not a database", "corrupt")


class StoreError(Exception):
    """The database URL or file cannot be used (the message says why and how to fix it)."""


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases, ``file:`` URIs and bad URLs)."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - sqlalchemy raises ArgumentError/ValueError
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database.startswith("file:"):
        return None
    if database == ":memory:":
        return None
    return Path(database).expanduser()


def display_url(url: str) -> str:
    """``url`` as messages show it: a SQLite file's path, another database's URL with its
    password hidden."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL at all: nothing to hide
        return url


def error_text(exc: BaseException) -> str:
    """The database's own words for ``exc`` on one line (for a SQLAlchemy error: the driver's
    message, without the statement and the link SQLAlchemy appends)."""
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split()) or type(orig).__name__


def damage_message(where: str | os.PathLike[str], exc: BaseException) -> str | None:
    """The user's message when ``exc`` says the database file is damaged, else None.

    ``where`` names the file (or URL). SQLite reports a damaged file as "database disk image is
    malformed" or "file is not a database"; the message says what to do about it.
    """
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if not any(word in text.lower() for word in _DAMAGE_WORDS):
        return None
    return (
        f"{where}: is damaged (SQLite says: {text}); restore it from a backup or rescan into "
        "a new library with --db NEW"
    )


def _not_a_library(path: Path, why: str) -> StoreError:
    return StoreError(
        f"{path}: not a CXR-LT library ({why}); check --db, or scan into a new library with "
        "`cxrlt scan FOLDER --db NEW`"
    )


def check_database_file(path: Path, *, create: bool) -> None:
    """Check (or create) a SQLite database file before SQLite opens it.

    - Missing: an error unless ``create``; then an empty file is created with mode 0600 (and
      its folder 0700), so the database, its WAL and shared-memory files (SQLite gives those
      the database's mode) are the user's only, whatever the umask.
    - Not a regular file (a folder, a FIFO, a device): an error.
    - 0 bytes: an error unless ``create`` (a command that reads a library must not treat a
      truncated or mistyped file as a new empty library).
    - Anything else that does not start with the SQLite header: an error.
    - An existing database (and its -wal/-shm/-journal files) readable by others is made 0600.

    Raises
    ------
    StoreError
        With the file's path and what is wrong in one line.
    """
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        if not create:
            raise StoreError(
                f"{path}: the database does not exist (nothing has been scanned into it); "
                "check --db, or create it with `cxrlt scan FOLDER`"
            ) from None
        _create_private_file(path)
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the database file ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise _not_a_library(path, "a folder, not a database file")
    if not stat.S_ISREG(st.st_mode):
        raise _not_a_library(path, "not a regular file")
    if st.st_size == 0:
        if create:
            _make_private(path)
            return
        raise _not_a_library(path, "0 bytes")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the database file ({exc.strerror or exc})") from exc
    if head != SQLITE_MAGIC:
        raise _not_a_library(path, f"{st.st_size} bytes that are not an SQLite database")
    _check_tables(path, create=create)
    for p in (path, *(path.with_name(path.name + x) for x in ("-wal", "-shm", "-journal"))):
        _make_private(p)


def _check_tables(path: Path, *, create: bool) -> None:
    """Refuse an SQLite database that is not a CXR-LT library, or whose schema is damaged.

    Read through a read-only connection, before the store's own connections switch the file
    to WAL mode: another program's database is left exactly as it was. A database with tables
    but no ``alembic_version`` belongs to another program (migrating it would add the
    library's tables to it); with ``create=False`` an empty database is refused too (nothing
    was ever scanned into it).
    """
    import sqlite3

    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            names = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            damage_message(path, exc) or f"{path}: cannot open the database ({exc})"
        ) from exc
    if not names:
        if not create:
            raise _not_a_library(path, "an empty SQLite database")
        return
    if "alembic_version" not in names:
        raise _not_a_library(
            path, "an SQLite database of another program: no alembic_version table"
        )


def _create_private_file(path: Path) -> None:
    """An empty file with mode 0600 (its missing folders 0700), unless another process made
    it first."""
    from cxrlt_desktop.paths import private_dir

    try:
        private_dir(path.parent)
    except OSError as exc:
        raise StoreError(
            f"{path.parent}: cannot create the folder for the database ({exc.strerror or exc})"
        ) from exc
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the database ({exc.strerror or exc})") from exc
    os.close(fd)


def _make_private(path: Path) -> None:
    """Take group and other access away from one of the database's files (when it is ours)."""
    if os.name != "posix":
        return
    try:
        st = path.stat()
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, stat.S_IMODE(st.st_mode) & DB_FILE_MODE)
    except OSError:
        pass  # missing (no WAL yet) or not ours: nothing to do


def check_server_database(engine: Engine, url: str, *, create: bool) -> None:
    """Refuse a server database (PostgreSQL) that is not a CXR-LT library before migrating it.

    A database with tables but no ``alembic_version`` belongs to another program (migrating it
    would add the library's tables to it); with ``create=False`` an empty database is refused
    too (commands that read a library must not create one in a mistyped database).

    Raises
    ------
    StoreError
        With the URL (password hidden) and what is wrong in one line.
    """
    from sqlalchemy import inspect

    where = display_url(url)
    names = set(inspect(engine).get_table_names())
    if names and "alembic_version" not in names:
        raise StoreError(
            f"{where}: not a CXR-LT library (a database of another program: {len(names)} "
            "tables, no alembic_version); give an empty database or a library's"
        )
    if not names and not create:
        raise StoreError(
            f"{where}: an empty database, not a CXR-LT library (nothing has been scanned into "
            "it); check --db, or create the library with `cxrlt db upgrade --db URL`"
        )


def default_url() -> str:
    """``sqlite:///<data_dir()>/cxrlt.db``: the store unless ``--db URL`` or settings say otherwise."""
    from cxrlt_desktop.paths import data_dir

    return f"sqlite:///{(data_dir() / 'cxrlt.db').as_posix()}"


# PostgreSQL's SQLSTATEs for a transaction that is worth running again as it is:
# serialization_failure, deadlock_detected, lock_not_available.
RETRY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
# The key of the transaction-level advisory lock the migrations run under on PostgreSQL (any
# fixed 64-bit number; "cxrltmig" in ASCII).
MIGRATION_LOCK_KEY = 0x6378726C746D6967


def _is_locked(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def retry_reason(exc: BaseException) -> str | None:
    """Why the transaction that raised ``exc`` may simply be run again, or None.

    - SQLite: the database is locked or busy (another writer, a checkpoint).
    - PostgreSQL: SQLSTATE 40001 (serialization failure), 40P01 (deadlock detected) or 55P03
      (lock not available).
    - Any database: the connection was dropped (server restart, network, idle timeout); the
      pool has discarded it, so the next attempt gets a new one.

    Everything else (constraint violations, syntax, a damaged file) is not retried.
    """
    if not isinstance(exc, DBAPIError):
        return None
    if exc.connection_invalidated:
        return "connection lost"
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in RETRY_SQLSTATES:
        return f"SQLSTATE {sqlstate}"
    if isinstance(exc, OperationalError) and _is_locked(exc):
        return "database locked"
    return None


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def make_engine(url: str, *, create: bool = True) -> Engine:
    """Create the SQLAlchemy engine for ``url`` with the store's connection settings.

    For SQLite: a file database only (an in-memory database is not shared between the threads
    and processes the app uses), WAL journal, foreign keys on, a 30 s busy timeout, and
    transactions begun with ``BEGIN`` (reads) or ``BEGIN IMMEDIATE`` (writes, see
    :meth:`Store.session`) so that two writers queue on the busy timeout instead of failing
    when one upgrades a read snapshot to a write. With ``create=False`` a SQLite file that does
    not exist (or has 0 bytes) is an error instead of a new empty database; a file that is not
    an SQLite database is always one (:func:`check_database_file`). A new database file is
    created with mode 0600. For PostgreSQL: pre-ping, a connect timeout, and every write
    transaction announcing its changes with NOTIFY at commit (:mod:`.notify`).
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError/ValueError
        raise StoreError(f"database URL {url!r} is not valid: {exc}") from exc
    if parsed.get_backend_name() != "sqlite":
        connect_args = {}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S  # a server that is down
        try:
            engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        except Exception as exc:  # noqa: BLE001 - unknown dialect, missing driver
            raise StoreError(f"database URL {url!r} cannot be used: {exc}") from exc
        notify.install(engine)  # PostgreSQL: each write transaction NOTIFYs what it changed
        return engine
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise StoreError(
            f"database URL {url!r} is an in-memory SQLite database; give a file, "
            "e.g. sqlite:////path/to/cxrlt.db"
        )
    path = sqlite_path(url)
    if path is not None:
        check_database_file(path, create=create)
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
        # SQLite's own lower() folds ASCII only (ilike compiles to lower(x) LIKE lower(y)):
        # Python's str.lower, like PostgreSQL's, folds every script, so "müller" finds MÜLLER.
        dbapi_conn.create_function("lower", 1, _unicode_lower, deterministic=True)

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
        """Run ``fn(session)`` in one write transaction, retrying transient failures.

        On SQLite the busy timeout already waits 30 s for another writer; a retry covers the
        rare case where SQLite reports ``database is locked`` without waiting (e.g. a
        checkpoint in progress) or the timeout ran out under heavy load. On PostgreSQL a
        serialization failure, a deadlock or a lock that is not available (SQLSTATE 40001,
        40P01, 55P03) is retried, and on both a dropped connection (:func:`retry_reason`).
        ``fn`` must be safe to re-run: the failed attempt's transaction was rolled back.
        """
        for attempt in range(retries + 1):
            try:
                with self.session(write=True) as s, s.begin():
                    return fn(s)
            except DBAPIError as exc:
                reason = retry_reason(exc)
                if attempt == retries or reason is None:
                    raise
                delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
                log.warning("%s, retrying in %.2f s (%s)", reason, delay, exc.orig)
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
    """Migrate the database to ``revision`` (idempotent; concurrent openers wait for each other).

    The whole upgrade is one transaction. On SQLite it begins with ``BEGIN IMMEDIATE``; on
    PostgreSQL (transactional DDL) it first takes ``pg_advisory_xact_lock``, so a second
    process upgrading at the same moment waits, then finds the schema at head and does
    nothing.
    """
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
                        if conn.dialect.name == "postgresql":
                            conn.exec_driver_sql(
                                f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
                            )
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
        except DBAPIError as exc:
            if attempt == 5 or retry_reason(exc) is None:
                raise
            time.sleep(0.1 * 2**attempt)


def current_revision(store: Store) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
