"""End-to-end CPU training on a tiny synthetic set: checkpoint, manifest, resume, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import average_precision_score

from cxrlt_desktop.cli import main
from engine.checkpoints import load_task1_model
from engine.classes import TASK1_CLASSES
from training.data import sha256_file
from training.progress import TrainEpoch, TrainInfo
from training.train import TrainConfig, _build, _init_from, train

torch.set_num_threads(1)
COMMON = [
    "--arch",
    "convnextv2_atto",
    "--image-size",
    "64",
    "--batch-size",
    "4",
    "--device",
    "cpu",
    "--workers",
    "0",
]


def _reference_input(path: Path) -> np.ndarray:
    """The Task 1 preprocessing written out (percentile stretch, resize, ImageNet normalisation)."""
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    flat = arr.ravel()
    lo, hi = np.percentile(flat[:: max(1, flat.size // 2000)], (0.5, 99.5))
    u8 = ((np.clip(arr, lo, hi) - lo) / (hi - lo) * 255.0).astype(np.uint8)
    g = cv2.resize(u8, (64, 64), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return (g[None] - mean) / std


def _independent_map(loaded, val_images: Path, val_labels: np.ndarray) -> float:
    """The checkpoint's validation mAP with the preprocessing written out and scikit-learn."""
    n = len(val_labels)
    x = torch.from_numpy(
        np.stack([_reference_input(val_images / f"img{i:03d}.png") for i in range(n)])
    )
    loaded.model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(loaded.model(x)[0]).numpy()
    aps = []
    for j in range(30):
        ok = ~np.isnan(val_labels[:, j])
        if np.any(val_labels[ok, j] == 1):
            aps.append(average_precision_score(val_labels[ok, j], probs[ok, j]))
    return float(np.mean(aps))


