"""``cxrlt models fetch|list|add|remove`` as a user runs them.

The fetch runs in a child process under an audit hook that lets sockets connect to the local
hub server's address only and records everything else (refusing it): the command goes nowhere
but the configured endpoint. ``add`` checks files with the engine's strict loaders.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TASK1_FILE

from cxrlt_desktop.cli import main
from cxrlt_desktop.settings import Settings

HOOK = r"""
import os, socket, sys
_LOG = os.environ["CXRLT_NETLOG"]
_ALLOW = ("127.0.0.1", int(os.environ["CXRLT_ALLOW_PORT"]))

def _record(line):
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {line}\n")

def _hook(event, args):
    if not event.startswith("socket."):
        return
    bad = None
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        if args[0] not in ("127.0.0.1", b"127.0.0.1"):
            bad = f"{event} {args[:2]!r}"
    elif event in ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"):
        addr = args[1]
        if not isinstance(addr, str | bytes):
            if tuple(addr[:2]) != _ALLOW:
                bad = f"{event} {addr!r}"
            else:
                _record(f"ALLOWED {event} {addr!r}")
    if bad:
        _record(f"BLOCKED {bad}")
        raise OSError(f"network blocked by the test: {bad}")

_record("START")
sys.addaudithook(_hook)
"""


def _run_cli(tmp_path: Path, env_extra: dict, *args: str) -> subprocess.CompletedProcess:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    (tmp_path / "home").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")])),
        HOME=str(tmp_path / "home"),
        **env_extra,
    )
    return subprocess.run(
        [sys.executable, "-m", "cxrlt_desktop", "models", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def test_fetch_command_talks_to_the_configured_endpoint_only(
    pins_file, hub, hub_url, user_dirs, tiny_models, tmp_path
):
    data, cfg = user_dirs
    port = hub_url.rsplit(":", 1)[1]
    log = tmp_path / "net.log"
    env = {
        "HF_ENDPOINT": hub_url,
        "CXRLT_NETLOG": str(log),
        "CXRLT_ALLOW_PORT": port,
        "CXRLT_DATA_DIR": str(data),
        "CXRLT_CONFIG": str(cfg),
    }
    # without accepting the licence (no terminal to ask on): refused before any request
    out = _run_cli(tmp_path, env, "fetch", "--pins", str(pins_file))
    assert out.returncode == 1, out.stderr
    assert "licence not accepted" in out.stderr and "--accept-licence" in out.stderr
    assert "research purposes only" in out.stderr  # the licence text was shown
    assert hub.requests == []

    out = _run_cli(tmp_path, env, "fetch", "--pins", str(pins_file), "--accept-licence")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "installed task1-csra" in out.stdout and "installed whyxrayclip" in out.stdout
    lines = log.read_text().splitlines()
    assert any(" START" in x for x in lines), "the audit hook never loaded"
    assert not [x for x in lines if " BLOCKED " in x], lines
    assert [x for x in lines if " ALLOWED socket.connect" in x]  # it did go to the local server
    assert len(hub.requests) >= 3
    s = Settings.load(cfg)
    task1, _ = tiny_models
    assert s.task1_checkpoints == [(data / "models" / "task1-csra" / TASK1_FILE).resolve()]
    assert s.clip_model == (data / "models" / "whyxrayclip").resolve()
    assert (data / "models.json").stat().st_mode & 0o077 == 0
    # nothing of huggingface_hub's own cache or bookkeeping lands in the user's home
    home = tmp_path / "home"
    assert home.is_dir() and [str(p) for p in home.rglob("*") if p.is_file()] == []

    # licence accepted once: a second fetch does not ask again
    out = _run_cli(tmp_path, env, "fetch", "--pins", str(pins_file), "--clip")
    assert out.returncode == 0, out.stderr
    assert "Licence of" not in out.stderr


def test_fetch_of_the_release_pins_is_refused_with_the_manual_route(user_dirs, capsys):
    assert main(["models", "fetch", "--accept-licence"]) == 1
    err = capsys.readouterr().err
    assert "no pinned revision recorded in this release" in err
    assert "cxrlt models add PATH --card task1-csra" in err
    assert "cxrlt models add PATH --card whyxrayclip" in err


def _list(capsys) -> dict:
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    return {r["name"]: r for r in json.loads(capsys.readouterr().out)}


def test_add_accepts_random_weight_checkpoints_in_both_layouts(
    user_dirs, tiny_models, tmp_path, capsys
):
    from engine.random_models import write_random_task1

    task1, clip = tiny_models
    mlp = write_random_task1(
        tmp_path / "mlp_head.pth", head="mlp", layout="pth", wrap=True, prefix=True, seed=5
    )
    assert main(["models", "add", str(task1), "--card", "task1-csra"]) == 0
    assert main(["models", "add", str(mlp), "--card", "task1-mlp"]) == 0
    assert main(["models", "add", str(clip), "--name", "tiny-clip"]) == 0
    rows = _list(capsys)
    a = rows[task1.name]
    assert a["role"] == "task1-csra" and a["arch"] == "convnextv2_atto"
    assert a["sha256"] == hashlib.sha256(task1.read_bytes()).hexdigest()
    assert a["verified"] == "unverified" and a["card"] == "task1-csra"
    assert a["size"] == task1.stat().st_size and a["in_use"] == []
    b = rows["mlp_head.pth"]
    assert b["role"] == "task1-mlp" and b["arch"] == "convnextv2_atto"
    assert b["sha256"] == hashlib.sha256(mlp.read_bytes()).hexdigest()
    c = rows["tiny-clip"]
    assert c["role"] == "clip"
    assert (
        c["sha256"]
        == hashlib.sha256((clip / "open_clip_pytorch_model.bin").read_bytes()).hexdigest()
    )
    # the published models are listed too, as not installed and unpinned
    assert rows["task1-csra"]["verified"] == "unpinned" and rows["task1-csra"]["installed"] is False
    # adding the same file again keeps one entry
    assert main(["models", "add", str(task1)]) == 0
    assert len([r for r in _list(capsys).values() if r["sha256"] == a["sha256"]]) == 1


def test_add_use_configures_settings_and_remove_respects_use(user_dirs, tiny_models, capsys):
    _, cfg = user_dirs
    task1, _ = tiny_models
    assert main(["models", "add", str(task1), "--name", "mine", "--use"]) == 0
    assert Settings.load(cfg).task1_checkpoints == [task1.resolve()]
    assert _list(capsys)["mine"]["in_use"] == ["settings"]
    assert main(["models", "remove", "mine"]) == 1
    assert "in use by the settings" in capsys.readouterr().err
    assert main(["models", "remove", "mine", "--force"]) == 0
    assert "mine" not in _list(capsys)
    assert task1.exists()  # a file the user added is never deleted
    assert main(["models", "remove", "nothing-like-this"]) == 1
    assert "no registered model named" in capsys.readouterr().err


def _not_models(tmp_path: Path) -> list[tuple[Path, str]]:
    text = tmp_path / "notes.safetensors"
    text.write_text("these are not weights\n")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"model_state_dict": Evil()}))
    import torch

    wrong = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 2)}, wrong)
    folder = tmp_path / "empty-folder"
    folder.mkdir()
    return [
        (text, "not a safetensors or torch checkpoint"),
        (evil, "refused"),
        (wrong, "not a CXR-LT Task 1 checkpoint"),
        (folder, "open_clip_config.json"),
        (tmp_path / "missing.safetensors", "no such file"),
    ]


def test_add_refuses_what_is_not_a_model(user_dirs, tmp_path, capsys):
    for path, reason in _not_models(tmp_path):
        capsys.readouterr()
        assert main(["models", "add", str(path)]) == 1, path
        err = capsys.readouterr().err
        assert str(path) in err and reason in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert main(["models", "add", str(tmp_path), "--card", "no-such-card"]) == 2
    from cxrlt_desktop.models import Registry

    assert Registry().models == []


def test_remove_deletes_a_fetched_copy(pins_file, hub_url, user_dirs, capsys):
    from cxrlt_desktop.models import Registry, install_published, load_pins
    from cxrlt_desktop.paths import models_dir

    data, cfg = user_dirs
    pins = [m for m in load_pins(pins_file) if m.option == "task1"]
    reg = Registry()
    for m in pins:
        reg.accept_licence(m.licence.id, m.licence.text)
    install_published(pins, dest=models_dir(), endpoint=hub_url, registry=reg, settings_path=cfg)
    assert main(["models", "remove", "task1-csra", "--force"]) == 0
    assert not (models_dir() / "task1-csra").exists()


@pytest.mark.parametrize("cmd", [["list"], ["list", "--json"]])
def test_list_with_nothing_registered(user_dirs, capsys, cmd):
    assert main(["models", *cmd]) == 0
    out = capsys.readouterr().out
    assert "task1-csra" in out and "whyxrayclip" in out  # the published ones, not installed
