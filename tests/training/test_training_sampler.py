"""Repeat-factor sampler: hand-computed factors, per-epoch determinism, distributed shards."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.sampler import RepeatFactorSampler, class_repeat_factors, repeat_factors


def _labels() -> np.ndarray:
    # 10 images, classes A, B, C. A: 1 image (f = 0.1), B: 4 images (f = 0.4), C: none.
    y = np.zeros((10, 3))
    y[0, [0, 1]] = 1
    y[1:4, 1] = 1
    y[4, 0] = np.nan  # unknown, not a positive
    return y


def test_repeat_factors_on_a_hand_example():
    y = _labels()
    # T = 0.4: r(A) = sqrt(0.4 / 0.1) = 2, r(B) = max(1, sqrt(1)) = 1
    np.testing.assert_allclose(class_repeat_factors(y, 0.4), [2.0, 1.0, 1.0])
    np.testing.assert_allclose(repeat_factors(y, 0.4, 10), [2, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    # T = 1.6: r(A) = 4 capped at r_max = 3, r(B) = 2; image 0 takes its rarest class's factor
    np.testing.assert_allclose(repeat_factors(y, 1.6, 3), [3, 2, 2, 2, 1, 1, 1, 1, 1, 1])
    # T = 0.1: r(B) = sqrt(0.25) -> 1 (never below 1)
    np.testing.assert_allclose(repeat_factors(y, 0.1, 10), np.ones(10))
    # the paper's defaults T = 0.01, r_max = 10 on a class in 1 of 400 images: sqrt(4) = 2
    big = np.zeros((400, 1))
    big[0, 0] = 1
    assert repeat_factors(big)[0] == pytest.approx(2.0)


def test_integer_factors_give_exact_repeats_every_epoch():
    factors = repeat_factors(_labels(), 1.6, 3)
    s = RepeatFactorSampler(factors, num_replicas=1, rank=0, seed=5)
    for epoch in range(3):
        idx = s.epoch_indices(epoch)
        np.testing.assert_array_equal(np.bincount(idx, minlength=10), factors.astype(int))


def test_fractional_factors_round_stochastically_to_the_right_mean():
    factors = np.array([1.0, 1.5, 2.25, 3.0])
    s = RepeatFactorSampler(factors, num_replicas=1, rank=0, seed=0)
    counts = np.stack([np.bincount(s.epoch_indices(e), minlength=4) for e in range(4000)])
    # each count is floor(r) or ceil(r), and the mean is r (4000 draws: sd of the mean < 0.01)
    for j, r in enumerate(factors):
        assert set(np.unique(counts[:, j])) <= {math.floor(r), math.ceil(r)}
    np.testing.assert_allclose(counts.mean(axis=0), factors, atol=0.03)


def test_same_seed_and_epoch_same_list_other_epoch_other_order():
    factors = repeat_factors(_labels(), 1.6, 3) + 0.5
    a = RepeatFactorSampler(factors, num_replicas=1, rank=0, seed=11)
    b = RepeatFactorSampler(factors, num_replicas=1, rank=0, seed=11)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    c = RepeatFactorSampler(factors, num_replicas=1, rank=0, seed=12)
    c.set_epoch(3)
    assert list(a) != list(c)
    # state_dict round trip reproduces the list
    d = RepeatFactorSampler(factors, num_replicas=1, rank=0, seed=0)
    d.load_state_dict(a.state_dict())
    assert list(d) == list(a)


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_two_ranks_get_disjoint_equal_shards_of_the_same_epoch_list(offset):
    factors = repeat_factors(_labels(), 1.6, 3) + offset
    ranks = [RepeatFactorSampler(factors, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for epoch in range(5):
        for s in ranks:
            s.set_epoch(epoch)
        full = ranks[0].epoch_indices()
        np.testing.assert_array_equal(full, ranks[1].epoch_indices())  # same list on both
        s0, s1 = list(ranks[0]), list(ranks[1])
        assert len(s0) == len(s1) == len(ranks[0]) == math.ceil(full.size / 2)
        # rank r holds positions r, r + 2, ... of the list padded (by wrapping) to even length
        padded = np.concatenate([full, full[: (2 - full.size % 2) % 2]])
        np.testing.assert_array_equal(s0, padded[0::2])
        np.testing.assert_array_equal(s1, padded[1::2])
        # together they cover the epoch list exactly (as a multiset), plus the padding
        merged = np.sort(np.concatenate([s0, s1]))
        np.testing.assert_array_equal(merged, np.sort(padded))


def test_rejects_bad_factors():
    with pytest.raises(ValueError):
        RepeatFactorSampler(np.array([0.5, 1.0]), num_replicas=1, rank=0)
    with pytest.raises(ValueError):
        RepeatFactorSampler(np.array([1.0]), num_replicas=2, rank=2)
