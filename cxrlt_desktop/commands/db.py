"""``cxrlt db upgrade|check``: migrate a library's database, or check its schema and integrity.

Both take ``--db URL`` (SQLite or PostgreSQL, e.g. ``postgresql+psycopg://user@server/cxrlt``),
else the settings' database, else the file in the user data folder. ``upgrade`` creates the
schema of an empty database (on PostgreSQL under an advisory lock, so workstations started at
the same moment do not race); ``check`` changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001
    from cxrlt_desktop.commands._model_options import add_db_arguments

    p = subparsers.add_parser(
        "db",
        help="migrate or check a library's database (SQLite or PostgreSQL)",
        description="Migrate a library's database to this version's schema, or check its "
        "revision, dialect and integrity.",
    )
    sub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = sub.add_parser(
        "upgrade",
        help="create or migrate the schema",
        description="Create the schema of an empty database or migrate an older one to this "
        "version's revision (idempotent; concurrent upgrades wait for each other).",
    )
    chk = sub.add_parser(
        "check",
        help="report revision, dialect and integrity",
        description="Report the schema revision, the dialect, row counts and integrity "
        "(SQLite: PRAGMA integrity_check and foreign_key_check; PostgreSQL: foreign keys present, "
        "validated and enforced, orphan rows). Exit status 1 when a problem is found.",
    )
    chk.add_argument("--json", action="store_true", help="print the report as one JSON object")
    for q in (up, chk):
        add_db_arguments(q)
    up.set_defaults(func=run_upgrade)
    chk.set_defaults(func=run_check)


def _open(args: argparse.Namespace, *, migrate: bool, create: bool):  # noqa: ANN202
    """The store, or an error line (and exit status 2) on stderr and None."""
    from cxrlt_desktop.commands._model_options import load_settings, resolve_db
    from cxrlt_desktop.settings import SettingsError
    from cxrlt_desktop.store import StoreError, open_store

    try:
        return open_store(resolve_db(args, load_settings(args)), migrate=migrate, create=create)
    except (SettingsError, StoreError) as e:
        print(f"cxrlt db {args.db_command}: error: {printable(e)}", file=sys.stderr)
        return None


def run_upgrade(args: argparse.Namespace) -> int:
    from cxrlt_desktop.store import current_revision

    store = _open(args, migrate=True, create=True)
    if store is None:
        return 2
    try:
        print(
            f"{printable(store.engine.url.render_as_string(hide_password=True))}: schema at revision {current_revision(store)} "
            f"({store.engine.dialect.name})"
        )
    finally:
        store.close()
    return 0


def run_check(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from cxrlt_desktop.store import database_error_message
    from cxrlt_desktop.store.check import check_store

    store = _open(args, migrate=False, create=False)
    if store is None:
        return 2
    try:
        report = check_store(store)
    except DBAPIError as e:
        print(
            f"cxrlt db check: error: {printable(database_error_message(store, e))}",
            file=sys.stderr,
        )
        return 1
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"database: {printable(report.url)}")
        print(f"dialect:  {report.dialect}")
        print(f"revision: {report.revision or '-'} (this version: {report.head})")
        print(f"rows:     {sum(report.rows.values())} in {len(report.rows)} tables")
        for line in report.problems:
            print(f"problem:  {printable(line)}")
        print("integrity: ok" if report.ok else f"integrity: {len(report.problems)} problem(s)")
    return 0 if report.ok else 1
