"""``cxrlt export --out DIR [--db URL] [--include-phi] [--[no-]shift-dates] [--copy-images]
[--allow-burned-in] [--sr]``."""

from __future__ import annotations

import argparse
import sys

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001 - argparse's private subparsers type
    p = subparsers.add_parser(
        "export",
        help="export the radiologists' verdicts as CXR-LT training labels (de-identified)",
        description=(
            "Write labels.csv (CXR-LT training format, radiologist verdicts only), "
            "disagreements.csv (verdicts that contradict the model at its operating threshold) "
            "and README.txt into a new or empty folder; optionally the images as PNG and the "
            "AI-result and review DICOM SRs per image. De-identified unless --include-phi: "
            "pseudonymous IDs, UIDs and "
            "reviewers, no names, birth dates, accession numbers or institutions, dates shifted per "
            "patient, notes scrubbed of every identifier in the store and the image's header, "
            "images that may show burned-in text left out. Every file is readable by you only."
        ),
    )
    p.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: the settings' or the user data folder's)",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="export folder: must be new or empty"
    )
    p.add_argument(
        "--include-phi", action="store_true", help="keep patient identifiers (NOT de-identified)"
    )
    p.add_argument(
        "--shift-dates",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="shift each patient's dates by a per-patient offset of 1-730 days into the past "
        "(default: on when de-identified, off with --include-phi)",
    )
    p.add_argument(
        "--copy-images", action="store_true", help="write images/<ImageID>.png for training"
    )
    p.add_argument(
        "--allow-burned-in",
        action="store_true",
        help="with --copy-images, also copy images whose pixels may show burned-in text "
        "(BurnedInAnnotation YES, or a secondary capture without the flag); check them by eye",
    )
    p.add_argument(
        "--sr",
        action="store_true",
        help="write DICOM Structured Reports under sr/: per image the AI-result SR "
        "(<ImageID>_ai.dcm, UNVERIFIED, not for diagnostic use) and the review SR "
        "(<ImageID>_review.dcm, the radiologists' verdicts, VERIFIED)",
    )
    p.add_argument(
        "--demo", action="store_true", help="mark the export DEMO even without demo manifests"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cxrlt_desktop.export import ExportError, export_feedback
    from cxrlt_desktop.settings import Settings, SettingsError
    from cxrlt_desktop.store import StoreError, open_store

    try:
        settings = Settings.load()
    except SettingsError as e:
        print(f"cxrlt export: {printable(e)}", file=sys.stderr)
        return 2
    try:
        store = open_store(args.db or settings.database, create=False)
    except StoreError as e:
        print(f"cxrlt export: {printable(e)}", file=sys.stderr)
        return 2

    last = [""]

    def progress(p) -> None:  # noqa: ANN001
        if args.quiet or p.stage not in ("images", "sr"):
            return
        line = f"\r{p.stage}: {p.done}/{p.total}"
        print(line, end="", file=sys.stderr, flush=True)
        last[0] = line
        if p.done == p.total:
            print(file=sys.stderr)

    try:
        result = export_feedback(
            store,
            args.out,
            include_phi=args.include_phi,
            shift_dates=args.shift_dates,
            copy_images=args.copy_images,
            sr=args.sr,
            allow_burned_in=args.allow_burned_in,
            demo=args.demo,
            thresholds=settings.thresholds or None,
            progress=progress,
        )
    except ExportError as e:
        print(f"cxrlt export: {printable(e)}", file=sys.stderr)
        return 1
    finally:
        store.close()
    for problem in result.problems:
        print(f"warning: {printable(problem)}", file=sys.stderr)
    parts = [
        f"{result.n_images} reviewed images ({result.n_positive} present, {result.n_negative} absent)",
        f"{result.n_disagreements} disagreements",
    ]
    if args.copy_images:
        parts.append(f"{result.n_images_copied} images")
        if result.n_images_burned_in:
            parts.append(f"{result.n_images_burned_in} left out for burned-in text")
    if result.n_notes_withheld:
        parts.append(f"{result.n_notes_withheld} notes withheld")
    if args.sr:
        parts.append(f"{result.n_sr} SR files")
    demo = " DEMO" if result.demo else ""
    phi = " WITH PATIENT IDENTIFIERS" if args.include_phi else " (de-identified)"
    print(f"wrote{demo} export to {printable(result.out_dir)}{phi}: " + ", ".join(parts))
    return 0
