"""Stable pseudonyms for patients and images: salted SHA-256 with a per-installation salt.

The salt is 32 random bytes in ``data_dir()/pseudonym_salt`` (created on first use, mode 0600).
The same identifier gets the same pseudonym in the worklist, the GUI and every export of this
installation, and cannot be reversed without the salt file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from functools import lru_cache
from pathlib import Path

SALT_FILE = "pseudonym_salt"
LENGTH = 16  # hex characters shown (64 bits): unique enough for a department, short to read


def salt_path() -> Path:
    """Where the salt lives: ``cxrlt_desktop.paths.data_dir() / "pseudonym_salt"``."""
    from cxrlt_desktop.paths import data_dir

    return data_dir() / SALT_FILE


@lru_cache(maxsize=8)
def _load_salt(path: str) -> bytes:
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
        tmp.write_bytes(secrets.token_bytes(32))
        os.chmod(tmp, 0o600)
        try:
            # link() fails when another process created the salt first: its salt wins.
            os.link(tmp, p)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    salt = p.read_bytes()
    if len(salt) < 16:
        raise ValueError(
            f"{p}: pseudonym salt file is too short ({len(salt)} bytes); delete it to make a new one"
        )
    return salt


def get_salt(path: Path | None = None) -> bytes:
    """The installation's salt (created when missing)."""
    return _load_salt(str(path or salt_path()))


def pseudonym(
    value: str, *, kind: str = "patient", salt: bytes | None = None, length: int = LENGTH
) -> str:
    """``sha256(salt || kind || 0x00 || value)`` as hex, cut to ``length`` characters.

    Parameters
    ----------
    value
        The identifier (PatientID, patient key, SOPInstanceUID, ...).
    kind
        A namespace, so a PatientID and a UID with the same text get different pseudonyms.
    salt
        Override the installation's salt (tests).
    """
    s = get_salt() if salt is None else salt
    digest = hashlib.sha256(s + kind.encode() + b"\0" + value.encode("utf-8")).hexdigest()
    return digest[:length]
