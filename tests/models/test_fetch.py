"""cxrlt models fetch against a hub-shaped server on 127.0.0.1 serving tiny random-weight
models in the published layouts: success (verified, installed, registered, settings updated),
a tampered file, a dropped connection, cancel, unpinned models, an unreachable hub."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from conftest import CLIP_REPO, REVISION, TASK1_FILE, TASK1_REPO

from cxrlt_desktop.models import (
    ChecksumMismatch,
    FetchCancelled,
    FetchError,
    LicenceNotAccepted,
    Registry,
    install_published,
    load_pins,
)
from cxrlt_desktop.settings import Settings


def _accept_all(reg: Registry, pins) -> None:
    for m in pins:
        reg.accept_licence(m.licence.id, m.licence.text)


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_fetch_installs_verified_models_and_configures_settings(
    pins_file, hub, hub_url, user_dirs, tiny_models, tmp_path
):
    task1, clip = tiny_models
    _, cfg = user_dirs
    pins = load_pins(pins_file)
    reg = Registry()
    _accept_all(reg, pins)
    dest = tmp_path / "models"
    seen = []
    done = install_published(
        pins, dest=dest, endpoint=hub_url, registry=reg, settings_path=cfg, progress=seen.append
    )
    assert [d.name for d in done] == ["task1-csra", "whyxrayclip"]
    # installed files are byte-identical to what was served (an independent hash of the source)
    got_task1 = dest / "task1-csra" / TASK1_FILE
    assert got_task1.read_bytes() == task1.read_bytes()
    for name in ("open_clip_config.json", "open_clip_pytorch_model.bin"):
        assert (dest / "whyxrayclip" / name).read_bytes() == (clip / name).read_bytes()
    # nothing but the two model folders (no staging, no huggingface_hub bookkeeping)
    assert _leftovers(dest) == ["task1-csra", "whyxrayclip"]
    assert not (dest / "task1-csra" / ".cache").exists()
    manifest = json.loads((dest / "task1-csra" / "manifest.json").read_text())
    assert manifest["revision"] == REVISION and manifest["repo_id"] == TASK1_REPO
    assert manifest["demo"] is False
    # registry: sha256 of the weights, pinned
    reg2 = Registry()
    e = reg2.get("task1-csra")
    assert e.sha256 == hashlib.sha256(task1.read_bytes()).hexdigest()
    assert e.verified == "pinned" and e.card == "task1-csra" and Path(e.path) == got_task1.resolve()
    # settings now use them
    s = Settings.load(cfg)
    assert s.task1_checkpoints == [got_task1.resolve()]
    assert s.clip_model == (dest / "whyxrayclip").resolve()
    # progress reached the end of every file
    ends = {(p.model, p.file) for p in seen if p.total and p.done == p.total}
    assert ends == {
        ("task1-csra", TASK1_FILE),
        ("whyxrayclip", "open_clip_config.json"),
        ("whyxrayclip", "open_clip_pytorch_model.bin"),
    }
    # every request went to the pinned revision's resolve URLs on the local server
    paths = {p for _, p, _ in hub.requests}
    assert paths == {
        f"/{TASK1_REPO}/resolve/{REVISION}/{TASK1_FILE}",
        f"/{CLIP_REPO}/resolve/{REVISION}/open_clip_config.json",
        f"/{CLIP_REPO}/resolve/{REVISION}/open_clip_pytorch_model.bin",
    }
    # and the engine loads what was installed
    from engine.checkpoints import load_task1_model

    assert load_task1_model(got_task1, arch=None).head == "csra"


def test_tampered_file_is_refused_with_both_hashes_and_nothing_installed(
    pins_file, hub, hub_url, user_dirs, tiny_models, tmp_path
):
    task1, _ = tiny_models
    _, cfg = user_dirs
    evil = bytearray(task1.read_bytes())
    evil[-1] ^= 0xFF  # same size, other bytes
    hub.tamper[TASK1_FILE] = bytes(evil)
    pins = load_pins(pins_file)
    reg = Registry()
    _accept_all(reg, pins)
    dest = tmp_path / "models"
    with pytest.raises(ChecksumMismatch) as ei:
        install_published(pins, dest=dest, endpoint=hub_url, registry=reg, settings_path=cfg)
    msg = str(ei.value)
    assert hashlib.sha256(task1.read_bytes()).hexdigest() in msg  # the pinned hash
    assert hashlib.sha256(bytes(evil)).hexdigest() in msg  # the hash of what came
    assert _leftovers(dest) == []
    assert Registry().models == []
    assert not cfg.exists()


def test_dropped_connection_leaves_nothing(pins_file, hub, hub_url, user_dirs, tmp_path):
    _, cfg = user_dirs
    hub.drop.add("open_clip_pytorch_model.bin")
    pins = load_pins(pins_file)
    reg = Registry()
    _accept_all(reg, pins)
    dest = tmp_path / "models"
    clip_only = [m for m in pins if m.option == "clip"]
    with pytest.raises(FetchError) as ei:
        install_published(clip_only, dest=dest, endpoint=hub_url, registry=reg, settings_path=cfg)
    assert "open_clip_pytorch_model.bin" in str(ei.value)
    assert hub.dropped["open_clip_pytorch_model.bin"] >= 1
    assert _leftovers(dest) == []
    assert Registry().models == [] and not cfg.exists()


def test_cancel_leaves_nothing(pins_file, hub_url, user_dirs, tmp_path):
    _, cfg = user_dirs
    pins = load_pins(pins_file)
    reg = Registry()
    _accept_all(reg, pins)
    cancel = threading.Event()

    def progress(p):
        if p.done > 0:
            cancel.set()

    dest = tmp_path / "models"
    with pytest.raises(FetchCancelled):
        install_published(
            pins,
            dest=dest,
            endpoint=hub_url,
            registry=reg,
            settings_path=cfg,
            progress=progress,
            cancel=cancel,
        )
    assert _leftovers(dest) == [] and not cfg.exists()


def test_refetch_replaces_the_installed_copy(pins_file, hub_url, user_dirs, tmp_path):
    _, cfg = user_dirs
    pins = [m for m in load_pins(pins_file) if m.option == "task1"]
    reg = Registry()
    _accept_all(reg, pins)
    dest = tmp_path / "models"
    install_published(pins, dest=dest, endpoint=hub_url, registry=reg, settings_path=cfg)
    (dest / "task1-csra" / "stray.txt").write_text("old")
    install_published(pins, dest=dest, endpoint=hub_url, registry=reg, settings_path=cfg)
    assert _leftovers(dest) == ["task1-csra"]
    assert not (dest / "task1-csra" / "stray.txt").exists()
    assert [m.name for m in Registry().models] == ["task1-csra"]


def test_licence_must_be_accepted(pins_file, hub, hub_url, user_dirs, tmp_path):
    pins = load_pins(pins_file)
    with pytest.raises(LicenceNotAccepted):
        install_published(pins, dest=tmp_path / "m", endpoint=hub_url, registry=Registry())
    assert hub.requests == []


def test_revision_without_pinned_checksums_is_refused(pins_file, hub, hub_url, user_dirs, tmp_path):
    pins = load_pins(pins_file)
    reg = Registry()
    _accept_all(reg, pins)
    with pytest.raises(FetchError, match="no checksums are recorded for revision"):
        install_published(
            pins, dest=tmp_path / "m", endpoint=hub_url, registry=reg, revision="0" * 40
        )
    assert hub.requests == []


def test_release_pins_of_published_models_are_unpinned_and_refused(user_dirs, tmp_path):
    """This release records no revision/checksums for the published repositories: fetch refuses
    them with the manual route instead of downloading something unverified."""
    pins = load_pins()
    assert {m.repo_id for m in pins} == {
        "hieuphamha/cxrlt2026-task1-convnextv2",
        "yyupenn/whyxrayclip",
    }
    reg = Registry()
    _accept_all(reg, pins)
    for m in pins:
        assert not m.pinned
        with pytest.raises(FetchError) as ei:
            install_published([m], dest=tmp_path / "m", endpoint="http://127.0.0.1:9", registry=reg)
        assert "no pinned revision recorded in this release" in str(ei.value)
        assert "cxrlt models add PATH" in str(ei.value)


def test_unreachable_hub_names_the_manual_route(pins_file, user_dirs, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pins = [m for m in load_pins(pins_file) if m.option == "task1"]
    reg = Registry()
    _accept_all(reg, pins)
    with pytest.raises(FetchError) as ei:
        install_published(
            pins, dest=tmp_path / "m", endpoint=f"http://127.0.0.1:{port}", registry=reg
        )
    msg = str(ei.value)
    assert "cannot reach the model hub" in msg and "cxrlt models add PATH" in msg
    assert _leftovers(tmp_path / "m") == []


def test_offline_mode_is_back_after_a_fetch(pins_file, hub, hub_url, user_dirs, tmp_path):
    """After the fetch, huggingface_hub is offline again: a download reaches no server."""
    from huggingface_hub import constants, hf_hub_download

    pins = [m for m in load_pins(pins_file) if m.option == "task1"]
    reg = Registry()
    _accept_all(reg, pins)
    install_published(pins, dest=tmp_path / "m", endpoint=hub_url, registry=reg)
    assert constants.HF_HUB_OFFLINE is True
    n = len(hub.requests)
    assert n > 0
    with pytest.raises(Exception, match="(?i)offline|cannot find the requested files"):
        hf_hub_download(
            TASK1_REPO, TASK1_FILE, revision=REVISION, endpoint=hub_url, local_dir=tmp_path / "x"
        )
    assert len(hub.requests) == n


def test_redirects_of_the_endpoint_are_followed_other_hosts_refused(
    pins_file, hub, hub_url, user_dirs, tiny_models, tmp_path
):
    """The hub serves large files through a redirect to its storage: followed, because the
    endpoint chose it. A request to any other place is refused by the client."""
    from hubserver import Hub, HubServer

    from cxrlt_desktop.models import HubAccessError, hub_online

    task1, _ = tiny_models
    storage = Hub()
    storage.files = dict(hub.files)
    with HubServer(storage) as storage_url:
        hub.redirect[TASK1_FILE] = storage_url
        pins = [m for m in load_pins(pins_file) if m.option == "task1"]
        reg = Registry()
        _accept_all(reg, pins)
        dest = tmp_path / "m"
        install_published(pins, dest=dest, endpoint=hub_url, registry=reg)
        assert (dest / "task1-csra" / TASK1_FILE).read_bytes() == task1.read_bytes()
        assert [m for m, _, _ in storage.requests] == ["GET"]
        # the same storage server, asked directly (no redirect from the endpoint): refused
        storage.requests.clear()
        with hub_online(hub_url):
            from huggingface_hub.utils import get_session

            with pytest.raises(HubAccessError, match="only talks to"):
                get_session().get(storage_url + "/x")
        assert storage.requests == []
