"""``cxrlt queue --db URL [--json]``: the scoring queue per model set and the workers."""

from __future__ import annotations

import argparse
import json
import sys

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001
    from cxrlt_desktop.commands._model_options import add_db_arguments

    p = subparsers.add_parser(
        "queue",
        help="show the scoring queue and the workers",
        description="Queued, claimed, done and failed jobs per model set, and the workers with "
        "their last heartbeat (live: running and heard from in the last 5 minutes).",
    )
    add_db_arguments(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from cxrlt_desktop.commands._model_options import load_settings, resolve_db
    from cxrlt_desktop.library.queue import queue_status
    from cxrlt_desktop.settings import SettingsError
    from cxrlt_desktop.store import StoreError, database_error_message, open_store

    try:
        store = open_store(resolve_db(args, load_settings(args)), create=False)
    except (SettingsError, StoreError) as e:
        print(f"cxrlt queue: error: {printable(e)}", file=sys.stderr)
        return 2
    try:
        status = queue_status(store)
    except DBAPIError as e:
        print(f"cxrlt queue: error: {printable(database_error_message(store, e))}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    sets = status["model_sets"]
    if not sets:
        print("no jobs")
    else:
        print(
            f"{'model set':>10}  {'key':12}  {'queued':>8} {'claimed':>8} {'done':>8} {'failed':>8}"
        )
        for m in sets:
            run = f"  run {m['open_run_id']} open" if m["open_run_id"] is not None else ""
            print(
                f"{m['model_set_id']:>10}  {m['key']:12}  {m['queued']:>8} {m['claimed']:>8} "
                f"{m['done']:>8} {m['failed']:>8}{run}"
            )
    workers = status["workers"]
    if workers:
        print()
        print(f"{'worker':30} {'state':8} {'last heartbeat':32} {'done':>8} {'failed':>8}")
        for w in workers:
            state = w["state"] if w["live"] or w["state"] != "running" else "silent"
            print(
                f"{printable(w['name']):30} {state:8} {w['last_heartbeat'] or '-':32} "
                f"{w['n_done']:>8} {w['n_failed']:>8}"
            )
    return 0
