"""Fine-tune a Task 1 model (``cxrlt train``): DB loss, class-aware sampling, EMA, DDP.

Recipe (the authors' training code):

* model: :func:`engine.models.build_model` (CSRA or MLP head, published state-dict layout),
  optionally initialised from ``--init`` (a published or training checkpoint; tensors whose name
  and shape match are loaded, a new head starts from its default initialisation);
* phase 1, head warm-up (``warmup_epochs``): backbone frozen, AdamW on the head at 1e-3;
* phase 2, full fine-tuning: AdamW, backbone LR 1.5e-5 (weight decay 0.01) and head LR 1.5e-4
  (weight decay 0.05), cosine schedule with a short linear warm-up, floor 1 % of the base LR;
  an EMA of the weights (decay 0.9999, ramped in as ``min(0.9999, (1 + t) / (10 + t))`` after
  ``t`` updates so that short fine-tunes on a few hundred reviewed images still move it);
* Distribution-Balanced loss (:mod:`training.losses`), repeat-factor sampler
  (:mod:`training.sampler`), the paper's augmentation (:mod:`training.data`), AMP on CUDA (bf16
  where supported, else fp16 with a gradient scaler), gradient clipping at norm 1.0;
* validation mAP every epoch, on the EMA weights in phase 2; the best epoch's weights are written
  as ``best.safetensors`` in the published layout (``engine.checkpoints.load_task1_model`` loads
  it with ``strict=True``) plus ``manifest.json``; ``last.pt`` holds everything ``--resume``
  needs (weights, EMA, optimizer, scaler, schedule, sampler state, epoch, history) and is
  readable with ``torch.load(weights_only=True)``;
* ``torchrun --nproc_per_node=N cxrlt train ...``: with ``WORLD_SIZE > 1`` the process group is
  initialised (NCCL on CUDA, gloo on CPU), the model is wrapped in DistributedDataParallel
  (SyncBatchNorm on CUDA), each rank trains on its shard of the same epoch list, validation
  predictions are gathered, and rank 0 alone writes files.

:func:`train` is a generator of progress records, so the CLI, a GUI worker and tests drive the
same code.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from engine.classes import TASK1_CLASSES
from training.data import (
    CXRDataset,
    find_images,
    read_labels_csv,
    sha256_file,
    split_by_patient,
)
from training.losses import DB_ALPHA, DB_BETA, DB_MAX_MARGIN, DistributionBalancedLoss
from training.metrics import evaluate, mean_average_precision
from training.progress import (
    EpochRecord,
    TrainDone,
    TrainEpoch,
    TrainInfo,
    TrainRecord,
    TrainStep,
)
from training.sampler import CAS_MAX_REPEAT, CAS_T, RepeatFactorSampler, repeat_factors

BEST_FILE = "best.safetensors"
MANIFEST_FILE = "manifest.json"
LAST_FILE = "last.pt"
HISTORY_FILE = "history.json"
STATE_FORMAT = "cxrlt-train-state/1"
MANIFEST_FORMAT = "cxrlt-model-manifest/1"


class TrainError(Exception):
    """A problem with the inputs or the output folder; the message says how to fix it."""


@dataclass
class TrainConfig:
    """Everything ``cxrlt train`` accepts (see ``docs/training.md``)."""

    labels: Path
    images: Path
    out: Path
    val_labels: Path | None = None
    val_images: Path | None = None
    val_fraction: float = 0.1
    init: Path | None = None
    head: str = "csra"
    arch: str = "convnextv2_base"
    image_size: int = 512
    epochs: int = 30
    warmup_epochs: int = 2
    batch_size: int = 16
    device: str = "auto"
    resume: bool = False
    seed: int = 42
    workers: int = 4
    lr_backbone: float = 1.5e-5
    lr_head: float = 1.5e-4
    lr_warmup: float = 1e-3
    weight_decay_backbone: float = 0.01
    weight_decay_head: float = 0.05
    ema_decay: float = 0.9999
    grad_clip: float = 1.0
    drop_path: float = 0.2
    db_beta: float = DB_BETA
    db_alpha: float = DB_ALPHA
    db_max_margin: float = DB_MAX_MARGIN
    cas_threshold: float = CAS_T
    cas_max_repeat: float = CAS_MAX_REPEAT
    demo: bool = False
    classes: tuple[str, ...] = field(default=TASK1_CLASSES)

    def to_json(self) -> dict[str, Any]:
        """JSON-able copy (paths as strings)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, Path):
                d[k] = str(v)
        d["classes"] = list(self.classes)
        return d


