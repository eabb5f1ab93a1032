"""The engine parts of the progressive policy: the CLIP image tower in OpenVINO, the bf16 fast
pass's backbone, the shared LRU of decoded source arrays and the paper pass without CLIP.

The CLIP columns are checked against engine_reference.clip_probs (open_clip directly, one image
and one prompt at a time), not against the engine's own PyTorch path only.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SIZE
from engine_reference import clip_probs

from engine import onnx_backend
from engine.classes import TASK2_CLASSES
from engine.predictor import EngineConfig, EngineError, Predictor
from engine.source_cache import SourceCache

needs_openvino = pytest.mark.skipif(
    not onnx_backend.available("openvino"), reason="openvino (and onnx) not installed"
)


def _config(tmp_path, **kw) -> EngineConfig:
    base = dict(
        device="cpu", precision="fp32", image_size=SIZE, batch_size=2, cache_dir=tmp_path / "cache"
    )
    base.update(kw)
    return EngineConfig(**base)


@pytest.fixture(scope="module")
def arrays(rg1_files):
    from engine.imageio import read_source

    return [read_source(p) for p in rg1_files]


def _reference_clip(arrays, clip_dir):
    import open_clip

    from engine.zeroshot import load_prompts

    model = open_clip.create_model(f"local-dir:{clip_dir}").eval()
    tok = open_clip.get_tokenizer(f"local-dir:{clip_dir}")
    prompts = load_prompts()
    return np.stack([clip_probs(a, model, tok, prompts, TASK2_CLASSES) for a in arrays])


def _tower_agreement(tmp_path, arrays, clip_dir):
    """CLIP probabilities of the predictor with the OpenVINO tower, with the PyTorch tower,
    and the reference's; the OpenVINO predictor's runner."""
    ov = Predictor(_config(tmp_path, clip_model=clip_dir, clip_backend="openvino"))
    assert ov.clip_backend == "openvino" and ov._clip.image_runner is not None
    assert ov._clip.image_runner.path.is_file()  # the exported tower in the cache folder
    pt = Predictor(_config(tmp_path, clip_model=clip_dir, clip_backend="torch"))
    assert pt.clip_backend == "torch" and pt._clip.image_runner is None
    got = ov.predict_arrays(arrays).probs[:, 30:]
    torch_probs = pt.predict_arrays(arrays).probs[:, 30:]
    return got, torch_probs, _reference_clip(arrays, clip_dir), ov, pt


@needs_openvino
def test_openvino_clip_tower_equals_pytorch_tiny_clip(tmp_path, arrays, clip_dir):
    got, torch_probs, ref, ov, pt = _tower_agreement(tmp_path, arrays, clip_dir)
    np.testing.assert_allclose(got, torch_probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    # embeddings too (the probabilities of a tiny random CLIP sit near 0.5)
    import torch

    from engine.preprocess import MODEL_SIZE, clip_grey, clip_tensor

    x = clip_tensor(
        torch.from_numpy(np.stack([clip_grey(a, MODEL_SIZE) for a in arrays])),
        ov._clip.image_size,
    )
    emb_ov = ov._clip.encode_images(x)
    assert ov._clip.model.visual is None  # freed: OpenVINO holds the tower
    with torch.inference_mode():
        emb_pt = pt._clip.model.encode_image(x).double().numpy()
    scale = np.abs(emb_pt).max()
    assert np.abs(emb_ov - emb_pt).max() <= 1e-5 * scale


@needs_openvino
def test_clip_backend_auto_takes_openvino_and_torch_keeps_pytorch(tmp_path, clip_dir):
    assert Predictor(_config(tmp_path, clip_model=clip_dir)).clip_backend == "openvino"
    gpu_path = Predictor(_config(tmp_path, clip_model=clip_dir, gpu_path=True, precision="fp32"))
    assert gpu_path.clip_backend == "torch"
    with pytest.raises(EngineError, match="clip_backend openvino needs"):
        Predictor(_config(tmp_path, clip_model=clip_dir, clip_backend="openvino", gpu_path=True))
    with pytest.raises(EngineError, match="clip_backend must be one of"):
        Predictor(_config(tmp_path, clip_model=clip_dir, clip_backend="tensorrt"))


@needs_openvino
@pytest.mark.slow
def test_openvino_clip_tower_equals_pytorch_vit_l14(tmp_path_factory, arrays):
    """WhyXrayCLIP's size: a random-weight ViT-L-14 (~1.7 GB written, ~1.2 GB exported)."""
    from engine.random_models import write_random_clip

    folder = tmp_path_factory.mktemp("vit-l14")
    clip_dir = write_random_clip(folder / "clip", "ViT-L-14", seed=2)
    got, torch_probs, ref, _, _ = _tower_agreement(folder, arrays, clip_dir)
    np.testing.assert_allclose(got, torch_probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_cpu_bf16_detection_agrees_with_openvino():
    if not onnx_backend.available("openvino"):
        pytest.skip("openvino not installed")
    from engine.offline import go_offline

    go_offline()
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert onnx_backend.cpu_has_bf16() == ("BF16" in caps)


@needs_openvino
def test_bf16_backbone_for_the_fast_pass(tmp_path, arrays, csra_file, mlp_file):
    fp32 = Predictor(
        _config(tmp_path, task1_checkpoints=[csra_file, mlp_file], mode="fast", cpu_backend="auto")
    )
    assert fp32.backbone_precision == "fp32" and "backbone_precision" not in fp32.settings
    auto = Predictor(
        _config(
            tmp_path,
            task1_checkpoints=[csra_file, mlp_file],
            mode="fast",
            backbone_precision="auto",
        )
    )
    if not onnx_backend.cpu_has_bf16():
        assert auto.backbone_precision == "fp32" and "backbone_precision" not in auto.settings
        with pytest.raises(EngineError, match="bf16 hardware"):
            Predictor(_config(tmp_path, task1_checkpoints=[csra_file], backbone_precision="bf16"))
        return
    assert auto.backend == "openvino" and auto.backbone_precision == "bf16"
    assert auto.settings["backbone_precision"] == "bf16"  # another model set than fp32's
    p32 = fp32.predict_arrays(arrays).probs[:, :30]
    p16 = auto.predict_arrays(arrays).probs[:, :30]
    diff = np.abs(p16 - p32).max()
    assert 1e-6 < diff < 5e-2  # bf16 ran (the numbers moved), and stayed close
    with pytest.raises(EngineError, match="needs the OpenVINO backend"):
        Predictor(
            _config(
                tmp_path,
                task1_checkpoints=[csra_file],
                cpu_backend="onnx",
                backbone_precision="bf16",
            )
        )
    with pytest.raises(EngineError, match="backbone_precision must be one of"):
        Predictor(_config(tmp_path, task1_checkpoints=[csra_file], backbone_precision="int8"))


def test_paper_pass_without_clip_leaves_clip_columns_to_the_fast_pass(
    tmp_path, rg1_files, csra_file, mlp_file, clip_dir
):
    cfg = dict(task1_checkpoints=[csra_file, mlp_file], clip_model=clip_dir, cpu_backend="torch")
    paper = Predictor(_config(tmp_path, **cfg))
    fast = Predictor(_config(tmp_path, mode="fast", **cfg))
    full = [r.probs for r in paper.predict_paths(rg1_files)]
    no_clip = [r.probs for r in paper.predict_paths(rg1_files, clip=False)]
    first = [r.probs for r in fast.predict_paths(rg1_files)]
    for a, b, f in zip(full, no_clip, first, strict=True):
        assert np.isnan(b[30:]).all()
        np.testing.assert_array_equal(a[:30], b[:30])
        np.testing.assert_allclose(f[30:], a[30:], atol=1e-6, rtol=0)  # same columns either pass


def test_fast_pass_shares_the_paper_predictors_clip_model(
    tmp_path, rg1_files, csra_file, mlp_file, clip_dir
):
    """The progressive policy's two predictors hold one CLIP model; the shared one gives the
    columns a fast predictor loading its own gives, and a different CLIP setting loads anew."""
    from cxrlt_desktop.library.progressive import fast_pass_config, load_predictors

    cfg = _config(tmp_path, task1_checkpoints=[csra_file, mlp_file], clip_model=clip_dir)
    paper, fast, policy = load_predictors(cfg, "progressive")
    assert policy == "progressive" and fast.config.mode == "fast"
    assert fast._clip is paper._clip and fast.clip_backend == paper.clip_backend
    assert fast.settings["prompts_hash"] == paper.settings["prompts_hash"]
    own = Predictor(fast_pass_config(cfg))
    assert own._clip is not paper._clip
    shared_cols = np.stack([r.probs[30:] for r in fast.predict_paths(rg1_files)])
    own_cols = np.stack([r.probs[30:] for r in own.predict_paths(rg1_files)])
    np.testing.assert_allclose(shared_cols, own_cols, atol=1e-7, rtol=0)
    other = Predictor(
        fast_pass_config(
            _config(
                tmp_path, task1_checkpoints=[csra_file], clip_model=clip_dir, clip_backend="torch"
            )
        ),
        share_clip_with=paper,
    )
    assert other._clip is not paper._clip and other.clip_backend == "torch"
    assert load_predictors(cfg, "paper")[1] is None


# ------------------------------------------------------------------ the LRU of source arrays


def _writer(tmp_path):
    calls: list[str] = []

    def read(path):
        calls.append(path.name)
        return np.load(path)

    return calls, read


def test_source_cache_hits_evicts_by_bytes_and_rereads_a_replaced_file(tmp_path):
    calls, read = _writer(tmp_path)
    paths = []
    for i in range(3):
        p = tmp_path / f"a{i}.npy"
        np.save(p, np.full((100, 100), i, np.uint16))  # 20,000 bytes each
        paths.append(p)
    cache = SourceCache(max_bytes=45_000)  # room for two
    a0 = cache.get(paths[0], read)
    assert cache.get(paths[0], read) is a0 and calls == ["a0.npy"]
    assert not a0.flags.writeable  # shared between passes: nobody may write into it
    cache.get(paths[1], read)
    cache.get(paths[0], read)  # a0 is now the most recent
    cache.get(paths[2], read)  # evicts a1, the least recently used
    assert len(cache) == 2 and cache.nbytes == 40_000
    cache.get(paths[0], read)
    cache.get(paths[1], read)
    assert calls == ["a0.npy", "a1.npy", "a2.npy", "a1.npy"]
    assert (cache.hits, cache.misses) == (3, 4)
    # a file replaced on disk is decoded again
    np.save(paths[1], np.full((100, 100), 9, np.uint16))
    import os

    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache.get(paths[1], read)[0, 0] == 9
    # an array above the budget is returned, not kept
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((200, 200), np.uint16))
    cache.get(big, read)
    assert cache.nbytes <= cache.max_bytes and len(cache) == 2


