"""The study library's database: SQLAlchemy models, sessions and Alembic migrations.

>>> store = open_store()                       # sqlite file in paths.data_dir()/cxrlt.db
>>> with store.session() as s, s.begin():
...     n = s.scalar(select(func.count()).select_from(Image))
"""

from __future__ import annotations

from cxrlt_desktop.store.db import (
    Store,
    StoreError,
    current_revision,
    default_url,
    make_engine,
    upgrade,
)

__all__ = ["Store", "StoreError", "open_store", "default_url", "current_revision"]


def open_store(url: str | None = None, *, migrate: bool = True, create: bool = True) -> Store:
    """Open (creating when needed) the store at ``url`` and migrate it to the current schema.

    Parameters
    ----------
    url
        SQLAlchemy URL. ``None``: ``sqlite:///<data_dir()>/cxrlt.db``. A PostgreSQL URL works as
        well; an in-memory SQLite URL is refused (threads and processes must share the file).
    migrate
        Run the Alembic upgrade to head (default). Only tests of old revisions turn this off.
    create
        Create a SQLite file that does not exist yet (default). Commands that only read or
        export a library pass False, so a mistyped path is an error, not a new empty library.

    Raises
    ------
    StoreError
        The URL is not usable (the message names it and says why).
    """
    try:
        url = url or default_url()
    except OSError as exc:  # the user data folder cannot be created
        raise StoreError(f"cannot use the user data folder: {exc}") from exc
    store = Store(url, make_engine(url, create=create))
    if migrate:
        try:
            upgrade(store)
        except Exception as exc:
            store.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open the database {url!r}: {exc}") from exc
    return store
