"""DB loss against hand-computed values and a hand-derived gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.losses import DistributionBalancedLoss, db_margins, db_weights

BETA = 0.9999
COUNTS = [1, 100, 10000]  # tail, middle, head


def _hand_weights_and_margins(alpha: float = 0.5, max_margin: float = 0.2):
    eff = [(1 - BETA) / (1 - BETA**n) for n in COUNTS]
    mean_eff = sum(eff) / len(eff)
    w = [(e / mean_eff) ** alpha for e in eff]
    e_num = [(1 - BETA**n) / (1 - BETA) for n in COUNTS]
    lo, hi = min(e_num), max(e_num)
    m = [max_margin * (e - lo) / (hi - lo) for e in e_num]
    return w, m


def _bce(x: float, y: float) -> float:
    # -[y log s(x) + (1 - y) log(1 - s(x))] written out
    s = 1.0 / (1.0 + math.exp(-x))
    return -(y * math.log(s) + (1 - y) * math.log(1 - s))


def test_weights_and_margins_match_the_formulas():
    w, m = _hand_weights_and_margins()
    np.testing.assert_allclose(db_weights(COUNTS), w, rtol=1e-12)
    np.testing.assert_allclose(db_margins(COUNTS), m, rtol=1e-12, atol=1e-15)
    # the rarest class gets no margin, the most frequent the full 0.2; rare classes weigh more
    assert db_margins(COUNTS)[0] == 0.0 and db_margins(COUNTS)[2] == pytest.approx(0.2)
    assert w[0] > w[1] > w[2]
    # n = 1 gives eff = (1 - beta) / (1 - beta) = 1 exactly
    assert (1 - BETA) / (1 - BETA**1) == pytest.approx(1.0)


def test_equal_counts_give_unit_weights_and_no_margin():
    np.testing.assert_allclose(db_weights([50, 50, 50]), [1, 1, 1])
    np.testing.assert_array_equal(db_margins([50, 50, 50]), [0, 0, 0])


def test_loss_on_hand_computed_values_with_an_unknown_cell():
    w, m = _hand_weights_and_margins()
    z = [[0.5, -1.0, 2.0], [-0.3, 0.7, -2.0]]
    y = [[1.0, 0.0, 1.0], [0.0, 1.0, math.nan]]
    total, count = 0.0, 0
    for i in range(2):
        for c in range(3):
            if math.isnan(y[i][c]):
                continue
            total += w[c] * _bce(z[i][c] - y[i][c] * m[c], y[i][c])
            count += 1
    expected = total / count  # mean over the 5 known cells
    loss = DistributionBalancedLoss(COUNTS)(torch.tensor(z), torch.tensor(y))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_all_known_is_the_plain_mean_of_the_issue_formula():
    w, m = _hand_weights_and_margins()
    z = [[1.5, 0.2, -0.4]]
    y = [[0.0, 1.0, 1.0]]
    expected = sum(w[c] * _bce(z[0][c] - y[0][c] * m[c], y[0][c]) for c in range(3)) / 3
    loss = DistributionBalancedLoss(COUNTS)(torch.tensor(z), torch.tensor(y))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_gradient_of_a_tail_positive_and_a_head_positive():
    w, m = _hand_weights_and_margins()
    z = torch.tensor([[-1.2, 0.3, 0.9], [0.4, -0.5, 1.1]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, math.nan, 0.0]])
    DistributionBalancedLoss(COUNTS)(z, y).backward()
    known = 5

    def sig(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x))

    # d/dz of w * BCE(z - m, 1) / K = w * (sigmoid(z - m) - 1) / K
    tail = w[0] * (sig(-1.2 - m[0]) - 1.0) / known
    head = w[2] * (sig(0.9 - m[2]) - 1.0) / known
    negative = w[2] * sig(1.1) / known  # y = 0: w * sigmoid(z) / K, no margin
    assert z.grad[0, 0].item() == pytest.approx(tail, rel=1e-5)
    assert z.grad[0, 2].item() == pytest.approx(head, rel=1e-5)
    assert z.grad[1, 2].item() == pytest.approx(negative, rel=1e-5)
    assert z.grad[1, 1].item() == 0.0  # the unknown label gives no gradient


def test_all_unknown_batch_gives_zero_connected_loss():
    z = torch.zeros(2, 3, requires_grad=True)
    loss = DistributionBalancedLoss(COUNTS)(z, torch.full((2, 3), math.nan))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(z.grad == 0)
