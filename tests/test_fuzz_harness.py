"""The image-input fuzzer's plumbing: the seed corpus is written, every seed passes the harness's
contract checks, and a finding ends the run with a failure status and a reproducer file.

Needs atheris (``pip install -e '.[fuzz]'``, which ``make fuzz`` does); skipped without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "fuzz" / "fuzz_imageio.py"


def _harness(*args: str, env: dict[str, str] | None = None, timeout: int = 300):
    # -rss_limit_mb=0: libFuzzer checks the peak RSS of its process, and on Linux a child keeps
    # the peak of the process it was forked from (here pytest, 2.4 GB after the model tests), so
    # in the full suite every run died as "out-of-memory" before its first input. The memory
    # limit is exercised by `make fuzz`, started from a small process.
    return subprocess.run(
        [sys.executable, str(HARNESS), "-rss_limit_mb=0", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "make_corpus.py"), str(out), "--small"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_corpus_covers_every_kind_of_input(seeds):
    names = {p.name for p in seeds.iterdir()}
    for expected in (
        "realcrop-RG1-explicit.dcm",
        "realcrop-RG1-j2k.dcm",
        "realcrop-RG1-jpegls.dcm",
        "realcrop-RG1-rle.dcm",
        "realcrop-RG1-jpeg-lossless.dcm",
        "realcrop-RG1-bigendian.dcm",
        "realcrop-RG1-deflated.dcm",
        "dicom-u8-jpeg-baseline.dcm",
        "dicom-no-preamble.dcm",
        "png-grey16.png",
        "jpeg-grey.jpg",
        "tiff-grey16.tif",
    ):
        assert expected in names, expected
    assert not any(n.startswith("real-") for n in names)  # --small leaves the full files out


def test_every_seed_passes_the_harness(seeds, tmp_path):
    proc = _harness(
        str(seeds),
        "-runs=0",
        f"-artifact_prefix={tmp_path}/",
        env={"FUZZ_NOTABLE_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "INITED" in proc.stderr
    assert not list(tmp_path.glob("crash-*"))


def test_a_finding_fails_the_run_and_leaves_the_input(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "finding").write_bytes(b"CXRLT-FUZZ-SELF-TEST and some bytes")
    art = tmp_path / "art"
    art.mkdir()
    proc = _harness(
        str(corpus),
        "-runs=0",
        f"-artifact_prefix={art}/",
        env={"FUZZ_SELF_TEST": "1", "FUZZ_NOTABLE_DIR": str(tmp_path / "notable")},
    )
    assert proc.returncode != 0
    assert "ContractError: self-test input" in proc.stdout + proc.stderr
    crashes = list(art.glob("crash-*"))
    assert len(crashes) == 1
    assert crashes[0].read_bytes().startswith(b"CXRLT-FUZZ-SELF-TEST")