# --------------------------------------------------------------------------------------------
# processes and devices


@dataclass
class _Dist:
    world: int
    rank: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu", "cuda"):
        raise TrainError(f"--device must be auto, cpu or cuda, not {device!r}")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise TrainError("--device cuda was given but no CUDA device is available")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(world, rank, local, dev)


def _barrier(d: _Dist) -> None:
    if d.world > 1:
        dist.barrier()


# --------------------------------------------------------------------------------------------
# model, EMA, optimiser


def _build(cfg: TrainConfig) -> nn.Module:
    from engine.models import build_model

    try:
        model = build_model(cfg.arch, cfg.head, num_classes=len(cfg.classes))
    except Exception as e:  # timm raises RuntimeError for an unknown name
        raise TrainError(f"cannot build {cfg.arch!r} with a {cfg.head} head ({e})") from e
    if cfg.drop_path > 0:
        _set_drop_path(model.backbone, cfg.drop_path)
    return model


def _set_drop_path(backbone: nn.Module, rate: float) -> None:
    """Stochastic depth linearly rising to ``rate`` over the blocks, as timm's constructor does.

    engine.models builds the backbone for inference (no drop path); the probabilities of timm's
    DropPath modules are set here instead of rebuilding the model.
    """
    from timm.layers import DropPath

    blocks = [m for m in backbone.modules() if hasattr(m, "drop_path")]
    n = len(blocks)
    for i, block in enumerate(blocks):
        p = rate * i / max(1, n - 1)
        block.drop_path = DropPath(p) if p > 0 else nn.Identity()


