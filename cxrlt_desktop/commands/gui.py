"""``cxrlt gui [--db URL] [FOLDER...]`` and ``cxrlt gui --self-test [--screenshots DIR] [FOLDER]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:
    """Add the ``gui`` sub-command."""
    p = subparsers.add_parser(
        "gui",
        help="open the desktop application",
        description=(
            "Open the desktop application; FOLDER (optional) is scanned and scored at once. "
            "--self-test runs the whole GUI path offscreen and exits 0 only if every step worked."
        ),
    )
    p.add_argument(
        "folders", nargs="*", type=Path, metavar="FOLDER", help="folders or files to open"
    )
    p.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: the settings, else the user data folder)",
    )
    p.add_argument(
        "--self-test",
        action="store_true",
        help="offscreen: open FOLDER (or built-in synthetic studies), score, review one finding, exit",
    )
    p.add_argument(
        "--screenshots",
        type=Path,
        metavar="DIR",
        help="with --self-test: save PNG screenshots here",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the GUI (or its self-test). Qt is imported only here."""
    for f in args.folders:
        if not f.exists():
            print(f"cxrlt gui: {printable(f)}: no such file or folder")
            return 2
    if args.screenshots is not None and not args.self_test:
        print("cxrlt gui: --screenshots only goes with --self-test")
        return 2
    if args.self_test:
        if len(args.folders) > 1:
            print("cxrlt gui: --self-test takes at most one FOLDER")
            return 2
        from cxrlt_desktop.ui.selftest import run_self_test

        folder = args.folders[0] if args.folders else None
        return run_self_test(folder, args.screenshots, args.db)
    from cxrlt_desktop.ui.app import run_gui

    return run_gui(args.db, list(args.folders))
