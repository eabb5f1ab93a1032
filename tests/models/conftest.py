"""Fixtures for the model fetch/registry tests: tiny random-weight models in the published
layouts, a pins file for them, a hub-shaped server serving them, and a private data folder and
settings file per test."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hubserver import Hub, HubServer

TASK1_REPO = "test-owner/task1-tiny"
CLIP_REPO = "test-owner/clip-tiny"
TASK1_FILE = "convnextv2_base_mimic-cxr_padchest_csra_dbcas.safetensors"
REVISION = hashlib.sha1(b"pinned test revision").hexdigest()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(task1 file, clip folder): a convnextv2_atto CSRA safetensors and a tiny open_clip folder."""
    from engine.random_models import write_random_task1, write_tiny_clip

    root = tmp_path_factory.mktemp("tiny-models")
    task1 = write_random_task1(root / TASK1_FILE, head="csra", seed=3)
    clip = write_tiny_clip(root / "clip", seed=4)
    return task1, clip


def _entry(path: Path) -> dict:
    data = path.read_bytes()
    return {"path": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


@pytest.fixture
def pins_file(tiny_models, tmp_path):
    """A pins file in the release's format for the tiny models at REVISION."""
    task1, clip = tiny_models
    doc = json.loads(
        (Path(__file__).resolve().parents[2] / "resources/models/published.json").read_text()
    )
    t, c = doc["models"]
    t.update(repo_id=TASK1_REPO, revision=REVISION, files=[_entry(task1)])
    c.update(
        repo_id=CLIP_REPO,
        revision=REVISION,
        files=[
            _entry(clip / "open_clip_config.json"),
            _entry(clip / "open_clip_pytorch_model.bin"),
        ],
    )
    p = tmp_path / "pins.json"
    p.write_text(json.dumps(doc, indent=2))
    return p


@pytest.fixture
def hub(tiny_models):
    task1, clip = tiny_models
    h = Hub()
    h.add(TASK1_REPO, REVISION, TASK1_FILE, task1.read_bytes())
    for name in ("open_clip_config.json", "open_clip_pytorch_model.bin"):
        h.add(CLIP_REPO, REVISION, name, (clip / name).read_bytes())
    return h


@pytest.fixture
def hub_url(hub):
    with HubServer(hub) as url:
        yield url


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    """A fresh data folder and settings file for this test (CXRLT_DATA_DIR, CXRLT_CONFIG)."""
    data = tmp_path / "data"
    cfg = tmp_path / "settings.toml"
    monkeypatch.setenv("CXRLT_DATA_DIR", str(data))
    monkeypatch.setenv("CXRLT_CONFIG", str(cfg))
    return data, cfg
