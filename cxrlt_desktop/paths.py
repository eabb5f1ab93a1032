"""Where the app keeps its files: the user data folder (platformdirs), overridable for tests.

The data folder holds patient names, birth dates and IDs (the database) and the pseudonym salt,
so it is private to the user: created with mode 0700, and the app's own files in it are 0600
(:func:`private_umask` at start-up of the CLI and the GUI, and explicit modes where the files
are created, so code that uses the library directly gets the same).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "cxrlt-desktop"
PRIVATE_UMASK = 0o077  # files 0600, folders 0700
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_umask() -> int:
    """Set the process umask to 0o077 (the app's files readable by the user only); returns the
    previous umask. Called first thing by ``cxrlt`` (every command, the GUI included)."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path, *, tighten: bool = False) -> Path:
    """Create ``path`` (and its missing parents) as a private folder: mode 0700 for every folder
    this call creates, whatever the umask. ``tighten``: also take group and other access away
    from an existing folder (only for folders that are the app's own, never one a user named).
    """
    path = Path(path)
    if not path.is_dir():
        missing = [path, *(p for p in path.parents if not p.exists())]
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=PRIVATE_DIR_MODE)
            except FileExistsError:
                if not folder.is_dir():
                    raise
                continue  # made meanwhile by another process: its mode is its own
            _chmod_private(folder, PRIVATE_DIR_MODE)
    elif tighten:
        _chmod_private(path, PRIVATE_DIR_MODE)
    return path


def _chmod_private(path: Path, mode: int) -> None:
    """Remove group and other permission bits of ``path`` (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            os.chmod(path, st.st_mode & mode & 0o7777)
    except OSError:
        pass  # a folder we cannot chmod (not ours) keeps its mode; its files are still 0600


def data_dir() -> Path:
    """The user data folder (database, salt, caches), mode 0700. ``CXRLT_DATA_DIR`` overrides
    it; an existing override folder keeps its mode (it may be a shared folder a user named),
    while the default folder is made private if an older version left it open."""
    override = os.environ.get("CXRLT_DATA_DIR")
    if override:
        return private_dir(Path(override))
    return private_dir(Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)), tighten=True)


def config_file() -> Path:
    """The settings TOML file. ``CXRLT_CONFIG`` overrides it."""
    override = os.environ.get("CXRLT_CONFIG")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "settings.toml"


def cache_dir() -> Path:
    """The data folder's ``cache`` sub-folder (model conversions), mode 0700."""
    return private_dir(data_dir() / "cache", tighten=True)


def models_dir() -> Path:
    """The data folder's ``models`` sub-folder (what ``cxrlt models fetch`` installs), 0700."""
    return private_dir(data_dir() / "models", tighten=True)


def models_registry_file() -> Path:
    """The model registry (``models.json``, beside the ``models`` folder in the data folder)."""
    return data_dir() / "models.json"
