"""``cxrlt inspect PATH... [--json] [--show-phi] [--decode]``: one record per file.

Folders are walked recursively. Each file gets OK or REJECTED with a one-line reason; the exit
status is 0 even when files are rejected (2 only for a usage error, which argparse reports).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:  # noqa: ANN001 - argparse's private subparsers type
    p = subparsers.add_parser(
        "inspect",
        help="check files or folders: is each a usable chest radiograph, and why not",
        description="Read the header of every file (folders walked recursively) and say whether "
        "it is a usable chest radiograph, with the reason when it is not. Patient-identifying "
        "fields are left out unless --show-phi is given.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files and/or folders")
    p.add_argument("--json", action="store_true", help="print a JSON array of records")
    p.add_argument(
        "--show-phi",
        action="store_true",
        help="include PatientName, PatientBirthDate, PatientID, AccessionNumber, InstitutionName",
    )
    p.add_argument(
        "--decode",
        action="store_true",
        help="also decode the pixels of accepted files (finds damaged compressed data; slower)",
    )
    p.set_defaults(func=run)


def _path_text(path: Path) -> str:
    """The path as text any output accepts (:func:`._text.printable`).

    A file name that is not valid UTF-8 reaches Python (POSIX) as lone surrogates, which a
    strict UTF-8 stdout cannot write: its bytes are shown as ``\\xNN`` escapes instead (the
    form ``cxrlt scan`` stores), and so are control characters.
    """
    return printable(path)


def _record(info: Any, show_phi: bool) -> dict[str, Any]:
    from engine.imageio import PHI_KEYWORDS

    rec: dict[str, Any] = {
        "path": _path_text(info.path),
        "ok": bool(info.ok),
        "reason": info.reason,
        "warnings": list(info.warnings),
        "format": info.format,
    }
    for key, value in info.meta.items():
        if key in PHI_KEYWORDS and not show_phi:
            continue
        rec[key] = value
    return rec


def _problem_record(path: Path, reason: str, show_phi: bool) -> dict[str, Any]:
    from engine.imageio import META_KEYWORDS, PHI_KEYWORDS

    rec: dict[str, Any] = {
        "path": _path_text(path),
        "ok": False,
        "reason": reason,
        "warnings": [],
        "format": None,
    }
    rec.update({k: None for k in META_KEYWORDS if show_phi or k not in PHI_KEYWORDS})
    return rec


def _summary(rec: dict[str, Any]) -> str:
    from pydicom.uid import UID

    parts = []
    if rec.get("Modality"):
        parts.append(str(rec["Modality"]))
    elif rec.get("format") and rec["format"] != "dicom":
        parts.append(str(rec["format"]).upper())
    if rec.get("Columns") and rec.get("Rows"):
        parts.append(f"{rec['Columns']}x{rec['Rows']}")
    if rec.get("PhotometricInterpretation"):
        parts.append(str(rec["PhotometricInterpretation"]))
    if rec.get("BitsStored"):
        parts.append(f"{rec['BitsStored']}-bit")
    if rec.get("TransferSyntaxUID"):
        parts.append(UID(rec["TransferSyntaxUID"]).name)
    if rec.get("ViewPosition"):
        parts.append(f"view {rec['ViewPosition']}")
    return ", ".join(parts)


def _line(rec: dict[str, Any]) -> str:
    if rec["ok"]:
        text = f"{rec['path']}: OK ({_summary(rec)})"
        if rec["warnings"]:
            text += " warning: " + "; ".join(rec["warnings"])
        return printable(text)
    return printable(f"{rec['path']}: REJECTED: {rec['reason']}")


def run(args: argparse.Namespace) -> int:
    import logging
    import warnings

    from engine.imageio import (
        ImageReadError,
        WalkProblem,
        iter_image_files,
        read_header,
        read_image,
    )

    records: list[dict[str, Any]] = []
    # A console whose encoding lacks a character of a file name (cp1252, ASCII) shows an escape
    # instead of aborting the listing half-way with UnicodeEncodeError.
    old_errors = getattr(sys.stdout, "errors", None)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None and old_errors == "strict":
        reconfigure(errors="backslashreplace")
    else:
        reconfigure = None
    # pydicom warns (and logs) about every non-conformant value; the record says what matters.
    pydicom_logger = logging.getLogger("pydicom")
    old_level = pydicom_logger.level
    pydicom_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for item in iter_image_files(args.paths):
                if isinstance(item, WalkProblem):
                    rec = _problem_record(item.path, item.reason, args.show_phi)
                else:
                    info = read_header(item)
                    if args.decode and info.ok:
                        try:
                            read_image(item)
                        except ImageReadError as exc:
                            info.ok, info.reason = False, exc.reason
                    rec = _record(info, args.show_phi)
                records.append(rec)
                if not args.json:
                    print(_line(rec), flush=True)
        if args.json:
            # \uXXXX escapes keep the JSON valid on a console that is not UTF-8.
            utf = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
            json.dump(records, sys.stdout, indent=2, ensure_ascii=not utf.startswith("utf8"))
            sys.stdout.write("\n")
        else:
            n_ok = sum(1 for r in records if r["ok"])
            print(
                f"{len(records)} files: {n_ok} OK, {len(records) - n_ok} rejected", file=sys.stderr
            )
    finally:
        pydicom_logger.setLevel(old_level)
        if reconfigure is not None:
            sys.stdout.flush()
            reconfigure(errors=old_errors)
    return 0
