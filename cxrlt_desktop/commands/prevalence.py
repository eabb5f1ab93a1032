"""``cxrlt prevalence``: per-class prevalence of a label CSV, in resources/classes.csv format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cxrlt_desktop.commands._text import printable

RARE_BELOW = 0.01


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prevalence`` parser."""
    p = subparsers.add_parser(
        "prevalence",
        help="per-class prevalence of a label CSV and the rare flag (< 1 %%)",
        description="Print name,display_name,task,prevalence,rare,threshold for every engine "
        "class (the resources/classes.csv columns). Prevalence = positive labels / labelled "
        "images of that class (empty cells are not counted); rare = prevalence < 1 %%. A class "
        "without labels keeps an empty prevalence and its current rare flag.",
    )
    p.add_argument("--labels", type=Path, required=True, help="label CSV (CXR-LT format)")
    p.add_argument("--out", type=Path, help="write the CSV here instead of stdout")
    p.set_defaults(func=run)


def prevalence_rows(labels_path: Path) -> tuple[list[list[Any]], list[str], int]:
    """Rows in classes.csv order and format (numbers as :class:`Numeric`), the problems met,
    and the number of images."""
    import numpy as np

    from cxrlt_desktop.export.safe_csv import Numeric
    from engine.classes import class_table
    from training.data import read_labels_csv

    table = read_labels_csv(labels_path)
    rows = []
    for info in class_table():
        prev, rare = "", "1" if info.rare else "0"
        if info.name in table.classes:
            col = table.labels[:, table.classes.index(info.name)]
            known = ~np.isnan(col)
            if known.any():
                p = float(np.mean(col[known] > 0.5))
                prev = Numeric(f"{p:.4g}")
                rare = "1" if p < RARE_BELOW else "0"
        rows.append(
            [info.name, info.display_name, info.task, prev, rare, Numeric(f"{info.threshold:g}")]
        )
    return rows, table.problems, len(table)


def run(args: argparse.Namespace) -> int:
    """Print (or write) the table; exit status 0, or 1 for an unusable CSV."""
    from cxrlt_desktop.export.safe_csv import csv_text, write_csv_atomically

    try:
        rows, problems, n = prevalence_rows(args.labels)
    except ValueError as e:
        print(f"cxrlt prevalence: {printable(e)}", file=sys.stderr)
        return 1
    for msg in problems:
        print(f"warning: {printable(msg)}", file=sys.stderr)
    header = ["name", "display_name", "task", "prevalence", "rare", "threshold"]
    if args.out is not None:
        try:
            write_csv_atomically(args.out, lambda w: w.writerows([header, *rows]))
        except OSError as e:
            print(
                f"cxrlt prevalence: {printable(args.out)}: cannot write ({printable(e.strerror or e)})",
                file=sys.stderr,
            )
            return 1
        print(f"wrote {printable(args.out)} ({n} images)", file=sys.stderr)
    else:
        sys.stdout.write(csv_text(header, rows))
        print(f"{n} images", file=sys.stderr)
    return 0
