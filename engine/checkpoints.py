"""Safe loading of Task 1 checkpoints.

Accepted: safetensors files, and files that ``torch.load(weights_only=True)`` can read (the
authors' ``.pth`` training checkpoints). The state dict may be wrapped in
``{"model_state_dict": ...}`` (or ``"state_dict"`` / ``"model"``) and its keys may carry the
``module.`` prefix that DataParallel adds. Nothing is ever unpickled with ``weights_only=False``:
a pickle that names any Python callable is refused before it can run.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")
_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


class CheckpointError(Exception):
    """A model file that cannot be used. ``str(e) == f"{path}: {reason}"``."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def sha256_file(path: Path | str, *, chunk: int = 4 * 2**20) -> str:
    """SHA-256 of a file, streamed, remembered per (path, size, mtime) for this process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[key] = digest
    return digest


def _looks_like_safetensors(path: Path) -> bool:
    # safetensors: 8-byte little-endian header length, then a JSON object.
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < n <= os.path.getsize(path) - 8


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict, safely.

    Parameters
    ----------
    path : path-like
        A ``.safetensors`` file or a torch-saved file of tensors (possibly wrapped).

    Returns
    -------
    dict
        Parameter name -> tensor, with wrappers and ``module.`` prefixes removed.

    Raises
    ------
    CheckpointError
        Missing or unreadable file, a pickle holding Python objects other than tensors and plain
        containers (refused, never executed), or contents that are not a state dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    if _looks_like_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(path, f"unreadable safetensors file ({e})") from e
    else:
        import pickle

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            detail = _unpickling_detail(e)
            foreign = [g for g in _pickle_globals(path) if not g.startswith(_SAFE_GLOBAL_PREFIXES)]
            if foreign:
                detail = f"it calls {', '.join(foreign[:3])}"
            elif "global" not in detail.lower():
                raise CheckpointError(
                    path, f"not a safetensors or torch checkpoint file ({detail})"
                ) from e
            raise CheckpointError(
                path,
                "refused: the file holds Python objects other than tensors, which could run code "
                f"when loaded ({detail}). Only safetensors files and weights-only torch checkpoints "
                "are accepted; convert it with a trusted tool first",
            ) from e
        except Exception as e:  # garbage bytes raise KeyError, EOFError, RuntimeError, ...
            detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise CheckpointError(
                path, f"not a safetensors or torch checkpoint file ({detail})"
            ) from e
    return _unwrap(path, obj)


_SAFE_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "_codecs.encode", "builtins.set")


def _pickle_globals(path: Path) -> list[str]:
    """Names of the callables a pickle would import, found by reading its opcodes (never run).

    Handles torch's zip format (``*/data.pkl``) and plain pickles. Best effort: [] if unreadable.
    """
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name else b""
        else:
            data = path.read_bytes()
        found: list[str] = []
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
        return sorted(set(found))
    except Exception:  # a damaged pickle: the caller reports torch's own message
        return []


def _unpickling_detail(e: Exception) -> str:
    """The informative line of torch's weights-only error (it wraps it in boilerplate)."""
    skip = ("weights only load failed", "please file an issue", "check the documentation")
    for line in str(e).splitlines():
        line = line.strip()
        if line and not line.lower().startswith(skip):
            return line.removeprefix("WeightsUnpickler error:").strip()[:200] or type(e).__name__
    return type(e).__name__


def _unwrap(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    import torch

    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if isinstance(obj, dict):
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = inner
                continue
        break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(
            path, f"expected a state dict (name -> tensor), found {type(obj).__name__}"
        )
    state = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(
                path, f"expected a state dict (name -> tensor), but {k!r} is a {type(v).__name__}"
            )
        state[str(k)] = v
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


@dataclass
class LoadedModel:
    """A Task 1 model ready for inference, and where it came from."""

    model: nn.Module
    head: str
    arch: str
    path: Path
    sha256: str


def load_task1_model(
    path: Path | str, arch: str | None = "convnextv2_base", *, strict_arch: bool = False
) -> LoadedModel:
    """Load a Task 1 checkpoint: head and architecture from its keys, ``strict=True``.

    Parameters
    ----------
    path : path-like
        The checkpoint file.
    arch : str or None
        The timm architecture to use when the file's keys do not identify one (None: convnextv2_base).
    strict_arch : bool
        The user named ``arch`` explicitly: a file holding another architecture is an error.
        Otherwise the architecture found in the file wins.

    Raises
    ------
    CheckpointError
        On any problem, naming the missing and unexpected keys when the layout does not match.
    """
    from engine.models import build_model, detect_arch, detect_head

    path = Path(path)
    state = read_state_dict(path)
    try:
        head = detect_head(state)
    except ValueError as e:
        raise CheckpointError(path, str(e)) from e
    found = detect_arch(state)
    if strict_arch and found is not None and arch is not None and found != arch:
        raise CheckpointError(
            path,
            f"the file holds a {found} backbone but --task1-arch {arch} was given; drop the option or fix it",
        )
    use = found or arch or "convnextv2_base"
    try:
        model = build_model(use, head)
    except Exception as e:  # timm raises RuntimeError for unknown names
        raise CheckpointError(path, f"cannot build architecture {use!r} ({e})") from e
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            path,
            f"does not match a {use} {head.upper()} model: "
            f"missing keys {_short(missing)}; unexpected keys {_short(unexpected)}"
            + ("" if found else " (architecture not recognised from the keys; pass --task1-arch)"),
        )
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(
            path,
            f"does not match a {use} {head.upper()} model: {len(bad)} tensors have other shapes, "
            f"e.g. {k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})",
        )
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedModel(model=model, head=head, arch=use, path=path, sha256=sha256_file(path))


def _short(keys: list[str], n: int = 6) -> str:
    if not keys:
        return "none"
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return "[" + ", ".join(keys[:n]) + "]" + more
