"""``cxrlt worklist``: studies ordered by rare-finding score."""

from __future__ import annotations

import argparse
import json
import sys

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001
    from cxrlt_desktop.commands._model_options import add_db_arguments

    p = subparsers.add_parser(
        "worklist",
        help="list studies by rare-finding score",
        description="Studies ordered by rare-finding score (highest first), then study date "
        "(newest first). Patients are shown as pseudonyms unless --show-phi.",
    )
    add_db_arguments(p)
    p.add_argument("--limit", type=int, default=100, metavar="N")
    p.add_argument("--offset", type=int, default=0, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--status", choices=("unreviewed", "reviewed", "all"), default="all")
    p.add_argument(
        "--finding",
        default=None,
        metavar="NAME",
        help="only studies with this finding at or above threshold",
    )
    p.add_argument("--text", default=None, metavar="TEXT", help="substring of description or date")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument("--show-phi", action="store_true", help="show PatientIDs instead of pseudonyms")
    p.set_defaults(func=run)


def _fmt_score(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from cxrlt_desktop.commands._model_options import load_settings, resolve_db
    from cxrlt_desktop.library.worklist import query_worklist, resolve_finding
    from cxrlt_desktop.settings import SettingsError
    from cxrlt_desktop.store import StoreError, database_error_message, open_store

    if args.limit < 1:
        print("cxrlt worklist: error: --limit must be >= 1", file=sys.stderr)
        return 2
    try:
        if args.finding:
            resolve_finding(args.finding)
        store = open_store(resolve_db(args, load_settings(args)), create=False)
    except (SettingsError, StoreError, ValueError) as e:
        print(f"cxrlt worklist: error: {printable(e)}", file=sys.stderr)
        return 2
    try:
        rows = query_worklist(
            store,
            limit=args.limit,
            offset=args.offset,
            status=args.status,
            finding=args.finding,
            text=args.text,
            show_phi=args.show_phi,
        )
    except DBAPIError as e:  # a database damaged where the open did not look
        print(
            f"cxrlt worklist: error: {printable(database_error_message(store, e))}", file=sys.stderr
        )
        return 1
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.to_json(show_phi=args.show_phi) for r in rows], indent=2))
        return 0
    # With --show-phi, names and IDs may hold characters a cp1252/ASCII console lacks: show an
    # escape rather than abort the listing with UnicodeEncodeError.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    old_errors = getattr(sys.stdout, "errors", None)
    if reconfigure is None or old_errors != "strict":
        _print_rows(rows)
        return 0
    reconfigure(errors="backslashreplace")
    try:
        _print_rows(rows)
    finally:
        sys.stdout.flush()
        reconfigure(errors=old_errors)
    return 0


def _print_rows(rows: list) -> None:
    print(
        f"{'score':>6} {'patient':<18} {'date':<10} {'img':>4} {'done':>4} {'fail':>4} {'status':<10} top findings"
    )
    for r in rows:
        top = ", ".join(f"{t['finding']} {t['probability']:.2f}" for t in r.top_findings)
        flag = "!" if r.flagged else " "
        print(
            f"{_fmt_score(r.rare_score):>5}{flag} {printable(r.patient)[:18]:<18} "
            f"{printable(r.study_date or '-'):<10} "
            f"{r.n_images:>4} {r.n_scored:>4} {r.n_failed:>4} {r.status:<10} {top}"
        )
