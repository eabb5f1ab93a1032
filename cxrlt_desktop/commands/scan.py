"""``cxrlt scan FOLDER... [--db URL] [--json]``: bring folders into the study library."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001
    from cxrlt_desktop.commands._model_options import add_db_arguments

    p = subparsers.add_parser(
        "scan",
        help="scan folders into the study library",
        description="Read the headers of every file under the folders (recursively) into the "
        "study library: new and changed files are read, unchanged ones skipped, vanished ones "
        "marked missing, unusable ones recorded with their reason. Progress on stderr.",
    )
    p.add_argument("folders", nargs="+", type=Path, metavar="FOLDER", help="folders and/or files")
    add_db_arguments(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes reading headers (2 speeds up a big first scan on 2 cores)",
    )
    p.add_argument("--batch-files", type=int, default=None, help=argparse.SUPPRESS)  # tests
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cxrlt_desktop.commands._model_options import load_settings, resolve_db
    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.settings import SettingsError
    from cxrlt_desktop.store import StoreError, open_store

    for f in args.folders:
        if not f.exists():
            print(f"cxrlt scan: error: {printable(f)}: no such file or folder", file=sys.stderr)
            return 2
    try:
        store = open_store(resolve_db(args, load_settings(args)))
    except (SettingsError, StoreError) as e:
        print(f"cxrlt scan: error: {printable(e)}", file=sys.stderr)
        return 2
    from sqlalchemy.exc import DBAPIError, OperationalError

    from cxrlt_desktop.library.queue import enqueue_for_active_sets
    from cxrlt_desktop.store import database_error_message
    from cxrlt_desktop.store.models import utcnow

    problems: list[dict[str, str]] = []
    last = None
    queued = 0
    started = utcnow()
    try:
        kw = {"batch_files": args.batch_files} if args.batch_files else {}
        kw["workers"] = max(1, args.workers)
        for prog in scan(store, args.folders, **kw):
            last = prog
            for path, reason in prog.problems:
                problems.append({"path": path, "reason": reason})
                if not args.quiet:
                    print(f"cxrlt scan: {printable(path)}: {printable(reason)}", file=sys.stderr)
            if not args.quiet:
                print(
                    f"scan: {prog.seen} files, {prog.rate:.0f} files/s, {prog.new} new, "
                    f"{prog.updated} changed, {prog.unchanged} unchanged, {prog.unusable} unusable, "
                    f"{prog.duplicates} duplicates"
                    + (f", {prog.moved} moved" if prog.moved else "")
                    + (f", {prog.replaced} replaced" if prog.replaced else "")
                    + (f", {prog.missing} missing" if prog.done else ""),
                    file=sys.stderr,
                    flush=True,
                )
        # What the scan added or changed is queued for the model sets being scored (an open
        # run, or a worker heard from in the last minutes): no model is loaded here.
        queued = enqueue_for_active_sets(store, None, since=started)
        if queued and not args.quiet:
            print(f"scan: {queued} image(s) queued for scoring", file=sys.stderr, flush=True)
    except OperationalError as e:  # a read-only database file, a full disk
        print(f"cxrlt scan: error: cannot write to {store!r}: {printable(e.orig)}", file=sys.stderr)
        return 1
    except DBAPIError as e:  # "database disk image is malformed" and its kind
        print(f"cxrlt scan: error: {printable(database_error_message(store, e))}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.json and last is not None:
        out = {f.name: getattr(last, f.name) for f in fields(last) if f.name != "problems"}
        out["problems"] = problems
        out["queued"] = queued  # jobs added for the model sets being scored
        print(json.dumps(out, indent=2))
    return 0
