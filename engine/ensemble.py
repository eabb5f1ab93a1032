"""Weighted ensembling of the Task 1 models and normal gating (numpy, no torch)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_HEAD_WEIGHTS = {"mlp": 1.0, "csra": 1.5}
CLIP_EPS = 1e-6


def default_weights(heads: Sequence[str]) -> list[float]:
    """The paper's raw weights per model, in checkpoint order: 1.0 for MLP, 1.5 for CSRA."""
    return [DEFAULT_HEAD_WEIGHTS[h] for h in heads]


def normalise_weights(weights: Sequence[float]) -> np.ndarray:
    """Weights divided by their sum.

    Raises
    ------
    ValueError
        Empty, negative, non-finite weights, or a zero sum.
    """
    w = np.asarray(list(weights), dtype=np.float64)
    if w.size == 0:
        raise ValueError("no ensemble weights given")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"ensemble weights must be finite and >= 0, got {list(weights)}")
    if w.sum() <= 0:
        raise ValueError(f"ensemble weights must not sum to 0, got {list(weights)}")
    return w / w.sum()


def weighted_mean(probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """sum_k w~_k p_k with w~ the normalised weights; each p_k is [N, C]."""
    if len(probs) != len(weights):
        raise ValueError(f"{len(probs)} models but {len(weights)} weights")
    w = normalise_weights(weights)
    out = np.zeros_like(np.asarray(probs[0], dtype=np.float64))
    for wk, pk in zip(w, probs, strict=True):
        out += wk * np.asarray(pk, dtype=np.float64)
    return out


def normal_gating(p: np.ndarray, alpha: float = 0.5, normal_index: int = 0) -> np.ndarray:
    """p_c <- p_c * (1 - p_Normal)^alpha for every class c != Normal, then clip to [1e-6, 1 - 1e-6].

    Parameters
    ----------
    p : numpy.ndarray
        [N, 30] Task 1 probabilities.
    alpha : float
        Gating exponent (0.5 in the paper; 0 disables gating but keeps the clipping).
    """
    p = np.asarray(p, dtype=np.float64)
    gate = np.power(1.0 - p[:, normal_index : normal_index + 1], alpha)
    out = p * gate
    out[:, normal_index] = p[:, normal_index]
    return np.clip(out, CLIP_EPS, 1.0 - CLIP_EPS)
