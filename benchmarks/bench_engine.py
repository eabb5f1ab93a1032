"""End-to-end engine benchmark: the authors' loop against the batched predictor, in one run.

From 2k x 2k 16-bit DICOM files on disk to probabilities, with the same random-weight models
(ConvNeXtV2 CSRA + MLP, default convnextv2_base at 512):

- ``reference``: the authors' inference loop: per batch of 32, for each model and each of the 6
  views one forward (no view stacking, no channels_last), fp16 autocast on GPU, fp32 on CPU;
  decoding in the same process before each batch;
- ``paper``: ``engine.predictor.Predictor`` in paper mode (6 views stacked, channels_last,
  decode threads ahead of the compute), default precision (bf16 on GPU, fp32 on CPU) and, on
  the CPU, each ``--cpu-backend`` asked for (auto = OpenVINO backbones + PyTorch heads);
- ``fast``: the predictor in fast mode (CSRA, identity view);
- with ``--clip``: paper mode plus a random-weight CLIP ViT-L-14 (WhyXrayCLIP's size), its
  6 zero-shot columns checked against a one-image-at-a-time PyTorch fp32 loop.

Each row reports images/s, s/image, the ratio to the reference, and max |p - p_fp32|, where
p_fp32 is the same mode computed in fp32 by the plain reference loop (on the CPU the reference
itself, since it runs in fp32). Run by hand, e.g.::

    python benchmarks/bench_engine.py --images 4 --cpu-backend auto,onnx,torch --clip  # CPU
    python benchmarks/bench_engine.py --images 512 --device cuda    # GPU

Model files and DICOMs are generated in --workdir (kept between runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VIEWS = ("identity", "hflip", "rot+5", "rot-5", "zoom1.1", "zoom0.9")


def make_dicoms(folder: Path, n: int, size: int) -> list[Path]:
    """n synthetic 16-bit (12 bits stored) chest-like radiographs, different per image."""
    import cv2

    from engine.dicomwrite import write_dicom

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:04d}_{size}.dcm"
        if not p.exists():
            rng = np.random.default_rng(i)
            low = cv2.resize(
                rng.random((16, 16)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
            )
            yy, xx = np.mgrid[0:size, 0:size] / size
            lungs = np.exp(-(((xx - 0.3) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2)) + np.exp(
                -(((xx - 0.7) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2)
            )
            img = 2500 + 1200 * low - 1500 * lungs + rng.normal(0, 40, (size, size))
            write_dicom(
                p, np.clip(img, 0, 4095).astype(np.uint16), bits_stored=12, patient_id=f"B{i}"
            )
        paths.append(p)
    return paths


def make_models(folder: Path, arch: str) -> tuple[Path, Path]:
    from engine.random_models import write_random_task1

    folder.mkdir(parents=True, exist_ok=True)
    csra = folder / f"{arch}_csra.safetensors"
    mlp = folder / f"{arch}_mlp.pth"
    if not csra.exists():
        write_random_task1(csra, head="csra", arch=arch, seed=0)
    if not mlp.exists():
        write_random_task1(mlp, head="mlp", arch=arch, seed=1, layout="pth", wrap=True)
    return mlp, csra


def reference_loop(paths, models, weights, device, amp_dtype, batch_size: int, image_size: int):
    """The authors' loop. Returns (paper probs [N, 30], fast probs [N, 30], seconds)."""
    import cv2
    import torch

    from engine.ensemble import normal_gating, weighted_mean
    from engine.imageio import read_source
    from engine.tta import view

    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)

    def load(p):
        x = read_source(p)
        if x.dtype != np.uint8:
            flat = x.reshape(-1)
            lo, hi = np.percentile(flat[:: max(1, flat.size // 2000)], (0.5, 99.5))
            if hi > lo:
                x = ((np.clip(x, lo, hi) - lo) / (hi - lo) * 255.0).astype(np.uint8)
            else:
                x = (x / max(x.max(), 1) * 255.0).astype(np.uint8)
        rgb = cv2.resize(
            np.stack([x] * 3, -1), (image_size, image_size), interpolation=cv2.INTER_LINEAR
        )
        return ((rgb / 255.0 - mean) / std).astype(np.float32).transpose(2, 0, 1)

    t0 = time.perf_counter()
    paper, fast = [], []
    csra_index = [i for i, (h, _) in enumerate(models) if h == "csra"][0]
    for start in range(0, len(paths), batch_size):
        x = torch.from_numpy(np.stack([load(p) for p in paths[start : start + batch_size]])).to(
            device
        )
        per_model = []
        with torch.inference_mode():
            for k, (_, m) in enumerate(models):
                acc = []
                for v in VIEWS:
                    if amp_dtype is not None:
                        with torch.autocast(device_type=device.type, dtype=amp_dtype):
                            logits = m(view(x, v))[0]
                    else:
                        logits = m(view(x, v))[0]
                    acc.append(torch.sigmoid(logits.float()).double().cpu().numpy())
                    if k == csra_index and v == "identity":
                        fast.append(acc[-1])
                per_model.append(np.mean(acc, axis=0))
        paper.append(weighted_mean(per_model, weights))
    seconds = time.perf_counter() - t0
    paper_p = normal_gating(np.concatenate(paper))
    fast_p = normal_gating(np.concatenate(fast))
    return paper_p, fast_p, seconds


def run_predictor(paths, config):
    from engine.predictor import Predictor

    pred = Predictor(config)
    # warm-up on one batch (cudnn autotuning, torch.compile), not timed
    t0 = time.perf_counter()
    list(pred.predict_paths(paths[: config.batch_size if pred.device.type == "cuda" else 1]))
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = list(pred.predict_paths(paths))
    seconds = time.perf_counter() - t0
    bad = [r for r in results if not r.ok]
    if bad:
        raise SystemExit(f"benchmark input failed: {bad[0].path}: {bad[0].reason}")
    return np.stack([r.probs for r in results]), seconds, warm, pred.settings


def clip_reference(paths, folder: Path, cache: Path) -> np.ndarray:
    """Zero-shot probabilities one image at a time, PyTorch fp32 (the oracle for the CLIP row)."""
    import torch

    from engine.imageio import read_source
    from engine.preprocess import MODEL_SIZE, clip_grey, clip_tensor
    from engine.zeroshot import load_prompts, load_zero_shot

    zs = load_zero_shot(folder, prompts=load_prompts(None), cache_dir=cache)
    out = []
    for p in paths:
        g = torch.from_numpy(clip_grey(read_source(p), MODEL_SIZE)[None])
        out.append(zs.probs(clip_tensor(g, zs.image_size)))
    return np.concatenate(out)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} threads {torch.get_num_threads()}, {gpu}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--images", type=int, default=None, help="images (default 4 on CPU, 512 on GPU)"
    )
    ap.add_argument("--dicom-size", type=int, default=2048)
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--arch", default="convnextv2_base")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument(
        "--batch-size", type=int, default=None, help="predictor batch (default 32 GPU, 2 CPU)"
    )
    ap.add_argument("--reference-batch-size", type=int, default=32)
    ap.add_argument(
        "--precision", default=None, choices=("fp32", "bf16", "fp16"), help="predictor precision"
    )
    ap.add_argument("--compile", action="store_true", help="torch.compile the predictor's models")
    ap.add_argument(
        "--cpu-backend",
        default="auto",
        help="predictor CPU backend(s), comma-separated: auto, torch, onnx, openvino",
    )
    ap.add_argument(
        "--modes", default="paper,fast", help="predictor modes to time besides the reference"
    )
    ap.add_argument(
        "--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "cxrlt-bench"
    )
    ap.add_argument(
        "--clip",
        action="store_true",
        help="add a row for paper mode with a random-weight CLIP ViT-L-14 (WhyXrayCLIP's size)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)

    import torch

    from engine.checkpoints import load_task1_model
    from engine.ensemble import default_weights
    from engine.predictor import EngineConfig

    name = (
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    device = torch.device(name)
    gpu = device.type == "cuda"
    n = args.images or (512 if gpu else 4)
    bs = args.batch_size or (32 if gpu else 2)
    modes = args.modes.split(",")
    print(f"machine: {machine()}", flush=True)
    paths = make_dicoms(args.workdir / "dicom", n, args.dicom_size)
    mlp_file, csra_file = make_models(args.workdir / "models", args.arch)
    files = [mlp_file, csra_file]
    loaded = [load_task1_model(p, args.arch, strict_arch=True) for p in files]
    models = [(m.head, m.model.to(device).eval()) for m in loaded]
    weights = default_weights([h for h, _ in models])

    rows = []
    # The reference always runs: in fp32 it is also the oracle p_fp32 for both modes (on the CPU
    # the timed reference is fp32 already; on the GPU an extra fp32 pass gives the oracle).
    if gpu:
        reference_loop(
            paths[: min(n, 32)], models, weights, device, torch.float16, 32, args.image_size
        )
        p16, _, sec = reference_loop(
            paths,
            models,
            weights,
            device,
            torch.float16,
            args.reference_batch_size,
            args.image_size,
        )
        # the oracle is true fp32: no TF32 convolutions or matmuls
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        ref_paper, ref_fast, _ = reference_loop(
            paths, models, weights, device, None, args.reference_batch_size, args.image_size
        )
        rows.append(
            ("reference (authors' loop, fp16)", sec, float(np.abs(p16 - ref_paper).max()), 0.0)
        )
    else:
        # warm-up: one forward per model (lazy initialisation), not timed
        with torch.inference_mode():
            for _, m in models:
                m(torch.zeros(1, 3, args.image_size, args.image_size))
        ref_paper, ref_fast, sec = reference_loop(
            paths, models, weights, device, None, args.reference_batch_size, args.image_size
        )
        rows.append(("reference (authors' loop, fp32)", sec, 0.0, 0.0))
    print(f"reference: {sec:.2f} s for {n} images", flush=True)
    settings = {}
    for backend in args.cpu_backend.split(","):
        for mode in ("paper", "fast"):
            if mode not in modes:
                continue
            cfg = EngineConfig(
                task1_checkpoints=files,
                task1_arch=args.arch,
                mode=mode,
                device=device.type,
                precision=args.precision,
                batch_size=bs,
                compile=args.compile,
                image_size=args.image_size,
                cpu_backend=backend,
                cache_dir=args.workdir / "cache",
            )
            p, sec, warm, settings[f"{mode}-{backend}"] = run_predictor(paths, cfg)
            p = p[:, :30]
            oracle = ref_paper if mode == "paper" else ref_fast
            rows.append(
                (
                    f"predictor {mode} ({settings[f'{mode}-{backend}']['precision']}, {settings[f'{mode}-{backend}']['backend']})",
                    sec,
                    float(np.abs(p - oracle).max()),
                    warm,
                )
            )
            print(f"{mode}: {sec:.2f} s for {n} images (warm-up {warm:.1f} s)", flush=True)

    if args.clip:
        from engine.random_models import write_random_clip

        clip_dir = args.workdir / "models" / "clip-ViT-L-14"
        if not (clip_dir / "open_clip_pytorch_model.bin").is_file():
            write_random_clip(clip_dir, "ViT-L-14", seed=2)
        cfg = EngineConfig(
            task1_checkpoints=files,
            task1_arch=args.arch,
            clip_model=clip_dir,
            mode="paper",
            device=device.type,
            precision=args.precision,
            batch_size=bs,
            compile=args.compile,
            image_size=args.image_size,
            cache_dir=args.workdir / "cache",
        )
        p, sec, warm, settings["paper-clip"] = run_predictor(paths, cfg)
        ref_clip = clip_reference(paths, clip_dir, args.workdir / "cache")
        err = max(np.abs(p[:, :30] - ref_paper).max(), np.abs(p[:, 30:] - ref_clip).max())
        name = f"predictor paper + CLIP ViT-L-14 ({settings['paper-clip']['precision']}, {settings['paper-clip']['backend']})"
        rows.append((name, sec, float(err), warm))
        print(f"paper + CLIP: {sec:.2f} s for {n} images (warm-up {warm:.1f} s)", flush=True)

    ref_sec = rows[0][1]
    print()
    print(
        f"{n} DICOM files {args.dicom_size}x{args.dicom_size} 16-bit, {args.arch} at {args.image_size}, {machine()}"
    )
    print("| method | images/s | s/image | speed-up vs reference | max abs(p - p_fp32) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, sec, err, _ in rows:
        print(f"| {name} | {n / sec:.3f} | {sec / n:.3f} | {ref_sec / sec:.2f}x | {err:.2e} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "images": n,
                    "rows": [
                        dict(method=r[0], seconds=r[1], max_abs_diff=r[2], warmup=r[3])
                        for r in rows
                    ],
                    "settings": settings,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
