"""``cxrlt listen``: a DICOM node receiving pushed studies into the library (and scoring them)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001
    from cxrlt_desktop.commands._model_options import add_model_arguments

    p = subparsers.add_parser(
        "listen",
        help="receive studies over DICOM (C-STORE) into the library and score them",
        description="Listen as a DICOM node: answer C-ECHO, store pushed CR/DX/secondary-capture "
        "images in the inbox (<inbox>/<Study>/<Series>/<SOP>.dcm), add them to the library and "
        'score them with the configured models (unless --no-score or scoring = "workers"). '
        "Options default to the settings' [dicom_node] table; the command line wins. Stops "
        "cleanly on SIGTERM or Ctrl-C. See docs/dicom-node.md.",
    )
    p.add_argument("--db", default=None, metavar="URL", help="database URL (default: settings)")
    p.add_argument("--aet", default=None, metavar="AET", help="this node's AE title (CXRLT)")
    p.add_argument(
        "--port", type=int, default=None, help="TCP port (11112; 0: any free port, printed)"
    )
    p.add_argument(
        "--bind",
        default=None,
        metavar="ADDRESS",
        help="address to listen on (127.0.0.1: this computer only; 0.0.0.0: every interface)",
    )
    p.add_argument("--inbox", type=Path, default=None, metavar="DIR", help="where objects go")
    p.add_argument(
        "--allow",
        nargs="+",
        action="extend",
        default=None,
        metavar="AET[@HOST]",
        help="calling AE titles allowed to associate (default: settings; none set: any)",
    )
    p.add_argument(
        "--min-free-mb", type=int, default=None, metavar="MB", help="free-space floor (1024)"
    )
    p.add_argument("--max-associations", type=int, default=None, metavar="N", help="(8)")
    p.add_argument("--max-pdu", type=int, default=None, metavar="BYTES", help="(262144)")
    p.add_argument("--tls-cert", type=Path, default=None, metavar="PEM", help="TLS certificate")
    p.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="TLS private key")
    p.add_argument(
        "--tls-ca", type=Path, default=None, metavar="PEM", help="require peer certificates of CA"
    )
    p.add_argument("--no-score", action="store_true", help="only add to the library")
    p.add_argument("--quiet", action="store_true", help="no line per received object")
    add_model_arguments(p)
    p.set_defaults(func=run)


def _validate(args: argparse.Namespace) -> list[str]:
    from cxrlt_desktop.settings import _ae_title, _allow_entry

    bad = []
    for what, check, values in (
        ("--aet", _ae_title, [args.aet] if args.aet is not None else []),
        ("--allow", _allow_entry, args.allow or []),
    ):
        for v in values:
            try:
                check(v)
            except ValueError as e:
                bad.append(f"{what} {v!r}: {e}")
    if args.port is not None and not 0 <= args.port <= 65535:
        bad.append(f"--port must be in [0, 65535], got {args.port}")
    return bad


class _Scorer:
    """Scores the library's pending images in a thread, each time new ones arrive."""

    def __init__(self, store, config, thresholds) -> None:  # noqa: ANN001
        self.store, self.config, self.thresholds = store, config, thresholds
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="listen-scorer", daemon=True)

    def _run(self) -> None:
        from cxrlt_desktop.library.scoring import score_library
        from engine.predictor import Predictor

        try:
            predictor = Predictor(self.config)
        except Exception as e:  # noqa: BLE001 - reported; receiving goes on unscored
            print(
                f"cxrlt listen: cannot load the models, not scoring: {printable(e)}",
                file=sys.stderr,
            )
            return
        print("listen: models loaded; received images are scored", file=sys.stderr, flush=True)
        while not self.stop.is_set():
            if not self.wake.wait(0.5):
                continue
            self.wake.clear()
            try:
                for prog in score_library(
                    self.store, predictor, should_stop=self.stop.is_set, thresholds=self.thresholds
                ):
                    for path, reason in prog.last_errors:
                        print(
                            f"cxrlt listen: {printable(path)}: {printable(reason)}",
                            file=sys.stderr,
                        )
                    if prog.total and (prog.done + prog.failed) == prog.total:
                        print(
                            f"listen: scored {prog.done} image(s), {prog.failed} failed",
                            file=sys.stderr,
                            flush=True,
                        )
            except Exception as e:  # noqa: BLE001 - a database hiccup: try again at the next arrival
                print(f"cxrlt listen: scoring failed: {printable(e)}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from cxrlt_desktop.commands._model_options import config_from_args, load_settings, resolve_db
    from cxrlt_desktop.dicomnode import DicomNode, node_config, tls_context
    from cxrlt_desktop.settings import SettingsError
    from cxrlt_desktop.store import StoreError, open_store

    bad = _validate(args)
    if bad:
        for b in bad:
            print(f"cxrlt listen: error: {printable(b)}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args)
    except SettingsError as e:
        print(f"cxrlt listen: error: {printable(e)}", file=sys.stderr)
        return 2
    cfg = node_config(
        settings.dicom_node,
        aet=args.aet,
        port=args.port,
        bind=args.bind,
        inbox=args.inbox,
        allow=args.allow,
        min_free_mb=args.min_free_mb,
        max_associations=args.max_associations,
        max_pdu=args.max_pdu,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_ca=args.tls_ca,
    )
    ssl_ctx = None
    if cfg.tls_cert is not None or cfg.tls_key is not None:
        if cfg.tls_cert is None or cfg.tls_key is None:
            print("cxrlt listen: error: TLS needs both --tls-cert and --tls-key", file=sys.stderr)
            return 2
        try:
            ssl_ctx = tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca)
        except (OSError, ValueError) as e:
            print(f"cxrlt listen: error: TLS: {printable(e)}", file=sys.stderr)
            return 2
    scorer_config = None
    if not args.no_score and settings.scoring == "workstation":
        try:
            scorer_config = config_from_args(args, settings)
        except ValueError as e:
            print(f"listen: not scoring ({printable(e)})", file=sys.stderr)
    try:
        store = open_store(resolve_db(args, settings))
    except StoreError as e:
        print(f"cxrlt listen: error: {printable(e)}", file=sys.stderr)
        return 2

    scorer = None
    if scorer_config is not None:
        scorer = _Scorer(store, scorer_config, settings.thresholds)

    def on_added(result) -> None:  # noqa: ANN001
        prog = result.progress
        for path, reason in prog.problems:
            print(f"cxrlt listen: {printable(path)}: {printable(reason)}", file=sys.stderr)
        if not args.quiet:
            print(
                f"listen: library: {prog.new} new, {prog.updated} changed, "
                f"{prog.duplicates} duplicate(s), {prog.unusable} unusable",
                file=sys.stderr,
                flush=True,
            )
        if scorer is not None and result.image_ids:
            scorer.wake.set()

    def on_event(rec) -> None:  # noqa: ANN001
        if not args.quiet or rec.status not in (0,):
            print(
                f"listen: {printable(rec.peer)}: {printable(rec.text)}", file=sys.stderr, flush=True
            )

    node = DicomNode(cfg, store, on_added=on_added, on_event=on_event, ssl_context=ssl_ctx)
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            host, port = node.start()
        except OSError as e:
            print(
                f"cxrlt listen: error: cannot listen on {printable(cfg.bind)}:{cfg.port}: "
                f"{printable(e)}",
                file=sys.stderr,
            )
            return 1
        if scorer is not None:
            scorer.thread.start()
        allow = ", ".join(cfg.allow) if cfg.allow else "any calling AE title"
        print(
            f"listen: {cfg.aet} listening on {host}:{port}{' (TLS)' if ssl_ctx else ''}; inbox "
            f"{printable(node.inbox.root)}; allowed: {printable(allow)}",
            file=sys.stderr,
            flush=True,
        )
        if host not in ("127.0.0.1", "::1", "localhost"):
            print(
                f"listen: note: {host} is reachable from the network; set an allow-list "
                "(--allow) and consider TLS",
                file=sys.stderr,
                flush=True,
            )
        while not stop.wait(0.5):
            pass
        print("listen: stopping", file=sys.stderr, flush=True)
        node.stop()
        if scorer is not None:
            scorer.stop.set()
            scorer.thread.join(60)
        st = node.stats
        print(
            f"listen: stopped: {st.stored} stored, {st.unchanged} unchanged, {st.refused} refused, "
            f"{st.rejected_associations} association(s) rejected",
            file=sys.stderr,
            flush=True,
        )
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        store.close()
