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


def export_onnx(model: Any, path: Path, image_size: int) -> None:
    """Export a Task 1 model's ``features`` (eval mode) with a dynamic batch axis, atomically."""
    import torch
    from torch import nn

    class _Features(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.features(x)

    wrapped = _Features(model).eval().to(memory_format=torch.contiguous_format)
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
                output_names=["features"],
                dynamic_axes={"x": {0: "n"}, "features": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _onnx_file(model: Any, sha256: str, image_size: int, cache_dir: Path | None) -> Path:
    import torch

    folder = (
        Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "cxrlt-onnx"
    )
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
) -> OrtRunner | OpenVinoRunner:
    """A runner for ``model`` (``kind`` "onnxruntime" or "openvino"), exporting it on first use.

    The model's backbone is released afterwards (the runtime holds its own copy of the weights);
    its head stays and runs in PyTorch.
    """
    path = _onnx_file(model, sha256, image_size, cache_dir)
    try:
        runner = _open(kind, model, path, threads)
    except Exception:
        # a damaged cache file (e.g. disk full during an earlier export): export again
        export_onnx(model, path, image_size)
        runner = _open(kind, model, path, threads)
    model.backbone = None
    return runner


def _open(kind: str, model: Any, path: Path, threads: int) -> OrtRunner | OpenVinoRunner:
    if kind == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {"INFERENCE_PRECISION_HINT": ov.Type.f32, "INFERENCE_NUM_THREADS": max(1, threads)},
        )
        return OpenVinoRunner(compiled, model, path)

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return OrtRunner(session, model, path)
