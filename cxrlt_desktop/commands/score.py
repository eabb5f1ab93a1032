"""``cxrlt score``: score image files and folders into a CXR-LT CSV.

The CSV header is ``ImageID`` then the 36 classes in engine order; ImageID is the path relative
to the folder given (``/`` separators), or the file name for a file given directly. Files that
cannot be scored go to ``FILE.errors.csv`` (ImageID, reason), never into the scores. Without a
CLIP model the 6 zero-shot cells are empty; without Task 1 checkpoints the 30 Task 1 cells are.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from pathlib import Path


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
                    items.append((entry.relative_to(inp).as_posix(), entry))
                else:
                    try:
                        image_id = Path(entry.path).relative_to(inp).as_posix()
                    except ValueError:
                        image_id = str(entry.path)
                    if image_id == ".":  # the folder itself (e.g. empty)
                        image_id = str(inp)
                    problems.append((image_id, entry.reason))
        elif inp.is_file():
            items.append((inp.name, inp))
        else:
            problems.append((str(inp), "no such file or folder"))
    return items, problems


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.9g}"


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    scored = 0
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
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
                    errors.append((image_id, res.reason or "unknown error"))
                    bar.write(f"cxrlt score: {res.path}: {res.reason}", file=sys.stderr)
                bar.update(1)
        finally:
            bar.close()
    os.replace(tmp, out)
    return scored


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
        print(f"cxrlt score: error: {e}", file=sys.stderr)
        return 1

    items, errors = _collect(list(args.inputs))
    out: Path = args.out
    scored = _write_scores(predictor, items, errors, out, args.no_progress)
    err_path = _errors_path(out)
    with open(err_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageID", "reason"])
        writer.writerows(errors)
    print(
        f"cxrlt score: {scored} image(s) scored into {out}; {len(errors)} rejected"
        + (f" (see {err_path})" if errors else ""),
        file=sys.stderr,
    )
    if scored == 0 and errors:
        return 1
    return 0
