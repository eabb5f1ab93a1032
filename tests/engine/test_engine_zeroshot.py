"""Zero-shot scoring with a tiny open_clip model written by the test; the prompts file; the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.classes import TASK2_CLASSES
from engine.zeroshot import (
    ZeroShotError,
    class_prototypes,
    load_prompts,
    load_zero_shot,
    prompts_hash,
    zero_shot_probs,
)

PROMPTS = {c: [f"a chest x-ray with {c.lower()}", f"{c} is seen"] for c in TASK2_CLASSES}
PROMPTS["Bulla"].append("a thin-walled lucent air space")  # unequal prompt counts


def test_scores_equal_hand_computation_from_encoded_embeddings(tmp_path, clip_dir):
    import open_clip

    zs = load_zero_shot(clip_dir, prompts=PROMPTS, cache_dir=tmp_path)
    model = open_clip.create_model(f"local-dir:{clip_dir}").eval()
    tok = open_clip.get_tokenizer(f"local-dir:{clip_dir}")
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v = model.encode_image(x).double()
        v = v / v.norm(dim=1, keepdim=True)
        want = np.zeros((3, 6))
        for j, c in enumerate(TASK2_CLASSES):
            cos = []
            for p in PROMPTS[c]:
                t = model.encode_text(tok([p]))[0].double()
                cos.append((v @ (t / t.norm())).numpy())
            want[:, j] = 1 / (1 + np.exp(-5 * np.mean(cos, axis=0)))
    got = zs.probs(x)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert zs.image_size == 224 and len(zs.sha256) == 64


def test_pure_scoring_functions_on_hand_numbers():
    emb = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])  # class A: 2 prompts, class B: 1
    protos = class_prototypes(emb, [2, 1])
    np.testing.assert_allclose(protos, [[0.5, 0.5], [np.sqrt(0.5), np.sqrt(0.5)]])
    p = zero_shot_probs(np.array([[0.0, 4.0]]), protos)
    np.testing.assert_allclose(p, [[1 / (1 + np.exp(-2.5)), 1 / (1 + np.exp(-5 * np.sqrt(0.5)))]])


def test_prompt_embeddings_are_cached_by_model_and_prompts(tmp_path, clip_dir):
    first = load_zero_shot(clip_dir, prompts=PROMPTS, cache_dir=tmp_path)
    files = list(tmp_path.glob("clip-prompts-*.npz"))
    assert len(files) == 1
    assert first.sha256[:32] in files[0].name and prompts_hash(PROMPTS)[:32] in files[0].name
    # the second load reads the cache: planted embeddings come back as prototypes
    n = sum(len(v) for v in PROMPTS.values())
    planted = np.zeros((n, 32), np.float32)
    planted[:, 0] = 1.0
    np.savez(files[0], embeddings=planted)
    second = load_zero_shot(clip_dir, prompts=PROMPTS, cache_dir=tmp_path)
    np.testing.assert_allclose(second.prototypes[:, 0], 1.0)
    # other prompts: another key, computed afresh
    other = {**PROMPTS, "goiter": ["an enlarged thyroid"]}
    third = load_zero_shot(clip_dir, prompts=other, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("clip-prompts-*.npz"))) == 2
    np.testing.assert_allclose(third.prototypes[:5], first.prototypes[:5])


def test_shipped_prompts_file():
    prompts = load_prompts()
    assert list(prompts) == list(TASK2_CLASSES)
    for c, ps in prompts.items():
        assert len(ps) >= 10, c
        assert len({p.lower() for p in ps}) == len(ps), c  # all distinct


def test_bad_prompts_and_folders(tmp_path, clip_dir):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({c: ["x"] for c in TASK2_CLASSES[:5]}))
    with pytest.raises(ZeroShotError, match="no prompts for class 'goiter'"):
        load_prompts(f)
    f.write_text(json.dumps({**{c: ["x"] for c in TASK2_CLASSES}, "Scolisis": ["typo"]}))
    with pytest.raises(ZeroShotError, match="unknown class names"):
        load_prompts(f)
    f.write_text("{not json")
    with pytest.raises(ZeroShotError, match="cannot read"):
        load_prompts(f)
    with pytest.raises(ZeroShotError, match="folder not found"):
        load_zero_shot(tmp_path / "nope", prompts=PROMPTS, cache_dir=None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ZeroShotError, match="no open_clip_config.json"):
        load_zero_shot(empty, prompts=PROMPTS, cache_dir=None)
    (empty / "open_clip_config.json").write_text((clip_dir / "open_clip_config.json").read_text())
    with pytest.raises(ZeroShotError, match="no CLIP weight file"):
        load_zero_shot(empty, prompts=PROMPTS, cache_dir=None)
