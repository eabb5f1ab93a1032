"""``cxrlt score-library`` and ``cxrlt worker`` before any scoring: a bad option, a missing
library or a model file that cannot be loaded is one error line naming the command, with exit
status 2 (usage, settings, store) or 1 (models), and the library is left as it was."""

from __future__ import annotations

import pytest

from cxrlt_desktop.cli import main
from cxrlt_desktop.store import open_store

COMMANDS = ["score-library", "worker"]


@pytest.fixture
def library(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    db = f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    open_store(db).close()
    return db


@pytest.mark.parametrize("command", COMMANDS)
def test_a_checkpoint_that_cannot_be_loaded_exits_1(command, library, tmp_path, capsys):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    args = [command, "--db", library, "--task1-checkpoint", str(broken), "--device", "cpu"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"cxrlt {command}: error: {broken}: not a safetensors or torch ")
    store = open_store(library, create=False)  # closed by the command, still usable
    store.close()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_batch_size_exits_2(command, library, tmp_path, capsys):
    args = [command, "--db", library, "--task1-checkpoint", str(tmp_path / "m.safetensors")]
    assert main([*args, "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == f"cxrlt {command}: error: --batch-size must be >= 1\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_library_exits_2(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CXRLT_CONFIG", str(tmp_path / "none.toml"))
    missing = tmp_path / "typo.db"
    args = [command, "--db", f"sqlite:///{missing.as_posix()}"]
    assert main([*args, "--task1-checkpoint", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cxrlt {command}: error: ") and "does not exist" in err, err
    assert not missing.exists()
