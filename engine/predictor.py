"""The batched predictor: one API for the CLI, the GUI worker, the benchmark and the tests.

Per batch of N images (paper mode): the N preprocessed images go to the device once; the 6 TTA
views are stacked into one [6N, 3, S, S] channels_last tensor and each Task 1 model runs one
forward over it (on the GPU path; chunked on the CPU path to bound memory); per model the sigmoid
outputs are averaged over the views; the models are averaged with normalised weights; normal
gating follows. The CSRA attention maps come from the identity view of the first CSRA model.
The CLIP image encoder runs on the same batch. Decoding and the numpy part of preprocessing run
in a thread pool ahead of the compute (``predict_paths``).

``fast`` mode runs only the CSRA model(s) on the identity view (gating and CLIP unchanged).

The GPU path (bf16 autocast, channels_last, one forward per model per batch, optional
``torch.compile``, pinned host memory) is what CUDA runs; ``EngineConfig(gpu_path=True)`` runs it
on the CPU as well (without the pinning), so that it is exercised where there is no GPU.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.classes import ALL_CLASSES, NORMAL_INDEX, TASK1_CLASSES, TASK2_CLASSES

MODES = ("paper", "fast")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
BACKBONE_PRECISIONS = ("fp32", "bf16", "auto")
CLIP_BACKENDS = ("auto", "openvino", "torch")
ENGINE_VERSION = 1


@dataclass
class EngineConfig:
    """What the engine runs. Paths may be str or Path.

    ``task1_arch`` is used when a file does not reveal its architecture (the file's own wins);
    ``task1_arch_strict`` (added) makes a file of another architecture an error (``--task1-arch``).
    ``image_size`` (added field) is the Task 1 input size: 512 for the published weights; tests
    and demo models may use less. ``cache_dir`` (added) is where prompt embeddings are cached
    (None: no cache). ``decode_workers`` (added): threads that decode and preprocess ahead.
    ``forward_chunk`` (added): most images per model forward (None: views x batch on the GPU
    path, 6 on the CPU path).
    ``cpu_backend`` (added), used on the CPU in fp32: "auto" (OpenVINO, else ONNX Runtime, else
    PyTorch), "openvino", "onnx" or "torch"; all give PyTorch's fp32 numbers to ~1e-6.
    ``gpu_path`` (added): run the GPU's code path on whatever device is chosen. It is always the
    path on CUDA; ``True`` selects it on the CPU too: PyTorch (no ONNX/OpenVINO runtime), bf16
    autocast unless ``precision`` says otherwise, channels_last, the stacked TTA views of a batch
    in one forward per model, and ``torch.compile`` (the CPU inductor backend) when ``compile``.
    Only pinned host memory stays CUDA-only. It lets the GPU branch be run and tested without a
    GPU; on the CPU it is slower than the fp32 runtimes (docs/engine.md).
    ``backbone_precision`` (added): the Task 1 backbones' precision in OpenVINO on the CPU:
    "fp32" (default), "bf16" (OpenVINO's bf16 inference-precision hint; needs a CPU with bf16
    hardware, AVX512_BF16 or AMX) or "auto" (bf16 where the CPU has it, else fp32). The heads
    stay fp32. bf16 moves probabilities by up to ~1e-2: it is for the progressive policy's
    provisional fast pass, which the paper pass replaces; recorded in ``settings`` when bf16.
    ``clip_backend`` (added): the CLIP image tower on the CPU in fp32: "auto" (OpenVINO when
    installed, else PyTorch), "openvino" or "torch"; they agree to ~1e-7 in probability. The text
    embeddings always come from PyTorch.
    """

    task1_checkpoints: list[Path] = field(default_factory=list)
    task1_weights: list[float] | None = None
    task1_arch: str | None = "convnextv2_base"
    task1_arch_strict: bool = False
    clip_model: Path | None = None
    prompts: Path | None = None
    mode: str = "paper"
    normal_alpha: float = 0.5
    device: str = "auto"
    precision: str | None = None
    batch_size: int = 8
    compile: bool = False
    calibration: Path | None = None
    image_size: int = 512
    cache_dir: Path | None = None
    decode_workers: int | None = None
    forward_chunk: int | None = None
    cpu_backend: str = "auto"
    gpu_path: bool = False
    backbone_precision: str = "fp32"
    clip_backend: str = "auto"


@dataclass
class ModelInfo:
    """One model file in use. ``weight`` is the normalised ensemble weight (None for CLIP)."""

    path: Path
    sha256: str
    arch: str
    role: str  # "task1-csra" | "task1-mlp" | "clip"
    weight: float | None


@dataclass
class PredictionBatch:
    """Outputs for N images, in input order."""

    probs: np.ndarray  # [N, 36] float64, NaN columns for an absent task
    ungated: np.ndarray  # [N, 30] float64 Task 1 ensemble before gating (NaN without Task 1)
    attention: np.ndarray | None  # [N, 30, h, w] float16
    seconds: float


@dataclass
class PathResult:
    """One input file's outcome. ``probs``/``ungated``/``attention`` are None when not ok."""

    path: Path
    ok: bool
    reason: str | None
    probs: np.ndarray | None
    attention: np.ndarray | None
    ungated: np.ndarray | None
    seconds: float


class EngineError(Exception):
    """A configuration the engine cannot run (message says what to change)."""


@dataclass
class _Prepared:
    task1: np.ndarray | None  # [S, S] uint8
    clip: np.ndarray | None  # [512, 512] float32
    seconds: float


def _resolve_device(name: str):
    import torch

    if name not in DEVICES:
        raise EngineError(f"device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EngineError(
            "--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto"
        )
    return torch.device(name)


def _check_config(config: EngineConfig) -> None:
    """Refuse a mode, model set, batch size or precision the engine cannot run."""
    if config.mode not in MODES:
        raise EngineError(f"mode must be one of {', '.join(MODES)}, not {config.mode!r}")
    if not config.task1_checkpoints and config.clip_model is None:
        raise EngineError("no model configured: give Task 1 checkpoints and/or a CLIP model folder")
    if config.batch_size < 1:
        raise EngineError(f"batch size must be >= 1, got {config.batch_size}")
    if config.precision is not None and config.precision not in PRECISIONS:
        raise EngineError(
            f"precision must be one of {', '.join(PRECISIONS)}, not {config.precision!r}"
        )
    if config.backbone_precision not in BACKBONE_PRECISIONS:
        raise EngineError(
            f"backbone_precision must be one of {', '.join(BACKBONE_PRECISIONS)}, "
            f"not {config.backbone_precision!r}"
        )
    if config.clip_backend not in CLIP_BACKENDS:
        raise EngineError(
            f"clip_backend must be one of {', '.join(CLIP_BACKENDS)}, not {config.clip_backend!r}"
        )


class Predictor:
    """Loads the configured models once and scores images in batches.

    Parameters
    ----------
    config : EngineConfig
        Models, mode, device and precision.
    share_clip_with : Predictor, optional
        A loaded predictor whose zero-shot CLIP model this one uses instead of loading its own,
        when both name the same CLIP folder, prompts, device and CLIP runtime (the progressive
        policy's fast and paper passes: a ViT-L-14 held once, not twice). Otherwise ignored.

    Raises
    ------
    EngineError, engine.checkpoints.CheckpointError, engine.zeroshot.ZeroShotError
        For anything that stops the models from loading; messages name the file and the fix.
    """

    def __init__(self, config: EngineConfig, *, share_clip_with: Predictor | None = None):
        self.config = config
        _check_config(config)
        self._select_device(config)
        loaded = self._load_task1(config)
        self._select_backend(config, loaded)
        self._att_index = next((i for i, m in enumerate(loaded) if m.head == "csra"), None)
        if not self._share_clip(config, share_clip_with):
            self._load_clip(config)
        self._load_calibration(config)
        workers = config.decode_workers or min(8, os.cpu_count() or 1)
        self._workers = max(1, workers)
        chunk = config.forward_chunk
        if chunk is None:
            # GPU path: the whole stacked batch in one forward. CPU: a few images per forward is
            # ~1.5x faster per image than one at a time; more only costs memory.
            chunk = len(self.views) * config.batch_size if self.gpu_path else 6
        self._chunk = max(1, chunk)

    # ------------------------------------------------------------------ loading (__init__ steps)

    def _select_device(self, config: EngineConfig) -> None:
        """Device, code path (``gpu_path``), precision and the autocast dtype; cuDNN settings on
        CUDA."""
        import torch

        self.device = _resolve_device(config.device)
        self.gpu_path = self.device.type == "cuda" or config.gpu_path
        self.precision = config.precision or ("bf16" if self.gpu_path else "fp32")
        self._amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[
            self.precision
        ]
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            if self.precision == "fp32":
                # fp32 means fp32: TF32 convolutions would differ from the reference by ~1e-3.
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False

    def _load_task1(self, config: EngineConfig) -> list[Any]:
        """Load the Task 1 checkpoints and their ensemble weights; fast mode keeps the CSRA ones.

        Sets ``views``, ``_raw_weights``, ``_weights`` and ``_task1``; returns the loaded models.
        """
        from engine.checkpoints import load_task1_model
        from engine.ensemble import default_weights, normalise_weights
        from engine.tta import VIEWS

        paths = [Path(p) for p in config.task1_checkpoints]
        if config.task1_weights is not None and len(config.task1_weights) != len(paths):
            raise EngineError(
                f"{len(config.task1_weights)} Task 1 weights for {len(paths)} checkpoints: give one weight per checkpoint"
            )
        loaded = [
            load_task1_model(p, config.task1_arch, strict_arch=config.task1_arch_strict)
            for p in paths
        ]
        raw = (
            list(config.task1_weights)
            if config.task1_weights is not None
            else default_weights([m.head for m in loaded])
        )
        if loaded:
            normalise_weights(raw)  # validate before dropping models
        self.views: tuple[str, ...] = VIEWS
        if config.mode == "fast" and loaded:
            keep = [i for i, m in enumerate(loaded) if m.head == "csra"]
            if not keep:
                warnings.warn(
                    "fast mode: no CSRA checkpoint given, using all Task 1 models", stacklevel=3
                )
                keep = list(range(len(loaded)))
            loaded = [loaded[i] for i in keep]
            raw = [raw[i] for i in keep]
            self.views = ("identity",)
        self._raw_weights = raw
        self._weights = normalise_weights(raw) if loaded else np.zeros(0)
        self._task1 = loaded
        return loaded

    def _select_backend(self, config: EngineConfig, loaded: list[Any]) -> None:
        """Pick what runs the Task 1 backbones and build ``_modules``; sets ``backend``.

        CPU + fp32: the backbones run in OpenVINO (fastest here) or ONNX Runtime, the heads in
        PyTorch (engine.onnx_backend); "auto" takes the first runtime that is installed and
        compiles the model, so a broken runtime costs speed, never the scores. The GPU path
        (``gpu_path``, always on CUDA) and ``compile`` run PyTorch.
        """
        import torch

        from engine import onnx_backend

        backends = ("auto", "torch", "onnx", "openvino")
        if config.cpu_backend not in backends:
            raise EngineError(
                f"cpu_backend must be one of {', '.join(backends)}, not {config.cpu_backend!r}"
            )
        runtime_ok = (
            bool(loaded)
            and self.device.type == "cpu"
            and self.precision == "fp32"
            and not config.compile
            and not self.gpu_path
        )
        wanted = {"auto": ["openvino", "onnxruntime"], "onnx": ["onnxruntime"]}.get(
            config.cpu_backend, [config.cpu_backend] if config.cpu_backend != "torch" else []
        )
        kinds = [k for k in wanted if runtime_ok and onnx_backend.available(k)]
        if config.cpu_backend in ("onnx", "openvino") and loaded and not kinds:
            name = "onnxruntime" if config.cpu_backend == "onnx" else "openvino"
            raise EngineError(
                f"cpu_backend {config.cpu_backend} needs {name} and onnx installed, "
                "the CPU device and fp32 precision, without gpu_path or compile"
            )
        self.backend = "torch"
        self.backbone_precision = "fp32"
        self._modules: list[Any] = []
        want_bf16 = config.backbone_precision == "bf16" or (
            config.backbone_precision == "auto" and onnx_backend.cpu_has_bf16()
        )
        if config.backbone_precision == "bf16" and loaded:
            if "openvino" not in kinds:
                raise EngineError(
                    "backbone_precision bf16 needs the OpenVINO backend (openvino and onnx "
                    "installed, the CPU device, fp32 precision, no gpu_path or compile)"
                )
            if not onnx_backend.cpu_has_bf16():
                raise EngineError(
                    "backbone_precision bf16 needs a CPU with bf16 hardware (AVX512_BF16 or AMX); "
                    "use fp32 or auto"
                )
        self._want_bf16 = want_bf16
        for kind in kinds:
            if self._try_runtime(config, loaded, kind):
                return
        for m in loaded:
            mod = m.model.to(self.device).eval()
            mod = mod.to(memory_format=torch.channels_last)
            if config.compile:
                mod = torch.compile(mod, dynamic=False)
            self._modules.append(mod)

    def _try_runtime(self, config: EngineConfig, loaded: list[Any], kind: str) -> bool:
        """Compile the backbones for runtime ``kind``; False (with a warning) if "auto" and
        it fails, an :class:`EngineError` if that runtime was asked for by name."""
        import torch

        from engine import onnx_backend

        try:
            self._modules = [
                onnx_backend.make_runner(
                    m.model,
                    m.sha256,
                    config.image_size,
                    config.cache_dir,
                    torch.get_num_threads(),
                    kind,
                    "bf16" if kind == "openvino" and self._want_bf16 else "fp32",
                )
                for m in loaded
            ]
        except Exception as e:
            if config.cpu_backend != "auto":
                raise EngineError(f"{kind} cannot run the Task 1 models: {_reason(e)}") from e
            warnings.warn(
                f"{kind} cannot run the Task 1 models ({_reason(e)}); trying the next backend",
                stacklevel=4,
            )
            return False
        self.backend = kind
        self.backbone_precision = "bf16" if kind == "openvino" and self._want_bf16 else "fp32"
        for m in loaded:
            m.model.backbone = None  # the runtime holds its own copy; the runner keeps the head
            m.model = None
        return True

    def _share_clip(self, config: EngineConfig, other: Predictor | None) -> bool:
        """Use ``other``'s loaded CLIP model when it is the one ``config`` would load (same
        folder, prompts, cache, device, CLIP runtime choice and code path); False otherwise."""
        if other is None or other._clip is None or config.clip_model is None:
            return False
        mine, theirs = config, other.config
        same = (
            Path(mine.clip_model) == Path(theirs.clip_model)
            and mine.prompts == theirs.prompts
            and mine.cache_dir == theirs.cache_dir
            and mine.clip_backend == theirs.clip_backend
            and self.device == other.device
            and self.precision == other.precision
            and self.gpu_path == other.gpu_path
        )
        if not same:
            return False
        self._clip = other._clip
        self._prompts_hash = other._prompts_hash
        self.clip_backend = other.clip_backend
        return True

    def _load_clip(self, config: EngineConfig) -> None:
        """The zero-shot CLIP model and its prompts (Task 2), when configured."""
        from engine import zeroshot

        self._clip = None
        self._prompts_hash = None
        self.clip_backend: str | None = None
        if config.clip_model is not None:
            prompts = zeroshot.load_prompts(config.prompts)
            self._clip = zeroshot.load_zero_shot(
                config.clip_model, prompts=prompts, cache_dir=config.cache_dir, device=self.device
            )
            self._prompts_hash = self._clip.prompts_hash
            self._select_clip_backend(config)

    def _select_clip_backend(self, config: EngineConfig) -> None:
        """OpenVINO for the CLIP image tower on the CPU in fp32 ("auto": when installed and it
        compiles; "openvino": required); sets ``clip_backend``."""
        import torch

        from engine import onnx_backend

        self.clip_backend = "torch"
        runtime_ok = self.device.type == "cpu" and self.precision == "fp32" and not self.gpu_path
        if config.clip_backend == "torch":
            return
        if not (runtime_ok and onnx_backend.available("openvino")):
            if config.clip_backend == "openvino":
                raise EngineError(
                    "clip_backend openvino needs openvino and onnx installed, the CPU device and "
                    "fp32 precision, without gpu_path"
                )
            return
        try:
            self._clip.use_openvino(config.cache_dir, torch.get_num_threads())
        except Exception as e:
            if config.clip_backend == "openvino":
                raise EngineError(f"openvino cannot run the CLIP image tower: {_reason(e)}") from e
            warnings.warn(
                f"openvino cannot run the CLIP image tower ({_reason(e)}); using PyTorch",
                stacklevel=4,
            )
            return
        self.clip_backend = "openvino"

    def _load_calibration(self, config: EngineConfig) -> None:
        """Temperatures (engine.calibration, fitted by `cxrlt calibrate`); they apply to the final
        probabilities, after gating, which is what they were fitted on."""
        self._temperatures = None
        self._calibration_sha = None
        if config.calibration:
            from engine.calibration import load_temperatures
            from engine.checkpoints import sha256_file

            try:
                self._temperatures = load_temperatures(config.calibration)
            except ValueError as e:
                raise EngineError(str(e)) from e
            self._calibration_sha = sha256_file(config.calibration)

    # ------------------------------------------------------------------ description

    @property
    def models(self) -> list[ModelInfo]:
        """The model files in use, with sha256, architecture, role and normalised weight."""
        out = [
            ModelInfo(m.path, m.sha256, m.arch, f"task1-{m.head}", float(w))
            for m, w in zip(self._task1, self._weights, strict=True)
        ]
        if self._clip is not None:
            out.append(
                ModelInfo(self._clip.weights_path, self._clip.sha256, "open_clip", "clip", None)
            )
        return out

    @property
    def settings(self) -> dict[str, Any]:
        """Engine settings that determine the numbers (JSON-able), recorded with every score.

        ``backbone_precision`` is present only when it is bf16 (fp32 settings, and so the
        library's model-set keys, are those of earlier versions)."""
        out = {
            "engine_version": ENGINE_VERSION,
            "mode": self.config.mode,
            "views": list(self.views) if self._task1 else [],
            "normal_alpha": float(self.config.normal_alpha),
            "weights": [float(w) for w in self._weights],
            "raw_weights": [float(w) for w in self._raw_weights],
            "heads": [m.head for m in self._task1],
            "image_size": int(self.config.image_size),
            "precision": self.precision,
            "device": self.device.type,
            "backend": self.backend,
            "prompts_hash": self._prompts_hash,
            "clip_scale": 5.0 if self._clip is not None else None,
            "calibration_sha256": self._calibration_sha,
        }
        if self.backbone_precision != "fp32":
            out["backbone_precision"] = self.backbone_precision
        return out

    @property
    def has_task1(self) -> bool:
        return bool(self._task1)

    @property
    def has_clip(self) -> bool:
        return self._clip is not None

    # ------------------------------------------------------------------ preprocessing

    def prepare(self, array: np.ndarray, *, clip: bool = True) -> _Prepared:
        """The numpy part of preprocessing for one source array (thread-safe); ``clip=False``
        skips CLIP's."""
        from engine.preprocess import MODEL_SIZE, clip_grey, task1_grey

        t0 = time.perf_counter()
        array = np.asarray(array)
        t1 = task1_grey(array, self.config.image_size) if self._task1 else None
        c = clip_grey(array, MODEL_SIZE) if self._clip is not None and clip else None
        return _Prepared(t1, c, time.perf_counter() - t0)

    # ------------------------------------------------------------------ compute

    def _autocast(self):
        import torch

        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._amp_dtype)

    def _forward_task1(self, grey_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """[N, S, S] uint8 -> ungated ensemble [N, 30] and attention [N, 30, h, w] or None."""
        import torch

        from engine.preprocess import task1_tensor
        from engine.tta import stack_views

        n = grey_u8.shape[0]
        v = len(self.views)
        src = torch.from_numpy(np.ascontiguousarray(grey_u8))
        if self.device.type == "cuda":  # pinned memory is the one CUDA-only part of the GPU path
            src = src.pin_memory().to(self.device, non_blocking=True)
        x = stack_views(task1_tensor(src), self.views)
        if self.backend == "torch":
            x = x.contiguous(memory_format=torch.channels_last)
        total = None
        attention = None
        for k, (mod, w) in enumerate(zip(self._modules, self._weights, strict=True)):
            probs = []
            att_parts = []
            with torch.inference_mode(), self._autocast():
                for start in range(0, v * n, self._chunk):
                    logits, att = mod(x[start : start + self._chunk])
                    probs.append(torch.sigmoid(logits.float()))
                    if k == self._att_index and att is not None and start < n:
                        att_parts.append(att[: max(0, n - start)].to(torch.float16))
            p = torch.cat(probs).view(v, n, -1).mean(0).double()
            total = p * float(w) if total is None else total + p * float(w)
            if att_parts:
                attention = torch.cat(att_parts)[:n].cpu().numpy()
        return total.cpu().numpy(), attention

    def _forward_clip(self, grey: np.ndarray) -> np.ndarray:
        import torch

        from engine.preprocess import clip_tensor

        src = torch.from_numpy(np.ascontiguousarray(grey))
        if self.device.type == "cuda":
            src = src.pin_memory().to(self.device, non_blocking=True)
        return self._clip.probs(
            clip_tensor(src.to(self.device), self._clip.image_size), self._amp_dtype
        )

    def _predict_prepared(self, items: list[_Prepared]) -> PredictionBatch:
        from engine.ensemble import normal_gating

        t0 = time.perf_counter()
        n = len(items)
        probs = np.full((n, len(ALL_CLASSES)), np.nan)
        ungated = np.full((n, len(TASK1_CLASSES)), np.nan)
        attention = None
        if n == 0:
            return PredictionBatch(probs, ungated, None, 0.0)
        pad = (
            self.config.batch_size - n if self.config.compile and n < self.config.batch_size else 0
        )
        if self._task1:
            g = np.stack([it.task1 for it in items] + [items[-1].task1] * pad)
            ens, att = self._forward_task1(g)
            ens, att = ens[:n], (att[:n] if att is not None else None)
            ungated[:] = ens
            probs[:, : len(TASK1_CLASSES)] = normal_gating(
                ens, self.config.normal_alpha, NORMAL_INDEX
            )
            attention = att
        if self._clip is not None and all(it.clip is not None for it in items):
            c = np.stack([it.clip for it in items] + [items[-1].clip] * pad)
            probs[:, len(TASK1_CLASSES) :] = self._forward_clip(c)[:n]
        if self._temperatures:
            from engine.calibration import apply_calibration

            probs = apply_calibration(probs, self._temperatures)
        return PredictionBatch(probs, ungated, attention, time.perf_counter() - t0)

    def predict_arrays(self, arrays: list[np.ndarray], *, clip: bool = True) -> PredictionBatch:
        """Score source arrays (2-D, as ``engine.imageio.read_source`` returns them).

        Parameters
        ----------
        arrays : list of numpy.ndarray
            One 2-D grey source array per image.
        clip : bool
            False: leave the CLIP columns NaN (not computed), e.g. when an earlier pass has them.

        Returns
        -------
        PredictionBatch
            ``probs`` [N, 36] in ``engine.classes.ALL_CLASSES`` order.
        """
        t0 = time.perf_counter()
        out: list[PredictionBatch] = []
        bs = self.config.batch_size
        for i in range(0, len(arrays), bs):
            out.append(
                self._predict_prepared([self.prepare(a, clip=clip) for a in arrays[i : i + bs]])
            )
        if not out:
            return self._predict_prepared([])
        att = [b.attention for b in out]
        return PredictionBatch(
            probs=np.concatenate([b.probs for b in out]),
            ungated=np.concatenate([b.ungated for b in out]),
            attention=np.concatenate(att) if all(a is not None for a in att) else None,
            seconds=time.perf_counter() - t0,
        )

    def predict_paths(
        self,
        paths: Iterable[Path | str],
        *,
        read: Callable[[Path], np.ndarray] | None = None,
        batch_size: int | None = None,
        should_stop: Callable[[], bool] | None = None,
        clip: bool = True,
    ) -> Iterator[PathResult]:
        """Decode, preprocess and score files; one :class:`PathResult` per input, in order.

        Decoding and preprocessing run in a thread pool up to two batches ahead of the compute.
        A file that cannot be read gives ``ok=False`` with the reason and never stops the rest.
        ``should_stop`` is checked between batches.

        Parameters
        ----------
        paths : iterable of path-like
            Image files.
        read : callable, optional
            path -> 2-D source array; default ``engine.imageio.read_source``.
        batch_size : int, optional
            Images per compute batch (default ``config.batch_size``).
        should_stop : callable, optional
            Return True to stop after the current batch.
        clip : bool
            False: leave the CLIP columns NaN and skip CLIP's preprocessing (an earlier pass has
            them: the progressive policy computes them once, in the fast pass).
        """
        if read is None:
            from engine.imageio import read_source as read
        bs = batch_size or self.config.batch_size
        paths = [Path(p) for p in paths]
        ahead = 2 * bs + self._workers
        with ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="cxrlt-decode"
        ) as pool:
            futures: dict[int, Future] = {}
            nxt = 0

            def fill(upto: int) -> None:
                nonlocal nxt
                while nxt < min(upto, len(paths)):
                    futures[nxt] = pool.submit(self._read_and_prepare, read, paths[nxt], clip)
                    nxt += 1

            try:
                fill(ahead)
                for start in range(0, len(paths), bs):
                    if should_stop is not None and should_stop():
                        return
                    idx = list(range(start, min(start + bs, len(paths))))
                    good: list[tuple[int, _Prepared]] = []
                    bad: dict[int, str] = {}
                    for i in idx:
                        try:
                            good.append((i, futures.pop(i).result()))
                        except Exception as e:  # a bad file is reported, never fatal
                            bad[i] = _reason(e)
                        fill(i + 1 + ahead)
                    yield from self._score_batch(paths, idx, good, bad)
            finally:
                for f in futures.values():
                    f.cancel()

    def _read_and_prepare(
        self, read: Callable[[Path], np.ndarray], path: Path, clip: bool = True
    ) -> _Prepared:
        """Decode and preprocess one file (runs in the decode pool); ``seconds`` covers both."""
        t0 = time.perf_counter()
        prep = self.prepare(read(path), clip=clip)
        prep.seconds = time.perf_counter() - t0
        return prep

    def _score_batch(
        self,
        paths: list[Path],
        idx: list[int],
        good: list[tuple[int, _Prepared]],
        bad: dict[int, str],
    ) -> Iterator[PathResult]:
        """Score the decoded files of one batch; one result per index, in order.

        Each good file's ``seconds`` is its decode time plus an equal share of the batch compute.
        """
        batch = self._predict_prepared([g for _, g in good]) if good else None
        share = batch.seconds / len(good) if batch is not None else 0.0
        pos = {i: k for k, (i, _) in enumerate(good)}
        for i in idx:
            if i in bad:
                yield PathResult(paths[i], False, bad[i], None, None, None, 0.0)
                continue
            k = pos[i]
            att = batch.attention[k] if batch.attention is not None else None
            yield PathResult(
                paths[i],
                True,
                None,
                batch.probs[k],
                att,
                batch.ungated[k],
                good[k][1].seconds + share,
            )


def _reason(e: Exception) -> str:
    reason = getattr(e, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


__all__ = [
    "EngineConfig",
    "EngineError",
    "ModelInfo",
    "PathResult",
    "PredictionBatch",
    "Predictor",
    "TASK2_CLASSES",
]
