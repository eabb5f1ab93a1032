"""``cxrlt worker --db URL [model options] [--name NAME] [--batch-size N] [--lease S] [--follow]``:
one scoring worker of a department (any number of them, on any machines, share one queue)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001
    from cxrlt_desktop.commands._model_options import add_db_arguments, add_model_arguments

    p = subparsers.add_parser(
        "worker",
        help="score the library's queue as one of any number of workers",
        description="Queue every usable image that has no prediction for this model set and no "
        "job yet (idempotent: workers started at once queue each image once), then claim "
        "jobs, score them and write them, with a heartbeat; results are written only while "
        "this worker holds the job. Without --follow it exits 0 when nothing is left to claim; "
        "with --follow it waits for new jobs until SIGTERM or Ctrl-C, which finish the batch in "
        "flight. Images are read at their stored paths rewritten by the settings' [paths] map. "
        "Model options default to the settings file.",
    )
    add_db_arguments(p, settings=False)
    add_model_arguments(p)
    p.add_argument(
        "--name",
        default=None,
        metavar="NAME",
        help="this worker's name in claims and `cxrlt queue` (default host:pid; unique per "
        "live worker)",
    )
    p.add_argument(
        "--lease",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a claim holds without a heartbeat before other workers may take it "
        "(default 120)",
    )
    p.add_argument(
        "--claim-size",
        type=int,
        default=None,
        metavar="N",
        help="jobs per claim (default 4 batches)",
    )
    p.add_argument(
        "--follow", action="store_true", help="wait for new jobs instead of exiting when idle"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--policy",
        choices=("progressive", "paper", "fast"),
        default=None,
        help="progressive: a fast pass over every queued image, then the paper method most "
        "suspicious first (not with --follow); paper or fast: that mode's jobs. Default: fast "
        "with --mode fast, else progressive on a CPU (paper with --follow) and paper on a GPU",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cxrlt_desktop.commands._model_options import (
        load_scoring_predictors,
        open_for_scoring,
        requested_policy,
    )
    from cxrlt_desktop.library import queue as jobq

    if args.lease is not None and not args.lease > 0:
        print("cxrlt worker: error: --lease must be > 0 seconds", file=sys.stderr)
        return 2
    if args.claim_size is not None and args.claim_size < 1:
        print("cxrlt worker: error: --claim-size must be >= 1", file=sys.stderr)
        return 2
    opened = open_for_scoring(args, "worker")
    if opened is None:
        return 2
    settings, config, store = opened

    from cxrlt_desktop.library.progressive import score_progressive

    if args.policy == "progressive" and args.follow:
        print(
            "cxrlt worker: error: --policy progressive runs until the queue is empty; "
            "use --policy paper or fast with --follow",
            file=sys.stderr,
        )
        store.close()
        return 2
    policy = requested_policy(args, settings, config)
    if args.follow and policy in (None, "progressive"):
        policy = "paper"  # a following worker serves the queue; progressive is one folder's run
    loaded = load_scoring_predictors(config, policy, "worker")
    if loaded is None:
        store.close()
        return 1
    predictor, fast_predictor, policy = loaded

    stop = threading.Event()

    def _on_signal(signum, _frame) -> None:  # noqa: ANN001
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        print(
            "cxrlt worker: stopping after the batch in flight"
            + (" (Ctrl-C again to abort)" if signum == signal.SIGINT else ""),
            file=sys.stderr,
            flush=True,
        )

    from sqlalchemy.exc import DBAPIError

    from cxrlt_desktop.library.worker import ScoringWorker
    from cxrlt_desktop.store import database_error_message

    kw = dict(
        thresholds=settings.thresholds,
        batch_size=config.batch_size,
        claim_size=args.claim_size,
        name=args.name or jobq.default_worker_name(),
        lease_s=args.lease or jobq.LEASE_S,
        should_stop=stop.is_set,
        map_path=settings.map_path,
    )
    if fast_predictor is not None:
        passes = score_progressive(store, fast_predictor, predictor, **kw)
    else:
        worker = ScoringWorker(store, predictor, follow=args.follow, **kw)
        passes = ((policy, prog) for prog in worker.run())
    name = kw["name"]
    old = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    bar = None
    last = None
    current_pass = None
    try:
        for pass_name, prog in passes:
            if pass_name != current_pass:  # the first record of a pass
                current_pass, last = pass_name, None
                if bar is not None:
                    bar.close()
                    bar = None
            if last is None:
                print(
                    f"worker {printable(name)}"
                    + (f" ({pass_name} pass)" if fast_predictor is not None else "")
                    + f": model set {prog.model_set_id}, "
                    f"{prog.total} job(s) to claim, {prog.already_scored} already scored"
                    + (f", run {prog.run_id}" if prog.run_id is not None else ""),
                    file=sys.stderr,
                    flush=True,
                )
                if not args.no_progress:
                    from tqdm import tqdm

                    bar = tqdm(total=prog.total, unit="img", file=sys.stderr, dynamic_ncols=True)
            last_n = 0 if last is None else last.done + last.failed
            last = prog
            for path, reason in prog.last_errors:
                msg = f"cxrlt worker: {printable(path)}: {printable(reason)}"
                (
                    bar.write(msg, file=sys.stderr)
                    if bar is not None
                    else print(msg, file=sys.stderr)
                )
            if bar is not None:
                if prog.total != bar.total:
                    bar.total = prog.total
                bar.update(prog.done + prog.failed - last_n)
                bar.set_postfix(scored=prog.done, failed=prog.failed, refresh=False)
    except DBAPIError as e:  # the server went away for good, a read-only database file
        print(
            f"cxrlt worker: error: {printable(database_error_message(store, e))}",
            file=sys.stderr,
        )
        return 1
    finally:
        if bar is not None:
            bar.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        store.close()
    if last is not None:
        print(
            f"worker {printable(name)}: "
            + ("stopped" if last.cancelled else "queue empty")
            + f": {last.done} scored, {last.failed} failed"
            + (f", {last.lost} discarded (lease lost)" if last.lost else ""),
            file=sys.stderr,
        )
    return 0
