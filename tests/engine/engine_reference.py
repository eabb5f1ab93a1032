"""An independent, literal, one-image and one-view-at-a-time implementation of the paper's method.

Written from the method's description without the engine's batching, stacking, grey-channel shortcuts or
prototype algebra, to check the batched predictor against. Uses only the engine's model classes
(loaded with safetensors/torch directly) and open_clip.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def task1_input(x: np.ndarray, size: int) -> torch.Tensor:
    if x.dtype != np.uint8:
        flat = x.reshape(-1)
        lo, hi = np.percentile(flat[:: max(1, flat.size // 2000)], (0.5, 99.5))
        if hi > lo:
            x = ((np.clip(x, lo, hi) - lo) / (hi - lo) * 255.0).astype(np.uint8)
        elif x.max() > 0:
            x = (x / x.max() * 255.0).astype(np.uint8)
        else:
            x = np.zeros(x.shape, np.uint8)
    rgb = np.stack([x, x, x], axis=-1)
    rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    t = (rgb.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(t.transpose(2, 0, 1).copy()).unsqueeze(0)


def views(x: torch.Tensor) -> list[torch.Tensor]:
    out = [x, torch.flip(x, dims=[3])]
    for deg in (5.0, -5.0):
        a = math.radians(deg)
        theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]])
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out.append(
            F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        )
    _, _, h, w = x.shape
    nh, nw = int(1.1 * h), int(1.1 * w)
    z = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    t, left = (nh - h) // 2, (nw - w) // 2
    out.append(z[:, :, t : t + h, left : left + w])
    nh, nw = int(0.9 * h), int(0.9 * w)
    z = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    left, top = (w - nw) // 2, (h - nh) // 2
    out.append(F.pad(z, (left, w - nw - left, top, h - nh - top), mode="reflect"))
    return out


def task1_probs(
    x: np.ndarray, models: list, raw_weights: list[float], size: int, alpha: float = 0.5
) -> np.ndarray:
    """Gated Task 1 probabilities [30] for one image, one model and one view at a time."""
    t = task1_input(x, size)
    per_model = []
    with torch.no_grad():
        for m in models:
            ps = [torch.sigmoid(m(v)[0])[0].double().numpy() for v in views(t)]
            per_model.append(np.mean(ps, axis=0))
    w = np.array(raw_weights, float) / sum(raw_weights)
    p = sum(wk * pk for wk, pk in zip(w, per_model, strict=True))
    out = p.copy()
    out[1:] = p[1:] * (1.0 - p[0]) ** alpha
    return np.clip(out, 1e-6, 1 - 1e-6)


_TEXT: dict = {}


def clip_probs(
    x: np.ndarray, clip_model, tokenizer, prompts: dict[str, list[str]], classes
) -> np.ndarray:
    """Zero-shot probabilities [6] for one image, prompt by prompt."""
    f = x.astype(np.float32)
    f = f / 65535.0 if f.max() > 255 else f / 255.0
    f = cv2.resize(f, (512, 512), interpolation=cv2.INTER_LINEAR)
    t = torch.from_numpy(np.stack([f, f, f])).unsqueeze(0)
    t = F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=False)
    t = (t - CLIP_MEAN) / CLIP_STD
    with torch.no_grad():
        v = clip_model.encode_image(t)[0].double()
        v = v / v.norm()
        out = []
        for c in classes:
            sims = []
            for prompt in prompts[c]:
                key = (id(clip_model), prompt)
                if key not in _TEXT:  # one prompt at a time, remembered across images
                    _TEXT[key] = clip_model.encode_text(tokenizer([prompt]))[0].double()
                e = _TEXT[key]
                sims.append(float(v @ (e / e.norm())))
            out.append(1.0 / (1.0 + math.exp(-5.0 * float(np.mean(sims)))))
    return np.array(out)
