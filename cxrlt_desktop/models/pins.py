"""The published models and their pins: ``resources/models/published.json``.

Each published model names its Hugging Face Hub repository, the commit to download (the
revision) and every file's sha256 and size. A model whose revision is null is *unpinned*: this
release holds no verified revision or checksums for it, and ``cxrlt models fetch`` refuses it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources as importlib_resources
from pathlib import Path

PINS_FILE = Path(str(importlib_resources.files("resources") / "models" / "published.json"))
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class PinError(ValueError):
    """A pins file that cannot be used, or a model that cannot be fetched from it."""


@dataclass(frozen=True)
class PinnedFile:
    path: str  # inside the repository, "/"-separated
    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class Licence:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class PublishedModel:
    """One model of the pins file."""

    name: str  # folder name under the models folder, registry name
    option: str  # "task1" | "clip": the fetch option that selects it
    title: str
    role: str  # the engine's role: "task1-csra" | "task1-mlp" | "clip"
    arch: str
    repo_id: str
    revision: str | None
    files: tuple[PinnedFile, ...]
    use: str  # what the settings point at, relative to the installed folder ("." = the folder)
    licence: Licence
    card: str

    @property
    def pinned(self) -> bool:
        """A revision and every file's sha256 and size are recorded."""
        return self.revision is not None and all(
            f.sha256 is not None and f.size is not None for f in self.files
        )

    def unpinned_message(self) -> str:
        return (
            f"{self.name} ({self.repo_id}): no pinned revision recorded in this release; "
            "download by hand and use `cxrlt models add PATH"
            f" --card {self.card}`"
        )


def load_pins(path: Path | str | None = None) -> list[PublishedModel]:
    """Read and check a pins file (default: the one in ``resources/models``).

    Raises
    ------
    PinError
        Unreadable file, or a malformed entry (a revision that is not a 40-hex commit, a sha256
        that is not 64 hex digits, a file path leaving the folder, a duplicate name).
    """
    p = Path(path) if path else PINS_FILE
    try:
        doc = json.loads(p.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise PinError(f"{p}: cannot read the pins file ({e})") from e
    licences = {
        k: Licence(k, str(v.get("title", k)), str(v.get("text", "")))
        for k, v in (doc.get("licences") or {}).items()
    }
    out: list[PublishedModel] = []
    for i, m in enumerate(doc.get("models") or []):
        where = f"{p}: models[{i}]"
        try:
            rev = m.get("revision")
            if rev is not None and not COMMIT_RE.match(str(rev)):
                raise PinError(f"{where}: revision {rev!r} is not a 40-hex commit hash")
            files = []
            for f in m["files"]:
                fp = str(f["path"])
                if fp.startswith("/") or ".." in fp.split("/") or "\\" in fp or not fp:
                    raise PinError(f"{where}: file path {fp!r} leaves the model folder")
                sha = f.get("sha256")
                if sha is not None and not SHA256_RE.match(str(sha)):
                    raise PinError(f"{where}: sha256 of {fp} is not 64 hex digits")
                size = f.get("size")
                if size is not None and (not isinstance(size, int) or size < 0):
                    raise PinError(f"{where}: size of {fp} is not a byte count")
                files.append(PinnedFile(fp, sha, size))
            lic = m["licence"]
            if lic not in licences:
                raise PinError(f"{where}: licence {lic!r} is not in the licences table")
            model = PublishedModel(
                name=str(m["name"]),
                option=str(m["option"]),
                title=str(m.get("title", m["name"])),
                role=str(m["role"]),
                arch=str(m.get("arch", "")),
                repo_id=str(m["repo_id"]),
                revision=rev,
                files=tuple(files),
                use=str(m.get("use", ".")),
                licence=licences[lic],
                card=str(m.get("card", m["name"])),
            )
        except (KeyError, TypeError) as e:
            raise PinError(f"{where}: missing or bad field ({e})") from e
        if any(o.name == model.name for o in out):
            raise PinError(f"{where}: duplicate name {model.name!r}")
        out.append(model)
    return out


__all__ = ["PINS_FILE", "Licence", "PinError", "PinnedFile", "PublishedModel", "load_pins"]
