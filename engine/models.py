"""Task 1 classifiers: a timm ConvNeXtV2 backbone with a CSRA or an MLP head.

The module and parameter names are the state-dict layout of the published weights and of the
authors' training checkpoints, so both load with ``strict=True``:

- CSRA: ``backbone.*`` (timm, ``global_pool=""``), ``bn.*`` (BatchNorm2d), ``head.classifier.*``
  (Linear(C, 30)), ``head.conv_att.weight`` (bias-free 1x1 conv, 30 output channels);
- MLP: ``backbone.*`` (timm, average pooled), ``classifier.0/2/4/6.*`` (BatchNorm1d, Dropout,
  Linear(C, 512), ReLU, BatchNorm1d, Dropout, Linear(512, 30)).

Both models return ``(logits, attention)``; ``attention`` is None for the MLP model and the
per-class softmax-over-positions maps ``[B, 30, H, W]`` for the CSRA model.

torch and timm are imported on first use of this module, which only the predictor and training
import, lazily.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

NUM_TASK1_CLASSES = 30
CSRA_LAMBDA = 0.1
MLP_HIDDEN = 512
MLP_DROPOUT = 0.3
HEADS = ("csra", "mlp")

# timm's convnextv2 family: (stage depths, stage widths). The stem width and the per-stage block
# counts in a state dict identify the variant, so users need not say which one a file holds.
CONVNEXTV2_ARCHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "convnextv2_atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "convnextv2_femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "convnextv2_pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "convnextv2_nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "convnextv2_tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnextv2_small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "convnextv2_base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "convnextv2_large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "convnextv2_huge": ((3, 3, 27, 3), (352, 704, 1408, 2816)),
}


class CSRAHead(nn.Module):
    """Class-specific residual attention with one attention head and temperature 1.

    logits_c = w_c . mean_p(x_p) + b_c + lam * (w_c . sum_p a_{c,p} x_p + b_c), where
    a_{c,.} = softmax over positions p of (conv_att(x))_c.

    Parameters
    ----------
    in_channels : int
        Feature channels C of the backbone map.
    num_classes : int
        Number of output classes (30).
    lam : float
        Weight of the attention branch (0.1).
    """

    def __init__(
        self, in_channels: int, num_classes: int = NUM_TASK1_CLASSES, lam: float = CSRA_LAMBDA
    ):
        super().__init__()
        self.lam = lam
        self.classifier = nn.Linear(in_channels, num_classes)
        self.conv_att = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        # per-position class scores w_c . x_p: [B, K, HW] (a 1x1 conv with the classifier's
        # weights). w_c . mean_p(x_p) = mean_p(w_c . x_p) and w_c . sum_p a_{c,p} x_p =
        # sum_p a_{c,p} (w_c . x_p), so both branches read this one map: exact in real
        # arithmetic, and cheaper than pooling [B, K, C] features per class.
        score = F.conv2d(x, self.classifier.weight[:, :, None, None]).flatten(2)
        att = self.conv_att(x).flatten(2).softmax(dim=-1)  # [B, K, HW]
        base = score.mean(dim=-1) + self.classifier.bias
        att_logits = (att.to(score.dtype) * score).sum(dim=-1) + self.classifier.bias
        return base + self.lam * att_logits, att.view(b, -1, h, w)


class CSRAModel(nn.Module):
    """Backbone (no pooling) -> BatchNorm2d -> :class:`CSRAHead`."""

    head_type = "csra"

    def __init__(
        self, backbone: nn.Module, num_features: int, num_classes: int = NUM_TASK1_CLASSES
    ):
        super().__init__()
        self.backbone = backbone
        self.bn = nn.BatchNorm2d(num_features)
        self.head = CSRAHead(num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch -> normalised feature map [B, C, h, w] (what an ONNX backend runs)."""
        return self.bn(self.backbone(x))

    def classify(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Feature map -> (logits [B, K], attention [B, K, h, w])."""
        return self.head(f)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.classify(self.features(x))


class MLPModel(nn.Module):
    """Average-pooled backbone features -> BN -> Dropout -> Linear(512) -> ReLU -> BN -> Dropout -> Linear."""

    head_type = "mlp"

    def __init__(
        self, backbone: nn.Module, num_features: int, num_classes: int = NUM_TASK1_CLASSES
    ):
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Sequential(
            nn.BatchNorm1d(num_features),
            nn.Dropout(MLP_DROPOUT),
            nn.Linear(num_features, MLP_HIDDEN),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(MLP_HIDDEN),
            nn.Dropout(MLP_DROPOUT),
            nn.Linear(MLP_HIDDEN, num_classes),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch -> pooled, normalised features [B, C] (what an ONNX backend runs)."""
        return self.backbone(x)

    def classify(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled features -> (logits [B, K], None)."""
        return self.classifier(f), None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.classify(self.features(x))


def build_model(
    arch: str = "convnextv2_base", head: str = "csra", num_classes: int = NUM_TASK1_CLASSES
) -> nn.Module:
    """Build a randomly initialised Task 1 model (no download: ``pretrained=False``).

    Parameters
    ----------
    arch : str
        A timm architecture name, normally one of ``convnextv2_*``.
    head : {"csra", "mlp"}
        Classification head.
    num_classes : int
        Output classes (30 for Task 1).

    Returns
    -------
    torch.nn.Module
        :class:`CSRAModel` or :class:`MLPModel` in eval mode.
    """
    import timm

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}: expected one of {', '.join(HEADS)}")
    if head == "csra":
        backbone = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="")
        model: nn.Module = CSRAModel(backbone, backbone.num_features, num_classes)
    else:
        backbone = timm.create_model(arch, pretrained=False, num_classes=0)
        model = MLPModel(backbone, backbone.num_features, num_classes)
    return model.eval()


def detect_head(keys: Iterable[str]) -> str:
    """Say which head a state dict holds, from its key names.

    Raises
    ------
    ValueError
        If the keys match neither layout.
    """
    keys = set(keys)
    if "head.conv_att.weight" in keys or "head.classifier.weight" in keys:
        return "csra"
    if "classifier.6.weight" in keys or "classifier.0.weight" in keys:
        return "mlp"
    sample = ", ".join(sorted(keys)[:5]) or "(no keys)"
    raise ValueError(
        "not a CXR-LT Task 1 checkpoint: it has neither the CSRA head keys (head.conv_att.weight, "
        f"head.classifier.*) nor the MLP head keys (classifier.0-6.*); first keys: {sample}"
    )


def detect_arch(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Identify the convnextv2 variant from the stem width and per-stage block counts.

    Returns None when the state dict does not look like a timm ConvNeXtV2 backbone.
    """
    stem = state_dict.get("backbone.stem.0.weight")
    if stem is None:
        return None
    width = int(stem.shape[0])
    depths = []
    for stage in range(4):
        prefix = f"backbone.stages.{stage}.blocks."
        blocks = {k[len(prefix) :].split(".", 1)[0] for k in state_dict if k.startswith(prefix)}
        depths.append(len(blocks))
    for name, (arch_depths, dims) in CONVNEXTV2_ARCHS.items():
        if dims[0] == width and tuple(depths) == arch_depths:
            # convnextv2 has GRN ("...mlp.grn.weight"); convnext v1 of equal shape does not.
            if any(".grn." in k for k in state_dict):
                return name
    return None
