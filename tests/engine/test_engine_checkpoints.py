"""Checkpoint loading: both layouts x both file kinds x wrappers/prefixes, bad files, unsafe pickles."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import load_file

from engine.checkpoints import CheckpointError, load_task1_model, read_state_dict
from engine.models import build_model, detect_arch
from engine.random_models import write_random_task1


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The random weights of each head, read back with safetensors directly."""
    d = tmp_path_factory.mktemp("ref")
    return {
        h: load_file(str(write_random_task1(d / f"{h}.safetensors", head=h, seed=5)))
        for h in ("csra", "mlp")
    }


@pytest.mark.parametrize("head", ["csra", "mlp"])
@pytest.mark.parametrize(
    "layout,wrap,prefix",
    [
        ("safetensors", False, False),
        ("safetensors", False, True),
        ("pth", False, False),
        ("pth", True, False),
        ("pth", True, True),
        ("pth", False, True),
    ],
)
def test_round_trip(tmp_path, references, head, layout, wrap, prefix):
    path = write_random_task1(
        tmp_path / f"m.{layout}", head=head, seed=5, layout=layout, wrap=wrap, prefix=prefix
    )
    raw = torch.load(path, weights_only=True) if layout == "pth" else load_file(str(path))
    if wrap:
        assert set(raw) >= {"model_state_dict", "epoch"}
        raw = raw["model_state_dict"]
    assert all(k.startswith("module.") for k in raw) == prefix
    loaded = load_task1_model(path, arch=None)
    assert loaded.head == head and loaded.arch == "convnextv2_atto"
    ref = references[head]
    state = loaded.model.state_dict()
    assert set(state) == set(ref)
    for k, v in ref.items():
        assert torch.equal(state[k], v), k
    # and the loaded model computes what a model given these weights computes
    model = build_model("convnextv2_atto", head)
    model.load_state_dict(ref, strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x)[0], model.eval()(x)[0])


def test_csra_keys_are_the_published_layout(references):
    keys = set(references["csra"])
    assert {
        "bn.weight",
        "bn.running_mean",
        "head.classifier.weight",
        "head.classifier.bias",
        "head.conv_att.weight",
    } <= keys
    assert "head.conv_att.bias" not in keys
    assert references["csra"]["head.conv_att.weight"].shape == (30, 320, 1, 1)
    assert all(k.startswith(("backbone.", "bn.", "head.")) for k in keys)
    mlp = set(references["mlp"])
    assert {f"classifier.{i}.weight" for i in (0, 2, 4, 6)} <= mlp
    assert references["mlp"]["classifier.2.weight"].shape == (512, 320)
    assert references["mlp"]["classifier.6.weight"].shape == (30, 512)
    assert all(k.startswith(("backbone.", "classifier.")) for k in mlp)


def test_arch_detection_for_every_convnextv2():
    import timm

    from engine.models import CONVNEXTV2_ARCHS

    assert set(CONVNEXTV2_ARCHS) == set(timm.list_models("convnextv2_*"))
    for name in ("convnextv2_atto", "convnextv2_nano", "convnextv2_tiny", "convnextv2_small"):
        m = timm.create_model(name, pretrained=False, num_classes=0)
        sd = {f"backbone.{k}": v for k, v in m.state_dict().items()}
        assert detect_arch(sd) == name
    assert detect_arch({"backbone.conv1.weight": torch.zeros(1)}) is None


def test_explicit_arch_mismatch_is_an_error(tmp_path):
    path = write_random_task1(tmp_path / "a.safetensors", head="csra")
    with pytest.raises(
        CheckpointError, match="convnextv2_atto backbone but --task1-arch convnextv2_nano"
    ):
        load_task1_model(path, arch="convnextv2_nano", strict_arch=True)
    assert (
        load_task1_model(path, arch="convnextv2_atto", strict_arch=True).arch == "convnextv2_atto"
    )
    # not strict (the config default): the file's architecture wins
    assert load_task1_model(path, arch="convnextv2_base").arch == "convnextv2_atto"


def test_wrong_files_get_clear_messages(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError) as e:
        read_state_dict(text)
    assert str(e.value).startswith(f"{text}: not a safetensors or torch checkpoint")

    with pytest.raises(CheckpointError, match="file not found"):
        read_state_dict(tmp_path / "nope.safetensors")

    # a plain timm classifier: no CXR-LT head keys
    plain = tmp_path / "plain.pth"
    torch.save(build_model("convnextv2_atto", "mlp").backbone.state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a CXR-LT Task 1 checkpoint"):
        load_task1_model(plain)

    # a CSRA file with a renamed and a missing key: both named
    sd = load_file(str(write_random_task1(tmp_path / "c.safetensors", head="csra")))
    sd["head.attention.weight"] = sd.pop("head.conv_att.weight")
    del sd["bn.running_var"]
    broken = tmp_path / "broken.pth"
    torch.save(sd, broken)
    with pytest.raises(CheckpointError) as e:
        load_task1_model(broken)
    msg = str(e.value)
    assert "missing keys [bn.running_var, head.conv_att.weight]" in msg
    assert "unexpected keys [head.attention.weight]" in msg

    # right keys, wrong shapes (30 -> 14 classes)
    sd = load_file(str(write_random_task1(tmp_path / "m.safetensors", head="mlp")))
    sd["classifier.6.weight"] = sd["classifier.6.weight"][:14]
    sd["classifier.6.bias"] = sd["classifier.6.bias"][:14]
    torch.save({"model_state_dict": sd}, tmp_path / "shape.pth")
    with pytest.raises(
        CheckpointError, match=r"classifier.6.weight \(14, 512\) \(expected \(30, 512\)\)"
    ):
        load_task1_model(tmp_path / "shape.pth")

    # a truncated safetensors file
    good = write_random_task1(tmp_path / "t.safetensors", head="csra").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError):
        read_state_dict(tmp_path / "trunc.safetensors")

    # a dict that is not a state dict
    torch.save({"epoch": 3, "note": "x"}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match="'epoch' is a int"):
        read_state_dict(tmp_path / "meta.pth")


class _Evil:
    """Unpickling this calls os.mkdir(marker): code execution on load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {
        "model_state_dict": {"backbone.stem.0.weight": torch.zeros(1)},
        "hook": _Evil(marker),
    }
    if how == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    # the payload is live: plain unpickling runs it
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Evil(live)))
    assert live.is_dir()
    with pytest.raises(CheckpointError) as e:
        load_task1_model(path)
    assert (
        "refused" in str(e.value) and "mkdir" in str(e.value) and str(e.value).startswith(str(path))
    )
    assert not marker.exists()
