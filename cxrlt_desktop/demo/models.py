"""Demo models: small, architecture-faithful models trained on phantoms, so the demo's scores
respond to the drawn findings.

* Task 1: convnextv2_atto with a CSRA head and with an MLP head, trained by the project's own
  training package (:func:`training.train.train`: Distribution-Balanced loss, class-aware
  repeat-factor sampler, EMA, the paper's augmentation) on phantom PNGs at reduced resolution,
  from random initialisation (no pretrained weights exist offline). Saved in the published
  layout (``best.safetensors`` + ``manifest.json`` with ``"demo": true``).
* Task 2: a tiny open_clip model (open_clip's ModifiedResNet image tower, transformer text tower,
  open_clip's CLIP BPE tokenizer) fitted to phantom/spine-sentence pairs with open_clip's
  contrastive ``ClipLoss``, written
  as an open_clip ``local-dir:`` folder (``open_clip_config.json`` + ``open_clip_pytorch_model.bin``
  + ``manifest.json``), which the engine loads exactly as it loads WhyXrayCLIP.
* A held-out phantom set is scored with the engine's :class:`engine.predictor.Predictor` (paper
  mode: TTA, 1.0/1.5 ensemble, normal gating) and per-class AUCs are written to
  ``demo_models.json``, with whether scoliosis phantoms outrank normal ones on Scoliosis.

Layout of ``OUT``::

    OUT/task1-csra/best.safetensors, manifest.json   (+ training's last.pt, history.json)
    OUT/task1-mlp/best.safetensors, manifest.json
    OUT/clip/open_clip_config.json, open_clip_pytorch_model.bin, manifest.json
    OUT/demo_models.json                              (the report; written last = complete)
    OUT/_phantoms/{train,test}/...                    (phantom PNGs and label CSVs)

Heavy imports (torch, open_clip, training) happen inside the functions.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxrlt_desktop.demo.phantoms import (
    DRAWN_FINDINGS,
    PhantomSpec,
    _stored,
    label_set,
    render_phantom,
    sample_findings,
)
from engine.classes import ALL_CLASSES, TASK1_CLASSES

REPORT_FILE = "demo_models.json"
REPORT_FORMAT = "cxrlt-demo-models/1"
#: Phantom PNG height: 320 x 256 is the smallest image the app's reader accepts.
SOURCE_SIZE = 320
#: Drawn findings that are Task 1 classes (the supervised models' AUC is reported on these).
DRAWN_TASK1 = tuple(c for c in TASK1_CLASSES if c in DRAWN_FINDINGS)

#: Caption phrases per drawn finding for the demo CLIP (several wordings, as report text varies).
CAPTIONS: dict[str, tuple[str, ...]] = {
    "cardiomegaly": ("cardiomegaly", "an enlarged heart", "enlarged cardiac silhouette"),
    "pleural effusion": (
        "pleural effusion",
        "fluid in the pleural space",
        "blunted costophrenic angle",
    ),
    "Pneumothorax": (
        "pneumothorax",
        "a visceral pleural line without lung markings",
        "collapsed lung with air",
    ),
    "Nodule": ("a lung nodule", "small round opacity in the lung", "pulmonary nodules"),
    "Mass": ("a lung mass", "large lobulated opacity", "pulmonary mass"),
    "atelectasis": (
        "atelectasis",
        "plate-like atelectasis",
        "linear bands of collapse at the base",
    ),
    "Support Devices": ("a pacemaker", "cardiac device with leads", "support devices"),
    "central venous catheter": (
        "a central venous catheter",
        "central line with tip in the vena cava",
        "venous catheter",
    ),
    "sternotomy": ("sternotomy wires", "median sternotomy", "sternal wire loops"),
    "hyperinflated lung": ("hyperinflated lungs", "flattened diaphragms", "overexpanded lungs"),
    "fracture": ("rib fractures", "fractured ribs with callus", "displaced rib fracture"),
    "Kyphosis": ("kyphosis", "wedged vertebral bodies", "thoracic kyphosis"),
    "Scoliosis": (
        "scoliosis",
        "lateral curvature of the thoracic spine",
        "the spine is curved to one side",
        "s-shaped curvature of the spine",
        "scoliotic curve of the spine",
    ),
    "hemidiaphragm elevation": (
        "elevated hemidiaphragm",
        "raised diaphragm on one side",
        "hemidiaphragm elevation",
    ),
}
NORMAL_CAPTIONS = ("normal chest x-ray", "no abnormality", "clear lungs and normal heart")
#: Every caption says what the spine looks like (as a radiology report would), so the zero-shot
#: Scoliosis prompts have something to match: curved for scoliosis phantoms, straight otherwise.
SCOLIOSIS_PHRASES = CAPTIONS["Scoliosis"]
STRAIGHT_SPINE = (
    "the spine is straight and midline",
    "straight spine",
    "no curvature of the spine",
    "normal alignment of the thoracic spine",
)

#: The demo CLIP: open_clip's own small ResNet image tower (batch norm) and a small text
#: transformer, CLIP BPE tokenizer (open_clip built-in).
DEMO_CLIP_CONFIG: dict[str, Any] = {
    "model_cfg": {
        "embed_dim": 64,
        # open_clip's ModifiedResNet, one block per stage: its batch norm keeps the image
        # embeddings apart from the first step, where a layer-norm ConvNeXt from random init
        # maps every phantom to nearly the same vector and the contrastive loss sits at chance.
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 32},
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,
            "width": 128,
            "heads": 4,
            "layers": 3,
        },
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bilinear",
        "resize_mode": "shortest",
    },
}


@dataclass
class DemoModelSettings:
    """Knobs of :func:`build_demo_models` (defaults: about 5 minutes on 2 shared CPU cores)."""

    n_train: int = 1000
    n_test: int = 300
    image_size: int = 80
    epochs: int = 12
    batch_size: int = 16
    lr: float = 2e-3
    clip_epochs: int = 18
    clip_batch: int = 32
    clip_lr: float = 1e-3
    seed: int = 0
    threads: int | None = None


def model_paths(out: str | Path) -> dict[str, Path]:
    """Where the demo models live under ``out``."""
    out = Path(out)
    return {
        "csra": out / "task1-csra" / "best.safetensors",
        "mlp": out / "task1-mlp" / "best.safetensors",
        "clip": out / "clip",
        "report": out / REPORT_FILE,
    }


def load_report(out: str | Path) -> dict[str, Any] | None:
    """The report of a complete demo-model build in ``out``, or None when missing or incomplete."""
    paths = model_paths(out)
    try:
        report = json.loads(paths["report"].read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if report.get("format") != REPORT_FORMAT or not report.get("demo"):
        return None
    clip_ok = (paths["clip"] / "open_clip_config.json").is_file() and (
        paths["clip"] / "open_clip_pytorch_model.bin"
    ).is_file()
    if not (paths["csra"].is_file() and paths["mlp"].is_file() and clip_ok):
        return None
    return report


def engine_config(out: str | Path, **overrides: Any):
    """An :class:`engine.predictor.EngineConfig` for the demo models in ``out``."""
    from engine.predictor import EngineConfig

    paths = model_paths(out)
    report = load_report(out) or {}
    kw: dict[str, Any] = dict(
        task1_checkpoints=[paths["mlp"], paths["csra"]],
        task1_weights=[1.0, 1.5],
        task1_arch="convnextv2_atto",
        clip_model=paths["clip"],
        mode="paper",
        device="cpu",
        image_size=int(report.get("settings", {}).get("image_size", DemoModelSettings.image_size)),
        batch_size=8,
    )
    kw.update(overrides)
    return EngineConfig(**kw)


# --------------------------------------------------------------------------------------------
# phantom sets


def write_phantom_set(
    folder: str | Path, n: int, seed: int, *, size: int = SOURCE_SIZE, p_normal: float = 0.2
) -> tuple[Path, list[frozenset[str]]]:
    """Write ``n`` phantoms as 16-bit PNGs plus ``labels.csv`` (CXR-LT format); one patient each.

    Returns the labels CSV path and each image's drawn findings (in CSV order).
    """
    import csv

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 4242])
    findings_list: list[frozenset[str]] = []
    rows = []
    for i in range(n):
        findings = sample_findings(rng, p_normal=p_normal)
        spec = PhantomSpec(int(rng.integers(2**31)), findings, variant=int(rng.integers(4)))
        name = f"ph{seed:03d}_{i:05d}.png"
        # Alternate the bit depth so the percentile stretch sees what DICOMs give it.
        pixels = _stored(render_phantom(spec, size), (12, 16)[i % 2], "MONOCHROME2")
        cv2.imwrite(str(folder / name), pixels)
        labels = label_set(findings)
        rows.append(
            [name, "20240101", f"PH{seed:03d}{i:05d}", *(int(c in labels) for c in ALL_CLASSES)]
        )
        findings_list.append(findings)
    csv_path = folder / "labels.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh)
        wr.writerow(["ImageID", "StudyDate_DICOM", "PatientID", *ALL_CLASSES])
        wr.writerows(rows)
    return csv_path, findings_list


# --------------------------------------------------------------------------------------------
# Task 1


def train_task1(
    labels: Path,
    images: Path,
    out: Path,
    head: str,
    s: DemoModelSettings,
    log: Callable[[str], None],
) -> Path:
    """Train one demo Task 1 model with the project's trainer; returns ``best.safetensors``."""
    from training.progress import TrainDone, TrainEpoch, TrainInfo
    from training.train import TrainConfig, train

    cfg = TrainConfig(
        labels=labels,
        images=images,
        out=out,
        val_fraction=0.1,
        head=head,
        arch="convnextv2_atto",
        image_size=s.image_size,
        epochs=s.epochs,
        warmup_epochs=0,  # random init: a frozen random backbone has nothing to warm up to
        batch_size=s.batch_size,
        device="cpu",
        seed=s.seed,
        workers=0,
        # From scratch, not a fine-tune: the paper's 1.5e-5 backbone LR would barely move it.
        lr_backbone=s.lr,
        lr_head=s.lr,
        ema_decay=0.99,
        drop_path=0.0,
        demo=True,
    )
    best = None
    for rec in train(cfg):
        match rec:
            case TrainEpoch():
                log(
                    f"  {head}: epoch {rec.epoch}/{s.epochs} loss {rec.train_loss:.4f} "
                    f"val mAP {rec.val_mAP or float('nan'):.3f} ({rec.seconds:.0f} s)"
                )
            case TrainInfo():
                log(f"  {head}: {rec.message}")
            case TrainDone():
                best = Path(rec.checkpoint)
    if best is None or not best.is_file():
        raise RuntimeError(f"{out}: training finished without a best checkpoint")
    return best


