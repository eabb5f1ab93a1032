"""Fixtures of the DICOM node tests: ``cxrlt listen`` in a subprocess on a free port.

Everything is real: the command runs as a user runs it (``python -m cxrlt_desktop listen``), with
a SQLite library and an inbox under the test's tmp folder; the peers are pynetdicom SCUs and
DCMTK's programs; the images are pydicom-data's radiographs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

TINY_SIZE = 64  # as tests/conftest.py: the Task 1 input size of the random model

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"listening on (\S+):(\d+)")


class Listener:
    """A running ``cxrlt listen``: its port, inbox, database URL and output lines."""

    def __init__(self, proc: subprocess.Popen, inbox: Path, db: str) -> None:
        self.proc, self.inbox, self.db = proc, inbox, db
        self.lines: list[str] = []
        self.port: int | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = READY.search(line)
            if m and self.port is None:
                self.port = int(m.group(2))
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        self._ready.wait(timeout)
        assert self.port is not None, "cxrlt listen did not start:\n" + self.output()

    def wait_for(self, pattern: str, timeout: float = 60, count: int = 1) -> None:
        """Wait until ``count`` output lines match ``pattern`` (regex)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for ln in list(self.lines) if rx.search(ln)) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count} line(s) matching {pattern!r}:\n" + self.output())

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


@pytest.fixture
def listen(tmp_path):
    """listen(*args, settings=None) -> Listener: ``cxrlt listen --port 0`` with a fresh library
    and inbox (``--no-score`` unless model options are given); stopped with SIGTERM at the end,
    which must exit 0."""
    started: list[Listener] = []

    def start(*args: str, inbox: Path | None = None, db: str | None = None) -> Listener:
        n = len(started)
        inbox = inbox or tmp_path / f"inbox{n}"
        db = db or f"sqlite:///{(tmp_path / f'lib{n}.db').as_posix()}"
        settings = tmp_path / f"settings{n}.toml"
        if not settings.exists():
            settings.write_text("")
        cmd = [
            sys.executable,
            "-m",
            "cxrlt_desktop",
            "listen",
            "--db",
            db,
            "--settings",
            str(settings),
            "--port",
            "0",
            "--inbox",
            str(inbox),
            "--min-free-mb",
            "1",
        ]
        if "--task1-checkpoint" not in args:
            cmd.append("--no-score")
        env = dict(os.environ, CXRLT_DATA_DIR=str(tmp_path / "data"))
        proc = subprocess.Popen(
            [*cmd, *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        lst = Listener(proc, inbox, db)
        started.append(lst)
        lst.wait_ready()
        return lst

    yield start
    for lst in started:
        if lst.proc.poll() is None:
            rc = lst.stop()
            assert rc == 0, f"cxrlt listen exited {rc} on SIGTERM:\n{lst.output()}"
            assert "listen: stopped:" in lst.output()


@pytest.fixture
def open_library():
    """open_library(url) -> Store (closed at the end)."""
    from cxrlt_desktop.store import open_store

    opened = []

    def op(url: str):
        st = open_store(url, create=False)
        opened.append(st)
        return st

    yield op
    for st in opened:
        st.close()


@pytest.fixture
def tiny_model_args(csra_ckpt):
    """The model options of a random-weight convnextv2_atto CSRA checkpoint, fast mode, CPU."""
    return [
        "--task1-checkpoint",
        str(csra_ckpt),
        "--task1-arch",
        "convnextv2_atto",
        "--mode",
        "fast",
        "--image-size",
        str(TINY_SIZE),
        "--device",
        "cpu",
        "--batch-size",
        "2",
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """A new, empty library on each dialect (as tests/library's any_store): a SQLite file, and a
    PostgreSQL database of its own (``postgres_url``: skipped without CXRLT_TEST_POSTGRES)."""
    from cxrlt_desktop.store import open_store

    if request.param == "sqlite":
        url = f"sqlite:///{(tmp_path / 'lib.db').as_posix()}"
    else:
        url = request.getfixturevalue("postgres_url")
    st = open_store(url)
    yield st
    st.close()
