"""The study library's database: SQLAlchemy models, sessions and Alembic migrations.

>>> store = open_store()                       # sqlite file in paths.data_dir()/cxrlt.db
>>> with store.session() as s, s.begin():
...     n = s.scalar(select(func.count()).select_from(Image))

Writes on PostgreSQL announce themselves to other connections at commit (NOTIFY); a
:class:`ChangeFeed` hears them (SQLite: by polling); writers name the studies they touched
with ``cxrlt_desktop.store.notify.notify(session, kind, study_ids=...)``, see :mod:`.notify`.
"""

from __future__ import annotations

from cxrlt_desktop.store.db import (
    Store,
    StoreError,
    check_server_database,
    current_revision,
    damage_message,
    default_url,
    display_url,
    error_text,
    make_engine,
    upgrade,
)
from cxrlt_desktop.store.notify import Change, ChangeFeed

__all__ = [
    "Change",
    "ChangeFeed",
    "Store",
    "StoreError",
    "open_store",
    "default_url",
    "current_revision",
    "damage_message",
    "database_error_message",
]


def database_error_message(store: Store, exc: BaseException) -> str:
    """One line for a database error met while using ``store``: what to do when the file is
    damaged, else the file (or the URL, password hidden) and the database's own words."""
    where = display_url(store.url)
    return damage_message(where, exc) or f"{where}: database error ({error_text(exc)})"


def open_store(url: str | None = None, *, migrate: bool = True, create: bool = True) -> Store:
    """Open (creating when needed) the store at ``url`` and migrate it to the current schema.

    Parameters
    ----------
    url
        SQLAlchemy URL. ``None``: ``sqlite:///<data_dir()>/cxrlt.db``. A PostgreSQL URL
        (``postgresql+psycopg://user@server/db``) works as well: its schema is created by the
        same migrations; an in-memory SQLite URL is refused (threads and processes must share
        the file).
    migrate
        Run the Alembic upgrade to head (default). Only tests of old revisions turn this off.
    create
        Create a SQLite file that does not exist yet, or the schema of an empty server database
        (default). Commands that only read or export a library pass False, so a mistyped path
        or database is an error, not a new empty library.

    Raises
    ------
    StoreError
        The URL is not usable (the message names it and says why): among others a file that
        is not a CXR-LT library (0 bytes, not SQLite, another program's database) or a damaged
        one (with what to do about it).
    """
    try:
        url = url or default_url()
    except OSError as exc:  # the user data folder cannot be created
        raise StoreError(f"cannot use the user data folder: {exc}") from exc
    store = Store(url, make_engine(url, create=create))
    if migrate:
        try:
            if not store.is_sqlite:
                check_server_database(store.engine, url, create=create)
            upgrade(store)
        except Exception as exc:
            store.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(_open_error(url, exc)) from exc
    return store


def _open_error(url: str, exc: BaseException) -> str:
    """The message for a database that could not be opened or migrated."""
    where = display_url(url)
    damaged = damage_message(where, exc)
    if damaged:
        return damaged
    if "Can't locate revision" in str(exc):
        return (
            f"{where}: written by a newer CXR-LT Desktop (its schema revision is unknown to this "
            f"version: {exc}); open it with that version, or scan into a new library with --db NEW"
        )
    return f"cannot open the database {where!r}: {error_text(exc)}"
