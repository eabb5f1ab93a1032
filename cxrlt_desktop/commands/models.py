"""``cxrlt models fetch|list|add|remove``: get the published models, and the model registry.

``fetch`` is the only command that goes online (huggingface_hub, the configured endpoint only);
see ``docs/models.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cxrlt_desktop.commands._text import printable

PROG = "cxrlt models"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="get the published models (fetch) and manage the model registry (list/add/remove)",
        description=(
            "fetch downloads the published Task 1 checkpoint and the WhyXrayCLIP folder at the "
            "revisions this release pins, verifies every file's sha256, installs them into the "
            "models folder and configures the settings; list/add/remove manage the registry of "
            "model files the app knows."
        ),
    )
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    sub.required = True

    f = sub.add_parser("fetch", help="download, verify and install the published models")
    f.add_argument("--task1", action="store_true", help="the Task 1 checkpoint only")
    f.add_argument("--clip", action="store_true", help="the WhyXrayCLIP folder only")
    f.add_argument(
        "--dest",
        type=Path,
        default=None,
        metavar="DIR",
        help="models folder (default: data folder)",
    )
    f.add_argument(
        "--revision",
        default=None,
        metavar="REV",
        help="the commit to fetch; only a revision whose checksums are pinned is accepted",
    )
    f.add_argument(
        "--accept-licence",
        action="store_true",
        help="accept the models' licences (printed first) without asking",
    )
    f.add_argument(
        "--pins",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="a pins file of your own (e.g. for a mirror; default: the release's)",
    )
    f.add_argument("--settings", type=Path, default=None, metavar="FILE.toml")
    f.set_defaults(func=run_fetch)

    ls = sub.add_parser("list", help="the registered models and the published ones")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--settings", type=Path, default=None, metavar="FILE.toml")
    ls.set_defaults(func=run_list)

    a = sub.add_parser("add", help="check a model file or CLIP folder by loading it, register it")
    a.add_argument("path", type=Path, help="a Task 1 checkpoint file or an open_clip folder")
    a.add_argument("--name", default=None, help="registry name (default: from the file name)")
    a.add_argument(
        "--card",
        default=None,
        metavar="NAME",
        help="the model card it has (e.g. task1-csra, whyxrayclip for the published models)",
    )
    a.add_argument("--use", action="store_true", help="also configure the settings to use it")
    a.add_argument("--settings", type=Path, default=None, metavar="FILE.toml")
    a.set_defaults(func=run_add)

    r = sub.add_parser("remove", help="forget a registered model (files fetched by the app go too)")
    r.add_argument("name")
    r.add_argument("--force", action="store_true", help="even if the settings use it")
    r.add_argument("--settings", type=Path, default=None, metavar="FILE.toml")
    r.set_defaults(func=run_remove)


def _err(msg: object) -> None:
    print(f"{PROG}: {printable(str(msg))}", file=sys.stderr)


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB"


class _Printer:
    """Progress lines on stderr, at most a few per second and one per file at the end."""

    def __init__(self) -> None:
        self._last = 0.0
        self._key: tuple[str, str] | None = None

    def __call__(self, p) -> None:  # noqa: ANN001
        now = time.monotonic()
        key = (p.model, p.file)
        end = p.total is not None and p.done >= p.total
        if key == self._key and not end and now - self._last < 0.5:
            return
        self._key, self._last = key, now
        pct = f"{100 * p.done / p.total:5.1f} %" if p.total else "      "
        print(
            f"  {p.model}/{p.file} [{p.file_index + 1}/{p.n_files}] {pct} "
            f"{_mb(p.done)} of {_mb(p.total)}",
            file=sys.stderr,
            flush=True,
        )


def run_fetch(args: argparse.Namespace) -> int:
    from cxrlt_desktop.models import (
        FetchError,
        PinError,
        Registry,
        RegistryError,
        configured_endpoint,
        install_published,
        load_pins,
    )
    from cxrlt_desktop.paths import models_dir
    from cxrlt_desktop.settings import SettingsError

    try:
        pins = load_pins(args.pins)
        registry = Registry()
    except (PinError, RegistryError) as e:
        _err(e)
        return 1
    want = {o for o, on in (("task1", args.task1), ("clip", args.clip)) if on} or {"task1", "clip"}
    chosen = [m for m in pins if m.option in want]
    if not chosen:
        _err("the pins file lists no model for " + ", ".join(sorted(want)))
        return 1
    unpinned = [m for m in chosen if not m.pinned]
    if unpinned:
        for m in unpinned:
            _err(m.unpinned_message())
        return 1
    for m in chosen:
        lic = m.licence
        if registry.licence_accepted(lic.id, lic.text):
            continue
        print(f"Licence of {m.title}:\n  {lic.title}\n  {lic.text}\n", file=sys.stderr)
        if args.accept_licence:
            ok = True
        elif sys.stdin.isatty():
            ok = input("Accept this licence? [y/N] ").strip().lower() in ("y", "yes")
        else:
            _err(
                f"{m.name}: licence not accepted; read it above and run again with --accept-licence"
            )
            return 1
        if not ok:
            _err(f"{m.name}: licence not accepted; nothing downloaded")
            return 1
        registry.accept_licence(lic.id, lic.text)
    registry.save()
    endpoint = configured_endpoint()
    dest = args.dest or models_dir()
    print(
        f"Fetching {', '.join(m.name for m in chosen)} from {endpoint} into {dest}", file=sys.stderr
    )
    try:
        done = install_published(
            chosen,
            dest=dest,
            endpoint=endpoint,
            registry=registry,
            settings_path=args.settings,
            revision=args.revision,
            progress=_Printer(),
        )
    except (FetchError, SettingsError, OSError) as e:
        _err(e)
        return 1
    for e in done:
        print(f"installed {e.name}: {printable(e.path)} (sha256 {e.sha256}, verified)")
    print("settings updated: the app now scores with these models")
    return 0


def _rows(registry, settings) -> list[dict]:  # noqa: ANN001
    from cxrlt_desktop.models import in_use, load_pins

    rows = []
    for m in registry.models:
        d = dict(m.__dict__)
        d["in_use"] = in_use(m, settings)
        d["exists"] = Path(m.path).exists()
        rows.append(d)
    try:
        pins = load_pins()
    except ValueError:
        pins = []
    for p in pins:
        if registry.get(p.name) is None:
            rows.append(
                {
                    "name": p.name,
                    "role": p.role,
                    "arch": p.arch,
                    "path": None,
                    "sha256": None,
                    "size": sum(int(f.size or 0) for f in p.files) or None,
                    "source": f"{p.repo_id}@{p.revision or 'unpinned'}",
                    "licence": p.licence.id,
                    "card": p.card,
                    "demo": False,
                    "verified": "pinned" if p.pinned else "unpinned",
                    "in_use": [],
                    "exists": False,
                    "installed": False,
                }
            )
    return rows


def run_list(args: argparse.Namespace) -> int:
    from cxrlt_desktop.models import Registry, RegistryError
    from cxrlt_desktop.settings import Settings, SettingsError

    try:
        registry = Registry()
        settings = Settings.load(args.settings)
    except (RegistryError, SettingsError) as e:
        _err(e)
        return 1
    rows = _rows(registry, settings)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no models registered")
        return 0
    for r in rows:
        state = (
            "published, not installed"
            if r.get("installed") is False
            else ("MISSING " if not r["exists"] else "")
            + ("in use" if r["in_use"] else "not in use")
        )
        print(f"{r['name']}  [{state}]")
        print(
            f"    role {r['role']}, arch {r['arch'] or '?'}, {_mb(r['size'])}, "
            f"{'DEMO' if r['demo'] else 'not demo'}, checksum {r['verified']}"
        )
        if r["path"]:
            print(f"    path {printable(r['path'])}")
        if r["sha256"]:
            print(f"    sha256 {r['sha256']}")
        print(
            f"    source {printable(r['source'])}; licence {r['licence'] or 'none recorded'}; "
            f"card {r['card'] or 'none'}"
        )
    return 0


def run_add(args: argparse.Namespace) -> int:
    from cxrlt_desktop.models import (
        NotAModelError,
        RegisteredModel,
        Registry,
        RegistryError,
        card,
        check_model,
        configure_settings,
        load_pins,
    )
    from cxrlt_desktop.settings import SettingsError

    if args.card is not None and card(args.card) is None:
        from cxrlt_desktop.models.cards import all_cards

        _err(f"no model card named {args.card!r} (cards: {', '.join(all_cards())})")
        return 2
    try:
        registry = Registry()
        checked = check_model(args.path)
    except (RegistryError, NotAModelError) as e:
        _err(e)
        return 1
    pin = next((p for p in load_pins() if any(f.sha256 == checked.sha256 for f in p.files)), None)
    base = args.name or (pin.name if pin else args.path.expanduser().resolve().name)
    existing = registry.by_sha256(checked.sha256)
    name = args.name or (existing.name if existing else registry.unique_name(base))
    if args.card and pin is not None and pin.card != args.card:
        _err(f"{args.path}: its sha256 is the pinned {pin.name}, whose card is {pin.card}")
        return 1
    entry = RegisteredModel(
        name=name,
        role=checked.role,
        arch=checked.arch,
        path=str(checked.path),
        sha256=checked.sha256,
        size=checked.size,
        source=f"added from {checked.path}",
        licence=pin.licence.id if pin else None,
        card=args.card or (pin.card if pin else ("demo" if checked.demo else None)),
        demo=checked.demo,
        verified="pinned" if pin else "unverified",
    )
    registry.put(entry)
    registry.save()
    print(
        f"registered {entry.name}: {entry.role} {entry.arch}, sha256 {entry.sha256}"
        + (", DEMO" if entry.demo else "")
        + ("" if pin else " (no pinned checksum to compare with)")
    )
    if args.use:
        try:
            path = configure_settings([entry], registry, args.settings)
        except (SettingsError, OSError) as e:
            _err(e)
            return 1
        print(f"settings updated: {printable(path)}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    import shutil

    from cxrlt_desktop.models import Registry, RegistryError, in_use
    from cxrlt_desktop.paths import models_dir
    from cxrlt_desktop.settings import Settings, SettingsError

    try:
        registry = Registry()
        entry = registry.get(args.name)
        if entry is None:
            registry.remove(args.name)  # raises with the registered names
        settings = Settings.load(args.settings)
    except (RegistryError, SettingsError) as e:
        _err(e)
        return 1
    assert entry is not None
    if in_use(entry, settings) and not args.force:
        _err(f"{entry.name} is in use by the settings' [models]; change them first or pass --force")
        return 1
    registry.remove(entry.name)
    registry.save()
    path = Path(entry.path)
    folder = path if path.is_dir() else path.parent
    root = models_dir().resolve()
    removed = ""
    if entry.verified == "pinned" and folder.resolve().parent == root and folder.name == entry.name:
        shutil.rmtree(folder, ignore_errors=True)
        removed = f"; deleted {printable(folder)}"
    print(f"removed {entry.name} from the registry{removed}")
    return 0
