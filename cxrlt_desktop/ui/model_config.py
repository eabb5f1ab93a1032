"""The models the settings configure, as the window sees them: the predictor factory, whether
any of them is a demo model, and the red DEMO banner that says so.

A model counts as a demo model when a manifest beside its file (or inside its folder) says
``"demo": true`` (:func:`engine.manifest.is_demo_model`); the banner shows whenever the
configured or the loaded models include one, unless the window was told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from engine.manifest import is_demo_model

DEMO_BANNER = "DEMO MODEL - not for clinical use"


def is_demo_model_file(path: str | Path | None) -> bool:
    """True when a manifest beside a model file (or in a model folder) says demo."""
    return is_demo_model(path)


def settings_use_demo_models(settings) -> bool:
    """Whether any configured model file carries a demo manifest."""
    paths = list(settings.task1_checkpoints or []) + [settings.clip_model]
    return any(is_demo_model_file(p) for p in paths if p is not None)


def settings_have_models(settings) -> bool:
    """Whether the settings configure any model (Task 1 checkpoints or a CLIP folder)."""
    return bool(settings.task1_checkpoints) or settings.clip_model is not None


def thresholds_in_force(settings) -> dict[str, float]:
    """Every finding's operating threshold: the defaults overlaid with the settings' own."""
    from engine.classes import DEFAULT_THRESHOLDS

    return {**DEFAULT_THRESHOLDS, **(settings.thresholds or {})}


def predictor_factory(settings, overrides: dict[str, Any]) -> Callable[[], Any]:
    """A function building the :class:`engine.predictor.Predictor` these settings configure."""
    overrides = dict(overrides)

    def factory():
        from engine.predictor import Predictor

        return Predictor(settings.engine_config(**overrides))

    return factory


class DemoBanner(QLabel):
    """The red "DEMO MODEL - not for clinical use" line above the panels (hidden by default)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(DEMO_BANNER, parent)
        self.setObjectName("demoBanner")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet(
            "#demoBanner { background: #c92a2a; color: white; font-weight: bold;"
            " font-size: 14px; padding: 4px; }"
        )
        self.setVisible(False)

    def update_for(self, settings, predictor=None, forced: bool | None = None) -> bool:
        """Show the banner when ``forced`` says so, or (``forced`` None) when the configured or
        the loaded models include a demo model; returns whether it is shown."""
        demo = forced
        if demo is None:
            demo = settings_use_demo_models(settings) or (
                predictor is not None
                and any(is_demo_model_file(getattr(m, "path", None)) for m in predictor.models)
            )
        self.setVisible(bool(demo))
        return bool(demo)


__all__ = [
    "DEMO_BANNER",
    "DemoBanner",
    "is_demo_model_file",
    "predictor_factory",
    "settings_have_models",
    "settings_use_demo_models",
    "thresholds_in_force",
]
