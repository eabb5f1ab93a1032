"""Random-weight model files in the real layouts, for tests, demos and benchmarks.

``write_random_task1`` writes a Task 1 checkpoint exactly as the published weights or the
authors' training code store it; ``write_tiny_clip`` writes an open_clip ``local-dir:`` folder
with a tiny ViT and text tower, ``write_random_clip`` one of a full-size architecture (for
benchmarks). Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 224,
            "layers": 1,
            "width": 64,
            "head_width": 32,
            "patch_size": 32,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}


def _randomise(model, seed: int) -> None:
    """Spread the outputs: timm's init leaves biases at 0 and BN statistics at 0/1, which makes
    every probability ~0.5 and hides bugs; tests need distinct, input-dependent outputs."""
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
                m.weight.copy_(1.0 + torch.randn(m.weight.shape, generator=g) * 0.2)
                m.num_batches_tracked.fill_(100)
        head = getattr(model, "head", None)
        lin = (
            head.classifier
            if head is not None and hasattr(head, "classifier")
            else model.classifier[6]
        )
        lin.weight.mul_(20.0)  # logits of order 1, so probabilities spread over (0, 1)
        if head is not None and hasattr(head, "conv_att"):
            head.conv_att.weight.mul_(50.0)  # non-uniform attention maps


def write_random_task1(
    path: Path | str,
    *,
    head: str = "csra",
    arch: str = "convnextv2_atto",
    seed: int = 0,
    layout: str = "safetensors",
    wrap: bool = False,
    prefix: bool = False,
) -> Path:
    """Write a random-weight Task 1 checkpoint in a real file layout.

    Parameters
    ----------
    path : path-like
        Output file (parent folders are created).
    head : {"csra", "mlp"}
        Which head, hence which key layout.
    arch : str
        timm convnextv2 variant (``convnextv2_atto`` keeps tests fast).
    seed : int
        Same seed, same weights.
    layout : {"safetensors", "pth"}
        safetensors (like the published file) or ``torch.save`` (like the training code).
    wrap : bool
        ``pth`` only: store ``{"model_state_dict": ..., "epoch": ...}`` like the training code.
    prefix : bool
        Prefix every key with ``module.`` (DataParallel).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import torch

    from engine.models import build_model

    if layout not in ("safetensors", "pth"):
        raise ValueError(f"layout must be 'safetensors' or 'pth', not {layout!r}")
    if wrap and layout == "safetensors":
        raise ValueError("a safetensors file holds a flat state dict; wrap=True needs layout='pth'")
    torch.manual_seed(seed)
    model = build_model(arch, head)
    _randomise(model, seed)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if prefix:
        state = {f"module.{k}": v for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"arch": arch, "head": head, "seed": str(seed)})
    else:
        obj: object = (
            {"model_state_dict": state, "epoch": 7, "best_map": 0.5, "arch": arch}
            if wrap
            else state
        )
        torch.save(obj, path)
    return path


def write_tiny_clip(folder: Path | str, *, seed: int = 0) -> Path:
    """Write a tiny open_clip model as a ``local-dir:`` folder.

    The folder holds ``open_clip_config.json`` and ``open_clip_pytorch_model.bin``, as the
    WhyXrayCLIP Hugging Face repository does. The text tower uses open_clip's built-in CLIP BPE
    tokenizer (no ``hf_tokenizer_name``), like ViT-L-14, so no tokenizer files are needed.

    Parameters
    ----------
    folder : path-like
        Output folder (created).
    seed : int
        Same seed, same weights.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    return _write_clip(Path(folder), TINY_CLIP_CONFIG, seed)


def write_random_clip(folder: Path | str, arch: str = "ViT-L-14", *, seed: int = 0) -> Path:
    """Write a random-weight open_clip model of a built-in architecture (WhyXrayCLIP: ViT-L-14)
    as a ``local-dir:`` folder, for benchmarks at full size (ViT-L-14: ~1.7 GB on disk)."""
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"unknown open_clip architecture {arch!r}")
    return _write_clip(Path(folder), {**TINY_CLIP_CONFIG, "model_cfg": cfg}, seed)


def _write_clip(folder: Path, config: dict, seed: int) -> Path:
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = config["model_cfg"]
    model = open_clip.CLIP(**cfg)
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2), "utf-8")
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder
