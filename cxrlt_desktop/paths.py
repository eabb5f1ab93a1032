"""Where the app keeps its files: the user data folder (platformdirs), overridable for tests."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "cxrlt-desktop"


def data_dir() -> Path:
    """The user data folder (database, salt, caches). ``CXRLT_DATA_DIR`` overrides it."""
    override = os.environ.get("CXRLT_DATA_DIR")
    path = (
        Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_file() -> Path:
    """The settings TOML file. ``CXRLT_CONFIG`` overrides it."""
    override = os.environ.get("CXRLT_CONFIG")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "settings.toml"


def cache_dir() -> Path:
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
