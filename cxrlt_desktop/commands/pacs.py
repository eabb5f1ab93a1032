"""``cxrlt pacs find|get``: query a configured PACS for studies and retrieve them (priors).

``find`` asks at study level (C-FIND, or QIDO-RS for a ``url`` destination); ``get`` retrieves
studies into the inbox and the library (C-GET, WADO-RS for a ``url`` destination, or C-MOVE to
this node's AE title with ``--move``, which needs ``cxrlt listen`` running and known to the
PACS). Destinations are the settings' ``[pacs.NAME]`` tables. See docs/dicom-node.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

from cxrlt_desktop.commands._destinations import (
    add_destination_arguments,
    error,
    settings_and_destination,
)
from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001
    p = subparsers.add_parser(
        "pacs",
        help="query a PACS for studies and retrieve them (priors)",
        description="Query a PACS destination of the settings ([pacs.NAME]: aet/host/port for "
        "DIMSE, url for DICOMweb) and retrieve studies into the inbox and the library.",
    )
    sub = p.add_subparsers(dest="pacs_command", metavar="ACTION")
    sub.required = True

    f = sub.add_parser(
        "find",
        help="list the PACS's studies (C-FIND or QIDO-RS)",
        description="Study-level query. Prints one line per study, newest first (or a JSON "
        "array with --json).",
    )
    add_destination_arguments(f, db=False)
    f.add_argument("--patient-id", default=None, metavar="ID", help="the patient's ID")
    f.add_argument(
        "--study-date",
        default=None,
        metavar="RANGE",
        help="YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD (until) or YYYYMMDD- (since)",
    )
    f.add_argument(
        "--modality", default=None, metavar="CR,DX", help="modalities in the study (any of)"
    )
    f.add_argument("--json", action="store_true", help="print a JSON array of the studies")
    f.set_defaults(func=run_find)

    g = sub.add_parser(
        "get",
        help="retrieve studies into the inbox and the library (C-GET, WADO-RS or C-MOVE)",
        description="Retrieve the studies' radiographs (CR, DX) into the inbox "
        "(<inbox>/<Study>/<Series>/<SOP>.dcm) and add them to the library, queued for scoring.",
    )
    add_destination_arguments(g)
    g.add_argument("study_uids", nargs="+", metavar="STUDY_UID")
    g.add_argument(
        "--move",
        action="store_true",
        help="C-MOVE to this node's AE title ([dicom_node] aet) instead of C-GET: the PACS "
        "pushes the study to `cxrlt listen`, which must be running and known to the PACS",
    )
    g.set_defaults(func=run_get)


def _error(text: object) -> int:
    return error("pacs", text)


def _each_study(
    uids: Iterable[str], fetch: Callable[[str], Any], line: Callable[[str, Any], str]
) -> tuple[int, list[Any]]:
    """``fetch(uid)`` for each study, printing its problems and ``line(uid, result)``: the exit
    status (1 when a study could not be fetched or an object failed, else 0) and the results."""
    from cxrlt_desktop.dicomnode.qr import QRError

    status, results = 0, []
    for uid in uids:
        try:
            r = fetch(uid)
        except QRError as e:
            print(f"cxrlt pacs get: {printable(e)}", file=sys.stderr)
            status = 1
            continue
        results.append(r)
        for p in r.problems:
            print(f"cxrlt pacs get: {printable(p)}", file=sys.stderr)
        print(line(uid, r))
        if r.n_failed:
            status = 1
    return status, results


def run_find(args: argparse.Namespace) -> int:
    from cxrlt_desktop.dicomnode.destinations import DestinationError, local_aet
    from cxrlt_desktop.dicomnode.qr import (
        QRError,
        check_date_range,
        check_modalities,
        check_patient_id,
        find_studies,
    )
    from cxrlt_desktop.settings import SettingsError

    try:
        settings, dest = settings_and_destination(args)
        modalities = check_modalities(m for m in (args.modality or "").split(",") if m.strip())
        if args.patient_id is not None:
            check_patient_id(args.patient_id)
        if args.study_date is not None:
            check_date_range(args.study_date)
    except (SettingsError, DestinationError, QRError) as e:
        return _error(e)
    try:
        matches, problems = find_studies(
            dest,
            local_aet(settings),
            patient_id=args.patient_id,
            study_date=args.study_date,
            modalities=modalities,
        )
    except QRError as e:
        print(f"cxrlt pacs find: {printable(e)}", file=sys.stderr)
        return 1
    for p in problems:
        print(f"cxrlt pacs find: {printable(p)}", file=sys.stderr)
    if args.json:
        print(json.dumps([m.to_json() for m in matches], indent=1, ensure_ascii=False))
        return 0
    for m in matches:
        n = "?" if m.n_instances is None else str(m.n_instances)
        print(
            printable(
                f"{m.study_date or '-':8}  {m.study_uid}  {m.patient_id or '-'}  "
                f"{','.join(m.modalities) or '-'}  {n} image(s)  {m.description}"
            ).rstrip()
        )
    print(f"pacs find: {len(matches)} stud{'y' if len(matches) == 1 else 'ies'}", file=sys.stderr)
    return 0


def run_get(args: argparse.Namespace) -> int:
    from cxrlt_desktop.commands._model_options import resolve_db
    from cxrlt_desktop.dicomnode.destinations import DestinationError, local_aet
    from cxrlt_desktop.dicomnode.inbox import Inbox
    from cxrlt_desktop.dicomnode.qr import (
        QRError,
        add_to_library,
        check_uid,
        move_study,
        retrieve_study,
    )
    from cxrlt_desktop.dicomnode.receiver import node_config
    from cxrlt_desktop.settings import SettingsError
    from cxrlt_desktop.store import StoreError, open_store

    try:
        settings, dest = settings_and_destination(args)
        for uid in args.study_uids:
            check_uid(uid, "StudyInstanceUID")
    except (SettingsError, DestinationError, QRError) as e:
        return _error(e)
    aet = local_aet(settings)
    if args.move:
        if dest.is_web:
            return _error(f"{dest.describe()}: --move needs a DIMSE destination (aet, host, port)")
        status, _ = _each_study(
            args.study_uids,
            lambda uid: move_study(dest, aet, uid),
            lambda uid, r: (
                f"pacs get: {uid}: {r.moved} object(s) moved to {aet}, "
                f"{r.n_skipped} skipped (not radiographs), {r.n_failed} failed"
            ),
        )
        return status

    cfg = node_config(settings.dicom_node)
    try:
        store = open_store(resolve_db(args, settings))
    except StoreError as e:
        return _error(e)
    try:
        inbox = Inbox(cfg.inbox, cfg.min_free_mb * 1024 * 1024)
        status, results = _each_study(
            args.study_uids,
            lambda uid: retrieve_study(dest, aet, uid, inbox),
            lambda uid, r: (
                f"pacs get: {uid}: {r.n_new} new, {r.n_present} already in the "
                f"inbox, {r.n_skipped} skipped (not radiographs), {r.n_failed} failed"
            ),
        )
        image_ids, problems = add_to_library(store, results)
        for p in problems:
            print(f"cxrlt pacs get: {printable(p)}", file=sys.stderr)
        print(
            f"pacs get: library: {len(image_ids)} image(s) added or changed, queued for scoring; "
            f"inbox {printable(inbox.root)}",
            file=sys.stderr,
        )
        return status
    finally:
        store.close()