def test_source_cache_keeps_nothing_when_reading_fails(tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an array")
    cache = SourceCache(max_bytes=10**6)
    with pytest.raises(ValueError):
        cache.get(bad, np.load)
    assert len(cache) == 0 and cache.nbytes == 0


def test_two_passes_through_one_cache_decode_each_file_once(
    tmp_path, rg1_files, csra_file, mlp_file
):
    from engine.imageio import read_source

    decoded: list[str] = []

    def read(path):
        decoded.append(str(path))
        return read_source(path)

    cache = SourceCache(max_bytes=10**9)
    cfg = dict(task1_checkpoints=[csra_file, mlp_file], cpu_backend="torch")
    fast = Predictor(_config(tmp_path, mode="fast", **cfg))
    paper = Predictor(_config(tmp_path, **cfg))
    f1 = [r.probs for r in fast.predict_paths(rg1_files, read=cache.reader(read))]
    p1 = [r.probs for r in paper.predict_paths(rg1_files, read=cache.reader(read))]
    assert sorted(decoded) == sorted(str(p) for p in rg1_files)  # once each for both passes
    f0 = [r.probs for r in fast.predict_paths(rg1_files)]
    p0 = [r.probs for r in paper.predict_paths(rg1_files)]
    for a, b in zip(f1 + p1, f0 + p0, strict=True):
        np.testing.assert_array_equal(a, b)
