"""Progressive triage against paper-only scoring, side by side in one run.

A folder of demo phantoms (2k x 2k DICOMs with drawn findings), convnextv2_base CSRA + MLP with
random weights and a random ViT-L-14 CLIP, on the CPU, scored in one process by the engine:

- ``paper``: paper mode over the folder in folder order (what a paper-only worker does);
- ``progressive``: a fast pass over the whole folder (CSRA, identity view, its backbone in bf16
  where the CPU has bf16 hardware, CLIP), then the paper pass without CLIP (its columns come from
  the fast pass) in decreasing provisional rare score, both passes reading decoded arrays from
  one LRU (engine.source_cache).

The worklist at a moment orders the scored images by rare score (the paper score where there is
one, else the provisional one), unscored images last. Reported per policy: time until every image
has a score (a complete order), time until the 10 highest final paper scores are all in the
worklist's top 10, and the total time to the final paper order; for the fast pass, the ordering
quality of provisional scores (Spearman correlation of provisional vs final rare scores, recall
of the final top 10 in the provisional top 10) in bf16 and in fp32, and their speed. Model
loading is timed apart. Run by hand::

    .venv/bin/python benchmarks/bench_triage.py --images 100

Files are generated in --workdir (kept between runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOP = 10


def make_folder(folder: Path, n: int, size: int) -> list[Path]:
    from cxrlt_desktop.demo.phantoms import iter_demo_data

    marker = folder / f".complete-{n}-{size}"
    if not marker.exists():
        paths = [d.path for d in iter_demo_data(folder, n, seed=16, size=size)]
        marker.write_text("\n".join(str(p.relative_to(folder)) for p in paths), "utf-8")
    return [folder / line for line in marker.read_text("utf-8").splitlines()]


def rare(probs: np.ndarray) -> float:
    from cxrlt_desktop.library.triage import rare_score

    r = rare_score(probs)
    return -np.inf if r is None else r


def worklist_top(scores: dict[int, float]) -> set[int]:
    order = sorted(scores, key=lambda i: (-scores[i], i))
    return set(order[:TOP])


class Timeline:
    """Scores over time for one policy: when every image had a score, when the final top 10
    were all in the worklist's top 10, when the last paper score came."""

    def __init__(self, n: int, final_top: set[int] | None):
        self.n = n
        self.final_top = final_top
        self.scores: dict[int, float] = {}
        self.t0 = time.perf_counter()
        self.complete: float | None = None
        self.top_ok: float | None = None
        self.events: list[tuple[float, int, float]] = []

    def score(self, i: int, value: float) -> None:
        t = time.perf_counter() - self.t0
        self.scores[i] = value
        self.events.append((t, i, value))
        if self.complete is None and len(self.scores) == self.n:
            self.complete = t
        self.check_top(t)

    def check_top(self, t: float) -> None:
        if self.final_top is None:
            return
        if worklist_top(self.scores) >= self.final_top:
            if self.top_ok is None:
                self.top_ok = t
        else:
            self.top_ok = None  # fell out again: the moment counts from the last entry

    def replay_top(self, final_top: set[int]) -> None:
        """Recompute top_ok from the events (paper-only: the final top is known at the end)."""
        self.final_top = final_top
        self.scores, self.top_ok = {}, None
        for t, i, v in self.events:
            self.scores[i] = v
            self.check_top(t)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--dicom-size", type=int, default=2048)
    ap.add_argument("--arch", default="convnextv2_base")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--no-clip", action="store_true", help="leave the ViT-L-14 CLIP out")
    ap.add_argument(
        "--fast-precision",
        choices=("auto", "fp32"),
        default="auto",
        help="the fast pass's backbone: auto (bf16 where the CPU has bf16 hardware, as the app) "
        "or fp32 (what a CPU without it runs)",
    )
    ap.add_argument(
        "--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "cxrlt-bench"
    )
    args = ap.parse_args(argv)

    import torch

    from engine import onnx_backend
    from engine.imageio import read_source
    from engine.predictor import EngineConfig, Predictor
    from engine.source_cache import SourceCache

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_engine import machine, make_models

    print(f"machine: {machine()}; bf16 hardware: {onnx_backend.cpu_has_bf16()}", flush=True)
    paths = make_folder(args.workdir / f"triage-{args.dicom_size}", args.images, args.dicom_size)
    n = len(paths)
    mlp_file, csra_file = make_models(args.workdir / "models", args.arch)
    clip_dir = None
    if not args.no_clip:
        from engine.random_models import write_random_clip

        clip_dir = args.workdir / "models" / "clip-ViT-L-14"
        if not (clip_dir / "open_clip_pytorch_model.bin").is_file():
            write_random_clip(clip_dir, "ViT-L-14", seed=2)

    def config(mode: str, **kw) -> EngineConfig:
        return EngineConfig(
            task1_checkpoints=[csra_file, mlp_file],
            task1_arch=args.arch,
            clip_model=clip_dir,
            mode=mode,
            device="cpu",
            batch_size=args.batch_size,
            cache_dir=args.workdir / "cache",
            **kw,
        )

    def load(cfg: EngineConfig, **kw) -> tuple[Predictor, float]:
        t = time.perf_counter()
        pred = Predictor(cfg, **kw)
        list(pred.predict_paths(paths[:1]))  # warm-up (lazy initialisation, exports)
        return pred, time.perf_counter() - t

    paper, t_load_paper = load(config("paper"))
    # the fast pass holds no CLIP of its own: it uses the paper predictor's, as the app does
    fast16, t_load_fast16 = load(
        config("fast", backbone_precision=args.fast_precision), share_clip_with=paper
    )
    assert fast16._clip is paper._clip or clip_dir is None
    # fp32 fast pass for the ordering-quality comparison only: no CLIP (its columns are the
    # bf16 pass's, CLIP being fp32 in both), to keep one ViT-L-14 fewer in memory
    t = time.perf_counter()
    fast32 = Predictor(replace(config("fast"), clip_model=None))
    list(fast32.predict_paths(paths[:1]))
    print(
        f"loaded: paper {t_load_paper:.1f} s, fast ({fast16.backbone_precision}) "
        f"{t_load_fast16:.1f} s; CLIP backend {paper.clip_backend}",
        flush=True,
    )

    # -- paper only
    tl_paper = Timeline(n, None)
    final = np.zeros((n, 36))
    for i, r in enumerate(paper.predict_paths(paths, read=read_source)):
        final[i] = r.probs
        tl_paper.score(i, rare(r.probs))
    t_paper_total = time.perf_counter() - tl_paper.t0
    final_rare = np.array([rare(p) for p in final])
    final_top = set(np.argsort(-final_rare, kind="stable")[:TOP].tolist())
    tl_paper.replay_top(final_top)
    print(f"paper only: {t_paper_total:.1f} s", flush=True)

    # -- progressive: fast pass (bf16 where the CPU has it), then the paper pass in triage order
    cache = SourceCache()
    tl = Timeline(n, final_top)
    fast_probs = np.zeros((n, 36))
    for i, r in enumerate(fast16.predict_paths(paths, read=cache.reader(read_source))):
        fast_probs[i] = r.probs
        tl.score(i, rare(r.probs))
    t_fast_pass = time.perf_counter() - tl.t0
    provisional = np.array([rare(p) for p in fast_probs])
    order = [int(i) for i in np.argsort(-provisional, kind="stable")]
    prog = np.zeros((n, 36))
    results = paper.predict_paths(
        [paths[i] for i in order], read=cache.reader(read_source), clip=False
    )
    for i, r in zip(order, results, strict=True):
        p = r.probs.copy()
        p[30:] = fast_probs[i, 30:]  # the CLIP columns, computed once in the fast pass
        prog[i] = p
        tl.score(i, rare(p))
    t_prog_total = time.perf_counter() - tl.t0
    print(f"progressive: fast pass {t_fast_pass:.1f} s, total {t_prog_total:.1f} s", flush=True)

    # -- ordering quality of provisional scores, bf16 vs fp32 fast pass
    t = time.perf_counter()
    fast32_probs = np.stack([r.probs for r in fast32.predict_paths(paths, read=read_source)])
    t_fast32 = time.perf_counter() - t
    fast32_probs[:, 30:] = fast_probs[:, 30:]
    prov32 = np.array([rare(p) for p in fast32_probs])

    def quality(prov: np.ndarray) -> tuple[float, float]:
        top = set(np.argsort(-prov, kind="stable")[:TOP].tolist())
        return spearman(prov, final_rare), len(top & final_top) / TOP

    diff = float(np.nanmax(np.abs(prog - final)))
    same_order = [int(i) for i in np.argsort(-np.array([rare(p) for p in prog]), kind="stable")]
    rows = [
        ("paper only", tl_paper.complete, tl_paper.top_ok, t_paper_total),
        ("progressive", tl.complete, tl.top_ok, t_prog_total),
    ]
    print()
    print(
        f"{n} images {args.dicom_size} x {args.dicom_size}, {args.arch} CSRA + MLP at 512", end=""
    )
    print(
        ", CLIP ViT-L-14" if clip_dir else ", no CLIP",
        f"(random weights), torch threads {torch.get_num_threads()}",
    )
    print("| policy | complete order (s) | final top 10 in top 10 (s) | final paper order (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, c, top, total in rows:
        print(f"| {name} | {c:.1f} | {top:.1f} | {total:.1f} |")
    print(
        f"ratios progressive / paper: complete order {tl.complete / tl_paper.complete:.3f} "
        f"(target <= 0.125), total {t_prog_total / t_paper_total:.3f} (target <= 1.15)"
    )
    print(
        f"final progressive vs paper only: max |p diff| {diff:.1e}; same order: "
        f"{same_order == [int(i) for i in np.argsort(-final_rare, kind='stable')]}"
    )
    s16, r16 = quality(provisional)
    s32, r32 = quality(prov32)
    print("| fast pass backbone | s/image | Spearman provisional vs final | recall@10 |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| {fast16.backbone_precision} (pass incl. decode) | {t_fast_pass / n:.2f} | {s16:.3f} | {r16:.1f} |"
    )
    print(f"| fp32 (pass incl. decode) | {t_fast32 / n:.2f} | {s32:.3f} | {r32:.1f} |")
    print(f"source cache: {cache.hits} hits, {cache.misses} misses, {cache.nbytes / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
