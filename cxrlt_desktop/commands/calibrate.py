"""``cxrlt calibrate``: per-class temperature scaling fitted on reviewed labels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cxrlt_desktop.commands._text import printable


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` parser."""
    p = subparsers.add_parser(
        "calibrate",
        help="fit per-class temperatures on reviewed labels; prints mECE before and after",
        description="Fit one temperature per class (p' = sigmoid(logit(p) / T), minimising the "
        "NLL of the labelled rows) and write {class: T} as JSON for the engine's calibration "
        "setting. Classes need a positive and a negative label.",
    )
    p.add_argument("--labels", type=Path, required=True, help="label CSV (reviewed labels)")
    p.add_argument("--predictions", type=Path, required=True, help="`cxrlt score` CSV")
    p.add_argument("--out", type=Path, required=True, help="calibration JSON to write")
    p.add_argument("--json", action="store_true", help="print the fit summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit and save; exit status 0, or 1 when nothing can be fitted."""
    from cxrlt_desktop.commands.eval import read_pair
    from training.calibration import fit_calibration, save_temperatures

    pair = read_pair(args, "calibrate")
    if pair is None:
        return 1
    labels, probs, classes = pair
    result = fit_calibration(labels, probs, classes)
    if not result.temperatures:
        print(
            f"cxrlt calibrate: {printable(args.labels)}: no class has both a positive and a negative label "
            "with a prediction; nothing to fit",
            file=sys.stderr,
        )
        return 1
    save_temperatures(args.out, result.temperatures)
    if args.json:
        print(
            json.dumps(
                {
                    "out": str(args.out),
                    "temperatures": result.temperatures,
                    "mECE_before": result.mece_before,
                    "mECE_after": result.mece_after,
                    "NLL_before": result.nll_before,
                    "NLL_after": result.nll_after,
                    "per_class": result.per_class,
                    "skipped": result.skipped,
                },
                indent=2,
            )
        )
        return 0
    print(f"{'class':32s} {'n':>6s} {'T':>7s} {'ECE before':>11s} {'ECE after':>10s}")
    for name, r in result.per_class.items():
        print(
            f"{name:32s} {r['n']:6d} {r['temperature']:7.3f} {r['ece_before']:11.4f} {r['ece_after']:10.4f}"
        )
    for name, why in result.skipped.items():
        print(f"{name:32s} skipped: {why}")
    print(
        f"mECE before {result.mece_before:.4f}, after {result.mece_after:.4f} "
        f"(mean NLL {result.nll_before:.4f} -> {result.nll_after:.4f}) over "
        f"{len(result.temperatures)} classes, on the data it was fitted on"
    )
    print(f"wrote {printable(args.out)}")
    return 0
