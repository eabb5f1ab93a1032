"""``cxrlt score-library [--db URL] [model options]``: score the library's pending images."""

from __future__ import annotations

import argparse
import signal
import sys

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001
    from cxrlt_desktop.commands._model_options import add_db_arguments, add_model_arguments

    p = subparsers.add_parser(
        "score-library",
        help="score every pending image of the study library",
        description="Score the usable images of the library that have no prediction for this "
        "model set yet, one transaction per batch. Safe to interrupt (Ctrl-C finishes the batch; "
        "a crash loses only the batch in flight): the next start resumes. Model options default "
        "to the settings file.",
    )
    add_db_arguments(p, settings=False)
    add_model_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--policy",
        choices=("progressive", "paper", "fast"),
        default=None,
        help="progressive: a fast pass over every image first (provisional scores), then the "
        "paper method image by image, most suspicious first; paper or fast: one pass in that "
        "mode. Default: fast with --mode fast, else progressive on a CPU and paper on a GPU",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="score again the images that failed or were given up after interruptions (after "
        "replacing a damaged file or updating a decoder)",
    )
    p.set_defaults(func=run)


def _eta(sec: float | None) -> str:
    if sec is None:
        return "?"
    sec = int(sec)
    return f"{sec // 3600}:{sec % 3600 // 60:02d}:{sec % 60:02d}"


def run(args: argparse.Namespace) -> int:
    from cxrlt_desktop.commands._model_options import (
        load_scoring_predictors,
        open_for_scoring,
        requested_policy,
    )
    from cxrlt_desktop.library.scoring import score_library

    opened = open_for_scoring(args, "score-library")
    if opened is None:
        return 2
    settings, config, store = opened

    if args.retry_failed:
        from cxrlt_desktop.library.scoring import retry_failed

        cleared = retry_failed(store)
        print(f"score-library: {cleared} failed image(s) will be tried again", file=sys.stderr)

    from cxrlt_desktop.library.progressive import score_progressive

    loaded = load_scoring_predictors(
        config, requested_policy(args, settings, config), "score-library"
    )
    if loaded is None:
        store.close()
        return 1
    predictor, fast_predictor, policy = loaded

    stop = {"flag": False}

    def _on_sigint(_sig, _frame) -> None:  # noqa: ANN001
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True
        print(
            "cxrlt score-library: stopping after this batch (Ctrl-C again to abort)",
            file=sys.stderr,
        )

    from sqlalchemy.exc import DBAPIError, OperationalError

    from cxrlt_desktop.store import database_error_message

    old = signal.signal(signal.SIGINT, _on_sigint)
    last = None
    kw = dict(
        should_stop=lambda: stop["flag"], thresholds=settings.thresholds, map_path=settings.map_path
    )
    if fast_predictor is not None:
        passes = score_progressive(
            store, fast_predictor, predictor, batch_size=predictor.config.batch_size, **kw
        )
    else:
        passes = ((policy, prog) for prog in score_library(store, predictor, **kw))

    def label(name: str) -> str:  # the pass is named in progressive runs only
        return f"score-library ({name} pass)" if fast_predictor is not None else "score-library"

    try:
        for name, prog in passes:
            last = prog
            for path, reason in prog.last_errors:
                print(
                    f"cxrlt score-library: {printable(path)}: {printable(reason)}", file=sys.stderr
                )
            if not args.no_progress:
                print(
                    f"{label(name)}: {prog.done + prog.failed}/{prog.total} "
                    f"({prog.done} scored, {prog.failed} failed) {prog.rate:.2f} images/s "
                    f"ETA {_eta(prog.eta)}",
                    file=sys.stderr,
                    flush=True,
                )
    except OperationalError as e:  # a read-only database file, a full disk
        print(
            f"cxrlt score-library: error: cannot write to {store!r}: {printable(e.orig)}",
            file=sys.stderr,
        )
        return 1
    except DBAPIError as e:  # "database disk image is malformed" and its kind
        print(
            f"cxrlt score-library: error: {printable(database_error_message(store, e))}",
            file=sys.stderr,
        )
        return 1
    finally:
        signal.signal(signal.SIGINT, old)
        store.close()
    if last is not None and last.cancelled:
        print("cxrlt score-library: cancelled; run it again to resume", file=sys.stderr)
        return 130
    if last is not None:
        print(
            f"score-library: finished: {last.done} scored, {last.failed} failed, "
            f"{last.already_scored} already scored "
            + (f"(run {last.run_id})" if last.run_id is not None else "(nothing to do: no run)"),
            file=sys.stderr,
        )
    return 0
