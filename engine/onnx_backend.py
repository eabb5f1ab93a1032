"""OpenVINO / ONNX Runtime backends for the Task 1 backbones and the CLIP image tower on the CPU.

Only the backbone (``model.features``) is exported (legacy TorchScript exporter, opset 17,
dynamic batch) and cached as ``task1-<sha256>-<size>-torch<version>-features.onnx``; the heads
(``model.classify``: CSRA or MLP, a few small layers) run in PyTorch on the features. On the
2-core development VM (convnextv2_base at 512, 6 views per forward) OpenVINO takes ~0.57 s per
view and ONNX Runtime ~0.84 s, against ~1.6 s for eager PyTorch; all three agree to ~1e-6 in
probability. OpenVINO is the default (``EngineConfig.cpu_backend="auto"``), ONNX Runtime the
fallback when OpenVINO is missing or cannot compile the model.

Why the heads stay in PyTorch: OpenVINO 2026.4's CPU plugin fused the exported CSRA head
(1x1 conv, reshape, softmax over positions, weighted sum) wrongly for batches above one, 0.26
off in logits (batch 1 was right, and so was every backbone output); ONNX Runtime was right.
Keeping the heads out of the runtimes keeps them PyTorch's own numbers.

The CLIP image tower (``model.visual`` of open_clip) runs in OpenVINO too, always in fp32
(:func:`make_clip_runner`, cached as ``clip-<sha256>-<size>-torch<version>-visual.onnx``); the
text embeddings and the zero-shot scoring stay in PyTorch/numpy (engine.zeroshot).

A Task 1 backbone may run in bf16 through OpenVINO's inference-precision hint
(``precision="bf16"``), where the CPU has bf16 hardware (:func:`cpu_has_bf16`: AVX512_BF16 or
AMX); the progressive policy's fast pass uses it, since the paper pass replaces its numbers.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any


def available(kind: str = "onnxruntime") -> bool:
    """True when the runtime ``kind`` and onnx (which the exporter needs) can be imported."""
    return (
        importlib.util.find_spec(kind) is not None and importlib.util.find_spec("onnx") is not None
    )


class _Runner:
    """Runs the exported backbone in a runtime and the model's head in PyTorch.

    Called like the torch model: x -> (logits, attention or None). Only ``model.features`` goes
    through the runtime; ``model.classify`` (a few small layers) stays in PyTorch fp32, so the
    heads' numbers are PyTorch's own, and runtime fusions never reach them (OpenVINO 2026.4 fused
    the exported CSRA head wrongly for batches above one: logits 0.26 off).
    """

    def __init__(self, model: Any, path: Path):
        self.classify = model.classify
        self.path = path

    def _features(self, arr):  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, x):
        import numpy as np
        import torch

        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).contiguous().numpy())
        feats = torch.from_numpy(np.asarray(self._features(arr)))
        with torch.inference_mode():
            return self.classify(feats)


class OrtRunner(_Runner):
    """ONNX Runtime session for the backbone."""

    def __init__(self, session: Any, model: Any, path: Path):
        super().__init__(model, path)
        self.session = session

    def _features(self, arr):
        return self.session.run(None, {"x": arr})[0]


class OpenVinoRunner(_Runner):
    """OpenVINO compiled model for the backbone."""

    def __init__(self, compiled: Any, model: Any, path: Path):
        super().__init__(model, path)
        self.compiled = compiled

    def _features(self, arr):
        import numpy as np

        # a fresh infer request per call: thread-safe, and its output is not overwritten later
        outs = self.compiled.create_infer_request().infer({0: arr})
        return np.array(outs[self.compiled.output(0)])


class ClipImageRunner:
    """The CLIP image tower compiled by OpenVINO: [N, 3, S, S] float32 -> [N, D] embeddings."""

    def __init__(self, compiled: Any, path: Path):
        self.compiled = compiled
        self.path = path

    def __call__(self, arr):
        import numpy as np

        arr = np.ascontiguousarray(arr, dtype=np.float32)
        outs = self.compiled.create_infer_request().infer({0: arr})
        return np.array(outs[self.compiled.output(0)])


def cpu_has_bf16() -> bool:
    """True where the CPU has bf16 arithmetic (the AVX512_BF16 or AMX-BF16 flags of
    /proc/cpuinfo; elsewhere OpenVINO's CPU capabilities), so that OpenVINO's bf16 hint runs in
    hardware rather than being emulated or ignored."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = None
    if text is not None:
        flags: set[str] = set()
        for line in text.splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
        if flags:
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    if not available("openvino"):
        return False
    try:
        from engine.offline import go_offline

        go_offline()
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:
        return False


def _features_module(model: Any) -> Any:
    """``model.features`` as a module to export."""
    from torch import nn

    class Features(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.features(x)

    return Features(model)


def export_onnx(model: Any, path: Path, image_size: int) -> None:
    """Export a Task 1 model's ``features`` (eval mode) with a dynamic batch axis, atomically."""
    _export(_features_module(model), path, image_size, "features")


def export_clip_onnx(visual: Any, path: Path, image_size: int) -> None:
    """Export an open_clip image tower (``model.visual``, eval mode), atomically.

    PyTorch's fused attention fast path (``aten::_native_multi_head_attention``, taken in eval
    mode without gradients) has no ONNX export; it is switched off during the export."""
    import torch

    mha = torch.backends.mha
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        _export(visual, path, image_size, "embeddings")
    finally:
        mha.set_fastpath_enabled(before)


def _export(module: Any, path: Path, image_size: int, output: str) -> None:
    import torch

    wrapped = module.eval().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, 3, image_size, image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped,
                (dummy,),
                tmp,
                input_names=["x"],
                output_names=[output],
                dynamic_axes={"x": {0: "n"}, output: {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _private_temp_cache() -> Path:
    """A cache folder in the temp folder that only this user can write: a shared, predictable
    path would let another user of the machine plant the model file that gets loaded."""
    import stat

    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"cxrlt-onnx-{uid if uid is not None else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()  # a symlink planted there is not followed
        ours = stat.S_ISDIR(st.st_mode) and (
            uid is None or (st.st_uid == uid and not st.st_mode & 0o022)
        )
    except OSError:  # a file of that name, or no permission
        ours = False
    # Not ours: a fresh private folder (no reuse across processes, but safe).
    return folder if ours else Path(tempfile.mkdtemp(prefix="cxrlt-onnx-"))


def _onnx_file(model: Any, sha256: str, image_size: int, cache_dir: Path | None) -> Path:
    import torch

    folder = Path(cache_dir) if cache_dir is not None else _private_temp_cache()
    tag = torch.__version__.split("+")[0]
    # "features": the file holds the backbone only (the head runs in PyTorch); whole-model
    # exports of earlier versions have another name and are never reused
    path = folder / f"task1-{sha256[:32]}-{image_size}-torch{tag}-features.onnx"
    if not path.is_file():
        export_onnx(model, path, image_size)
    return path


def make_runner(
    model: Any,
    sha256: str,
    image_size: int,
    cache_dir: Path | None,
    threads: int,
    kind: str = "onnxruntime",
    precision: str = "fp32",
) -> OrtRunner | OpenVinoRunner:
    """A runner for ``model`` (``kind`` "onnxruntime" or "openvino"), exporting it on first use.

    ``precision`` "bf16" (OpenVINO only) sets the bf16 inference-precision hint for the backbone;
    the head stays in PyTorch fp32.
    The runner keeps a reference to ``model`` for its head; the caller may then set
    ``model.backbone = None`` to free the backbone (the runtime holds its own copy).
    """
    if precision not in ("fp32", "bf16") or (precision == "bf16" and kind != "openvino"):
        raise ValueError(f"backbone precision {precision!r} is not available with {kind}")
    path = _onnx_file(model, sha256, image_size, cache_dir)
    try:
        runner = _open(kind, model, path, threads, precision)
    except Exception:
        # a damaged cache file (e.g. disk full during an earlier export): export again
        export_onnx(model, path, image_size)
        runner = _open(kind, model, path, threads, precision)
    return runner


def make_clip_runner(
    visual: Any, sha256: str, image_size: int, cache_dir: Path | None, threads: int
) -> ClipImageRunner:
    """The CLIP image tower ``visual`` compiled by OpenVINO in fp32, exported on first use
    (``sha256``: the CLIP weight file's, naming the cached export)."""
    import torch

    folder = Path(cache_dir) if cache_dir is not None else _private_temp_cache()
    tag = torch.__version__.split("+")[0]
    path = folder / f"clip-{sha256[:32]}-{image_size}-torch{tag}-visual.onnx"
    if not path.is_file():
        export_clip_onnx(visual, path, image_size)
    try:
        compiled = _compile_openvino(path, threads, "fp32")
    except Exception:
        export_clip_onnx(visual, path, image_size)  # a damaged cache file: export again
        compiled = _compile_openvino(path, threads, "fp32")
    return ClipImageRunner(compiled, path)


def _compile_openvino(path: Path, threads: int, precision: str) -> Any:
    from engine.offline import go_offline

    go_offline()  # OpenVINO's telemetry phones home on import unless it is blocked first
    import openvino as ov

    core = ov.Core()
    hint = ov.Type.bf16 if precision == "bf16" else ov.Type.f32
    return core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": max(1, threads)},
    )


def _open(
    kind: str, model: Any, path: Path, threads: int, precision: str = "fp32"
) -> OrtRunner | OpenVinoRunner:
    if kind == "openvino":
        return OpenVinoRunner(_compile_openvino(path, threads, precision), model, path)

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return OrtRunner(session, model, path)
