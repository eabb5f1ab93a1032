"""Layer rules: import-linter contracts, and heavy imports kept out of start-up."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_cli_start_up_does_not_import_heavy_libraries():
    code = (
        "import sys, json; from cxrlt_desktop.cli import build_parser; build_parser();"
        "print(json.dumps(sorted(m for m in ('torch', 'timm', 'open_clip', 'PySide6', 'sqlalchemy')"
        " if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_version_flag(capsys):
    from cxrlt_desktop import __version__
    from cxrlt_desktop.cli import main

    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"cxrlt {__version__}"


def test_usage_error_exits_2():
    out = subprocess.run(
        [sys.executable, "-m", "cxrlt_desktop", "no-such-command"], capture_output=True, text=True
    )
    assert out.returncode == 2
