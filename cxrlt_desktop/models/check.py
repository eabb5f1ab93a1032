"""Is this a model? Load it with the engine's own strict loaders and say what it is.

A Task 1 checkpoint goes through :func:`engine.checkpoints.load_task1_model` (safetensors or a
weights-only torch file, ``strict=True`` against the architecture found in its keys); a CLIP
folder through :func:`engine.zeroshot.load_zero_shot` (open_clip ``local-dir:``, the prompts
embedded once). Whatever they refuse is not registered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class NotAModelError(ValueError):
    """``str(e)`` is one line naming the path and why it is not a usable model."""


@dataclass(frozen=True)
class CheckedModel:
    path: Path  # the file (Task 1) or the folder (CLIP)
    role: str  # "task1-csra" | "task1-mlp" | "clip"
    arch: str
    sha256: str  # of the weights file
    size: int  # bytes: the file, or every file in the folder
    demo: bool


def check_model(path: Path | str) -> CheckedModel:
    """Load ``path`` as the engine would and describe it.

    Raises
    ------
    NotAModelError
        Missing path, or a file/folder the engine's loader refuses (its reason in the message).
    """
    from engine.manifest import is_demo_model

    p = Path(path).expanduser()
    if not p.exists():
        raise NotAModelError(f"{p}: no such file or folder")
    if p.is_dir():
        from engine.zeroshot import ZeroShotError, load_prompts, load_zero_shot

        try:
            zs = load_zero_shot(p, prompts=load_prompts(), cache_dir=None)
        except ZeroShotError as e:
            raise NotAModelError(str(e)) from e
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return CheckedModel(p.resolve(), "clip", "open_clip", zs.sha256, size, is_demo_model(p))
    if not p.is_file():
        raise NotAModelError(f"{p}: not a regular file or folder")
    from engine.checkpoints import CheckpointError, load_task1_model

    try:
        loaded = load_task1_model(p, arch=None)
    except CheckpointError as e:
        raise NotAModelError(str(e)) from e
    return CheckedModel(
        p.resolve(),
        f"task1-{loaded.head}",
        loaded.arch,
        loaded.sha256,
        os.path.getsize(p),
        is_demo_model(p),
    )


__all__ = ["CheckedModel", "NotAModelError", "check_model"]
