"""No network at run time: ``cxrlt scan``, ``cxrlt score-library`` (OpenVINO backend) and
``cxrlt gui --self-test`` open no internet socket and look up no host name, in the process or in
any child, and nothing third-party writes into the user's home folder.

Each command runs in a subprocess whose ``PYTHONPATH`` starts with a ``sitecustomize.py`` that
installs an audit hook (``sys.addaudithook``): every socket of a family other than ``AF_UNIX``,
every connect/sendto to a network address and every host-name lookup is written to a log file and
refused. Child processes inherit ``PYTHONPATH`` (spawned children load the hook again) or the hook
itself (forked children), so they are covered too. Sockets opened by native code without Python
(a C++ library's own HTTP client) are outside what an audit hook sees.

The environment is the user's, not the test suite's: the offline variables the suite sets are
removed (the app must set them itself), and so are the CI markers that make OpenVINO's telemetry
stay quiet on its own (``CI``, ``TF_BUILD``, ``JENKINS_URL``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SITECUSTOMIZE = r"""
import os
import socket
import sys

_LOG = os.environ["CXRLT_NETLOG"]
_LOOKUPS = {
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
}


def _record(line):
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {line}\n")


def _hook(event, args):
    if not event.startswith("socket."):
        return
    bad = None
    # Creating a socket sends nothing (urllib3, imported by pydicom through requests, probes
    # IPv6 by binding a socket to ::1 at import): what is refused is every lookup, every
    # connect or send to an address, and every bind other than to the loopback.
    if event in _LOOKUPS:
        bad = f"{event} {args[:2]!r}"
    elif event in ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"):
        addr = args[1]
        loopback_bind = (
            event == "socket.bind" and isinstance(addr, tuple) and addr[0] in ("::1", "127.0.0.1")
        )
        if not isinstance(addr, str | bytes) and not loopback_bind:  # AF_UNIX: paths
            bad = f"{event} {addr!r}"
    if bad:
        _record(f"BLOCKED {bad} in {sys.argv[:3]!r}")
        raise OSError(f"network blocked by the test: {bad}")


_record(f"START {sys.argv[:3]!r}")
sys.addaudithook(_hook)
"""

# Set by the suite or by CI; the commands must not depend on them.
_DROP = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK")
_CI_MARKERS = ("CI", "TF_BUILD", "JENKINS_URL")
SIZE = 64


@pytest.fixture
def sandbox(tmp_path):
    """(run, log, home): ``run(*args)`` runs ``cxrlt *args`` under the audit hook."""
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE, "utf-8")
    log = tmp_path / "net.log"
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _DROP + _CI_MARKERS and not k.startswith("XDG_")
    }
    env.update(
        HOME=str(home),
        PYTHONPATH=os.pathsep.join(filter(None, [str(hook_dir), env.get("PYTHONPATH")])),
        CXRLT_NETLOG=str(log),
        CXRLT_DATA_DIR=str(tmp_path / "data"),
        CXRLT_CONFIG=str(tmp_path / "no-settings.toml"),
        QT_QPA_PLATFORM="offscreen",
        TMPDIR=str(tmp_path),
    )

    def run(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "cxrlt_desktop", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        return out

    return run, log, home


def _check(log: Path, home: Path) -> None:
    lines = log.read_text("utf-8").splitlines()
    started = [line for line in lines if " START " in line]
    assert started, "the audit hook never loaded: the test would prove nothing"
    blocked = [line for line in lines if " BLOCKED " in line]
    assert not blocked, "\n".join(blocked)
    written = sorted(
        str(p.relative_to(home))
        for p in home.rglob("*")
        if not p.is_dir() and ".cache/fontconfig" not in p.as_posix()
    )
    assert written == [], f"written under HOME: {written}"


@pytest.mark.slow
def test_score_library_with_openvino_uses_no_network(sandbox, tmp_path):
    from engine.dicomwrite import write_dicom
    from engine.random_models import write_random_task1

    run, log, home = sandbox
    rng = np.random.default_rng(0)
    for i in range(2):
        px = rng.integers(0, 4000, (320, 320)).astype(np.uint16)
        write_dicom(tmp_path / "images" / f"im{i}.dcm", px, extra={"InstanceNumber": i + 1})
    ckpt = write_random_task1(tmp_path / "csra.safetensors", head="csra", seed=1)
    db = f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    run("scan", str(tmp_path / "images"), "--db", db)
    out = run(
        "score-library",
        "--db",
        db,
        "--task1-checkpoint",
        str(ckpt),
        "--task1-arch",
        "convnextv2_atto",
        "--mode",
        "fast",
        "--image-size",
        str(SIZE),
        "--device",
        "cpu",
        "--cpu-backend",
        "openvino",
    )
    assert "2 scored, 0 failed" in out, out
    _check(log, home)


@pytest.mark.slow
def test_gui_self_test_uses_no_network(sandbox):
    run, log, home = sandbox
    out = run("gui", "--self-test")
    assert "self-test passed" in out, out
    _check(log, home)


@pytest.mark.slow
def test_models_list_and_add_use_no_network(sandbox, tmp_path):
    """Only ``cxrlt models fetch`` goes online: listing and adding (which loads the model with
    open_clip, a huggingface_hub user) open no socket."""
    from engine.random_models import write_random_task1, write_tiny_clip

    run, log, home = sandbox
    ckpt = write_random_task1(tmp_path / "csra.safetensors", head="csra", seed=1)
    clip = write_tiny_clip(tmp_path / "clip", seed=2)
    run("models", "add", str(ckpt), "--use")
    run("models", "add", str(clip))
    out = run("models", "list")
    assert "csra.safetensors" in out and "clip" in out, out
    _check(log, home)
