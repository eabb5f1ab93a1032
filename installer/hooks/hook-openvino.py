"""OpenVINO (the default CPU backend) loads its device plugins and model frontends at run time
from shared libraries in ``openvino/libs`` found by file name: collect them all, with the
Python modules the engine uses. If the frozen app still cannot compile a model with OpenVINO,
the engine falls back to ONNX Runtime (engine.predictor), so scores never depend on this hook."""

from PyInstaller.utils.hooks import collect_data_files, collect_dynamic_libs, collect_submodules

_SKIP = (
    "openvino.tools",
    "openvino.frontend.tensorflow",
    "openvino.frontend.paddle",
    "openvino.frontend.jax",
    "openvino.frontend.pytorch",
    "openvino.test_utils",
)

hiddenimports = collect_submodules("openvino", filter=lambda name: not name.startswith(_SKIP))
binaries = collect_dynamic_libs("openvino", search_patterns=["*.so*", "*.dll", "*.dylib"])
datas = collect_data_files("openvino", includes=["libs/*.json", "libs/*.xml"])
