"""The six test-time views of the authors' code, on a normalised [B, 3, H, W] tensor.

identity; horizontal flip; rotation by +5 and -5 degrees (``affine_grid`` + ``grid_sample``,
bilinear, reflection padding, align_corners=False); zoom-in 1.1 (bilinear resize to
int(1.1 H) x int(1.1 W), centre crop at ((nH - H) // 2, (nW - W) // 2)); zoom-out 0.9 (bilinear
resize to int(0.9 H) x int(0.9 W), reflect padding, left/top (W - nW) // 2, (H - nH) // 2 and the
rest right/bottom).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

VIEWS = ("identity", "hflip", "rot+5", "rot-5", "zoom1.1", "zoom0.9")


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate about the centre with theta = [[cos a, -sin a, 0], [sin a, cos a, 0]]."""
    a = math.radians(degrees)
    theta = torch.tensor(
        [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
        dtype=x.dtype,
        device=x.device,
    )
    theta = theta.unsqueeze(0).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom in (factor > 1, centre crop) or out (factor < 1, reflect padding), same output size."""
    h, w = x.shape[-2:]
    nh, nw = int(factor * h), int(factor * w)
    y = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    if factor >= 1:
        top, left = (nh - h) // 2, (nw - w) // 2
        return y[..., top : top + h, left : left + w]
    left, top = (w - nw) // 2, (h - nh) // 2
    return F.pad(y, (left, w - nw - left, top, h - nh - top), mode="reflect")


def view(x: torch.Tensor, name: str) -> torch.Tensor:
    """One named view of a batch."""
    if name == "identity":
        return x
    if name == "hflip":
        return torch.flip(x, dims=[3])
    if name == "rot+5":
        return rotate(x, 5.0)
    if name == "rot-5":
        return rotate(x, -5.0)
    if name == "zoom1.1":
        return zoom(x, 1.1)
    if name == "zoom0.9":
        return zoom(x, 0.9)
    raise ValueError(f"unknown TTA view {name!r}; known: {', '.join(VIEWS)}")


def stack_views(x: torch.Tensor, views: tuple[str, ...] = VIEWS) -> torch.Tensor:
    """All views of a batch in one tensor, view-major: [len(views) * B, 3, H, W].

    ``out.view(len(views), B, ...)`` recovers the views.
    """
    return torch.cat([view(x, v).contiguous() for v in views], dim=0)
