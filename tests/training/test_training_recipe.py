"""The issue's training recipe: defaults, the two phases' parameter groups and LRs, EMA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from training.train import EMA, TrainConfig, _build, _make_optimizer, lr_factor


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(labels=Path("l.csv"), images=Path("i"), out=Path("o"), **kw)


def test_defaults_are_the_issue_and_paper_values():
    from cxrlt_desktop.cli import build_parser

    cfg = _cfg()
    assert (cfg.lr_backbone, cfg.lr_head) == (1.5e-5, 1.5e-4)
    assert (cfg.ema_decay, cfg.grad_clip) == (0.9999, 1.0)
    assert (cfg.db_beta, cfg.db_alpha, cfg.db_max_margin) == (0.9999, 0.5, 0.2)
    assert (cfg.cas_threshold, cfg.cas_max_repeat) == (0.01, 10.0)
    # the command line gives the same values when nothing is passed
    args = build_parser().parse_args(["train", "--labels", "l", "--images", "i", "--out", "o"])
    assert (args.lr_backbone, args.lr_head, args.ema_decay) == (1.5e-5, 1.5e-4, 0.9999)
    assert (args.head, args.device, args.resume) == ("csra", "auto", False)


@pytest.mark.parametrize("head", ["csra", "mlp"])
def test_warmup_trains_the_head_only_then_two_groups_with_their_lrs(head):
    cfg = _cfg(arch="convnextv2_atto", head=head, drop_path=0.0)
    model = _build(cfg)
    backbone = {id(p) for n, p in model.named_parameters() if n.startswith("backbone.")}
    others = {id(p) for n, p in model.named_parameters() if not n.startswith("backbone.")}
    assert backbone and others

    opt = _make_optimizer(model, cfg, "warmup")
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 1
    assert opt.param_groups[0]["lr"] == cfg.lr_warmup
    assert {id(p) for p in opt.param_groups[0]["params"]} == others
    assert all(not p.requires_grad for p in model.parameters() if id(p) in backbone)

    opt = _make_optimizer(model, cfg, "finetune")
    bb, hd = opt.param_groups
    assert (bb["lr"], hd["lr"]) == (1.5e-5, 1.5e-4)
    assert {id(p) for p in bb["params"]} == backbone
    assert {id(p) for p in hd["params"]} == others
    assert all(p.requires_grad for p in model.parameters())


def test_phase2_schedule():
    # one fine-tuning epoch: full LR
    assert lr_factor(0, 1) == 1.0
    # 20 epochs: 2 linear warm-up epochs, cosine from the full LR, floor 1 %
    assert [lr_factor(e, 20) for e in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert lr_factor(11, 20) == pytest.approx(0.5)  # halfway: t = 9 / 18, 0.5 (1 + cos(pi / 2))
    assert lr_factor(19, 20) == 0.01


def test_ema_blends_with_the_ramped_decay_and_caps_at_0_9999():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = EMA(model, 0.9999)
    start = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    assert ema.current_decay() == pytest.approx(1 / 10)  # (1 + 0) / (10 + 0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, 0.1 * start + 0.9 * model.weight)
    assert ema.current_decay() == pytest.approx(2 / 11)
    ema.updates = 10**7
    assert ema.current_decay() == 0.9999
    before = ema.module.weight.detach().clone()
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, 0.9999 * before + 0.0001 * model.weight)
    assert not any(p.requires_grad for p in ema.module.parameters())
