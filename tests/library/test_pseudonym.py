"""Salted pseudonyms: stable per installation, different across salts and namespaces."""

from __future__ import annotations

import hashlib

from cxrlt_desktop.library.pseudonym import get_salt, pseudonym


def test_stable_and_salted(tmp_path):
    salt = get_salt(tmp_path / "salt")
    assert len(salt) == 32 and get_salt(tmp_path / "salt") == salt
    a = pseudonym("PAT001", salt=salt)
    assert a == hashlib.sha256(salt + b"patient\0PAT001").hexdigest()[:16]
    assert pseudonym("PAT001", salt=b"x" * 32) != a
    assert pseudonym("PAT001", kind="image", salt=salt) != a


def test_salt_file_in_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRLT_DATA_DIR", str(tmp_path))
    p1 = pseudonym("X")
    assert (tmp_path / "pseudonym_salt").stat().st_size == 32
    assert pseudonym("X") == p1