def test_one_epoch_cli_training_writes_a_loadable_checkpoint_and_true_manifest(
    tmp_path, make_set, capsys
):
    train_csv, train_images, _ = make_set(tmp_path / "train", n=16, seed=0)
    val_csv, val_images, val_labels = make_set(tmp_path / "val", n=8, seed=1)
    out = tmp_path / "run"
    rc = main(
        ["train", "--labels", str(train_csv), "--images", str(train_images), "--out", str(out),
         "--val-labels", str(val_csv), "--val-images", str(val_images), "--epochs", "1", "--demo", *COMMON]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    loaded = load_task1_model(out / "best.safetensors", arch=None)  # strict=True inside
    assert (loaded.head, loaded.arch) == ("csra", "convnextv2_atto")

    man = json.loads((out / "manifest.json").read_text())
    assert man["classes"] == list(TASK1_CLASSES)
    assert (man["arch"], man["head"], man["image_size"], man["demo"]) == (
        "convnextv2_atto",
        "csra",
        64,
        True,
    )
    assert man["data"]["labels_sha256"] == sha256_file(train_csv)
    assert man["data"]["val_labels_sha256"] == sha256_file(val_csv)
    assert (man["data"]["n_train"], man["data"]["n_val"]) == (16, 8)
    assert man["checkpoint_sha256"] == sha256_file(out / "best.safetensors")
    assert man["metrics"]["epoch"] == 1

    # the manifest's validation mAP is the checkpoint's own, recomputed independently
    assert man["metrics"]["val_mAP"] == pytest.approx(
        _independent_map(loaded, val_images, val_labels), abs=1e-5
    )

    # safetensors metadata says what it is, too
    from safetensors import safe_open

    with safe_open(str(out / "best.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["arch"] == "convnextv2_atto" and json.loads(meta["classes"]) == list(TASK1_CLASSES)

    # a second run into the same folder without --resume is refused, naming the folder
    rc = main(
        [
            "train",
            "--labels",
            str(train_csv),
            "--images",
            str(train_images),
            "--out",
            str(out),
            *COMMON,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and str(out) in err and "--resume" in err


def _cfg(tmp_path: Path, csv_path: Path, images: Path, out: str, **kw) -> TrainConfig:
    base = dict(
        labels=csv_path, images=images, out=tmp_path / out, arch="convnextv2_atto", image_size=64,
        epochs=3, warmup_epochs=1, batch_size=4, device="cpu", workers=0, val_fraction=0.25,
        head="mlp",
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_resume_continues_from_the_last_epoch_and_matches_an_uninterrupted_run(tmp_path, make_set):
    csv_path, images, _ = make_set(tmp_path / "data", n=16, seed=3)
    straight = [
        r for r in train(_cfg(tmp_path, csv_path, images, "a")) if isinstance(r, TrainEpoch)
    ]
    assert [r.phase for r in straight] == ["warmup", "finetune", "finetune"]

    # interrupted after epoch 2 (the generator is closed, as Ctrl-C or a crash would stop it)
    gen = train(_cfg(tmp_path, csv_path, images, "b"))
    epochs = 0
    for r in gen:
        if isinstance(r, TrainEpoch):
            epochs += 1
            if epochs == 2:
                break
    gen.close()
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["sampler"]["epoch"] == 1 and state["ema"] is not None

    resumed = list(train(_cfg(tmp_path, csv_path, images, "b", resume=True)))
    infos = [r.message for r in resumed if isinstance(r, TrainInfo)]
    assert any("after epoch 2" in m for m in infos)
    eps = [r for r in resumed if isinstance(r, TrainEpoch)]
    assert [r.epoch for r in eps] == [3]  # only the missing epoch ran

    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert b["epoch"] == 3 and len(b["history"]) == 3
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-5, atol=1e-6)
    for k, v in a["ema"]["model"].items():
        torch.testing.assert_close(b["ema"]["model"][k], v, rtol=1e-5, atol=1e-6)
    assert eps[0].val_mAP == pytest.approx(straight[2].val_mAP, abs=1e-6)
    # the resumed MLP checkpoint still loads strictly in the engine
    assert load_task1_model(tmp_path / "b" / "best.safetensors", arch=None).head == "mlp"


def test_resume_without_state_and_mismatched_settings_are_refused(tmp_path, make_set, capsys):
    csv_path, images, _ = make_set(tmp_path / "data", n=16, seed=4)
    out = tmp_path / "none"
    rc = main(
        [
            "train",
            "--labels",
            str(csv_path),
            "--images",
            str(images),
            "--out",
            str(out),
            "--resume",
            *COMMON,
        ]
    )
    assert rc == 1 and "nothing to resume" in capsys.readouterr().err
    list(train(_cfg(tmp_path, csv_path, images, "c", epochs=1)))
    with pytest.raises(Exception, match="head"):
        list(train(_cfg(tmp_path, csv_path, images, "c", epochs=2, resume=True, head="csra")))
    # edited labels (one cell flipped) would change the split and the sampler: refused too
    text = csv_path.read_text().splitlines()
    cells = text[1].split(",")
    cells[3] = "0" if cells[3] == "1" else "1"  # the Normal column, known in every row
    csv_path.write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    with pytest.raises(Exception, match="other label files"):
        list(train(_cfg(tmp_path, csv_path, images, "c", epochs=2, resume=True)))


def test_init_loads_a_published_layout_checkpoint(tmp_path):
    from engine.random_models import write_random_task1

    ckpt = write_random_task1(
        tmp_path / "init.safetensors", head="csra", arch="convnextv2_atto", seed=9
    )
    cfg = TrainConfig(
        labels=ckpt,
        images=tmp_path,
        out=tmp_path,
        arch="convnextv2_atto",
        head="csra",
        drop_path=0.0,
    )
    model = _build(cfg)
    msg = _init_from(model, ckpt)
    ref = load_file(str(ckpt))
    assert f"{len(ref)} of {len(ref)} tensors" in msg
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ref[k])
    # an MLP model takes the backbone and starts its head fresh
    mlp = _build(
        TrainConfig(labels=ckpt, images=tmp_path, out=tmp_path, arch="convnextv2_atto", head="mlp")
    )
    msg = _init_from(mlp, ckpt)
    assert "head tensors start fresh" in msg
    torch.testing.assert_close(
        mlp.state_dict()["backbone.stem.0.weight"], ref["backbone.stem.0.weight"]
    )
    # a different architecture is refused with the reason
    other = _build(
        TrainConfig(
            labels=ckpt, images=tmp_path, out=tmp_path, arch="convnextv2_femto", head="csra"
        )
    )
    with pytest.raises(Exception, match="backbone tensors match"):
        _init_from(other, ckpt)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path, make_set):
    csv_path, images, _ = make_set(tmp_path / "data", n=16, seed=5)
    val_csv, val_images, val_labels = make_set(tmp_path / "val", n=8, seed=6)
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "cxrlt_desktop", "train", "--labels", str(csv_path), "--images", str(images),
        "--val-labels", str(val_csv), "--val-images", str(val_images),
        "--out", str(out), "--epochs", "3", "--warmup-epochs", "1", "--head", "csra",
        "--batch-size", "2", *COMMON[:4], "--device", "cpu", "--workers", "0",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    man = json.loads((out / "manifest.json").read_text())
    assert man["world_size"] == 2
    loaded = load_task1_model(out / "best.safetensors", arch=None)
    assert loaded.arch == "convnextv2_atto" and loaded.head == "csra"
    # The CSRA head's BatchNorm statistics are averaged over the two processes (no SyncBatchNorm
    # off CUDA), so the mAP they validated together is the saved checkpoint's own.
    assert man["metrics"]["val_mAP"] == pytest.approx(
        _independent_map(loaded, val_images, val_labels), abs=1e-5
    )
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # the result line is printed once (rank 0 only)
    assert proc.stdout.count("best epoch") == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_one_epoch_on_cuda_with_amp(tmp_path, make_set):
    csv_path, images, _ = make_set(tmp_path / "data", n=16, seed=6)
    cfg = _cfg(tmp_path, csv_path, images, "gpu", device="cuda", epochs=2, head="csra")
    records = [r for r in train(cfg) if isinstance(r, TrainEpoch)]
    assert len(records) == 2 and all(np.isfinite(r.train_loss) for r in records)
    assert load_task1_model(tmp_path / "gpu" / "best.safetensors", arch=None).head == "csra"


def test_a_non_finite_step_is_skipped_and_a_resume_survives_old_nan_history(
    tmp_path, make_set, monkeypatch
):
    import training.train as tr

    csv_path, images, _ = make_set(tmp_path / "data", n=16, seed=3)
    real = tr.DistributionBalancedLoss.forward
    calls = [0]

    def forward(self, *a, **k):
        calls[0] += 1
        out = real(self, *a, **k)
        return out * float("nan") if calls[0] == 2 else out  # one NaN training step

    monkeypatch.setattr(tr.DistributionBalancedLoss, "forward", forward)
    recs = list(train(_cfg(tmp_path, csv_path, images, "n", epochs=2)))
    epochs = [r for r in recs if isinstance(r, TrainEpoch)]
    assert epochs[0].skipped_steps == 1 and np.isfinite(epochs[0].train_loss)
    assert epochs[1].skipped_steps == 0
    history = json.loads((tmp_path / "n" / "history.json").read_text())
    assert [h["skipped_steps"] for h in history] == [1, 0]
    # A state saved by an earlier version with NaN in its history resumes (JSON gets null).
    state = torch.load(tmp_path / "n" / "last.pt", weights_only=True)
    state["history"][0]["train_loss"] = float("nan")
    torch.save(state, tmp_path / "n" / "last.pt")
    monkeypatch.setattr(tr.DistributionBalancedLoss, "forward", real)
    resumed = list(train(_cfg(tmp_path, csv_path, images, "n", epochs=3, resume=True)))
    assert [r.epoch for r in resumed if isinstance(r, TrainEpoch)] == [3]
    history = json.loads((tmp_path / "n" / "history.json").read_text())
    assert history[0]["train_loss"] is None and len(history) == 3


def test_a_non_finite_forward_pass_leaves_batchnorm_statistics_finite(
    tmp_path, make_set, monkeypatch
):
    """An overflowing activation in one step would write NaN into the CSRA head's BatchNorm
    running statistics for good (every later validation NaN, a NaN checkpoint saved)."""
    import training.train as tr

    csv_path, images, _ = make_set(tmp_path / "data", n=16, seed=3)
    real = tr._forward_logits
    calls = [0]

    def forward(model, x):
        if model.training:
            calls[0] += 1
            if calls[0] == 2:
                x = x.clone()
                x[0, 0, 0, 0] = float("inf")
        return real(model, x)

    monkeypatch.setattr(tr, "_forward_logits", forward)
    recs = list(train(_cfg(tmp_path, csv_path, images, "bn", epochs=2, head="csra")))
    epochs = [r for r in recs if isinstance(r, TrainEpoch)]
    assert epochs[0].skipped_steps == 1
    assert all(r.val_mAP is not None for r in epochs)
    best = load_file(tmp_path / "bn" / "best.safetensors")
    assert all(torch.isfinite(v).all() for v in best.values() if v.is_floating_point())