def _init_from(model: nn.Module, path: Path) -> str:
    """Load the tensors of ``path`` whose name and shape match; say what was loaded."""
    from engine.checkpoints import CheckpointError, read_state_dict

    try:
        state = read_state_dict(path)
    except CheckpointError as e:
        raise TrainError(str(e)) from e
    own = model.state_dict()
    take = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    backbone = [k for k in own if k.startswith("backbone.")]
    got = [k for k in backbone if k in take]
    if len(got) < len(backbone):
        raise TrainError(
            f"{path}: only {len(got)} of the {len(backbone)} backbone tensors match a "
            f"{type(model).__name__} built for this --arch; pass the --arch of the checkpoint"
        )
    model.load_state_dict(take, strict=False)
    fresh = len(own) - len(take)
    return f"initialised from {path}: {len(take)} of {len(own)} tensors" + (
        f" ({fresh} head tensors start fresh)" if fresh else ""
    )


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied).

    Decay after ``t`` updates: ``min(decay, (1 + t) / (10 + t))``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next update uses."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s weights in (call after each optimiser step)."""
        d = self.current_decay()
        src = dict(model.named_parameters())
        for name, p in self.module.named_parameters():
            p.lerp_(src[name].detach(), 1.0 - d)
        src_b = dict(model.named_buffers())
        for name, b in self.module.named_buffers():
            b.copy_(src_b[name])
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Weights and update count."""
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.module.load_state_dict(state["model"], strict=True)
        self.updates = int(state["updates"])


def _is_backbone(name: str) -> bool:
    return name.startswith("backbone.")


def _make_optimizer(model: nn.Module, cfg: TrainConfig, phase: str) -> torch.optim.Optimizer:
    if phase == "warmup":
        for n, p in model.named_parameters():
            p.requires_grad_(not _is_backbone(n))
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": params, "lr": cfg.lr_warmup, "weight_decay": cfg.weight_decay_backbone}
        ]
    else:
        for p in model.parameters():
            p.requires_grad_(True)
        bb = [p for n, p in model.named_parameters() if _is_backbone(n)]
        hd = [p for n, p in model.named_parameters() if not _is_backbone(n)]
        groups = [
            {"params": bb, "lr": cfg.lr_backbone, "weight_decay": cfg.weight_decay_backbone},
            {"params": hd, "lr": cfg.lr_head, "weight_decay": cfg.weight_decay_head},
        ]
    for g in groups:
        g["initial_lr"] = g["lr"]
    # eps 1e-5 as the authors' code: 1e-8 is below fp16 resolution of the second moment.
    return torch.optim.AdamW(groups, eps=1e-5)


def lr_factor(finetune_epoch: int, finetune_epochs: int) -> float:
    """Phase-2 LR multiplier: linear warm-up over ``min(5, n // 10)`` epochs, then cosine, >= 0.01."""
    warm = min(5, finetune_epochs // 10)
    if finetune_epoch < warm:
        return (finetune_epoch + 1) / warm
    t = (finetune_epoch - warm) / max(1, finetune_epochs - warm)
    return max(0.01, 0.5 * (1.0 + math.cos(math.pi * t)))


# --------------------------------------------------------------------------------------------
# files


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _public(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(
        path, (json.dumps(obj, indent=2, allow_nan=False, default=_jsonable) + "\n").encode()
    )


def _jsonable(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON-able: {type(x).__name__}")


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _save_safetensors(path: Path, model: nn.Module, meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        _public(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_torch(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        _public(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------
# data


@dataclass
class _Data:
    train: CXRDataset
    val: CXRDataset
    counts: np.ndarray
    factors: np.ndarray
    info: dict[str, Any]
    problems: list[str]


def _load_data(cfg: TrainConfig) -> _Data:
    problems: list[str] = []
    try:
        table = read_labels_csv(cfg.labels, cfg.classes)
    except ValueError as e:
        raise TrainError(str(e)) from e
    problems += table.problems
    table, paths, more = _find(table, cfg.images)
    problems += more
    if cfg.val_labels is not None:
        try:
            vtable = read_labels_csv(cfg.val_labels, cfg.classes)
        except ValueError as e:
            raise TrainError(str(e)) from e
        problems += vtable.problems
        vdir = cfg.val_images or cfg.images
        vtable, vpaths, more = _find(vtable, vdir)
        problems += more
        ttable, tpaths = table, paths
    else:
        try:
            tr, va = split_by_patient(table.patient_ids, cfg.val_fraction, cfg.seed)
        except ValueError as e:
            raise TrainError(f"{cfg.labels}: {e}") from e
        ttable, tpaths = table.subset(tr), [paths[i] for i in tr]
        vtable, vpaths = table.subset(va), [paths[i] for i in va]
    if len(ttable) == 0:
        raise TrainError(f"{cfg.labels}: no training image left (see the problems above)")
    if len(vtable) == 0:
        raise TrainError(f"{cfg.val_labels or cfg.labels}: no validation image left")
    counts = ttable.positive_counts()
    factors = repeat_factors(ttable.labels, cfg.cas_threshold, cfg.cas_max_repeat)
    info = {
        "labels": str(cfg.labels),
        "labels_sha256": sha256_file(cfg.labels),
        "val_labels": None if cfg.val_labels is None else str(cfg.val_labels),
        "val_labels_sha256": None if cfg.val_labels is None else sha256_file(cfg.val_labels),
        "images": str(cfg.images),
        "split": "val-labels" if cfg.val_labels is not None else f"patient-wise {cfg.val_fraction}",
        "split_seed": cfg.seed,
        "n_train": len(ttable),
        "n_val": len(vtable),
        "train_positives": {c: int(n) for c, n in zip(cfg.classes, counts, strict=True)},
        "mean_repeat_factor": float(factors.mean()),
    }
    train = CXRDataset(ttable, tpaths, cfg.image_size, augment=True, seed=cfg.seed)
    val = CXRDataset(vtable, vpaths, cfg.image_size, augment=False)
    return _Data(train, val, counts, factors, info, problems)


def _find(table: Any, images: Path) -> Any:
    try:
        return find_images(table, images)
    except ValueError as e:
        raise TrainError(str(e)) from e


def _loader(
    dataset: Any, sampler: Any, batch_size: int, cfg: TrainConfig, d: _Dist, drop_last: bool
) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=d.device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=False,  # the dataset's per-epoch augmentation seed must reach workers
    )


# --------------------------------------------------------------------------------------------
# loops


def _autocast(d: _Dist) -> tuple[Any, bool]:
    """(autocast context factory, use a GradScaler)."""
    if d.device.type != "cuda":
        return (lambda: torch.autocast("cpu", enabled=False)), False
    bf16 = torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), not bf16


def _average_buffers(module: nn.Module, d: _Dist) -> None:
    """Average the floating-point buffers (BatchNorm statistics) over the processes."""
    for b in module.buffers():
        if torch.is_floating_point(b):
            dist.all_reduce(b)
            b.div_(d.world)


def _forward_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def _predict(model: nn.Module, ds: CXRDataset, cfg: TrainConfig, d: _Dist) -> np.ndarray:
    """Sigmoid probabilities ``[len(ds), C]`` (every rank scores its share; gathered on all)."""
    from torch.utils.data import DataLoader

    mine = list(range(d.rank, len(ds), d.world))
    loader = DataLoader(
        ds,
        batch_size=cfg.batch_size,
        sampler=mine,
        num_workers=cfg.workers,
        pin_memory=d.device.type == "cuda",
    )
    autocast, _ = _autocast(d)
    model.eval()
    idx_parts, prob_parts = [], []
    for x, _, idx in loader:
        x = x.to(d.device, non_blocking=True)
        if d.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = _forward_logits(model, x)
        prob_parts.append(torch.sigmoid(logits.float()).cpu().numpy())
        idx_parts.append(idx.numpy())
    probs_local = np.concatenate(prob_parts) if prob_parts else np.zeros((0, len(cfg.classes)))
    idx_local = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
    if d.world > 1:
        gathered: list[Any] = [None] * d.world
        dist.all_gather_object(gathered, (idx_local, probs_local))
        idx_all = np.concatenate([g[0] for g in gathered])
        probs_all = np.concatenate([g[1] for g in gathered])
    else:
        idx_all, probs_all = idx_local, probs_local
    out = np.full((len(ds), len(cfg.classes)), np.nan)
    out[idx_all] = probs_all
    return out


def _val_loss(criterion: DistributionBalancedLoss, probs: np.ndarray, labels: np.ndarray) -> float:
    """DB loss of the gathered validation probabilities (``criterion`` lives on the CPU)."""
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    logits = torch.from_numpy(np.log(p) - np.log1p(-p)).float()
    return float(criterion(logits, torch.from_numpy(labels).float()))


def train(cfg: TrainConfig) -> Iterator[TrainRecord]:
    """Run (or resume) a training; yields progress records.

    Records (:mod:`training.progress`): :class:`TrainInfo` (a message), :class:`TrainStep` (one
    optimiser step), :class:`TrainEpoch` (one epoch: losses, validation mAP, whether it is the
    best so far) and finally :class:`TrainDone` (best epoch, checkpoint and manifest paths).
    Every rank yields them; only rank 0 writes files.

    Raises
    ------
    TrainError
        For bad inputs or an output folder that would be overwritten.
    """
    d = _setup_distributed(cfg.device)
    try:
        yield from _train(cfg, d)
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Run:
    """What the steps of one training share: inputs, model, optimiser state, history."""

    cfg: TrainConfig
    d: _Dist
    out: Path
    data: _Data
    model: nn.Module
    criterion: DistributionBalancedLoss
    val_criterion: DistributionBalancedLoss
    sampler: RepeatFactorSampler
    start_epoch: int = 0
    warmup: int = 0
    finetune_epochs: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(
        default_factory=lambda: {"epoch": None, "score": None, "mAP": None}
    )
    state: dict[str, Any] | None = None  # the resumed last.pt
    autocast: Any = None
    scaler: Any = None
    use_scaler: bool = False
    ema: EMA | None = None
    phase: str | None = None
    opt: torch.optim.Optimizer | None = None
    wrapped: nn.Module | None = None
    val_labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    has_val_pos: bool = False

    @property
    def last_path(self) -> Path:
        return self.out / LAST_FILE

    @property
    def score_name(self) -> str:
        return "mAP" if self.has_val_pos else "-val_loss"


def _train(cfg: TrainConfig, d: _Dist) -> Iterator[TrainRecord]:
    out = _check_config(cfg, d)
    torch.manual_seed(cfg.seed)
    data = _load_data(cfg)
    for p in data.problems:
        yield TrainInfo(p)

    model = _build(cfg)
    if cfg.init is not None and not cfg.resume:
        yield TrainInfo(_init_from(model, Path(cfg.init)))
    run = _Run(
        cfg,
        d,
        out,
        data,
        model,
        criterion=DistributionBalancedLoss(
            data.counts, cfg.db_beta, cfg.db_alpha, cfg.db_max_margin
        ),
        val_criterion=DistributionBalancedLoss(
            data.counts, cfg.db_beta, cfg.db_alpha, cfg.db_max_margin
        ),
        sampler=_make_sampler(cfg, d, data),
    )
    if cfg.resume:
        yield from _resume(run)
    yield from _plan_phases(run)
    _to_device(run)
    yield from _choose_validation_score(run)

    for epoch in range(run.start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        _prepare_epoch(run, epoch)
        train_loss, skipped = yield from _train_epoch(run, epoch)
        eval_model, probs, val_map, val_loss, score = _validate(run)
        improved = _improves(score, run.best["score"])
        assert run.opt is not None and run.phase is not None
        record = EpochRecord(
            epoch=epoch + 1,
            phase=run.phase,
            train_loss=_finite(train_loss),
            skipped_steps=skipped,
            val_mAP=_finite(val_map),
            val_loss=_finite(val_loss),
            lr=run.opt.param_groups[0]["lr"],
            seconds=round(time.perf_counter() - t0, 3),
        )
        run.history.append(record.to_json())
        if improved:
            run.best = {"epoch": epoch + 1, "score": float(score), "mAP": _finite(val_map)}
        if d.main:
            if improved:
                _write_best(
                    cfg, out, eval_model, data, probs, run.val_labels, record, run.score_name
                )
            _save_state(run, epoch)
        _barrier(d)
        yield TrainEpoch(**record.to_json(), best=improved)

    if run.best["epoch"] is None:
        raise TrainError(
            f"{out}: no epoch gave a finite validation {run.score_name}, so no checkpoint was "
            "written (see history.json; the inputs or the learning rate may be at fault)"
        )
    yield TrainDone(
        best_epoch=run.best["epoch"],
        best_mAP=run.best["mAP"],
        checkpoint=str(out / BEST_FILE),
        manifest=str(out / MANIFEST_FILE),
    )


def _check_config(cfg: TrainConfig, d: _Dist) -> Path:
    """Refuse bad settings and an output folder that would be overwritten; create it."""
    if cfg.head not in ("csra", "mlp"):
        raise TrainError(f"--head must be csra or mlp, not {cfg.head!r}")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.image_size < 32:
        raise TrainError("--epochs and --batch-size must be >= 1 and --image-size >= 32")
    out = Path(cfg.out)
    last_path = out / LAST_FILE
    if cfg.resume and not last_path.is_file():
        raise TrainError(f"{last_path}: nothing to resume (no last checkpoint in --out)")
    if not cfg.resume and (last_path.exists() or (out / BEST_FILE).exists()):
        raise TrainError(
            f"{out}: holds an earlier training; pass --resume to continue it or choose another --out"
        )
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    _barrier(d)
    return out


def _make_sampler(cfg: TrainConfig, d: _Dist, data: _Data) -> RepeatFactorSampler:
    sampler = RepeatFactorSampler(data.factors, num_replicas=d.world, rank=d.rank, seed=cfg.seed)
    per_rank = math.ceil(data.factors.sum() / d.world)
    if per_rank < cfg.batch_size:
        raise TrainError(
            f"--batch-size {cfg.batch_size} is larger than the ~{per_rank:.0f} training samples per "
            "process and epoch; lower it"
        )
    return sampler


def _resume(run: _Run) -> Iterator[TrainRecord]:
    """Load ``last.pt``: weights, epoch, history, best epoch, sampler and RNG state."""
    last_path = run.last_path
    state = torch.load(last_path, map_location="cpu", weights_only=True)
    _check_resume(state, run.cfg, last_path)
    _check_resume_data(state, run.data.info, last_path)
    run.model.load_state_dict(state["model"], strict=True)
    run.start_epoch = int(state["epoch"])
    # (a history saved by an earlier version may hold NaN, which JSON refuses)
    run.history = [
        {k: _finite(v) if isinstance(v, float) else v for k, v in rec.items()}
        for rec in state["history"]
    ]
    run.best = dict(state["best"])
    run.sampler.load_state_dict(state["sampler"])
    if "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"])
    run.state = state
    yield TrainInfo(f"resuming {last_path} after epoch {run.start_epoch}")


def _plan_phases(run: _Run) -> Iterator[TrainRecord]:
    """Set the head warm-up length and the number of fine-tuning epochs."""
    cfg = run.cfg
    if run.state is not None:
        # the phase boundary of the run being resumed stays where it was
        run.warmup = int(run.state["scheduler"]["warmup_epochs"])
    else:
        run.warmup = max(0, min(cfg.warmup_epochs, cfg.epochs - 1))
        if run.warmup != cfg.warmup_epochs:
            yield TrainInfo(f"head warm-up shortened to {run.warmup} of {cfg.epochs} epochs")
    run.finetune_epochs = max(1, cfg.epochs - run.warmup)
    if run.start_epoch >= cfg.epochs:
        yield TrainInfo(f"already trained {run.start_epoch} of {cfg.epochs} epochs")


def _to_device(run: _Run) -> None:
    """Move model and loss to the device; set up autocast and the gradient scaler."""
    d = run.d
    run.model.to(d.device)
    run.criterion.to(d.device)
    if d.device.type == "cuda":
        run.model = run.model.to(memory_format=torch.channels_last)
        if d.world > 1:
            run.model = nn.SyncBatchNorm.convert_sync_batchnorm(run.model)
    run.autocast, run.use_scaler = _autocast(d)
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.use_scaler)
    if run.state is not None and run.state.get("scaler") and run.use_scaler:
        run.scaler.load_state_dict(run.state["scaler"])
    run.wrapped = run.model


def _choose_validation_score(run: _Run) -> Iterator[TrainRecord]:
    """Validation mAP picks the best epoch, or validation loss when no label is positive."""
    run.val_labels = run.data.val.table.labels.astype(np.float64)
    run.has_val_pos = bool(np.any(np.nan_to_num(run.val_labels) > 0.5))
    if not run.has_val_pos:
        yield TrainInfo(
            "the validation set has no positive label: the best epoch is chosen by validation loss"
        )


def _prepare_epoch(run: _Run, epoch: int) -> None:
    """Enter the epoch's phase (new optimiser, EMA, DDP wrapper) and set its learning rate."""
    cfg, d, state = run.cfg, run.d, run.state
    want = "warmup" if epoch < run.warmup else "finetune"
    if want != run.phase:
        run.phase = want
        run.opt = _make_optimizer(run.model, cfg, run.phase)
        if state is not None and state.get("phase") == run.phase and epoch == run.start_epoch:
            run.opt.load_state_dict(state["optimizer"])
        if run.phase == "finetune":
            run.ema = EMA(run.model, cfg.ema_decay)
            if state is not None and state.get("ema") is not None and epoch == run.start_epoch:
                run.ema.load_state_dict(state["ema"])
        if d.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # a new wrapper per phase: DDP registers the parameters that need gradients when
            # it is built, and phase 2 unfreezes the backbone
            device_ids = [d.local_rank] if d.device.type == "cuda" else None
            run.wrapped = DDP(run.model, device_ids=device_ids)
        else:
            run.wrapped = run.model
    assert run.opt is not None
    if run.phase == "finetune":
        f = lr_factor(epoch - run.warmup, run.finetune_epochs)
        for g in run.opt.param_groups:
            g["lr"] = g["initial_lr"] * f


def _train_epoch(run: _Run, epoch: int) -> Generator[TrainRecord, None, tuple[float, int]]:
    """One pass over the epoch's samples; returns (mean finite loss over ranks, skipped steps)."""
    cfg, d, data = run.cfg, run.d, run.data
    assert run.wrapped is not None and run.opt is not None
    run.sampler.set_epoch(epoch)
    data.train.reseed(cfg.seed + 7919 * epoch + 104729 * d.rank)
    loader = _loader(data.train, run.sampler, cfg.batch_size, cfg, d, drop_last=True)
    run.wrapped.train()
    steps = len(loader)
    total, n, skipped = 0.0, 0, 0
    buffers = [b for b in run.model.buffers() if torch.is_floating_point(b)]
    for step, (x, y, _) in enumerate(loader):
        lv, finite = _train_step(run, x, y, buffers)
        if finite:
            total += lv
            n += 1
        else:  # the step was skipped: its loss does not enter the epoch's mean
            skipped += 1
        yield TrainStep(epoch + 1, step + 1, steps, lv, run.opt.param_groups[0]["lr"])
    train_loss = total / n if n else math.nan
    if d.world > 1:
        t = torch.tensor([train_loss], dtype=torch.float64, device=d.device)
        dist.all_reduce(t)
        train_loss = float(t.item()) / d.world
        if d.device.type != "cuda":
            # No SyncBatchNorm off CUDA: the processes' BatchNorm statistics drift apart.
            # Average them, so that every process validates, and rank 0 saves, one model.
            _average_buffers(run.model, d)
            if run.ema is not None:
                _average_buffers(run.ema.module, d)
    return train_loss, skipped


def _train_step(
    run: _Run, x: torch.Tensor, y: torch.Tensor, buffers: list[torch.Tensor]
) -> tuple[float, bool]:
    """Forward, backward, clip and step; returns (loss, whether loss and gradients are finite)."""
    d, opt, scaler = run.d, run.opt, run.scaler
    assert opt is not None and run.wrapped is not None
    x = x.to(d.device, non_blocking=True)
    y = y.to(d.device, non_blocking=True)
    if d.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    saved = [b.detach().clone() for b in buffers]  # BatchNorm statistics
    with run.autocast():
        logits = _forward_logits(run.wrapped, x)
    loss = run.criterion(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    norm = torch.nn.utils.clip_grad_norm_(
        [p for p in run.model.parameters() if p.requires_grad], run.cfg.grad_clip
    )
    if run.use_scaler:
        scaler.step(opt)  # skips the step itself on inf/NaN gradients
        scaler.update()
    elif torch.isfinite(norm):
        # Gradients are already averaged over ranks, so every rank makes the same call.
        opt.step()
    lv = float(loss.detach())
    finite = math.isfinite(lv) and bool(torch.isfinite(norm))
    if not finite:
        # A non-finite forward pass also wrote its statistics into BatchNorm's running
        # buffers, which would stay NaN for good: put them back.
        with torch.no_grad():
            for b, v in zip(buffers, saved, strict=True):
                b.copy_(v)
    if run.ema is not None:
        run.ema.update(run.model)
    return lv, finite


def _validate(run: _Run) -> tuple[nn.Module, np.ndarray, float, float, float]:
    """Predict the validation set (EMA weights in phase 2): (model, probs, mAP, loss, score)."""
    ema = run.ema
    eval_model = ema.module if (ema is not None and run.phase == "finetune") else run.model
    probs = _predict(eval_model, run.data.val, run.cfg, run.d)
    val_map = mean_average_precision(run.val_labels, probs)
    val_loss = _val_loss(run.val_criterion, probs, run.val_labels)
    score = val_map if run.has_val_pos else -val_loss
    return eval_model, probs, val_map, val_loss, score


def _improves(score: float, best_score: float | None) -> bool:
    # Only a finite score can be best: a checkpoint whose validation gave NaN is not saved.
    return math.isfinite(score) and (
        best_score is None or not math.isfinite(best_score) or score > best_score
    )


def _save_state(run: _Run, epoch: int) -> None:
    """Write ``last.pt`` (everything ``--resume`` needs) and ``history.json``."""
    assert run.opt is not None
    _save_torch(
        run.last_path,
        {
            "format": STATE_FORMAT,
            "epoch": epoch + 1,
            "phase": run.phase,
            "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
            "ema": None if run.ema is None else _cpu_state(run.ema.state_dict()),
            "optimizer": run.opt.state_dict(),
            "scaler": run.scaler.state_dict() if run.use_scaler else None,
            "scheduler": {
                "kind": "warmup-constant+cosine",
                "warmup_epochs": run.warmup,
                "finetune_epochs": run.finetune_epochs,
                "next_epoch": epoch + 1,
            },
            "sampler": run.sampler.state_dict(),
            "best": run.best,
            "history": run.history,
            "config": json.dumps(run.cfg.to_json()),
            "torch_rng": torch.get_rng_state(),
            "data_sha256": _data_key(run.data.info),
        },
    )
    _atomic_json(run.out / HISTORY_FILE, run.history)


def _cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": {k: v.detach().cpu() for k, v in state["model"].items()},
        "updates": state["updates"],
    }


def _data_key(info: dict[str, Any]) -> str:
    """The label files a run trains and validates on (their sha256s), to compare on resume."""
    return f"{info['labels_sha256']}:{info['val_labels_sha256'] or ''}"


def _check_resume_data(state: dict[str, Any], info: dict[str, Any], path: Path) -> None:
    # A changed label file changes the patient split and the sampler's repeat factors, so the
    # resumed epochs would not continue the interrupted run: refuse instead of mixing two runs.
    saved = state.get("data_sha256")  # absent in states written before this check existed
    if saved is not None and saved != _data_key(info):
        raise TrainError(
            f"{path}: was trained on other label files (their sha256 differs); resume with the "
            "same --labels and --val-labels, or start a new run in another --out"
        )


def _check_resume(state: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    if state.get("format") != STATE_FORMAT:
        raise TrainError(f"{path}: not a cxrlt training state ({state.get('format')!r})")
    saved = json.loads(state["config"])
    for key in ("arch", "head", "image_size", "classes"):
        now = list(cfg.classes) if key == "classes" else getattr(cfg, key)
        if saved.get(key) != now:
            raise TrainError(
                f"{path}: was trained with {key} = {saved.get(key)!r}, not {now!r}; "
                "resume with the same settings"
            )


def _write_best(
    cfg: TrainConfig,
    out: Path,
    model: nn.Module,
    data: _Data,
    probs: np.ndarray,
    val_labels: np.ndarray,
    record: EpochRecord,
    score_name: str,
) -> None:
    meta = {
        "format": "cxrlt-task1",
        "arch": cfg.arch,
        "head": cfg.head,
        "image_size": str(cfg.image_size),
        "classes": json.dumps(list(cfg.classes)),
        "epoch": str(record.epoch),
    }
    ckpt = out / BEST_FILE
    _save_safetensors(ckpt, model, meta)
    result = evaluate(val_labels, probs, cfg.classes)
    manifest = {
        "format": MANIFEST_FORMAT,
        "checkpoint": BEST_FILE,
        "checkpoint_sha256": sha256_file(ckpt),
        "classes": list(cfg.classes),
        "arch": cfg.arch,
        "head": cfg.head,
        "image_size": cfg.image_size,
        "preprocessing": "engine.preprocess task1 (percentile uint8, resize, ImageNet norm)",
        "demo": bool(cfg.demo),
        "data": data.info,
        "metrics": {
            "epoch": record.epoch,
            "phase": record.phase,
            "selected_by": score_name,
            "val_mAP": record.val_mAP,
            "val_loss": record.val_loss,
            "val_macro": {
                k: _finite(v) if isinstance(v, float) else v for k, v in result.macro.items()
            },
            "val_AP": {c: _finite(m["AP"]) for c, m in result.per_class.items()},
            "val_excluded": result.excluded,
        },
        "training": {
            k: v
            for k, v in cfg.to_json().items()
            if k not in ("labels", "images", "out", "val_labels", "val_images", "classes")
        },
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cxrlt_version": _version(),
    }
    _atomic_json(out / MANIFEST_FILE, manifest)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("cxrlt-desktop")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def _public(path: str) -> None:
    """Give a mkstemp file (0600) the permissions a plain ``open`` would (0666 minus umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
