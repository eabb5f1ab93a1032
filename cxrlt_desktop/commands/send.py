"""``cxrlt send``: the AI-result SR, the review SR and the attention heatmap to a PACS.

Destinations are the settings' ``[pacs.NAME]`` tables (C-STORE for aet/host/port, STOW-RS for
url). Every object sent is recorded (``dicom_send``); failures are kept and sent again with
``--retry-failed``. See docs/dicom-node.md.
"""

from __future__ import annotations

import argparse
import sys

from cxrlt_desktop.commands._destinations import (
    add_destination_arguments,
    error,
    settings_and_destination,
)
from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001
    p = subparsers.add_parser(
        "send",
        help="send AI results (SR, heatmap) and review SRs to a PACS",
        description="Send the results of the chosen images to a PACS destination of the "
        "settings: an AI-result SR for every scored image, a review SR where verdicts exist "
        "(with the AI-result SR it references), the attention heatmap as a Secondary Capture. "
        "Objects already sent and unchanged since are not sent again; failures are recorded "
        "and sent again with --retry-failed.",
    )
    add_destination_arguments(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--study", nargs="+", action="extend", default=None, metavar="UID", help="these studies"
    )
    which.add_argument("--all-scored", action="store_true", help="every scored image")
    which.add_argument("--all-reviewed", action="store_true", help="every image with a verdict")
    p.add_argument(
        "--what",
        default="ai-sr,review-sr,heatmap",
        metavar="KINDS",
        help="comma-separated: ai-sr, review-sr, heatmap (default: all three)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="send the failed objects of this destination again (of the chosen studies, or all)",
    )
    p.set_defaults(func=run)


def _error(text: object) -> int:
    return error("send", text)


def run(args: argparse.Namespace) -> int:
    from cxrlt_desktop.commands._model_options import resolve_db
    from cxrlt_desktop.dicomnode.destinations import DestinationError, local_aet
    from cxrlt_desktop.dicomnode.qr import QRError, check_uid
    from cxrlt_desktop.dicomnode.send import (
        SendError,
        parse_what,
        retry_failed,
        select_images,
        send_results,
    )
    from cxrlt_desktop.settings import SettingsError
    from cxrlt_desktop.store import StoreError, open_store

    if not (args.study or args.all_scored or args.all_reviewed or args.retry_failed):
        return _error("choose what to send: --study UID..., --all-scored or --all-reviewed")
    try:
        settings, dest = settings_and_destination(args)
        whats = parse_what(args.what)
        for uid in args.study or []:
            check_uid(uid, "StudyInstanceUID")
    except (SettingsError, DestinationError, QRError, ValueError) as e:
        return _error(e)
    try:
        store = open_store(resolve_db(args, settings), create=False)
    except StoreError as e:
        return _error(e)
    aet = local_aet(settings)
    status = 0
    try:
        image_ids = None
        if args.study or args.all_scored or args.all_reviewed:
            image_ids, unknown = select_images(
                store,
                study_uids=args.study or (),
                all_scored=args.all_scored,
                all_reviewed=args.all_reviewed,
            )
            for uid in unknown:
                print(f"cxrlt send: study {uid} is not in the library", file=sys.stderr)
                status = 1
        try:
            if args.retry_failed:
                report = retry_failed(
                    store, dest, aet, image_ids=image_ids, thresholds=settings.thresholds
                )
            else:
                report = send_results(
                    store, dest, aet, image_ids or [], whats, thresholds=settings.thresholds
                )
        except SendError as e:
            print(f"cxrlt send: {printable(e)}", file=sys.stderr)
            print(
                "cxrlt send: the failure is recorded; send again with --retry-failed",
                file=sys.stderr,
            )
            return 1
        for p in report.problems:
            print(f"cxrlt send: {printable(p)}", file=sys.stderr)
        print(
            f"send: {dest.describe()}: {report.sent} sent, {report.failed} failed, "
            f"{report.unchanged} already sent, {report.nothing} with nothing to send"
        )
        if report.failed:
            print(
                "cxrlt send: failures are recorded; send them again with --retry-failed",
                file=sys.stderr,
            )
            status = 1
        return status
    finally:
        store.close()
