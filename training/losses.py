"""Distribution-Balanced (DB) loss for long-tailed multi-label training (paper, section 3).

For class ``c`` with ``n_c`` positive training images (clipped to at least 1 so that an unseen
class does not divide by zero), logit ``z_c`` and label ``y_c`` in {0, 1}:

* effective-number weight: ``eff_c = (1 - beta) / (1 - beta**n_c)`` with ``beta = 0.9999``;
  ``w_c = (eff_c / mean_k eff_k) ** alpha`` (normalised to mean 1, then raised to ``alpha``,
  default 0.5), so rare classes weigh more;
* positive margin: ``z'_c = z_c - y_c * m_c`` with
  ``m_c = max_margin * (E_c - E_min) / (E_max - E_min)`` where ``E_c = (1 - beta**n_c) / (1 - beta)``
  is the effective number of samples (``1 / eff_c``) and ``max_margin = 0.2``. The most frequent
  class gets the full 0.2, the rarest gets 0, and all margins are 0 when every class has the same
  count. This is the authors' public training code's margin (min-max normalised inverse
  effective-number weight) without its 1e-6 guards;
* ``loss = mean over known (image, class) cells of w_c * BCEWithLogits(z'_c, y_c)``. Unknown labels
  (NaN in the target, or 0 in an explicit mask) are left out of both the sum and the count, so
  with every label known this is exactly the plain mean over all (image, class) cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DB_BETA = 0.9999
DB_ALPHA = 0.5
DB_MAX_MARGIN = 0.2


def _counts(class_counts: Sequence[float] | np.ndarray) -> np.ndarray:
    n = np.asarray(class_counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0:
        raise ValueError("class_counts must be a non-empty 1-D sequence")
    # A class without positives would give eff = (1 - beta) / 0; treat it as seen once.
    return np.clip(n, 1.0, None)


def db_weights(
    class_counts: Sequence[float] | np.ndarray, beta: float = DB_BETA, alpha: float = DB_ALPHA
) -> np.ndarray:
    """Per-class DB weights ``w_c = (eff_c / mean(eff)) ** alpha``.

    Parameters
    ----------
    class_counts : sequence of float
        Positive training images per class, ``n_c`` (values below 1 count as 1).
    beta : float
        Effective-number decay.
    alpha : float
        Rebalancing strength (0 gives uniform weights).

    Returns
    -------
    numpy.ndarray
        float64 weights, one per class.
    """
    n = _counts(class_counts)
    eff = (1.0 - beta) / (1.0 - np.power(beta, n))
    return np.power(eff / eff.mean(), alpha)


def db_margins(
    class_counts: Sequence[float] | np.ndarray,
    beta: float = DB_BETA,
    max_margin: float = DB_MAX_MARGIN,
) -> np.ndarray:
    """Per-class positive margins ``m_c`` in ``[0, max_margin]``, larger for frequent classes.

    Parameters
    ----------
    class_counts : sequence of float
        Positive training images per class.
    beta : float
        Effective-number decay.
    max_margin : float
        Margin of the most frequent class.

    Returns
    -------
    numpy.ndarray
        float64 margins; all zero when every class has the same count.
    """
    n = _counts(class_counts)
    effective_number = (1.0 - np.power(beta, n)) / (1.0 - beta)
    span = effective_number.max() - effective_number.min()
    if span <= 0:
        return np.zeros_like(effective_number)
    return max_margin * (effective_number - effective_number.min()) / span


class DistributionBalancedLoss(nn.Module):
    """DB loss as defined in the module docstring.

    Parameters
    ----------
    class_counts : sequence of float
        Positive training images per class (in the model's output order).
    beta, alpha, max_margin : float
        See :func:`db_weights` and :func:`db_margins`.
    """

    def __init__(
        self,
        class_counts: Sequence[float] | np.ndarray,
        beta: float = DB_BETA,
        alpha: float = DB_ALPHA,
        max_margin: float = DB_MAX_MARGIN,
    ) -> None:
        super().__init__()
        self.register_buffer(
            "weight", torch.tensor(db_weights(class_counts, beta, alpha), dtype=torch.float32)
        )
        self.register_buffer(
            "margin", torch.tensor(db_margins(class_counts, beta, max_margin), dtype=torch.float32)
        )

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean DB loss over the known cells of a ``[B, C]`` batch.

        Parameters
        ----------
        logits : torch.Tensor
            ``[B, C]`` raw scores.
        targets : torch.Tensor
            ``[B, C]`` labels 1/0, NaN for unknown.
        mask : torch.Tensor, optional
            ``[B, C]`` 1 where the label is known; combined with the NaN test.

        Returns
        -------
        torch.Tensor
            Scalar loss; 0 (still connected to ``logits``) when no label is known.
        """
        logits = logits.float()
        known = ~torch.isnan(targets)
        if mask is not None:
            known = known & (mask > 0)
        y = torch.where(known, targets, torch.zeros_like(targets)).float()
        shifted = logits - y * self.margin
        bce = F.binary_cross_entropy_with_logits(shifted, y, reduction="none")
        cell = bce * self.weight * known.float()
        # clamp instead of a branch: no host sync per step, and an all-unknown batch gives 0.
        return cell.sum() / known.sum().clamp(min=1)
