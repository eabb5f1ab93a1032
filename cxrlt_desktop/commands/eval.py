"""``cxrlt eval``: per-class and macro AP, AUROC, F1 and ECE of a predictions CSV."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cxrlt_desktop.commands._text import printable


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` parser."""
    p = subparsers.add_parser(
        "eval",
        help="score predictions against labels: mAP, mAUC, mF1, mECE",
        description="Evaluate a `cxrlt score` CSV against a CXR-LT label CSV. Empty label cells "
        "are ignored; classes without a positive label are listed and left out of the means.",
    )
    p.add_argument("--labels", type=Path, required=True, help="label CSV (CXR-LT format)")
    p.add_argument("--predictions", type=Path, required=True, help="`cxrlt score` CSV")
    p.add_argument("--out", type=Path, help="folder for report.md, metrics.json and the PNG plots")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    p.set_defaults(func=run)


def load_pair(
    labels_path: Path, predictions_path: Path
) -> tuple[Any, Any, tuple[str, ...], list[str]]:
    """Read and align labels and predictions: ``(labels, probs, classes, problems)``."""
    from training.data import align_predictions, read_labels_csv, read_predictions_csv

    table = read_labels_csv(labels_path)
    ids, classes, probs, pproblems = read_predictions_csv(predictions_path)
    labels, preds, common, aproblems = align_predictions(table, ids, classes, probs)
    return labels, preds, common, table.problems + pproblems + aproblems


def read_pair(args: argparse.Namespace, command: str) -> tuple[Any, Any, tuple[str, ...]] | None:
    """``(labels, probs, classes)`` of ``--labels`` and ``--predictions``, their problems
    printed as warnings; None after printing ``cxrlt COMMAND: why`` when they cannot be read
    (the command exits 1)."""
    try:
        labels, probs, classes, problems = load_pair(args.labels, args.predictions)
    except ValueError as e:
        print(f"cxrlt {command}: {printable(e)}", file=sys.stderr)
        return None
    for msg in problems:
        print(f"warning: {printable(msg)}", file=sys.stderr)
    return labels, probs, classes


def run(args: argparse.Namespace) -> int:
    """Evaluate; exit status 0, or 1 when the inputs cannot be used."""
    from training.metrics import evaluate

    pair = read_pair(args, "eval")
    if pair is None:
        return 1
    labels, probs, classes = pair
    if labels.shape[0] == 0:
        print(
            f"cxrlt eval: {printable(args.labels)}: no labelled image has a prediction",
            file=sys.stderr,
        )
        return 1
    result = evaluate(labels, probs, classes)
    if args.out is not None:
        from training.report import write_report

        report = write_report(
            args.out,
            result,
            labels,
            probs,
            classes,
            {"labels": str(args.labels), "predictions": str(args.predictions)},
        )
        print(f"report: {printable(report)}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    m = result.macro

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    print(
        f"{'class':32s} {'n':>6s} {'pos':>5s} {'AP':>7s} {'AUROC':>7s} {'F1@0.5':>7s} {'F1@best':>7s} {'thr':>6s} {'ECE':>7s}"
    )
    for name, r in result.per_class.items():
        print(
            f"{name:32s} {r['n']:6d} {r['positives']:5d} {f(r['AP']):>7s} {f(r['AUROC']):>7s} "
            f"{f(r['F1@0.5']):>7s} {f(r['F1@best']):>7s} {r['best_threshold']:6.3f} {f(r['ECE']):>7s}"
        )
    print(
        f"macro over {m['classes']} classes: mAP {f(m['mAP'])}  mAUC {f(m['mAUC'])}  "
        f"mF1 {f(m['mF1'])} (at 0.5)  mF1_best {f(m['mF1_best'])}  mECE {f(m['mECE'])}"
    )
    if result.excluded:
        print("excluded (no positive label or no prediction): " + ", ".join(result.excluded))
    return 0
