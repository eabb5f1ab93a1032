"""``cxrlt inspect``: one record per file, JSON keys, PHI only on request, exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cxrlt_desktop.cli import main
from engine.imageio import META_KEYWORDS, PHI_KEYWORDS


@pytest.fixture
def folder(tmp_path, write, make_ramp, testdata):
    """A folder holding one good radiograph, several bad files and a symlink loop."""
    root = tmp_path / "studies"
    write(
        "studies/good.dcm",
        make_ramp((300, 300), 0, 4095, np.uint16),
        bits_stored=12,
        patient_id="PID42",
        patient_name="Doe^John",
    )
    write(
        "studies/lateral.dcm",
        make_ramp((300, 300), 0, 4095, np.uint16),
        bits_stored=12,
        view_position="LL",
    )
    write(
        "studies/ct.dcm", make_ramp((300, 300), 0, 4095, np.uint16), bits_stored=12, modality="CT"
    )
    (root / "empty.dcm").write_bytes(b"")
    (root / "notes.png").write_text("this is not an image\n")
    (root / "series.dcm").mkdir()
    (root / "sub").mkdir()
    (root / "sub" / "loop").symlink_to(root)
    os.symlink(testdata("RG1_UNCR.dcm"), root / "sub" / "rg1.dcm")
    return root


def _records(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    return {os.path.basename(r["path"]): r for r in json.loads(out)}


def test_inspect_json_records(folder, capsys):
    recs = _records(capsys, ["inspect", str(folder), "--json"])
    assert set(recs) == {
        "ct.dcm",
        "empty.dcm",
        "good.dcm",
        "lateral.dcm",
        "notes.png",
        "series.dcm",
        "loop",
        "rg1.dcm",
    }
    good = recs["good.dcm"]
    assert good["ok"] is True and good["reason"] is None and good["warnings"] == []
    assert good["Modality"] == "CR" and good["Rows"] == 300 and good["BitsStored"] == 12
    assert good["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
    for rec in recs.values():
        assert {"path", "ok", "reason", "warnings"} <= set(rec)
        assert not set(PHI_KEYWORDS) & set(rec)  # no PHI without --show-phi
        assert set(META_KEYWORDS) - set(PHI_KEYWORDS) <= set(rec)
    assert recs["lateral.dcm"]["ok"] is True
    assert recs["lateral.dcm"]["warnings"] == [
        "lateral view (ViewPosition=LL); the models expect PA/AP"
    ]
    assert recs["ct.dcm"]["reason"] == "not a radiograph (Modality=CT; need CR, DX or DR)"
    assert recs["empty.dcm"]["reason"] == "empty file (0 bytes)"
    assert recs["notes.png"]["reason"].startswith("not an image: the file holds text")
    assert recs["series.dcm"]["reason"] == (
        "is a directory named like an image file, holding no files"
    )
    assert recs["loop"]["reason"].startswith("symbolic link loop: leads back to ")
    assert (
        recs["rg1.dcm"]["ok"] is True
        and recs["rg1.dcm"]["PhotometricInterpretation"] == "MONOCHROME1"
    )


def test_inspect_show_phi(folder, capsys):
    recs = _records(capsys, ["inspect", str(folder / "good.dcm"), "--json", "--show-phi"])
    good = recs["good.dcm"]
    assert good["PatientID"] == "PID42"
    assert good["PatientName"] == "Doe^John"
    assert set(PHI_KEYWORDS) <= set(good)


def test_inspect_text_lines(folder, capsys):
    assert main(["inspect", str(folder)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 8
    by_name = {os.path.basename(line.split(": ")[0]): line for line in lines}
    assert by_name["good.dcm"] == (
        f"{folder / 'good.dcm'}: OK (CR, 300x300, MONOCHROME2, 12-bit, Explicit VR Little Endian, view PA)"
    )
    assert by_name["empty.dcm"] == f"{folder / 'empty.dcm'}: REJECTED: empty file (0 bytes)"
    assert "warning: lateral view" in by_name["lateral.dcm"]
    assert "8 files: 3 OK, 5 rejected" in captured.err


def test_inspect_decode_finds_damaged_compressed_pixels(tmp_path, write, make_ramp, capsys):
    from pydicom.uid import JPEG2000Lossless

    path = write(
        "j2k.dcm",
        make_ramp((300, 300), 0, 4095, np.uint16),
        bits_stored=12,
        transfer_syntax=JPEG2000Lossless,
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3] + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    assert _records(capsys, ["inspect", str(path), "--json"])["j2k.dcm"]["ok"] is True
    rec = _records(capsys, ["inspect", str(path), "--json", "--decode"])["j2k.dcm"]
    assert rec["ok"] is False and rec["reason"].startswith("cannot decode JPEG 2000")


def test_inspect_usage_error_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        main(["inspect"])
    assert err.value.code == 2
    assert "PATH" in capsys.readouterr().err


def test_inspect_subprocess(folder):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run(
        [sys.executable, "-m", "cxrlt_desktop", "inspect", str(folder), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)
    names = [os.path.basename(r["path"]) for r in recs]
    assert names == [
        "ct.dcm",
        "empty.dcm",
        "good.dcm",
        "lateral.dcm",
        "notes.png",
        "series.dcm",
        "loop",
        "rg1.dcm",
    ]
    assert [r["ok"] for r in recs] == [False, False, True, True, False, False, False, True]
    assert proc.stderr == ""  # pydicom's warnings do not leak into the output


@pytest.mark.parametrize("encoding", ["utf-8:strict", "ascii"])
def test_inspect_odd_file_names_on_strict_consoles(tmp_path, write, make_ramp, encoding):
    # A Latin-1 file name (lone surrogates in Python) and a non-ASCII one used to abort the
    # listing with UnicodeEncodeError on a strict UTF-8 or an ASCII/cp1252 console.
    good = write("names/ñandú.dcm", make_ramp((300, 300), 0, 4095, np.uint16), bits_stored=12)
    latin1 = os.path.join(os.fsencode(good.parent), b"caf\xe9.dcm")
    try:
        with open(latin1, "wb") as fp:
            fp.write(good.read_bytes())
    except OSError:
        pytest.skip("the file system does not accept a non-UTF-8 file name")
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    for extra in (["--json"], []):
        proc = subprocess.run(
            [sys.executable, "-m", "cxrlt_desktop", "inspect", str(good.parent), *extra],
            capture_output=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr.decode("ascii", "replace")
        out = proc.stdout.decode(encoding.split(":")[0])
        if extra:
            recs = json.loads(out)
            assert [r["path"] for r in recs] == [
                str(good.parent / "caf\\xe9.dcm"),
                str(good),
            ]
            assert all(r["ok"] for r in recs)
        else:
            assert out.count(": OK (") == 2 and "caf\\xe9.dcm: OK" in out
