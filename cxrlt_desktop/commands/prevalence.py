"""``cxrlt prevalence``: per-class prevalence of a label CSV, in resources/classes.csv format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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


def prevalence_rows(labels_path: Path) -> tuple[list[list[str]], list[str], int]:
    """Rows in classes.csv order and format, the problems met, and the number of images."""
    import numpy as np

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
                prev = f"{p:.4g}"
                rare = "1" if p < RARE_BELOW else "0"
        rows.append(
            [info.name, info.display_name, str(info.task), prev, rare, f"{info.threshold:g}"]
        )
    return rows, table.problems, len(table)


def run(args: argparse.Namespace) -> int:
    """Print (or write) the table; exit status 0, or 1 for an unusable CSV."""
    import csv
    import io

    try:
        rows, problems, n = prevalence_rows(args.labels)
    except ValueError as e:
        print(f"cxrlt prevalence: {e}", file=sys.stderr)
        return 1
    for msg in problems:
        print(f"warning: {msg}", file=sys.stderr)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "display_name", "task", "prevalence", "rare", "threshold"])
    w.writerows(rows)
    if args.out is not None:
        args.out.write_text(buf.getvalue(), encoding="utf-8")
        print(f"wrote {args.out} ({n} images)", file=sys.stderr)
    else:
        sys.stdout.write(buf.getvalue())
        print(f"{n} images", file=sys.stderr)
    return 0
