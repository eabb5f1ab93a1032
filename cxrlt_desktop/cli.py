"""The ``cxrlt`` command line.

Each sub-command lives in ``cxrlt_desktop/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning the exit status. Commands import their heavy dependencies inside ``func``
so that ``cxrlt --version`` and ``cxrlt inspect`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from engine.offline import go_offline

go_offline()  # before any command imports a library that could phone home

from cxrlt_desktop import __version__  # noqa: E402
from cxrlt_desktop.log_setup import configure_logging  # noqa: E402
from cxrlt_desktop.paths import private_umask  # noqa: E402

# Order is the order shown in --help.
COMMANDS = [
    "inspect",
    "score",
    "scan",
    "score_library",
    "worker",
    "queue",
    "worklist",
    "thresholds",
    "export",
    "db",
    "listen",
    "pacs",
    "send",
    "train",
    "eval",
    "calibrate",
    "models",
    "prevalence",
    "gui",
    "demo_data",
    "demo_models",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxrlt", description="CXR-LT Desktop: chest X-ray triage and review."
    )
    parser.add_argument("--version", action="version", version=f"cxrlt {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show other libraries' warnings and log messages with tracebacks "
        "(also CXRLT_VERBOSE=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cxrlt_desktop.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # The app's files (database, caches, exports) are private to the user: 0600 / 0700. The
    # old umask comes back on return, for callers that run main() in their own process.
    old_umask = private_umask()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        configure_logging(args.verbose or None)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print("cxrlt: interrupted", file=sys.stderr)
            return 130
    finally:
        os.umask(old_umask)


if __name__ == "__main__":
    sys.exit(main())
