"""``cxrlt thresholds``: the operating thresholds of each model set and where they came from;
``--import FILE.json`` gives a model set thresholds calibrated elsewhere."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cxrlt_desktop.commands._text import printable

MAX_THRESHOLD_FILE_BYTES = 1 << 20  # 36 thresholds are about a kilobyte


def register(subparsers) -> None:  # noqa: ANN001
    p = subparsers.add_parser(
        "thresholds",
        help="show (or import) the operating thresholds of each model set",
        description="A threshold belongs to one model set. Without --import: every model set's "
        "thresholds in force (its own, else the settings', else the default) and where each "
        "came from. With --import: set the thresholds of the current (or the given) model set "
        "from a JSON file {finding: threshold} (source 'calibration <file>') and re-sort the "
        "library.",
    )
    p.add_argument("--db", default=None, metavar="URL", help="database URL (default: settings)")
    p.add_argument(
        "--settings", type=Path, default=None, metavar="FILE.toml", help=argparse.SUPPRESS
    )
    p.add_argument("--model-set", type=int, default=None, metavar="ID", help="only this one")
    p.add_argument("--import", dest="import_file", type=Path, default=None, metavar="FILE.json")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def read_threshold_file(path: Path) -> dict[str, float]:
    """``{class name: threshold}`` from a JSON file (class or display names, any case).

    Raises ValueError naming the file and the problem.
    """
    from cxrlt_desktop.library.thresholds import validated
    from cxrlt_desktop.library.worklist import resolve_finding
    from engine.smallfiles import SmallFileError, read_small_text

    try:
        text = read_small_text(path, MAX_THRESHOLD_FILE_BYTES)
    except SmallFileError as e:
        raise ValueError(f"{path}: cannot read the thresholds file: {e.reason}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a JSON object {{finding: threshold}}")
    try:
        return validated({resolve_finding(str(k)): v for k, v in data.items()})
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def run(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from cxrlt_desktop.commands._model_options import load_settings, resolve_db
    from cxrlt_desktop.library.thresholds import (
        CALIBRATION,
        current_model_set,
        thresholds_for,
        write_thresholds,
    )
    from cxrlt_desktop.library.triage import retriage
    from cxrlt_desktop.settings import SettingsError
    from cxrlt_desktop.store import StoreError, open_store
    from cxrlt_desktop.store.models import ModelSet

    try:
        settings = load_settings(args)
        values = read_threshold_file(args.import_file) if args.import_file else None
        store = open_store(resolve_db(args, settings), create=False)
    except (SettingsError, StoreError, ValueError) as e:
        print(f"cxrlt thresholds: error: {printable(e)}", file=sys.stderr)
        return 2
    try:
        with store.session() as s, s.begin():
            current = current_model_set(s)
            ids = list(s.scalars(select(ModelSet.id).order_by(ModelSet.id)))
        if args.model_set is not None and args.model_set not in ids:
            print(f"cxrlt thresholds: error: no model set {args.model_set}", file=sys.stderr)
            return 2
        if values is not None:
            target = args.model_set if args.model_set is not None else current
            if target is None:
                print(
                    "cxrlt thresholds: error: the library has no model set yet (score it first)",
                    file=sys.stderr,
                )
                return 2
            source = f"{CALIBRATION} {args.import_file.name}"
            store.write(lambda s: write_thresholds(s, target, values, source))
            n = retriage(store, None)
            print(f"model set {target}: {len(values)} thresholds from {source}; {n} re-sorted")
            ids = [target]
        elif args.model_set is not None:
            ids = [args.model_set]
        fallback = settings.thresholds or {}
        with store.session() as s, s.begin():
            sets = [thresholds_for(s, i, fallback) for i in ids]
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "model_set": t.model_set_id,
                        "key": t.model_set_key,
                        "current": t.model_set_id == current,
                        "thresholds": t.values,
                        "sources": t.sources,
                    }
                    for t in sets
                ],
                indent=2,
            )
        )
        return 0
    for t in sets:
        print(t.describe() + ("  [current]" if t.model_set_id == current else ""))
        for name, src in t.sources.items():
            if src != "default":
                print(f"  {printable(name):<28} {t.values[name]:.4f}  {printable(src)}")
    return 0
