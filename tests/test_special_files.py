"""Settings, zero-shot prompts and calibration paths that are not small regular files are refused
at once with one line naming the file and what it is: a FIFO (opening one for reading used to
wait for a writer for ever), ``/dev/zero`` (read until memory ran out), a folder, a file over
1 MiB (refused from its size, not read: a 64 GiB sparse file would take minutes and all memory).

Every attempt runs in a subprocess with a wall-clock ``timeout`` and a 2 GiB address-space limit,
so a regression fails the test instead of hanging it or exhausting the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.smallfiles import SmallFileError, read_small_text

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")

LOADER = r"""
import resource, sys
limit = 2 << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
what, path = sys.argv[1], sys.argv[2]
try:
    if what == "settings":
        from cxrlt_desktop.settings import Settings
        Settings.load(path)
    elif what == "prompts":
        from engine.zeroshot import load_prompts
        load_prompts(path)
    else:
        from engine.calibration import load_temperatures
        load_temperatures(path)
except Exception as e:
    print(f"{type(e).__name__}: {e}")
else:
    print("accepted")
"""

TIMEOUT_S = 60  # imports included; the refusal itself takes milliseconds
GIB = 1 << 30


def _special(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A path of ``kind`` and the words the refusal must contain."""
    if kind == "fifo":
        path = tmp_path / "settings.fifo"
        os.mkfifo(path)
        return path, "is a FIFO (named pipe), not a regular file"
    if kind == "dev_zero":
        return Path("/dev/zero"), "is a character device, not a regular file"
    if kind == "folder":
        path = tmp_path / "a-folder.json"
        path.mkdir()
        return path, "is a folder, not a regular file"
    path = tmp_path / "huge.json"  # sparse: no disk space, but 64 GiB to read
    with open(path, "wb") as f:
        f.truncate(64 * GIB)
    return path, "too large: 68,719,476,736 bytes (at most 1,048,576 bytes accepted)"


def _load(what: str, path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, what, str(path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "folder", "oversize"])
@pytest.mark.parametrize(
    ("what", "error", "prefix"),
    [
        ("settings", "SettingsError", ""),
        ("prompts", "ZeroShotError", "cannot read the prompts file: "),
        ("calibration", "ValueError", "cannot read the calibration file: "),
    ],
)
def test_special_file_refused_with_its_name(what, error, prefix, kind, tmp_path):
    path, reason = _special(kind, tmp_path)
    out = _load(what, path)
    assert out == f"{error}: {path}: {prefix}{reason}"


def test_cli_names_the_settings_fifo(tmp_path):
    fifo = tmp_path / "settings.toml"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "-m", "cxrlt_desktop", "score-library", "--settings", str(fifo)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "CXRLT_DATA_DIR": str(tmp_path / "data")},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"cxrlt score-library: error: {fifo}: is a FIFO (named pipe), not a regular file"
    ]


def test_gui_names_the_settings_fifo(tmp_path):
    fifo = tmp_path / "settings.toml"
    os.mkfifo(fifo)
    env = {
        **os.environ,
        "CXRLT_DATA_DIR": str(tmp_path / "data"),
        "CXRLT_CONFIG": str(fifo),
        "QT_QPA_PLATFORM": "offscreen",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "cxrlt_desktop", "gui"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
    )
    assert proc.returncode == 2
    assert f"cxrlt gui: {fifo}: is a FIFO (named pipe), not a regular file" in proc.stderr


# -- read_small_text itself ----------------------------------------------------------------------


def test_limit_is_inclusive(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"x" * 100)
    assert read_small_text(p, limit=100) == "x" * 100
    with pytest.raises(SmallFileError, match=r"too large: 100 bytes \(at most 99 bytes accepted\)"):
        read_small_text(p, limit=99)


def test_file_larger_than_its_size_says_stops_at_the_limit():
    # /proc files are regular files that report size 0 and hold more: only the read limit
    # stops them (as it stops a file that grows while being read).
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        pytest.skip("needs Linux /proc")
    with pytest.raises(SmallFileError, match="grew past 64 bytes"):
        read_small_text(maps, limit=64)


def test_missing_and_not_text(tmp_path):
    with pytest.raises(SmallFileError) as e:
        read_small_text(tmp_path / "nope.toml")
    assert str(e.value) == f"{tmp_path / 'nope.toml'}: no such file"
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'reviewer = "M\xfcller"\n')
    with pytest.raises(SmallFileError, match=r"not utf-8 text \(invalid byte at offset 13\)"):
        read_small_text(bad)


_READ_AS_USER = """
import json
from engine.smallfiles import SmallFileError, read_small_text
out = {}
for path in sys.argv[1:]:
    try:
        out[path] = read_small_text(path)
    except SmallFileError as e:
        out[path] = "error: " + str(e)
print(json.dumps(out))
"""


def test_unreadable_file_named(tmp_path):
    """Checked in a process that file modes apply to (as root, without root's file
    capabilities: tests/unprivileged.py), with a readable control beside it."""
    from unprivileged import run_unprivileged

    readable = tmp_path / "open.json"
    readable.write_text("{}")
    p = tmp_path / "secret.json"
    p.write_text("{}")
    p.chmod(0)
    try:
        got = run_unprivileged(_READ_AS_USER, str(readable), str(p))
    finally:
        p.chmod(0o600)
    assert got[str(readable)] == "{}"
    assert got[str(p)].startswith(f"error: {p}: cannot open: Permission denied"), got
