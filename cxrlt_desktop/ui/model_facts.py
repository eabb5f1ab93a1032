"""Model facts in the GUI: the findings panel's model line and the models part of Help > About.

Both name the models the settings configure, each by its model card (:mod:`cxrlt_desktop.models
.cards`): a model is matched through the model registry by its path, or as a DEMO model by its
manifest (no hashing on the GUI thread).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any


def _card_of_path(path: Path, registry: Any) -> tuple[str, Any]:
    """(role, card or None) of a configured model file or CLIP folder: by its registry entry,
    else the DEMO card when its manifest says demo. Cheap on the GUI thread (no hashing: a model
    the registry does not know has no card here; ``cxrlt models add`` registers it)."""
    from cxrlt_desktop.models.cards import card
    from engine.manifest import is_demo_model

    p = Path(path).expanduser()
    try:
        resolved = p.resolve()
    except OSError:
        resolved = p
    entry = (
        next((m for m in registry.models if Path(m.path) == resolved), None) if registry else None
    )
    role = "clip" if p.is_dir() else "task1"
    if entry is not None:
        return entry.role, card(entry.card) or (card("demo") if entry.demo else None)
    return role, card("demo") if is_demo_model(p) else None


def configured_cards(settings: Any) -> list[tuple[str, Path, Any]]:
    """(role, path, card or None) for every model the settings configure."""
    try:
        from cxrlt_desktop.models import Registry

        registry = Registry()
    except (OSError, ValueError):
        registry = None
    paths = [Path(p) for p in getattr(settings, "task1_checkpoints", []) or []]
    clip = getattr(settings, "clip_model", None)
    if clip is not None:
        paths.append(Path(clip))
    out = []
    for p in paths:
        role, c = _card_of_path(p, registry)
        out.append((role, p, c))
    return out


def model_line(settings: Any) -> tuple[str, str]:
    """(text, tooltip HTML) for the findings panel: which models score, and their facts."""
    from cxrlt_desktop.models.cards import card_html

    items = configured_cards(settings)
    if not items:
        return "Models: none configured", ""
    names = []
    tips = []
    for _role, p, c in items:
        names.append(c.title if c is not None else f"{p.name} (not registered, no model card)")
        tips.append(
            card_html(c) if c is not None else f"<p>{html.escape(str(p))}: no model card</p>"
        )
    return (
        "Models: " + "; ".join(names),
        "".join(tips) + "<p>Help &gt; About and docs/models.md have the model facts.</p>",
    )


def about_models_html(settings: Any) -> str:
    """The models part of Help > About: each configured model's card, short."""
    items = configured_cards(settings) if settings is not None else []
    if not items:
        return "<p><b>Models:</b> none configured (Settings &gt; Models &gt; Get the published models).</p>"
    e = html.escape
    rows = []
    for _role, p, c in items:
        if c is None:
            rows.append(
                f"<li>{e(p.name)}: no model card (a model this installation does not know)</li>"
            )
        else:
            rows.append(
                f"<li><b>{e(c.title)}</b><br>{e(c.intended_use)}<br>"
                f"<i>{e(c.reported_results)}</i><br>Limits: {e(c.known_limits)}</li>"
            )
    return (
        "<p><b>Models in use</b></p><ul>"
        + "".join(rows)
        + "</ul><p>Full cards: docs/models.md; cxrlt models list.</p>"
    )


__all__ = ["about_models_html", "configured_cards", "model_line"]
