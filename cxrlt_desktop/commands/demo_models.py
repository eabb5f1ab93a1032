"""``cxrlt demo-models OUT [--force]``: train the small DEMO models on phantoms (about 5 minutes
on 2 CPU cores) and report their held-out AUC; a complete earlier build in OUT is reused."""

from __future__ import annotations

import argparse
import sys

from cxrlt_desktop.commands._text import printable


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo-models",
        help="train small DEMO models (convnextv2_atto CSRA + MLP, tiny CLIP) on phantoms",
        description=(
            "Train architecture-faithful DEMO models on synthetic phantoms with the project's "
            "training code (DB loss, class-aware sampler), fit a tiny open_clip model to "
            "phantom/caption pairs, and report per-class AUC on held-out phantoms. Saved in the "
            "published layouts with manifests marked demo. Reused when already built."
        ),
    )
    p.add_argument("out", help="output folder")
    p.add_argument(
        "--force", action="store_true", help="rebuild even if OUT holds a complete build"
    )
    p.add_argument("--n-train", type=int, default=None, help="training phantoms (default 1000)")
    p.add_argument("--epochs", type=int, default=None, help="Task 1 epochs per model (default 12)")
    p.add_argument("--image-size", type=int, default=None, help="Task 1 input size (default 80)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all cores)"
    )
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    """DemoModelSettings with the command-line overrides applied."""
    from cxrlt_desktop.demo.models import DemoModelSettings

    s = DemoModelSettings(seed=args.seed, threads=args.threads)
    if args.n_train is not None:
        s.n_train = args.n_train
    if args.epochs is not None:
        s.epochs = args.epochs
    if args.image_size is not None:
        s.image_size = args.image_size
    return s


def run(args: argparse.Namespace) -> int:
    from cxrlt_desktop.demo.models import build_demo_models, format_report

    try:
        s = settings_from_args(args)
        if s.n_train < 64 or s.epochs < 1 or s.image_size < 32:
            print(
                "cxrlt demo-models: need --n-train >= 64, --epochs >= 1, --image-size >= 32",
                file=sys.stderr,
            )
            return 2
        report = build_demo_models(
            args.out, s, force=args.force, log=lambda m: print(m, flush=True)
        )
    except (OSError, RuntimeError, ValueError) as e:
        print(f"cxrlt demo-models: {printable(e)}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0
