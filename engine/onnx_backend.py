"""Optional ONNX Runtime backend for the Task 1 models on the CPU.

On a 2-core CPU, ONNX Runtime runs ConvNeXtV2-Base at 512 about 1.5-2.5x faster than eager
PyTorch at the same fp32 precision (outputs agree to ~1e-7), which is what makes paper mode
usable without a GPU. It is used when ``onnxruntime`` is installed, the device is the CPU and the
precision is fp32 (``EngineConfig.cpu_backend``). The model is exported once per checkpoint
(legacy TorchScript exporter, dynamic batch) and cached as ``task1-<sha256>-<size>.onnx``.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any


def available() -> bool:
    """True when onnxruntime (and onnx, which the exporter needs) can be imported."""
    return (
        importlib.util.find_spec("onnxruntime") is not None
        and importlib.util.find_spec("onnx") is not None
    )


class OrtRunner:
    """Calls an ONNX Runtime session like the torch model: x -> (logits, attention or None)."""

    def __init__(self, session: Any, has_attention: bool, path: Path):
        self.session = session
        self.has_attention = has_attention
        self.path = path

    def __call__(self, x):
        import numpy as np
        import torch

        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).contiguous().numpy())
        outs = self.session.run(None, {"x": arr})
        logits = torch.from_numpy(outs[0])
        att = torch.from_numpy(outs[1]) if self.has_attention else None
        return logits, att


def export_onnx(model: Any, path: Path, image_size: int) -> None:
    """Export a Task 1 model (eval mode) with a dynamic batch axis, atomically."""
    import torch
    from torch import nn

    head = getattr(model, "head_type", "mlp")

    class _Wrapped(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            logits, att = self.inner(x)
            return (logits, att) if head == "csra" else logits

    outputs = ["logits", "attention"] if head == "csra" else ["logits"]
    wrapped = _Wrapped(model).eval().to(memory_format=torch.contiguous_format)
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
                output_names=outputs,
                dynamic_axes={name: {0: "n"} for name in ["x", *outputs]},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def make_runner(
    model: Any, sha256: str, image_size: int, cache_dir: Path | None, threads: int
) -> OrtRunner:
    """An :class:`OrtRunner` for ``model``, exporting it to the cache on first use."""
    import onnxruntime as ort
    import torch

    folder = (
        Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "cxrlt-onnx"
    )
    tag = torch.__version__.split("+")[0]
    path = folder / f"task1-{sha256[:32]}-{image_size}-torch{tag}.onnx"
    if not path.is_file():
        export_onnx(model, path, image_size)
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception:
        # a damaged cache file (e.g. disk full during an earlier export): export again
        export_onnx(model, path, image_size)
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return OrtRunner(session, getattr(model, "head_type", "mlp") == "csra", path)
