"""The batched predictor against the literal one-image, one-view reference (engine_reference).

The reference computes the heads from the checkpoints' raw tensors (engine_reference.RawTask1),
so a change to the engine's head (a dropped BatchNorm, another activation) fails these tests.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SIZE
from engine_reference import reference_outputs

from engine.predictor import EngineConfig, EngineError, Predictor


@pytest.fixture(scope="module")
def arrays(rg1_files):
    from engine.imageio import read_source

    rng = np.random.default_rng(3)
    synthetic = (rng.random((300, 241)) * 1000).astype(np.float32)  # non-square, float input
    flat = np.full((50, 60), 7, np.uint16)  # hi == lo: the x / max branch
    return [read_source(p) for p in rg1_files] + [synthetic, flat]


@pytest.fixture(scope="module")
def reference(arrays, csra_file, mlp_file, clip_dir):
    t1, zs, models = reference_outputs(arrays, csra_file, mlp_file, clip_dir, SIZE)
    return {"task1": t1, "clip": zs, "models": models}


def _config(tmp_path, **kw) -> EngineConfig:
    base = dict(
        device="cpu", precision="fp32", image_size=SIZE, batch_size=2, cache_dir=tmp_path / "cache"
    )
    base.update(kw)
    return EngineConfig(**base)


@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_paper_mode_equals_one_view_at_a_time_loop(
    tmp_path, arrays, reference, csra_file, mlp_file, clip_dir, backend
):
    from engine import onnx_backend

    kind = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}[backend]
    if backend != "torch" and not onnx_backend.available(kind):
        pytest.skip(f"{kind} is not installed")
    pred = Predictor(
        _config(
            tmp_path,
            task1_checkpoints=[csra_file, mlp_file],
            clip_model=clip_dir,
            cpu_backend=backend,
        )
    )
    assert pred.settings["backend"] == kind
    out = pred.predict_arrays(arrays)  # 4 images in batches of 2 (6 views stacked per forward)
    assert out.probs.shape == (4, 36) and out.probs.dtype == np.float64
    np.testing.assert_allclose(out.probs[:, :30], reference["task1"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.probs[:, 30:], reference["clip"], atol=1e-5, rtol=0)
    # the random models give distinct, input-dependent numbers, so the comparison means something
    assert np.ptp(out.probs[:, :30], axis=0).max() > 0.05
    assert out.ungated.shape == (4, 30)
    np.testing.assert_allclose(out.ungated[:, 0], out.probs[:, 0], atol=1e-12)

    # attention: identity view of the CSRA model, softmax over positions
    assert out.attention is not None and out.attention.dtype == np.float16
    assert out.attention.shape == (4, 30, SIZE // 32, SIZE // 32)
    from engine_reference import task1_input

    with torch.no_grad():
        _, att = reference["models"][0](task1_input(arrays[0], SIZE))
    np.testing.assert_allclose(out.attention[0].astype(np.float32), att[0].numpy(), atol=2e-3)
    np.testing.assert_allclose(out.attention.astype(np.float32).sum(axis=(2, 3)), 1.0, atol=5e-3)


def test_fast_mode_is_csra_identity_only(tmp_path, arrays, reference, csra_file, mlp_file):
    from engine_reference import task1_input

    pred = Predictor(_config(tmp_path, task1_checkpoints=[mlp_file, csra_file], mode="fast"))
    assert [m.role for m in pred.models] == ["task1-csra"] and pred.models[0].weight == 1.0
    assert pred.settings["views"] == ["identity"]
    out = pred.predict_arrays(arrays[:3])
    with torch.no_grad():
        p = np.stack(
            [
                torch.sigmoid(reference["models"][0](task1_input(a, SIZE))[0])[0].numpy()
                for a in arrays[:3]
            ]
        )
    p[:, 1:] *= np.sqrt(1.0 - p[:, :1])
    np.testing.assert_allclose(out.probs[:, :30], np.clip(p, 1e-6, 1 - 1e-6), atol=1e-5)
    assert np.isnan(out.probs[:, 30:]).all()  # no CLIP configured


def test_clip_only_leaves_task1_columns_empty(tmp_path, arrays, reference, clip_dir):
    pred = Predictor(_config(tmp_path, clip_model=clip_dir))
    out = pred.predict_arrays(arrays[2:])
    assert np.isnan(out.probs[:, :30]).all() and np.isnan(out.ungated).all()
    assert out.attention is None
    np.testing.assert_allclose(out.probs[:, 30:], reference["clip"][2:], atol=1e-5)
    assert [m.role for m in pred.models] == ["clip"]


def test_models_and_settings_describe_the_run(tmp_path, csra_file, mlp_file, clip_dir):
    pred = Predictor(
        _config(
            tmp_path,
            task1_checkpoints=[csra_file, mlp_file],
            task1_weights=[3.0, 1.0],
            clip_model=clip_dir,
        )
    )
    infos = pred.models
    assert [i.role for i in infos] == ["task1-csra", "task1-mlp", "clip"]
    assert [i.weight for i in infos] == [0.75, 0.25, None]
    assert all(i.arch == "convnextv2_atto" for i in infos[:2])
    for info in infos:
        assert info.sha256 == hashlib.sha256(Path(info.path).read_bytes()).hexdigest()
    s = json.loads(json.dumps(pred.settings))
    assert s["mode"] == "paper" and s["normal_alpha"] == 0.5 and s["precision"] == "fp32"
    assert s["weights"] == [0.75, 0.25] and len(s["views"]) == 6 and len(s["prompts_hash"]) == 64


def test_predict_paths_reports_bad_files_and_keeps_order(tmp_path, rg1_files, csra_file):
    bad = tmp_path / "notes.dcm"
    bad.write_text("this is not an image")
    missing = tmp_path / "missing.dcm"
    paths = [rg1_files[0], bad, missing, rg1_files[1]]
    pred = Predictor(_config(tmp_path, task1_checkpoints=[csra_file], mode="fast"))
    results = list(pred.predict_paths(paths, batch_size=3))
    assert [r.path for r in results] == [Path(p) for p in paths]
    assert [r.ok for r in results] == [True, False, False, True]
    for r in results[1:3]:
        assert r.reason and r.probs is None and r.attention is None
    from engine.imageio import read_source

    ok = pred.predict_arrays([read_source(rg1_files[1])])
    np.testing.assert_allclose(results[3].probs, ok.probs[0], atol=1e-6)
    assert results[0].attention.shape == (30, SIZE // 32, SIZE // 32)
    assert all(r.seconds > 0 for r in results if r.ok)


def test_predict_paths_stops_between_batches(tmp_path, csra_file):
    pred = Predictor(_config(tmp_path, task1_checkpoints=[csra_file], mode="fast"))
    calls = []

    def read(p):
        calls.append(p)
        return np.full((40, 40), int(Path(p).stem) * 10, np.uint8)

    seen = []
    for r in pred.predict_paths(
        [f"{i}.png" for i in range(1, 8)],
        read=read,
        batch_size=2,
        should_stop=lambda: len(seen) >= 2,
    ):
        seen.append(r)
    assert len(seen) == 2 and all(r.ok for r in seen)


def test_configuration_errors_are_clear(tmp_path, csra_file):
    with pytest.raises(EngineError, match="no model configured"):
        Predictor(EngineConfig(device="cpu"))
    with pytest.raises(EngineError, match="1 checkpoints"):
        Predictor(_config(tmp_path, task1_checkpoints=[csra_file], task1_weights=[1.0, 2.0]))
    with pytest.raises(EngineError, match="mode"):
        Predictor(_config(tmp_path, task1_checkpoints=[csra_file], mode="quick"))
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA GPU"):
            Predictor(_config(tmp_path, task1_checkpoints=[csra_file], device="cuda"))


def test_onnx_export_is_cached_and_torch_backend_agrees(tmp_path, arrays, csra_file):
    from engine import onnx_backend

    if not onnx_backend.available():
        pytest.skip("onnxruntime is not installed")
    cfg = _config(tmp_path, task1_checkpoints=[csra_file], mode="fast", cpu_backend="onnx")
    first = Predictor(cfg).predict_arrays(arrays[2:])
    files = list((tmp_path / "cache").glob("task1-*.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = Predictor(cfg).predict_arrays(arrays[2:])
    assert files[0].stat().st_mtime_ns == stamp  # reused, not exported again
    np.testing.assert_array_equal(first.probs, second.probs)
    eager = Predictor(
        _config(tmp_path, task1_checkpoints=[csra_file], mode="fast", cpu_backend="torch")
    )
    assert eager.settings["backend"] == "torch"
    np.testing.assert_allclose(eager.predict_arrays(arrays[2:]).probs, first.probs, atol=1e-5)


def test_auto_backend_prefers_openvino_and_falls_back(tmp_path, arrays, csra_file, monkeypatch):
    from engine import onnx_backend

    if not (onnx_backend.available("openvino") and onnx_backend.available("onnxruntime")):
        pytest.skip("openvino and onnxruntime are needed")
    cfg = _config(tmp_path, task1_checkpoints=[csra_file], mode="fast")
    auto = Predictor(cfg)
    assert auto.settings["backend"] == "openvino"
    expected = auto.predict_arrays(arrays[:2]).probs

    # a runtime that cannot compile the model costs speed, never the scores
    import openvino as ov

    def broken(self, *args, **kwargs):
        raise RuntimeError("no CPU plugin in this build")

    monkeypatch.setattr(ov.Core, "compile_model", broken)
    with pytest.warns(UserWarning, match="openvino cannot run the Task 1 models"):
        fallback = Predictor(cfg)
    assert fallback.settings["backend"] == "onnxruntime"
    np.testing.assert_allclose(fallback.predict_arrays(arrays[:2]).probs, expected, atol=1e-5)
    # asked for by name, the same failure is an error that names the runtime
    with pytest.raises(EngineError, match="openvino cannot run the Task 1 models"):
        Predictor(_config(tmp_path, task1_checkpoints=[csra_file], cpu_backend="openvino"))


def test_default_onnx_cache_is_private_to_the_user(tmp_path, monkeypatch):
    import tempfile

    from engine.onnx_backend import _private_temp_cache

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = _private_temp_cache()
    assert folder.parent == tmp_path and folder.stat().st_mode & 0o777 == 0o700
    assert _private_temp_cache() == folder  # reused: the cache works across processes
    # A folder of that name that others can write (planted, or made by another tool) is not used.
    folder.chmod(0o777)
    other = _private_temp_cache()
    assert other != folder and other.parent == tmp_path
    assert other.stat().st_mode & 0o777 == 0o700
    # A symlink to someone's private folder, or a plain file, in its place is not used either.
    folder.rmdir()
    folder.symlink_to(other)
    assert _private_temp_cache() not in (folder, other)
    folder.unlink()
    folder.write_text("x")
    assert _private_temp_cache() != folder
