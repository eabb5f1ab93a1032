"""Preprocessing of the source array, exactly as the published weights were trained.

Task 1: non-uint8 arrays are stretched to uint8 between the 0.5th and 99.5th percentiles of a
strided sample of ~2000 pixels; grey -> 3 identical channels; ``cv2.resize`` to 512 x 512
(INTER_LINEAR); / 255; ImageNet mean and std.

Task 2 (CLIP): float32 / 65535 if the max is above 255, else / 255; ``cv2.resize`` to 512 x 512
(INTER_LINEAR); 3 channels; bilinear resize (align_corners=False) to the CLIP input size; OpenAI
CLIP mean and std.

The resizes are done on one grey channel: the three channels are identical and resizing is
per channel, so the result is the same and three times cheaper. The last steps (scale, 3
channels, normalise, CLIP's second resize) run in torch on the compute device, see
:func:`task1_tensor` and :func:`clip_tensor`; the numpy parts run in the decode threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MODEL_SIZE = 512
CLIP_SIZE = 224


def _check(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[-1] in (3, 4):
        raise ValueError(f"expected a 2-D grey source array, got shape {x.shape} (colour image?)")
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"expected a 2-D grey source array, got shape {x.shape}")
    return x


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Stretch a source array to uint8 as the training code did (uint8 input is kept as is).

    Parameters
    ----------
    x : numpy.ndarray
        2-D source array, any numeric dtype.

    Returns
    -------
    numpy.ndarray
        uint8 array of the same shape.
    """
    x = _check(x)
    if x.dtype == np.uint8:
        return x
    flat = x.reshape(-1)
    lo, hi = np.percentile(flat[:: max(1, flat.size // 2000)], (0.5, 99.5))
    if hi > lo:
        return ((np.clip(x, lo, hi) - lo) / (hi - lo) * 255.0).astype(np.uint8)
    mx = x.max()
    if mx == 0:
        return np.zeros(x.shape, np.uint8)
    return (x / mx * 255.0).astype(np.uint8)


def task1_grey(x: np.ndarray, size: int = MODEL_SIZE) -> np.ndarray:
    """uint8 stretch and ``cv2.resize`` (INTER_LINEAR) to size x size: one grey uint8 channel."""
    u8 = to_uint8(x)
    return cv2.resize(np.ascontiguousarray(u8), (size, size), interpolation=cv2.INTER_LINEAR)


def clip_grey(x: np.ndarray, size: int = MODEL_SIZE) -> np.ndarray:
    """Scale to [0, 1] (/65535 if max > 255 else /255) and resize to size x size: float32 grey."""
    x = _check(x).astype(np.float32)
    x = x / 65535.0 if x.max() > 255 else x / 255.0
    return cv2.resize(x, (size, size), interpolation=cv2.INTER_LINEAR)


def task1_tensor(grey_u8: torch.Tensor) -> torch.Tensor:
    """[N, H, W] uint8 -> [N, 3, H, W] float32 normalised with the ImageNet mean and std."""
    import torch

    x = grey_u8.float().div_(255.0).unsqueeze(1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def clip_tensor(grey: torch.Tensor, size: int = CLIP_SIZE) -> torch.Tensor:
    """[N, H, W] float32 in [0, 1] -> [N, 3, size, size] bilinear-resized, CLIP-normalised."""
    import torch
    import torch.nn.functional as F

    x = F.interpolate(
        grey.float().unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False
    )
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
