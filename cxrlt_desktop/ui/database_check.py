"""Checking a database URL before the settings take it: connect, and read the schema revision.

:func:`check_database` is what the settings dialog runs (in its background lane) when the
reader enters another library's URL: a server that cannot be reached, a database that is not a
CXR-LT library (empty, another program's) or one written by a newer version is refused with
the reason on one line; nothing is created or migrated here.
"""

from __future__ import annotations

from cxrlt_desktop.store import Store, StoreError, current_revision, display_url
from cxrlt_desktop.store.db import check_server_database, error_text, make_engine, sqlite_path


def check_database(url: str) -> str:
    """A one-line description of the library at ``url`` ("PostgreSQL library, schema
    revision 0006").

    Raises
    ------
    StoreError
        The URL cannot be used, with the reason (the password hidden).
    """
    from sqlalchemy.exc import DBAPIError

    from cxrlt_desktop.store.check import head_revision

    where = display_url(url)
    path = sqlite_path(url)
    if path is not None and not path.expanduser().exists():
        if not path.expanduser().parent.is_dir():
            raise StoreError(f"{where}: its folder does not exist")
        return "a new SQLite library (created at the next start)"
    store = Store(url, make_engine(url, create=False))
    try:
        if not store.is_sqlite:
            check_server_database(store.engine, url, create=False)
        revision = current_revision(store)
        head = head_revision()
        dialect = "PostgreSQL" if store.engine.dialect.name == "postgresql" else "SQLite"
        if revision is None:
            raise StoreError(
                f"{where}: no CXR-LT schema; create it with `cxrlt db upgrade --db URL`"
            )
        if revision != head and not _known(revision):
            raise StoreError(
                f"{where}: schema revision {revision} was written by a newer CXR-LT Desktop "
                f"(this version knows up to {head})"
            )
        upgrade = "" if revision == head else f" (upgraded to {head} when opened)"
        return f"{dialect} library, schema revision {revision}{upgrade}"
    except DBAPIError as exc:
        raise StoreError(f"{where}: cannot use the database ({error_text(exc)})") from exc
    finally:
        store.close()


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    from cxrlt_desktop.store.db import alembic_config

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown revision
        return False


__all__ = ["check_database"]
