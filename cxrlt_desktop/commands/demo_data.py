"""``cxrlt demo-data OUT [--n N] [--seed S] [--size H]``: write synthetic demo DICOM studies."""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo-data",
        help="write synthetic chest radiograph phantoms (DICOM) with a ground-truth labels CSV",
        description=(
            "Write N synthetic DICOM chest radiographs (CR and DX, MONOCHROME1/2, uncompressed and "
            "JPEG 2000, 12-16 bits) with drawn findings, plus OUT/labels.csv in the CXR-LT format. "
            "Everything is marked DEMO; the same seed gives the same files."
        ),
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--n", type=int, default=48, help="number of images (default 48)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=2500, help="image height in pixels (default 2500)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cxrlt_desktop.demo.phantoms import write_demo_data

    if args.n < 1:
        print("cxrlt demo-data: --n must be at least 1", file=sys.stderr)
        return 2
    if args.size < 320:
        # 320 x 256 is the smallest image the app's reader accepts (256 px on the short side).
        print("cxrlt demo-data: --size must be at least 320", file=sys.stderr)
        return 2
    t0 = time.perf_counter()

    def progress(done, total, img):
        if not args.quiet:
            print(f"[{done}/{total}] {img.image_id}  {', '.join(sorted(img.labels))}", flush=True)

    images = write_demo_data(args.out, n=args.n, seed=args.seed, size=args.size, progress=progress)
    print(
        f"wrote {len(images)} DEMO images and labels.csv to {args.out} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0
