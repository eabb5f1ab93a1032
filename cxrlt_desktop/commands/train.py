"""``cxrlt train``: fine-tune a Task 1 model on CXR-LT labels (see docs/training.md).

Runs the same under ``torchrun --nproc_per_node=N -m cxrlt_desktop train ...`` (one process per
GPU; rank 0 prints and writes the files).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrlt_desktop.commands._text import printable

if TYPE_CHECKING:
    from training.progress import TrainRecord


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` parser."""
    p = subparsers.add_parser(
        "train",
        help="fine-tune a Task 1 model (DB loss, class-aware sampling, EMA; torchrun-ready)",
        description="Fine-tune a Task 1 classifier on a CXR-LT label CSV and its images. Writes "
        "best.safetensors (published layout) + manifest.json, and last.pt for --resume.",
    )
    p.add_argument("--labels", type=Path, required=True, help="label CSV (CXR-LT format)")
    p.add_argument(
        "--images", type=Path, required=True, help="folder holding the images by ImageID"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--val-labels", type=Path, help="validation label CSV (default: a patient-wise split)"
    )
    p.add_argument("--val-images", type=Path, help="validation images folder (default: --images)")
    p.add_argument(
        "--val-fraction", type=float, default=0.1, help="patients held out (default 0.1)"
    )
    p.add_argument(
        "--init", type=Path, help="checkpoint to start from (published or training layout)"
    )
    p.add_argument("--head", choices=("csra", "mlp"), default="csra")
    p.add_argument("--arch", default="convnextv2_base", help="timm convnextv2_* name")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=30, help="total epochs, warm-up included")
    p.add_argument(
        "--warmup-epochs", type=int, default=2, help="head-only epochs first (default 2)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="per process")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--resume", action="store_true", help="continue from --out/last.pt")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=4, help="data loader processes per rank")
    p.add_argument("--lr-backbone", type=float, default=1.5e-5)
    p.add_argument("--lr-head", type=float, default=1.5e-4)
    p.add_argument("--lr-warmup", type=float, default=1e-3, help="head LR of the warm-up phase")
    p.add_argument("--ema-decay", type=float, default=0.9999)
    p.add_argument("--drop-path", type=float, default=0.2)
    p.add_argument(
        "--demo", action="store_true", help="mark the model as a demo model in its manifest"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train; exit status 0 on success, 1 on a usage or data problem."""
    from training.train import TrainConfig, TrainError, train

    cfg = TrainConfig(
        labels=args.labels,
        images=args.images,
        out=args.out,
        val_labels=args.val_labels,
        val_images=args.val_images,
        val_fraction=args.val_fraction,
        init=args.init,
        head=args.head,
        arch=args.arch,
        image_size=args.image_size,
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        batch_size=args.batch_size,
        device=args.device,
        resume=args.resume,
        seed=args.seed,
        workers=args.workers,
        lr_backbone=args.lr_backbone,
        lr_head=args.lr_head,
        lr_warmup=args.lr_warmup,
        ema_decay=args.ema_decay,
        drop_path=args.drop_path,
        demo=args.demo,
    )
    main = int(os.environ.get("RANK", "0")) == 0
    bar = None
    try:
        for rec in train(cfg):
            if main:
                bar = _show(rec, bar)
    except TrainError as e:
        if bar is not None:
            bar.close()
        print(f"cxrlt train: {printable(e)}", file=sys.stderr)
        return 1
    return 0


def _show(rec: TrainRecord, bar: Any) -> Any:
    """Print one progress record (a tqdm bar for the steps); returns the bar still open."""
    from training.progress import TrainDone, TrainEpoch, TrainInfo, TrainStep

    match rec:
        case TrainInfo():
            print(printable(rec.message), file=sys.stderr)
        case TrainStep():
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(
                    total=rec.steps, desc=f"epoch {rec.epoch}", unit="batch", file=sys.stderr
                )
            bar.update(1)
            bar.set_postfix(loss=f"{rec.loss:.4f}")
        case TrainEpoch():
            if bar is not None:
                bar.close()
                bar = None
            vm, tl, skipped = rec.val_mAP, rec.train_loss, rec.skipped_steps
            print(
                f"epoch {rec.epoch} ({rec.phase}): train loss "
                f"{'n/a' if tl is None else f'{tl:.4f}'}, "
                f"val mAP {'n/a' if vm is None else f'{vm:.4f}'}"
                + (f", {skipped} steps skipped (non-finite loss)" if skipped else "")
                + (" (best, saved)" if rec.best else ""),
                file=sys.stderr,
            )
        case TrainDone():
            print(
                f"best epoch {rec.best_epoch}: {printable(rec.checkpoint)} "
                f"({printable(rec.manifest)})"
            )
    return bar
