"""Logging set-up of the commands and the GUI: other libraries' warnings and tracebacks are kept off
stderr by default and shown with ``--verbose`` / ``CXRLT_VERBOSE=1``; the app's own messages are
one line each.

The third-party reports are real: pydicom logging every failing decoder plugin with its traceback
(an RLE frame whose header declares 15 segments where a 16-bit image has 2), and PIL warning
about a PNG that declares 90 megapixels (``DecompressionBombWarning``).
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib

import numpy as np
import pytest

from cxrlt_desktop.log_setup import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with warnings.catch_warnings():
        yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _pydicom_decoder_failure(tmp_path) -> None:
    """Decode an RLE frame every plugin refuses; pydicom logs each refusal with a traceback."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    from engine.dicomwrite import write_dicom

    px = np.random.default_rng(0).integers(0, 4000, (300, 300)).astype(np.uint16)
    ds = pydicom.dcmread(write_dicom(tmp_path / "rle.dcm", px, transfer_syntax=RLELossless))
    ds.PixelData = encapsulate([(15).to_bytes(4, "little") + bytes(160)])
    with pytest.raises(RuntimeError, match="Unable to decode"):
        ds.pixel_array  # noqa: B018


def _pil_bomb_warning() -> None:
    """Open (header only) a PNG that declares 10000 x 9000 pixels: PIL warns."""
    from PIL import Image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 10000, 9000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    assert Image.open(io.BytesIO(png)).size == (10000, 9000)


def _own_reports() -> None:
    try:
        raise ValueError("inner detail")
    except ValueError:
        logging.getLogger("engine.somewhere").exception("could not read /data/x.dcm")
    warnings.warn_explicit("own warning", UserWarning, "engine/x.py", 7, module="engine.x")


def test_quiet_by_default_hides_other_libraries_tracebacks_and_warnings(tmp_path, capsys):
    configure_logging(verbose=False)
    _pydicom_decoder_failure(tmp_path)
    _pil_bomb_warning()
    _own_reports()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "pydicom" not in err and "DecompressionBomb" not in err
    lines = err.splitlines()
    assert lines == [
        "cxrlt: engine.somewhere: could not read /data/x.dcm",
        "cxrlt: py.warnings: UserWarning: own warning (engine/x.py:7)",
    ]


def test_verbose_shows_them(tmp_path, capsys):
    configure_logging(verbose=True)
    _pydicom_decoder_failure(tmp_path)
    _pil_bomb_warning()
    err = capsys.readouterr().err
    assert "cxrlt: pydicom.pixels.decoders.base: ERROR:" in err
    assert "Traceback (most recent call last)" in err
    assert "DecompressionBombWarning" in err


@pytest.mark.parametrize(
    ("argv", "env", "shown"),
    [([], None, False), (["--verbose"], None, True), (["-v"], None, True), ([], "1", True)],
)
def test_cli_option_and_environment(argv, env, shown, monkeypatch, capsys):
    from cxrlt_desktop.cli import main

    if env is None:
        monkeypatch.delenv("CXRLT_VERBOSE", raising=False)
    else:
        monkeypatch.setenv("CXRLT_VERBOSE", env)
    assert main(argv) == 2  # no command: help, exit 2, logging already set up
    capsys.readouterr()
    _pil_bomb_warning()
    assert ("DecompressionBombWarning" in capsys.readouterr().err) is shown
