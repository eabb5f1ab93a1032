"""What the commands that talk to a PACS destination share (``cxrlt pacs``, ``cxrlt send``):
the destination and settings options, the settings with the named destination, and the error
line of a usage, settings or store problem (``cxrlt COMMAND: error: ...``, exit status 2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cxrlt_desktop.commands._text import printable


def add_destination_arguments(p: argparse.ArgumentParser, *, db: bool = True) -> None:
    """The destination ``NAME``, then ``--db URL`` (with ``db``) and ``--settings FILE``."""
    p.add_argument("name", metavar="NAME", help="a [pacs.NAME] destination of the settings")
    if db:
        p.add_argument("--db", default=None, metavar="URL", help="database URL (default: settings)")
    p.add_argument("--settings", type=Path, default=None, metavar="FILE.toml")


def settings_and_destination(args: argparse.Namespace) -> tuple[Any, Any]:
    """The settings (``--settings``, else the user's) and their destination ``args.name``;
    raises SettingsError or DestinationError."""
    from cxrlt_desktop.commands._model_options import load_settings
    from cxrlt_desktop.dicomnode.destinations import destination

    settings = load_settings(args)
    return settings, destination(settings, args.name)


def error(command: str, text: object) -> int:
    """Print ``cxrlt COMMAND: error: TEXT`` on stderr; the exit status 2."""
    print(f"cxrlt {command}: error: {printable(text)}", file=sys.stderr)
    return 2
