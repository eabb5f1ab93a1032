"""An independent, literal, one-image and one-view-at-a-time implementation of the paper's method.

Written from the method's description (docs/engine.md, "The Task 1 models") without the engine's
batching, stacking, grey-channel shortcuts or score-map algebra, to check the batched predictor
against. The Task 1 models are not the engine's: :class:`RawTask1` reads the checkpoint's tensors
itself and computes the heads from them in plain ``torch.nn.functional`` calls (the ConvNeXtV2
final LayerNorm, BatchNorm, Linear, ReLU, the CSRA attention); only the backbone's stem and stages
come from timm. The zero-shot part uses open_clip directly.
"""

from __future__ import annotations

import math
from pathlib import Path

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


CSRA_LAMBDA = 0.1  # weight of the attention branch
BN_EPS = 1e-5  # torch BatchNorm default, as the authors' models use
LN_EPS = 1e-6  # ConvNeXt's LayerNorm


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, read with safetensors / torch.load (not the engine's loader)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model_state_dict", state)
    return {k.removeprefix("module."): v.double() for k, v in state.items()}


class RawTask1:
    """A Task 1 model computed from its state-dict tensors: ``x -> (logits [1, 30], att | None)``.

    Layout (docs/engine.md): ``backbone.*`` is a timm ConvNeXtV2 whose last step is a LayerNorm
    over channels (``backbone.head.norm.*``); for the CSRA model it is applied at every position,
    then ``bn.*`` (BatchNorm2d) and the CSRA head; for the MLP model the feature map is
    average-pooled first, then normalised, then ``classifier.0`` BatchNorm1d, ``.2`` Linear, ReLU,
    ``.4`` BatchNorm1d, ``.6`` Linear (``.1`` and ``.5`` are dropouts: identity at inference).
    The heads run in float64 so that the reference's own rounding is negligible.
    """

    def __init__(self, path: Path, arch: str = "convnextv2_atto"):
        import timm

        self.t = read_state(path)
        self.head = "csra" if "head.conv_att.weight" in self.t else "mlp"
        self.trunk = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="")
        trunk = {
            k.removeprefix("backbone."): v.float()
            for k, v in self.t.items()
            if k.startswith("backbone.")
        }
        self.trunk.load_state_dict(trunk, strict=True)
        self.trunk.eval()

    def _bn(self, x: torch.Tensor, name: str) -> torch.Tensor:
        t = self.t
        return F.batch_norm(
            x,
            t[f"{name}.running_mean"],
            t[f"{name}.running_var"],
            t[f"{name}.weight"],
            t[f"{name}.bias"],
            training=False,
            eps=BN_EPS,
        )

    def _layer_norm(self, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm over the last (channel) dimension with the backbone's final norm."""
        w, b = self.t["backbone.head.norm.weight"], self.t["backbone.head.norm.bias"]
        return F.layer_norm(x, (x.shape[-1],), w, b, LN_EPS)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.no_grad():
            fmap = self.trunk.forward_features(x).double()  # [1, C, h, w], before the final norm
            if self.head == "csra":
                return self._csra(fmap)
            return self._mlp(fmap), None

    def _csra(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """logit_c = w_c . mean_p x_p + b_c + lam (w_c . sum_p a_cp x_p + b_c), a_c. = softmax_p
        of the attention conv's class-c response; computed with the per-class pooled features."""
        t = self.t
        _, c, h, w = fmap.shape
        f = self._layer_norm(fmap.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # per position
        f = self._bn(f, "bn")
        xs = f.flatten(2).transpose(1, 2)[0]  # [P, C]: one feature vector per position
        weight, bias = t["head.classifier.weight"], t["head.classifier.bias"]  # [K, C], [K]
        att_w = t["head.conv_att.weight"].reshape(-1, c)  # [K, C] 1x1 conv, no bias
        base = F.linear(xs.mean(dim=0), weight, bias)  # [K]
        a = torch.softmax(xs @ att_w.T, dim=0)  # [P, K]: over positions, per class
        per_class = a.T @ xs  # [K, C]: class c's attention-pooled feature
        att_logit = (per_class * weight).sum(dim=1) + bias
        logits = base + CSRA_LAMBDA * att_logit
        return logits[None], a.T.reshape(1, -1, h, w).float()

    def _mlp(self, fmap: torch.Tensor) -> torch.Tensor:
        f = self._layer_norm(fmap.mean(dim=(2, 3)))  # average pool, then the final norm
        z = self._bn(f, "classifier.0")
        z = F.relu(F.linear(z, self.t["classifier.2.weight"], self.t["classifier.2.bias"]))
        z = self._bn(z, "classifier.4")
        return F.linear(z, self.t["classifier.6.weight"], self.t["classifier.6.bias"])


def task1_probs(
    x: np.ndarray, models: list, raw_weights: list[float], size: int, alpha: float = 0.5
) -> np.ndarray:
    """Gated Task 1 probabilities [30] for one image, one model and one view at a time."""
    t = task1_input(x, size)
    per_model = []
    with torch.no_grad():
        for m in models:
            ps = [torch.sigmoid(m(v)[0].double())[0].numpy() for v in views(t)]
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


def reference_outputs(
    arrays: list[np.ndarray], csra_file: Path, mlp_file: Path, clip_dir: Path, size: int
) -> tuple[np.ndarray, np.ndarray, list[RawTask1]]:
    """Paper-mode Task 1 probabilities (CSRA weight 1.5, MLP 1.0), zero-shot probabilities and
    the raw models, for each array."""
    import open_clip

    from engine.classes import TASK2_CLASSES
    from engine.zeroshot import load_prompts

    models = [RawTask1(csra_file), RawTask1(mlp_file)]
    clip = open_clip.create_model(f"local-dir:{clip_dir}").eval()
    tok = open_clip.get_tokenizer(f"local-dir:{clip_dir}")
    prompts = load_prompts()
    t1 = np.stack([task1_probs(a, models, [1.5, 1.0], size) for a in arrays])
    zs = np.stack([clip_probs(a, clip, tok, prompts, TASK2_CLASSES) for a in arrays])
    return t1, zs, models
