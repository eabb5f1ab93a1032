"""Model cards: what each model is, was trained on, scored in the paper, and must not be used for.

The cards live in ``resources/models/cards.json``. A model in use is matched to its card by the
sha256 of its weights: through the model registry (a fetched model carries its card; ``cxrlt
models add --card NAME`` names one), through the release's pins, or as a DEMO model by its
manifest. :func:`model_facts_text` is the text export READMEs and the AI-result SR use;
:func:`card_html` what the GUI shows.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

CARDS_FILE = Path(str(importlib_resources.files("resources") / "models" / "cards.json"))
FIELDS = (
    ("intended_use", "Intended use"),
    ("training_data", "Training data"),
    ("reported_results", "Reported results"),
    ("known_limits", "Known limits"),
    ("source", "Source"),
)
FACTS_POINTER = "docs/models.md (cxrlt models list shows the model registry)"


@dataclass(frozen=True)
class ModelCard:
    name: str
    title: str
    method: str
    intended_use: str
    training_data: str
    reported_results: str
    known_limits: str
    source: str


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, ModelCard]:
    doc = json.loads(Path(path).read_text("utf-8"))
    return {
        name: ModelCard(
            name=name,
            **{k: str(c.get(k, "")) for k in ModelCard.__dataclass_fields__ if k != "name"},
        )
        for name, c in doc["cards"].items()
    }


def all_cards(path: Path | str | None = None) -> dict[str, ModelCard]:
    """Every card of the cards file, by name."""
    return dict(_load(str(path or CARDS_FILE)))


def card(name: str | None) -> ModelCard | None:
    return all_cards().get(name) if name else None


_REGISTRY_CACHE: dict[str, Any] = {}


def _user_registry() -> Any:
    """The user's registry, re-read only when its file changed (exports ask once per model per
    image)."""
    from cxrlt_desktop.models.registry import Registry
    from cxrlt_desktop.paths import models_registry_file

    path = models_registry_file()
    try:
        st = path.stat()
        key = f"{path}:{st.st_mtime_ns}:{st.st_size}"
    except OSError:
        key = f"{path}:absent"
    if _REGISTRY_CACHE.get("key") != key:
        try:
            reg = Registry(path)
        except (OSError, ValueError):
            reg = None
        _REGISTRY_CACHE.update(key=key, registry=reg)
    return _REGISTRY_CACHE.get("registry")


@lru_cache(maxsize=1)
def _pinned_cards() -> dict[str, str]:
    """sha256 of a pinned weights file -> its model's card (the release's pins)."""
    from cxrlt_desktop.models.pins import load_pins

    try:
        return {f.sha256: m.card for m in load_pins() for f in m.files if f.sha256}
    except ValueError:
        return {}


def card_for_model(
    sha256: str | None, *, path: str | Path | None = None, registry: Any = None
) -> ModelCard | None:
    """The card of the model with this weights sha256 (None when the app knows no card).

    Looked up in the registry (``registry`` or the user's), then the release's pins, then a DEMO
    manifest beside ``path``.
    """
    if sha256:
        reg = registry if registry is not None else _user_registry()
        entry = reg.by_sha256(sha256) if reg is not None else None
        if entry is not None and entry.card:
            return card(entry.card)
        if entry is not None and entry.demo:
            return card("demo")
        pinned = _pinned_cards().get(sha256)
        if pinned:
            return card(pinned)
    if path is not None:
        from engine.manifest import is_demo_model

        if is_demo_model(path):
            return card("demo")
    return None


def _models_of(description: Any) -> list[Mapping[str, Any]]:
    """The models of a model-set description ({"models": [...]}), a list of such dicts, or
    engine ``ModelInfo`` objects."""
    if isinstance(description, Mapping):
        items: Iterable[Any] = description.get("models") or []
    else:
        items = description or []
    out = []
    for m in items:
        if isinstance(m, Mapping):
            out.append(m)
        else:
            out.append(
                {
                    "sha256": getattr(m, "sha256", None),
                    "role": getattr(m, "role", None),
                    "arch": getattr(m, "arch", None),
                    "path": getattr(m, "path", None),
                }
            )
    return out


def model_facts_text(
    model_set_description: Any, *, registry: Any = None, indent: str = "  "
) -> str:
    """Plain-text model facts for a model set: one block per model, its card's fields.

    ``model_set_description`` is a ``model_set.description`` ({"models": [{"sha256", "role",
    "arch", ...}], ...}), a list of such dicts, or the predictor's ``ModelInfo`` list.
    A model without a card is named as such (sha256 and role), never left out.
    """
    lines: list[str] = []
    for m in _models_of(model_set_description):
        sha = str(m.get("sha256") or "")
        role = str(m.get("role") or "?")
        c = card_for_model(sha or None, path=m.get("path"), registry=registry)
        head = f"{indent}{role} (sha256 {sha[:16] + '...' if sha else 'unknown'})"
        if c is None:
            lines += [f"{head}: no model card; a model this installation does not know"]
            continue
        lines += [f"{head}: {c.title}"]
        for key, label in FIELDS:
            value = getattr(c, key)
            if value:
                lines += [f"{indent}  {label}: {value}"]
    if not lines:
        return f"{indent}(no models)"
    lines += [f"{indent}Model facts: {FACTS_POINTER}"]
    return "\n".join(lines)


def contribution_facts(model: Any, *, registry: Any = None) -> str:
    """One line for a DICOM SR's Contributing Equipment item of ``model`` (a dict with
    ``sha256``/``role`` or a ``ModelInfo``): the card's title, intended use and known limits, and
    where the facts are; at most 1024 characters (ContributionDescription is an ST)."""
    m = _models_of([model])[0]
    sha = str(m.get("sha256") or "")
    c = card_for_model(sha or None, path=m.get("path"), registry=registry)
    if c is None:
        text = (
            f"{m.get('role') or 'model'}: no model card (a model this installation does not know)."
        )
    else:
        text = f"{c.title}. Intended use: {c.intended_use} Known limits: {c.known_limits}"
    return f"{text} Facts: {FACTS_POINTER}"[:1024]


def card_html(c: ModelCard) -> str:
    """The card as rich text for a Qt label or message box."""
    e = html.escape
    rows = "".join(
        f"<tr><td valign='top'><b>{e(label)}</b></td><td>{e(getattr(c, key))}</td></tr>"
        for key, label in FIELDS
        if getattr(c, key)
    )
    return (
        f"<p><b>{e(c.title)}</b><br><i>{e(c.method)}</i></p><table cellpadding='2'>{rows}</table>"
    )


__all__ = [
    "CARDS_FILE",
    "FACTS_POINTER",
    "ModelCard",
    "all_cards",
    "card",
    "card_for_model",
    "card_html",
    "contribution_facts",
    "model_facts_text",
]