# --------------------------------------------------------------------------------------------
# Task 2: the demo CLIP


def caption(findings: frozenset[str], rng: np.random.Generator, *, canonical: bool = False) -> str:
    """The sentence about the spine that a phantom's report would hold.

    Scoliosis phantoms get a scoliosis wording, all others a straight-spine wording; with
    ``canonical`` always the first (shortest) wording of each. Scoliosis is the one zero-shot
    class the phantoms draw, so the demo CLIP is fitted to these sentences; captions listing
    every drawn finding were tried and a CLIP this small, trained from scratch for a few hundred
    steps, learned none of them (its contrastive loss stayed at chance).
    """
    pool = SCOLIOSIS_PHRASES if "Scoliosis" in findings else STRAIGHT_SPINE
    return str(pool[0] if canonical else rng.choice(pool))


def train_clip(
    folder: Path,
    images_dir: Path,
    names: list[str],
    findings: list[frozenset[str]],
    s: DemoModelSettings,
    log: Callable[[str], None],
) -> Path:
    """Fit the demo CLIP to phantom/caption pairs with open_clip's ClipLoss; write the folder."""
    import open_clip
    import torch
    from open_clip.loss import ClipLoss

    torch.manual_seed(s.seed)
    cfg = DEMO_CLIP_CONFIG["model_cfg"]
    model = open_clip.CLIP(
        embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"]
    )
    tokenizer = open_clip.get_tokenizer(
        "ViT-B-32", context_length=cfg["text_cfg"]["context_length"]
    )
    x_all = _clip_inputs(images_dir, names, cfg["vision_cfg"]["image_size"])
    loss_fn = ClipLoss()
    opt, text_params = _clip_optimizer(model, s)
    frozen_epochs = (s.clip_epochs * 3) // 5
    for p in text_params:
        p.requires_grad_(False)
    rng = np.random.default_rng([s.seed, 77])
    model.train()
    n_batches = max(1, len(names) // s.clip_batch)
    for epoch in range(s.clip_epochs):
        if epoch == frozen_epochs:
            for p in text_params:
                p.requires_grad_(True)
        order = rng.permutation(len(names))
        total = 0.0
        for b in range(n_batches):
            idx = order[b * s.clip_batch : (b + 1) * s.clip_batch]
            x = x_all[idx]
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            # First the canonical wordings (two far-apart targets for the image tower), then
            # all wordings, so the text tower learns that they mean the same.
            canonical = epoch < frozen_epochs
            texts = [caption(findings[i], rng, canonical=canonical) for i in idx]
            total += _clip_step(model, opt, loss_fn, x, tokenizer(texts))
        log(
            f"  clip: epoch {epoch + 1}/{s.clip_epochs} contrastive loss {total / n_batches:.3f} "
            f"(chance {np.log(s.clip_batch):.3f})"
        )
    _write_clip_folder(folder, model, len(names), s)
    return folder


def _clip_inputs(images_dir: Path, names: list[str], size: int) -> Any:
    """The phantoms as CLIP input tensors, through the engine's CLIP preprocessing.

    clip_grey to 512, then clip_tensor to the model size. The engine scales CLIP input by
    1/65535 whenever the maximum is above 255, so a 12-bit image arrives 16 times darker than a
    16-bit one; the training phantoms alternate 12 and 16 bits, so both kinds are seen.
    (Darkening them further as augmentation stopped the tower from learning at all in this
    budget.)
    """
    import torch

    from engine.imageio import read_source
    from engine.preprocess import clip_grey, clip_tensor

    return torch.cat(
        [
            clip_tensor(torch.from_numpy(clip_grey(read_source(images_dir / n)))[None], size)
            for n in names
        ]
    )


def _clip_optimizer(model: Any, s: DemoModelSettings) -> tuple[Any, list[Any]]:
    """AdamW over both towers at a fixed temperature; returns (optimiser, text parameters).

    The text tower is held at its random initialisation for the first 60 % (the caller freezes
    it): trained jointly from the start it maps every caption to the same vector (a constant
    text embedding is the loss's best answer while the image tower still sees nothing), after
    which the image tower gets no gradient. Random text embeddings of different captions are far
    apart, so the image tower first learns to point at them; the text tower then follows at a
    tenth of the rate.
    """
    import torch

    # A fixed temperature: a learned one collapses to uniform logits before the towers separate.
    model.logit_scale.requires_grad_(False)
    visual = [p for n, p in model.named_parameters() if n.startswith("visual.")]
    text_params = [
        p for n, p in model.named_parameters() if not n.startswith("visual.") and n != "logit_scale"
    ]
    opt = torch.optim.AdamW(
        [
            {"params": visual, "lr": s.clip_lr},
            {"params": text_params, "lr": s.clip_lr * 0.1},
        ],
        weight_decay=0.0,
    )
    return opt, text_params


def _clip_step(model: Any, opt: Any, loss_fn: Any, x: Any, text: Any) -> float:
    """One contrastive step on a batch of images and tokenised captions; returns its loss."""
    import torch

    img_f = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
    txt_f = torch.nn.functional.normalize(model.encode_text(text), dim=-1)
    loss = loss_fn(img_f, txt_f, model.logit_scale.exp())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _write_clip_folder(folder: Path, model: Any, pairs: int, s: DemoModelSettings) -> None:
    """Write the open_clip ``local-dir:`` folder: config, weights and a demo manifest."""
    import torch

    from engine.checkpoints import sha256_file

    cfg = DEMO_CLIP_CONFIG["model_cfg"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(DEMO_CLIP_CONFIG, indent=2), "utf-8")
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    manifest = {
        "format": "cxrlt-demo-clip/1",
        "demo": True,
        "description": "DEMO: tiny open_clip model fitted to synthetic phantom/caption pairs; not for patients",
        "weights": "open_clip_pytorch_model.bin",
        "weights_sha256": sha256_file(folder / "open_clip_pytorch_model.bin"),
        "tokenizer": "open_clip built-in CLIP BPE (bpe_simple_vocab_16e6.txt.gz), context length "
        f"{cfg['text_cfg']['context_length']}",
        "training": {
            "pairs": pairs,
            "epochs": s.clip_epochs,
            "batch": s.clip_batch,
            "loss": "open_clip.loss.ClipLoss",
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")


# --------------------------------------------------------------------------------------------
# evaluation and the whole build


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from training.metrics import auroc

    if y.min() == y.max():
        return None
    v = float(auroc(y, s))
    return v if np.isfinite(v) else None


def demo_thresholds(probs: np.ndarray, labels: list[frozenset[str]]) -> dict[str, float]:
    """Operating thresholds for the demo, fitted on held-out phantoms.

    A drawn class gets its F1-maximising threshold. A class the phantoms never show (e.g.
    Osteopenia, or Task 1 classes not drawn) gets twice its highest held-out score (at most
    0.999), so that it does not flag phantoms: the demo CLIP's prompts for undrawn zero-shot
    classes share words with its captions and would otherwise fire on every phantom.
    """
    from training.metrics import best_f1

    out: dict[str, float] = {}
    for j, c in enumerate(ALL_CLASSES):
        col = probs[:, j]
        if np.all(np.isnan(col)):
            continue
        y = np.array([c in lab for lab in labels], float)
        if y.any() and not y.all():
            _, t = best_f1(y, col)
        else:
            # Twice the highest phantom score: p / t stays near or below 0.5 for this class, so
            # it cannot lead the rare-finding score.
            top = float(np.nanmax(col))
            t = max(2.0 * top, top + 0.01)
        out[c] = round(float(np.clip(t, 0.01, 0.999)), 4)
    return out


def evaluate_demo_models(
    out: Path, test_dir: Path, names: list[str], findings: list[frozenset[str]], image_size: int
) -> dict[str, Any]:
    """Score the held-out phantoms with the engine's Predictor; per-class AUC and scoliosis check."""
    from engine.predictor import Predictor

    predictor = Predictor(engine_config(out, image_size=image_size, cache_dir=None))
    probs = []
    for r in predictor.predict_paths([test_dir / n for n in names]):
        if not r.ok:
            raise RuntimeError(f"{r.path}: {r.reason}")
        probs.append(r.probs)
    p = np.stack(probs)
    labels = [label_set(f) for f in findings]
    per_class: dict[str, float | None] = {}
    for c in (*DRAWN_TASK1, "Normal"):
        j = ALL_CLASSES.index(c)
        per_class[c] = _auc(np.array([c in lab for lab in labels], float), p[:, j])
    drawn = [v for c, v in per_class.items() if c in DRAWN_TASK1 and v is not None]
    j = ALL_CLASSES.index("Scoliosis")
    scol = np.array(["Scoliosis" in f for f in findings])
    normal = np.array([not f for f in findings])
    sc, nm = p[scol, j], p[normal, j]
    pairs = (
        (sc[:, None] > nm[None, :]).mean() + 0.5 * (sc[:, None] == nm[None, :]).mean()
        if len(sc) and len(nm)
        else None
    )
    return {
        "n_test": len(names),
        "thresholds": demo_thresholds(p, labels),
        "auc": per_class,
        "macro_auc_drawn_task1": float(np.mean(drawn)) if drawn else None,
        "scoliosis": {
            "n_scoliosis": int(scol.sum()),
            "n_normal": int(normal.sum()),
            "auc_vs_normal": None if pairs is None else float(pairs),
            "auc_vs_all_others": _auc(scol.astype(float), p[:, j]),
            "mean_score_scoliosis": float(sc.mean()) if len(sc) else None,
            "mean_score_normal": float(nm.mean()) if len(nm) else None,
            "outranks_normal": None if pairs is None else bool(pairs > 0.5),
        },
        "engine": {
            "mode": "paper",
            "models": [str(m.path.relative_to(out)) for m in predictor.models],
        },
    }


def build_demo_models(
    out: str | Path,
    settings: DemoModelSettings | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or reuse) the demo models in ``out`` and return the report.

    Parameters
    ----------
    out : output folder (see the module docstring for its layout).
    settings : sizes, epochs and seed (defaults: about 5 minutes on 2 shared CPU cores).
    force : rebuild even when a complete build is present (otherwise it is reused as is).
    log : receives one line per step.

    Returns
    -------
    dict
        The report written to ``out/demo_models.json``: per-class held-out AUC, the macro AUC over
        the drawn Task 1 classes, the Scoliosis ranking check, timings and settings.
    """
    import shutil

    import torch

    out = Path(out)
    if not force:
        report = load_report(out)
        if report is not None:
            log(
                f"demo models already built in {out} (macro AUC {report['eval']['macro_auc_drawn_task1']:.3f}); reusing them"
            )
            return report
    s = settings or DemoModelSettings()
    threads = s.threads or os.cpu_count() or 1
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    paths = model_paths(out)
    paths["report"].unlink(missing_ok=True)  # written last: its presence means "complete"
    for sub in ("task1-csra", "task1-mlp", "clip"):
        shutil.rmtree(out / sub, ignore_errors=True)
    try:
        timings, ev = _train_and_evaluate(out, paths, s, log)
    finally:
        torch.set_num_threads(old_threads)
    report = {
        "format": REPORT_FORMAT,
        "demo": True,
        "note": "DEMO models trained on synthetic phantoms; their scores mean nothing for patients",
        "settings": asdict(s) | {"threads": threads},
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "eval": ev,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    paths["report"].write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return report


def _train_and_evaluate(
    out: Path, paths: dict[str, Path], s: DemoModelSettings, log: Callable[[str], None]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Write the phantoms, train the two Task 1 models and the CLIP, score the held-out set.

    Returns (timings in seconds, the evaluation of :func:`evaluate_demo_models`).
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train_dir, test_dir = out / "_phantoms" / "train", out / "_phantoms" / "test"
    log(f"writing {s.n_train} training and {s.n_test} held-out phantoms ...")
    train_csv, train_findings = write_phantom_set(train_dir, s.n_train, s.seed)
    _, test_findings = write_phantom_set(test_dir, s.n_test, s.seed + 1_000_003)
    train_names = [f"ph{s.seed:03d}_{i:05d}.png" for i in range(s.n_train)]
    test_names = [f"ph{s.seed + 1_000_003:03d}_{i:05d}.png" for i in range(s.n_test)]
    timings["phantoms_s"] = time.perf_counter() - t0
    for head in ("csra", "mlp"):
        t0 = time.perf_counter()
        log(
            f"training the {head.upper()} model (convnextv2_atto, {s.image_size} px, {s.epochs} epochs) ..."
        )
        train_task1(train_csv, train_dir, out / f"task1-{head}", head, s, log)
        timings[f"train_{head}_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    log(f"fitting the demo CLIP to {s.n_train} phantom/caption pairs ...")
    train_clip(paths["clip"], train_dir, train_names, train_findings, s, log)
    timings["train_clip_s"] = time.perf_counter() - t0
    timings["total_train_s"] = time.perf_counter() - t_start
    t0 = time.perf_counter()
    log(f"scoring {s.n_test} held-out phantoms with the engine (paper mode) ...")
    ev = evaluate_demo_models(out, test_dir, test_names, test_findings, s.image_size)
    timings["eval_s"] = time.perf_counter() - t0
    return timings, ev


def format_report(report: dict[str, Any]) -> str:
    """The report as a few human-readable lines (per-class AUC table, Scoliosis check, times)."""
    ev = report["eval"]
    lines = [f"held-out phantoms: {ev['n_test']}; AUC per drawn class (engine, paper mode):"]
    for c, v in ev["auc"].items():
        lines.append(f"  {c:<26} {'n/a' if v is None else f'{v:.3f}'}")
    lines.append(f"macro AUC over the drawn Task 1 classes: {ev['macro_auc_drawn_task1']:.3f}")
    sc = ev["scoliosis"]
    if sc["auc_vs_normal"] is not None:
        lines.append(
            f"Scoliosis (zero-shot CLIP): scoliosis phantoms outrank normal ones in "
            f"{100 * sc['auc_vs_normal']:.0f} % of pairs ({sc['n_scoliosis']} vs {sc['n_normal']}; "
            f"mean score {sc['mean_score_scoliosis']:.3f} vs {sc['mean_score_normal']:.3f})"
        )
    t = report["timings"]
    lines.append(
        "training time: "
        + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in t.items() if k != "eval_s")
        + f"; evaluation {t.get('eval_s', 0):.0f} s"
    )
    return "\n".join(lines)
