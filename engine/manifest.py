"""Model manifests: the JSON files that training and the demo write beside their model files."""

from __future__ import annotations

import json
import os
from pathlib import Path


def manifest_candidates(model_path: str | os.PathLike[str]) -> list[Path]:
    """Where a manifest for ``model_path`` may be, in the order they are looked at.

    Beside a file: ``<stem>.json``, ``<file>.json``, ``<stem>.manifest.json``,
    ``<stem>_manifest.json``, ``manifest.json`` (the layouts of ``cxrlt train`` and
    ``cxrlt demo-models``). Inside an open_clip folder: ``manifest.json``,
    ``open_clip_config.json``.
    """
    p = Path(model_path)
    if p.is_dir():
        return [p / "manifest.json", p / "open_clip_config.json"]
    return [
        p.with_suffix(".json"),
        p.with_name(p.name + ".json"),
        p.with_name(p.stem + ".manifest.json"),
        p.with_name(p.stem + "_manifest.json"),
        p.parent / "manifest.json",
    ]


def is_demo_model(model_path: str | os.PathLike[str] | None) -> bool:
    """True when a manifest of the model (see :func:`manifest_candidates`) has ``"demo": true``.

    Unreadable or malformed manifests count as not demo.
    """
    if model_path is None:
        return False
    for cand in manifest_candidates(model_path):
        try:
            if not cand.is_file():
                continue
            data = json.loads(cand.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("demo") is True:
            return True
    return False
