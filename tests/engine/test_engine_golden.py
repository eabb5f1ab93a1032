"""Golden outputs: the 36 probabilities of fixed-seed tiny models on fixed inputs, as numbers.

The other engine tests compare the predictor with an independent reference computed at test time;
this one holds the end result itself, so that a change to the method that both sides could share
(a preprocessing constant, the TTA views, the ensemble weights, gating, the CLIP scale or prompts)
shows up as changed numbers.

Models: ``engine.random_models.write_random_task1`` convnextv2_atto CSRA (seed 0) and MLP
(seed 1), ``write_tiny_clip`` (seed 0); paper mode, 64 px Task 1 input, fp32, PyTorch on the
CPU. Inputs: three arrays made from integer formulas (:func:`golden_inputs`), no random numbers.

The numbers are rounded to 1e-5; the tolerance (GOLDEN_ATOL) allows BLAS and oneDNN differences
between machines (~1e-6 here) and the rounding, and is far below what a changed formula moves
(1e-3 and more). The weights come from torch's seeded generator through timm's and open_clip's
initialisers, so an upgrade of torch, timm or open_clip that changes an initialiser moves every
number at once.

To regenerate after a deliberate change of the method (say why in the commit message)::

    .venv/bin/python tests/engine/test_engine_golden.py

prints a replacement for GOLDEN_TEXT.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

GOLDEN_ATOL = 1e-4
SIZE = 64

# One block per input, in golden_inputs() order: the 36 probabilities in engine.classes order
# (30 Task 1 findings after gating, then the 6 zero-shot findings), 9 per line.
GOLDEN_TEXT = """
# texture (uint16)
0.00032 0.37855 0.40265 0.38884 0.05130 0.65596 0.00291 0.94879 0.67152
0.25716 0.31233 0.99983 0.35458 0.25260 0.28868 0.51339 0.00093 0.58636
0.06998 0.96668 0.99353 0.99404 0.86571 0.40977 0.37359 0.59994 0.08779
0.04904 0.39706 0.14539 0.50988 0.51120 0.49787 0.49300 0.45844 0.45435
# rings (uint8)
0.02084 0.38515 0.26308 0.70652 0.19145 0.61060 0.00052 0.50938 0.50984
0.21401 0.25074 0.98945 0.15101 0.34739 0.41081 0.08632 0.18136 0.61969
0.18215 0.92688 0.84497 0.98442 0.64670 0.43818 0.31101 0.59377 0.05511
0.00218 0.37343 0.63594 0.50112 0.49534 0.54597 0.51467 0.52761 0.47168
# radial (float32)
0.00150 0.39922 0.42380 0.29959 0.00781 0.66458 0.11293 0.88650 0.96727
0.47303 0.79481 0.98584 0.59972 0.44501 0.36571 0.92034 0.00090 0.45246
0.03256 0.99245 0.99643 0.96958 0.89476 0.39955 0.02109 0.59893 0.66952
0.05517 0.39561 0.03830 0.50963 0.51093 0.49752 0.49268 0.45799 0.45412
"""


def golden_inputs() -> list[np.ndarray]:
    """Three source arrays from integer formulas: 12-bit texture (uint16, percentile stretch),
    uint8 rings, float32 radial distance (non-square)."""
    i, j = np.mgrid[0:96, 0:80]
    texture = ((i * 37 + j * 11) % 4096).astype(np.uint16)
    rings = ((i * i + 3 * j * j) % 256).astype(np.uint8)
    radial = ((i - 48) ** 2 + (j - 30) ** 2).astype(np.float32)
    return [texture, rings, radial]


def golden_probs(folder: Path) -> np.ndarray:
    """Write the fixed-seed models into ``folder`` and score :func:`golden_inputs`: [3, 36]."""
    import torch

    from engine.predictor import EngineConfig, Predictor
    from engine.random_models import write_random_task1, write_tiny_clip

    csra = write_random_task1(folder / "csra.safetensors", head="csra", seed=0)
    mlp = write_random_task1(folder / "mlp.safetensors", head="mlp", seed=1)
    clip = write_tiny_clip(folder / "clip", seed=0)
    config = EngineConfig(
        task1_checkpoints=[csra, mlp],
        clip_model=clip,
        mode="paper",
        device="cpu",
        precision="fp32",
        cpu_backend="torch",
        image_size=SIZE,
        batch_size=2,
        cache_dir=folder / "cache",
    )
    with torch.inference_mode():
        return Predictor(config).predict_arrays(golden_inputs()).probs


def golden() -> np.ndarray:
    """GOLDEN_TEXT as a [3, 36] array."""
    values = [
        float(v)
        for line in GOLDEN_TEXT.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
        for v in line.split()
    ]
    return np.array(values).reshape(len(golden_inputs()), 36)


def format_golden(probs: np.ndarray) -> str:
    """The GOLDEN_TEXT literal for ``probs`` [3, 36]."""
    names = ["texture (uint16)", "rings (uint8)", "radial (float32)"]
    lines = ['GOLDEN_TEXT = """']
    for name, row in zip(names, probs, strict=True):
        lines.append(f"# {name}")
        for start in range(0, 36, 9):
            lines.append(" ".join(f"{v:.5f}" for v in row[start : start + 9]))
    lines.append('"""')
    return "\n".join(lines)


def test_golden_probabilities(tmp_path):
    from engine.classes import ALL_CLASSES

    got = golden_probs(tmp_path)
    want = golden()
    assert got.shape == want.shape == (3, len(ALL_CLASSES))
    worst = np.unravel_index(np.argmax(np.abs(got - want)), got.shape)
    assert np.allclose(got, want, atol=GOLDEN_ATOL, rtol=0), (
        f"golden outputs changed: worst image {worst[0]}, class {ALL_CLASSES[worst[1]]!r}: "
        f"{got[worst]:.6f} != {want[worst]:.6f}; if the method changed on purpose, regenerate "
        "with `python tests/engine/test_engine_golden.py`"
    )
    # the numbers discriminate: they differ between images and spread over (0, 1)
    assert np.ptp(want[:, :30], axis=0).max() > 0.05 and want.min() < 0.2 and want.max() > 0.8


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    with tempfile.TemporaryDirectory() as d:
        print(format_golden(golden_probs(Path(d))))
