"""How long the store's write lock is held when a scoring run completes.

A library rescored by a new model set switches every image to the new predictions when the run
completes. While a write transaction holds the lock, a verdict clicked in the GUI waits. This
compares, in one run over the same library, the switch in one transaction (SWITCH_CHUNK
unlimited) with the shipped chunked switch, and prints the longest write transaction of each.

The engine is not measured here: a stand-in predictor returns seeded random probabilities
instantly, so the figures are the store's alone.

    .venv/bin/python benchmarks/bench_run_completion.py [--images 3000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class StandIn:
    """Predictor interface with instant seeded random results (one model set per ``tag``)."""

    def __init__(self, tag: str) -> None:
        from engine.predictor import ModelInfo

        self.models = [
            ModelInfo(
                Path("/x/m.safetensors"), "f" * 63 + tag, "convnextv2_atto", "task1-csra", 1.0
            )
        ]
        self.settings = {"mode": "fast", "device": "cpu", "stand_in": tag}
        self.rng = np.random.default_rng(0)

    def predict_paths(self, paths, read=None, batch_size=8, should_stop=None):  # noqa: ANN001, ANN201
        from engine.predictor import PathResult

        for p in paths:
            probs = self.rng.random(36)
            yield PathResult(Path(p), True, None, probs, None, probs[:30].copy(), 0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=3000)
    args = ap.parse_args()
    import cxrlt_desktop.library.scoring as scoring
    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.store import open_store
    from engine.dicomwrite import write_dicom

    with tempfile.TemporaryDirectory(prefix="cxrlt-bench-switch-") as tmp:
        root = Path(tmp)
        os.environ["CXRLT_DATA_DIR"] = str(root / "data")
        px = np.random.default_rng(0).integers(0, 4096, (256, 256), dtype=np.uint16)
        for i in range(args.images):
            write_dicom(root / "in" / f"{i:06d}.dcm", px, patient_id=f"P{i // 2}", bits_stored=12)
        store = open_store(f"sqlite:///{root / 'switch.db'}")
        for _ in scan(store, [root / "in"]):
            pass
        for _ in scoring.score_library(store, StandIn("a"), batch_size=64):
            pass
        holds: list[float] = []
        real_write = store.write

        def timed(fn, *a, **k):  # noqa: ANN001, ANN202
            t = time.perf_counter()
            try:
                return real_write(fn, *a, **k)
            finally:
                holds.append(time.perf_counter() - t)

        store.write = timed
        print(
            f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; {args.images} images, each run switches all of them"
        )
        default = scoring.SWITCH_CHUNK
        for label, chunk, tag in (
            ("one transaction", 10**9, "b"),
            (f"chunks of {default}", default, "c"),
        ):
            scoring.SWITCH_CHUNK = chunk
            holds.clear()
            t0 = time.perf_counter()
            for _ in scoring.score_library(store, StandIn(tag), batch_size=64):
                pass
            print(
                f"{label:>18}: run {time.perf_counter() - t0:5.1f} s, {len(holds)} write "
                f"transactions, longest {max(holds) * 1000:6.0f} ms"
            )
        scoring.SWITCH_CHUNK = default
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
