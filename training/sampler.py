"""Class-aware repeat-factor sampling (paper, section 3, "Class-Aware Sampling").

``f_c`` is the fraction of training images with a positive label for class ``c`` (unknown labels
count as not positive), ``r(c) = max(1, sqrt(T / f_c))`` and each image's repeat factor is
``r_i = min(r_max, max over its positive classes of r(c))``, 1 for an image without positives.
Defaults ``T = 0.01``, ``r_max = 10``.

A fractional repeat factor is realised per epoch by stochastic rounding (as LVIS/detectron2 do):
image ``i`` appears ``floor(r_i)`` times plus once more with probability ``r_i - floor(r_i)``,
so its expected count is exactly ``r_i``. The draw and the shuffle use a generator seeded with
``(seed, epoch)``, so every process builds the same epoch list; under ``W`` processes the list is
padded by wrapping to a multiple of ``W`` and rank ``k`` takes positions ``k, k+W, k+2W, ...``:
disjoint, equally sized shards of one list.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CAS_T = 0.01
CAS_MAX_REPEAT = 10.0


def class_repeat_factors(labels: np.ndarray, threshold: float = CAS_T) -> np.ndarray:
    """Per-class ``r(c) = max(1, sqrt(T / f_c))``; ``inf`` never occurs (absent classes give 1).

    Parameters
    ----------
    labels : numpy.ndarray
        ``[N, C]`` labels, 1 positive, 0 negative, NaN unknown.
    threshold : float
        Frequency threshold ``T``.

    Returns
    -------
    numpy.ndarray
        ``[C]`` float64.
    """
    pos = np.nan_to_num(np.asarray(labels, dtype=np.float64), nan=0.0) > 0.5
    freq = pos.mean(axis=0) if pos.shape[0] else np.zeros(pos.shape[1])
    with np.errstate(divide="ignore"):
        r = np.sqrt(threshold / freq)
    # A class no image has cannot raise any image's factor; keep it finite for printing.
    r[freq == 0] = 1.0
    return np.maximum(1.0, r)


def repeat_factors(
    labels: np.ndarray, threshold: float = CAS_T, max_repeat: float = CAS_MAX_REPEAT
) -> np.ndarray:
    """Per-image ``r_i = min(r_max, max_{c positive} r(c))``, 1 for images without positives.

    Parameters
    ----------
    labels : numpy.ndarray
        ``[N, C]`` labels, 1 positive, 0 negative, NaN unknown.
    threshold : float
        ``T``.
    max_repeat : float
        ``r_max``.

    Returns
    -------
    numpy.ndarray
        ``[N]`` float64 repeat factors in ``[1, max_repeat]``.
    """
    pos = np.nan_to_num(np.asarray(labels, dtype=np.float64), nan=0.0) > 0.5
    rc = class_repeat_factors(labels, threshold)
    per_image = np.where(pos, rc[None, :], 1.0).max(axis=1, initial=1.0)
    return np.minimum(float(max_repeat), per_image)


class RepeatFactorSampler:
    """Deterministic, distributed repeat-factor sampler (a ``torch.utils.data.Sampler``).

    Parameters
    ----------
    factors : numpy.ndarray
        Per-image repeat factors (see :func:`repeat_factors`).
    num_replicas, rank : int, optional
        World size and this process's rank; taken from ``torch.distributed`` when it is
        initialised, else 1 and 0.
    seed : int
        Base seed, the same on every process.
    shuffle : bool
        Shuffle the epoch list (always in training).

    Notes
    -----
    Call :meth:`set_epoch` before each epoch. ``len()`` is this rank's share of the current
    epoch's list, which changes a little from epoch to epoch with the stochastic rounding.
    """

    def __init__(
        self,
        factors: np.ndarray,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        factors = np.asarray(factors, dtype=np.float64)
        if factors.ndim != 1 or factors.size == 0:
            raise ValueError("repeat factors must be a non-empty 1-D array")
        if np.any(factors < 1.0) or not np.all(np.isfinite(factors)):
            raise ValueError("repeat factors must be finite and >= 1")
        if num_replicas is None or rank is None:
            ws, rk = _dist_world()
            num_replicas = ws if num_replicas is None else num_replicas
            rank = rk if rank is None else rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.factors = factors
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self._cache: tuple[int, np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose list :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def epoch_indices(self, epoch: int | None = None) -> np.ndarray:
        """The full (all ranks, unpadded) repeated and shuffled index list of an epoch."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        whole = np.floor(self.factors)
        extra = rng.random(self.factors.size) < (self.factors - whole)
        counts = (whole + extra).astype(np.int64)
        indices = np.repeat(np.arange(self.factors.size, dtype=np.int64), counts)
        if self.shuffle:
            indices = indices[rng.permutation(indices.size)]
        self._cache = (epoch, indices)
        return indices

    def shard(self, epoch: int | None = None) -> np.ndarray:
        """This rank's positions of the epoch list, padded by wrapping to a multiple of W."""
        indices = self.epoch_indices(epoch)
        total = -(-indices.size // self.num_replicas) * self.num_replicas
        if total > indices.size:
            indices = np.concatenate([indices, np.resize(indices, total - indices.size)])
        return indices[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard().tolist())

    def __len__(self) -> int:
        n = self.epoch_indices().size
        return -(-n // self.num_replicas)

    def state_dict(self) -> dict[str, int]:
        """What a resumed run needs: the lists are a pure function of (seed, epoch)."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore :meth:`state_dict`'s values."""
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._cache = None


def _dist_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return 1, 0
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0
