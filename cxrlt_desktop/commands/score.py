"""``cxrlt score``: score image files and folders into a CXR-LT CSV.

The CSV header is ``ImageID`` then the 36 classes in engine order; ImageID is the path relative
to the folder given (``/`` separators), or the file name for a file given directly, with
control characters and bytes that are not UTF-8 written as backslash escapes (``\\xff.png``,
see :mod:`._text`). Files that cannot be scored go to ``FILE.errors.csv`` (ImageID, reason),
never into the scores. Without a CLIP model the 6 zero-shot cells are empty; without Task 1
checkpoints the 30 Task 1 cells are. Both files are written through a temporary file and
renamed when complete (mode 0600); on any error the temporary file is removed. Cells a
spreadsheet would run as a formula are neutralised (:mod:`cxrlt_desktop.export.safe_csv`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="score images with the engine into a CSV",
        description="Score chest X-ray files and folders (walked recursively) into a CSV of the 36 "
        "CXR-LT probabilities. Rejected files go to FILE.errors.csv.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", type=Path, help="image files and/or folders"
    )
    p.add_argument("--out", required=True, type=Path, metavar="FILE.csv", help="output CSV")
    from cxrlt_desktop.commands._model_options import add_model_arguments

    add_model_arguments(
        p,
        settings=False,
        task1_checkpoint=[],
        mode="paper",
        normal_alpha=0.5,
        device="auto",
        batch_size=8,
        image_size=512,
        cpu_backend="auto",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _errors_path(out: Path) -> Path:
    return (
        out.with_name(out.stem + ".errors.csv")
        if out.suffix
        else out.with_name(out.name + ".errors.csv")
    )


def _collect(inputs: list[Path]) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """(ImageID, path) for every file to score, and (ImageID, reason) for what cannot be walked."""
    from engine.imageio import iter_image_files

    items: list[tuple[str, Path]] = []
    problems: list[tuple[str, str]] = []
    for inp in inputs:
        if inp.is_dir():
            for entry in iter_image_files([inp]):
                if isinstance(entry, Path):
                    items.append((printable(entry.relative_to(inp).as_posix()), entry))
                else:
                    try:
                        image_id = Path(entry.path).relative_to(inp).as_posix()
                    except ValueError:
                        image_id = str(entry.path)
                    if image_id == ".":  # the folder itself (e.g. empty)
                        image_id = str(inp)
                    problems.append((printable(image_id), printable(entry.reason)))
        elif inp.is_file():
            items.append((printable(inp.name), inp))
        else:
            problems.append((printable(inp), "no such file or folder"))
    return items, problems


def _fmt(x: float):  # noqa: ANN202 - a Numeric (str)
    from cxrlt_desktop.export.safe_csv import Numeric

    return Numeric("" if math.isnan(x) else f"{x:.9g}")


def _argument_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the model arguments, or None."""
    if not args.task1_checkpoint and args.clip_model is None:
        return "give --task1-checkpoint and/or --clip-model (no model to score with)"
    if args.task1_weights is not None and len(args.task1_weights) != len(args.task1_checkpoint):
        return (
            f"{len(args.task1_weights)} --task1-weights for "
            f"{len(args.task1_checkpoint)} --task1-checkpoint files; give one weight per checkpoint"
        )
    if args.batch_size < 1:
        return "--batch-size must be >= 1"
    return None


def _engine_config(args: argparse.Namespace):  # noqa: ANN202 - engine.predictor.EngineConfig
    from cxrlt_desktop.paths import cache_dir
    from engine.predictor import EngineConfig

    return EngineConfig(
        task1_checkpoints=list(args.task1_checkpoint),
        task1_weights=args.task1_weights,
        task1_arch=args.task1_arch,  # None: detected from the file, else convnextv2_base
        task1_arch_strict=args.task1_arch is not None,
        clip_model=args.clip_model,
        prompts=args.prompts,
        mode=args.mode,
        normal_alpha=args.normal_alpha,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        image_size=args.image_size,
        cpu_backend=args.cpu_backend,
        cache_dir=cache_dir(),
    )


def _write_scores(
    predictor,  # noqa: ANN001 - engine.predictor.Predictor
    items: list[tuple[str, Path]],
    errors: list[tuple[str, str]],
    out: Path,
    no_progress: bool,
) -> int:
    """Score ``items`` into ``out`` (via a ``.part`` file); failures go to ``errors``.
    Returns the number of images scored."""
    from tqdm import tqdm

    from engine.classes import ALL_CLASSES

    ids = {path: image_id for image_id, path in items}

    def fill(writer) -> int:  # noqa: ANN001 - SafeWriter
        scored = 0
        writer.writerow(["ImageID", *ALL_CLASSES])
        bar = tqdm(
            total=len(items),
            unit="img",
            file=sys.stderr,
            disable=no_progress,
            dynamic_ncols=True,
        )
        try:
            for res in predictor.predict_paths([p for _, p in items]):
                image_id = ids[res.path]
                if res.ok:
                    writer.writerow([image_id, *(_fmt(float(x)) for x in res.probs)])
                    scored += 1
                else:
                    reason = printable(res.reason or "unknown error")
                    errors.append((image_id, reason))
                    bar.write(f"cxrlt score: {printable(res.path)}: {reason}", file=sys.stderr)
                bar.update(1)
        finally:
            bar.close()
        return scored

    from cxrlt_desktop.export.safe_csv import write_csv_atomically

    return write_csv_atomically(out, fill)


def run(args: argparse.Namespace) -> int:
    problem = _argument_error(args)
    if problem is not None:
        print(f"cxrlt score: error: {problem}", file=sys.stderr)
        return 2

    from engine.checkpoints import CheckpointError
    from engine.predictor import EngineError, Predictor
    from engine.zeroshot import ZeroShotError

    try:
        predictor = Predictor(_engine_config(args))
    except (CheckpointError, ZeroShotError, EngineError) as e:
        print(f"cxrlt score: error: {printable(e)}", file=sys.stderr)
        return 1

    items, errors = _collect(list(args.inputs))
    out: Path = args.out
    from cxrlt_desktop.export.safe_csv import write_csv_atomically

    try:
        scored = _write_scores(predictor, items, errors, out, args.no_progress)
        err_path = _errors_path(out)
        write_csv_atomically(err_path, lambda w: w.writerows([["ImageID", "reason"], *errors]))
    except OSError as e:
        print(
            f"cxrlt score: error: {printable(e.filename or out)}: cannot write "
            f"({printable(e.strerror or e)})",
            file=sys.stderr,
        )
        return 1
    print(
        f"cxrlt score: {scored} image(s) scored into {printable(out)}; {len(errors)} rejected"
        + (f" (see {printable(err_path)})" if errors else ""),
        file=sys.stderr,
    )
    if scored == 0 and errors:
        return 1
    return 0
