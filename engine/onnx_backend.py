"""Optional ONNX Runtime / OpenVINO backends for the Task 1 models on the CPU.

On a 2-core CPU, ONNX Runtime runs ConvNeXtV2-Base at 512 about 1.5-2.5x faster than eager
PyTorch at the same fp32 precision (outputs agree to ~1e-7), which is what makes paper mode
usable without a GPU. It is used when ``onnxruntime`` is installed, the device is the CPU and the
precision is fp32 (``EngineConfig.cpu_backend``). The model is exported once per checkpoint
(legacy TorchScript exporter, dynamic batch) and cached as ``task1-<sha256>-<size>.onnx``.

OpenVINO (``cpu_backend="openvino"``, opt-in) runs the same ONNX file another ~1.5-2x faster on
AVX-512 CPUs, but its fp32 kernels differ from PyTorch's by up to ~4e-3 in probability (measured
end to end on random-weight convnextv2_base, outside the 2e-3 bound), so it is never chosen
automatically.
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


class OpenVinoRunner:
    """Calls an OpenVINO compiled model like the torch model: x -> (logits, attention or None)."""

    def __init__(self, compiled: Any, has_attention: bool, path: Path):
        self.compiled = compiled
        self.has_attention = has_attention
        self.path = path

    def __call__(self, x):
        import numpy as np
        import torch

        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).contiguous().numpy())
        # a fresh infer request per call: thread-safe, and its outputs are not overwritten later
        outs = self.compiled.create_infer_request().infer({0: arr})
        logits = torch.from_numpy(np.array(outs[self.compiled.output(0)]))
        att = (
            torch.from_numpy(np.array(outs[self.compiled.output(1)]))
            if self.has_attention
            else None
        )
        return logits, att


def _onnx_file(model: Any, sha256: str, image_size: int, cache_dir: Path | None) -> Path:
    import torch

    folder = (
        Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "cxrlt-onnx"
    )
    tag = torch.__version__.split("+")[0]
    path = folder / f"task1-{sha256[:32]}-{image_size}-torch{tag}.onnx"
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
) -> OrtRunner | OpenVinoRunner:
    """A runner for ``model`` (``kind`` "onnxruntime" or "openvino"), exporting it on first use."""
    path = _onnx_file(model, sha256, image_size, cache_dir)
    has_att = getattr(model, "head_type", "mlp") == "csra"
    if kind == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {"INFERENCE_PRECISION_HINT": ov.Type.f32, "INFERENCE_NUM_THREADS": max(1, threads)},
        )
        return OpenVinoRunner(compiled, has_att, path)

    import onnxruntime as ort

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
    return OrtRunner(session, has_att, path)
