"""The model registry: the model files the app knows, in a JSON manifest in the data folder.

``data_dir()/models.json`` (beside the ``models`` folder ``cxrlt models fetch`` installs into)::

    {"format": 1,
     "models": [{"name", "role", "arch", "path", "sha256", "size", "source", "licence",
                 "card", "demo", "verified", "added"}],
     "accepted_licences": {"<licence id>": {"text_sha256", "accepted"}}}

- ``role``: ``task1-csra`` | ``task1-mlp`` | ``clip`` (the engine's roles); ``path`` the file
  (Task 1) or the open_clip folder (CLIP); ``sha256`` of the weights file.
- ``verified``: ``pinned`` when the sha256 matched the release's pin, else ``unverified``.
- A licence is accepted once per text: a changed text must be accepted again.

Writes are atomic (temporary file, then rename) and the file is private (0600). It is a small
file of the user's own: nothing here goes into the library database.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROLES = ("task1-csra", "task1-mlp", "clip")


class RegistryError(ValueError):
    """A registry file that cannot be read or a name that is not (or already) registered."""


@dataclass
class RegisteredModel:
    name: str
    role: str
    path: str
    sha256: str
    size: int
    arch: str | None = None
    source: str = ""
    licence: str | None = None
    card: str | None = None
    demo: bool = False
    verified: str = "unverified"
    added: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegisteredModel:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Registry:
    """The registry file, read on construction; :meth:`save` writes it back atomically."""

    def __init__(self, path: Path | str | None = None) -> None:
        if path is None:
            from cxrlt_desktop.paths import models_registry_file

            path = models_registry_file()
        self.path = Path(path)
        self.models: list[RegisteredModel] = []
        self.accepted: dict[str, dict[str, str]] = {}
        if self.path.exists():
            try:
                doc = json.loads(self.path.read_text("utf-8"))
                self.models = [RegisteredModel.from_dict(m) for m in doc.get("models", [])]
                self.accepted = dict(doc.get("accepted_licences", {}))
            except (OSError, ValueError, TypeError, AttributeError) as e:
                raise RegistryError(f"{self.path}: cannot read the model registry ({e})") from e

    # -- models -------------------------------------------------------------------------------
    def get(self, name: str) -> RegisteredModel | None:
        return next((m for m in self.models if m.name == name), None)

    def by_sha256(self, sha256: str) -> RegisteredModel | None:
        return next((m for m in self.models if m.sha256 == sha256), None)

    def put(self, model: RegisteredModel) -> None:
        """Add ``model``, replacing an entry of the same name."""
        self.models = [m for m in self.models if m.name != model.name] + [model]

    def remove(self, name: str) -> RegisteredModel:
        m = self.get(name)
        if m is None:
            known = ", ".join(x.name for x in self.models) or "none"
            raise RegistryError(f"no registered model named {name!r} (registered: {known})")
        self.models.remove(m)
        return m

    def unique_name(self, base: str) -> str:
        """``base``, or ``base-2``, ``base-3`` ... whichever is not registered yet."""
        name, n = base, 1
        while self.get(name) is not None:
            n += 1
            name = f"{base}-{n}"
        return name

    # -- licences -----------------------------------------------------------------------------
    def licence_accepted(self, licence_id: str, text: str) -> bool:
        rec = self.accepted.get(licence_id)
        return bool(rec) and rec.get("text_sha256") == text_sha256(text)

    def accept_licence(self, licence_id: str, text: str) -> None:
        self.accepted[licence_id] = {"text_sha256": text_sha256(text), "accepted": _now()}

    # -- file ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "models": [asdict(m) for m in self.models],
            "accepted_licences": self.accepted,
        }

    def save(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        os.replace(tmp, self.path)
        return self.path


def in_use(model: RegisteredModel, settings: Any) -> list[str]:
    """Where ``model`` is in use: ``["settings"]`` when the settings' [models] name its path."""
    p = Path(model.path)
    paths = [Path(c) for c in getattr(settings, "task1_checkpoints", [])]
    clip = getattr(settings, "clip_model", None)
    if clip is not None:
        paths.append(Path(clip))
    same = any(_same(p, q) for q in paths)
    return ["settings"] if same else []


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


__all__ = ["ROLES", "RegisteredModel", "Registry", "RegistryError", "in_use", "text_sha256"]
