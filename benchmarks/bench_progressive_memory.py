"""Memory of the progressive policy's two predictors: one shared CLIP model against two.

Each case runs in a fresh process (so one case's freed memory cannot hide in the other's heap):
the paper predictor and the fast pass's predictor are loaded (convnextv2_base CSRA + MLP with
random weights and a random ViT-L-14 CLIP, the models of bench_triage.py, on the CPU), one image
is scored by each, and the process's resident memory (VmRSS) and its peak (VmHWM) are read.

- ``shared``: ``library.progressive.load_predictors`` (the fast predictor uses the paper
  predictor's CLIP model, as the app and ``cxrlt worker`` do);
- ``own``: the fast predictor loads a CLIP model of its own (what they did before).

Run by hand (after bench_triage.py has written the models into --workdir)::

    .venv/bin/python benchmarks/bench_progressive_memory.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_case(case: str, workdir: Path, arch: str) -> dict:
    from dataclasses import replace

    from cxrlt_desktop.library.progressive import fast_pass_config, load_predictors
    from engine.predictor import EngineConfig, Predictor

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_engine import make_models
    from bench_triage import make_folder

    paths = make_folder(workdir / "triage-2048", 100, 2048)[:1]
    mlp_file, csra_file = make_models(workdir / "models", arch)
    clip_dir = workdir / "models" / "clip-ViT-L-14"
    if not (clip_dir / "open_clip_pytorch_model.bin").is_file():
        raise SystemExit(f"{clip_dir}: no CLIP model; run bench_triage.py first")
    config = EngineConfig(
        task1_checkpoints=[csra_file, mlp_file],
        task1_arch=arch,
        clip_model=clip_dir,
        device="cpu",
        batch_size=2,
        cache_dir=workdir / "cache",
    )
    before = status_kib("VmRSS")
    if case == "shared":
        paper, fast, _ = load_predictors(config, "progressive")
    else:
        paper = Predictor(replace(config, mode="paper"))
        fast = Predictor(fast_pass_config(config))
    list(fast.predict_paths(paths))
    list(paper.predict_paths(paths, clip=False))
    return {
        "case": case,
        "shared_clip": fast._clip is paper._clip,
        "rss_mib": (status_kib("VmRSS") - before) / 1024,
        "peak_mib": status_kib("VmHWM") / 1024,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="convnextv2_base")
    ap.add_argument(
        "--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "cxrlt-bench"
    )
    ap.add_argument("--case", choices=("shared", "own"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.workdir, args.arch)))
        return 0
    rows = []
    for case in ("shared", "own"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--case",
                case,
                "--workdir",
                str(args.workdir),
                "--arch",
                args.arch,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print("| fast pass CLIP | resident after loading both and scoring (MiB) | peak (MiB) |")
    print("| --- | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['case']} (shared: {r['shared_clip']}) | {r['rss_mib']:.0f} | {r['peak_mib']:.0f} |"
        )
    print(f"ratio shared / own, resident: {rows[0]['rss_mib'] / rows[1]['rss_mib']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
