"""Crafted files against the image input: each attack is rebuilt here and must fail one file only.

The decoder faults that crafted streams used to cause (an abort in CharLS/GDCM, a 13 GiB
allocation in OpenJPEG) are now stopped by the stream-size check before any decoder runs, so the
isolation of the decoders themselves is also tested with faults made on demand in the worker
(``CXRLT_DECODER_TEST_CRASH``).
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hostile_files import (
    SECRET,
    huge_private_element,
    j2k_lying_size,
    jpegls_lying_size,
    nan_slope,
    nan_tiff,
    palette_png,
    png_bomb,
    png_chunk,
    secret_text,
)

from engine import imageio
from engine.imageio import isolation
from engine.imageio.formats import PNG_SIGNATURE
from engine.imageio.records import printable
from engine.imageio.streams import StreamError, StreamSize, declared_size

REAL_COMPRESSED = [
    "RG1_J2KR.dcm",  # JPEG 2000 lossless chest radiograph
    "RG1_J2KI.dcm",  # JPEG 2000 lossy chest radiograph
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG lossless SV1
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, colour
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "MR_small_RLE.dcm",  # RLE
    "RG3_J2KR.dcm",  # JPEG 2000 lossless chest radiograph, 1760 x 1760
    "JPEG-LL.dcm",  # JPEG lossless process 14
]


@pytest.fixture
def fresh_pool():
    """A pool started for this test, with the default limits restored afterwards."""
    isolation.shutdown()
    before = isolation.configure()
    yield isolation
    isolation.shutdown()
    isolation.configure(
        workers=before.workers,
        memory_bytes=before.memory_bytes,
        timeout_s=before.timeout_s,
        isolate=before.isolate,
    )


def _rejected(path: Path, start: str) -> str:
    with pytest.raises(imageio.ImageReadError) as err:
        imageio.read_source(path)
    assert err.value.path == path
    assert err.value.reason.startswith(start), err.value.reason
    return err.value.reason


# --- the size a stream declares ------------------------------------------------------------


def test_declared_size_of_hand_built_headers():
    # JPEG baseline: SOI, an APP0 segment to skip, SOF0 (P=8, Y=300, X=200, Nf=1).
    app0 = b"\xff\xe0" + struct.pack(">H", 6) + b"JFIF"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 300, 200, 1) + b"\x01\x11\x00"
    assert declared_size(b"\xff\xd8" + app0 + sof0) == StreamSize("JPEG", 300, 200, 1)
    # JPEG-LS: SOF55 (0xFFF7) with Y=1024, X=768, 1 component.
    sof55 = b"\xff\xf7" + struct.pack(">HBHHB", 11, 16, 1024, 768, 1) + b"\x01\x11\x00"
    assert declared_size(b"\xff\xd8" + sof55) == StreamSize("JPEG-LS", 1024, 768, 1)
    # J2K codestream: SIZ with Xsiz=2000, Ysiz=3000, offsets 100 and 50 -> 1900 x 2950.
    siz = struct.pack(">HHIIIIIIIIH", 41, 0, 2000, 3000, 100, 50, 2000, 3000, 0, 0, 1)
    codestream = b"\xff\x4f\xff\x51" + siz + b"\x07\x01\x01"
    assert declared_size(codestream) == StreamSize("JPEG 2000", 2950, 1900, 1)
    # The same codestream inside a JP2 file: signature, ftyp, then the jp2c box.
    jp2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + struct.pack(">I4s", 12, b"ftyp") + b"jp2 "
    jp2 += struct.pack(">I4s", 8 + len(codestream), b"jp2c") + codestream
    assert declared_size(jp2) == StreamSize("JPEG 2000", 2950, 1900, 1)
    assert declared_size(b"\x00\x01\x02\x03") is None  # RLE and others have no own size


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xda\x00\x08",  # scan data before any frame header
        b"\xff\xd8\x00\x00\x00\x00",  # no marker where one must be
        b"\xff\x4f\xff\x51\x00\x29",  # SIZ cut short
        b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JP2 without a codestream box
    ],
)
def test_declared_size_of_damaged_headers(data):
    with pytest.raises(StreamError):
        declared_size(data)


# --- crafted files ---------------------------------------------------------------------------


def test_jpegls_stream_larger_than_its_header_is_refused_before_decoding(tmp_path):
    path = jpegls_lying_size(tmp_path / "ls.dcm")
    assert imageio.read_header(path).ok  # the header itself is plausible
    reason = _rejected(path, "compressed JPEG-LS stream declares 65535 x 65535 pixels, over")
    assert "limit" in reason


def test_j2k_bomb_is_refused_before_decoding(tmp_path):
    path = j2k_lying_size(tmp_path / "bomb.dcm")
    _rejected(path, "compressed JPEG 2000 stream declares 60000 x 60000 pixels, over the limit")


@pytest.mark.parametrize("builder", [jpegls_lying_size, j2k_lying_size])
def test_stream_size_that_disagrees_with_the_header_is_refused(tmp_path, builder):
    path = builder(tmp_path / "lie.dcm", 512)  # within the pixel limit, but not 256 x 256
    _rejected(path, "compressed ")
    with pytest.raises(imageio.ImageReadError, match="declares 512 x 512 pixels, the header says"):
        imageio.read_source(path)


def test_unpatched_crafted_streams_decode(tmp_path):
    # Control: the builders' files decode when the size is not a lie, so the refusals above
    # come from the size, not from a broken file.
    for builder in (jpegls_lying_size, j2k_lying_size):
        path = builder(tmp_path / f"{builder.__name__}.dcm", 256)
        assert imageio.read_source(path).shape == (256, 256)


def test_png_decompression_bomb_is_refused_from_its_header(tmp_path):
    path = png_bomb(tmp_path / "zeros.png")
    assert path.stat().st_size < 400_000
    info = imageio.read_header(path)
    assert not info.ok
    assert info.reason == (
        "declared image size 16000 x 16000 is over the limit of 67108864 pixels per image "
        "(a decompression bomb or not a radiograph)"
    )
    _rejected(path, "declared image size 16000 x 16000 is over the limit")


def test_png_chunk_longer_than_the_file_is_refused_without_allocating_it(tmp_path):
    # In a fresh process: a 3 KB palette PNG whose PLTE chunk claims 2.55 GB (a file the
    # image-input fuzzer made; the PNG reader used to allocate the claimed size) is refused
    # with the chunk named, and the peak memory stays within 100 MiB of decoding the same
    # image with a truthful chunk, which decodes to its gradient.
    plain = palette_png(tmp_path / "plain.png")
    lying = palette_png(tmp_path / "lying.png", plte_length=2_550_137_600)
    assert lying.stat().st_size < 10_000
    script = textwrap.dedent(
        f"""
        import resource
        import numpy as np
        from engine import imageio
        a = imageio.read_source({str(plain)!r})
        assert a.shape == (64, 64) and a[0, 0] == 0 and a[-1, -1] == 255, (a.shape, a[0, 0])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert imageio.read_header({str(lying)!r}).ok  # the header (IHDR) is sound
        try:
            imageio.read_source({str(lying)!r})
        except imageio.ImageReadError as e:
            print(e)
        else:
            raise SystemExit("the lying PNG was not refused")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) // 1024)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    reason, grown = out.stdout.strip().splitlines()
    assert reason == (
        f"{lying}: damaged PNG: chunk PLTE at byte 33 declares 2,550,137,600 bytes, more than "
        f"the file holds ({lying.stat().st_size:,} bytes)"
    )
    assert int(grown) < 100, f"reading grew the peak memory by {grown} MiB"


PNG_HEAD = PNG_SIGNATURE + png_chunk(b"IHDR", bytes(13))  # the next chunk is at byte 33


@pytest.mark.parametrize(
    "tail, reason",
    [
        (png_chunk(b"IEND", b""), None),
        (b"", None),  # no IEND: truncated, left to the decoder
        (png_chunk(b"IDAT", b"", 2**31), "chunk IDAT at byte 33 declares 2,147,483,648 bytes"),
        (png_chunk(b"IDAT", b"x" * 10, 11), "chunk IDAT at byte 33 declares 11 bytes"),
        # a type the specification does not register is not quoted (bytes of the file)
        (png_chunk(b"pass", b"", 99), "a chunk at byte 33 declares 99 bytes"),
        (png_chunk(b"p4s\n", b""), "the chunk type at byte 33 is not four letters"),
    ],
)
def test_png_chunk_walk(tail, reason):
    from engine.imageio.formats import FormatError, check_png_chunks

    data = PNG_HEAD + tail
    if reason is None:
        check_png_chunks(data)
        return
    with pytest.raises(FormatError) as e:
        check_png_chunks(data)
    assert str(e.value).startswith(f"damaged PNG: {reason}")


@pytest.mark.parametrize("value", ["NaN", "inf", "-inf"])
def test_non_finite_rescale_slope_is_refused(tmp_path, value):
    path = nan_slope(tmp_path / "nan.dcm", value)
    info = imageio.read_header(path)
    assert not info.ok
    assert info.reason.startswith("RescaleSlope is ")
    assert info.reason.endswith("pixel data would be NaN or infinity after rescale")
    _rejected(path, "RescaleSlope is ")


def test_float_tiff_with_nan_is_refused(tmp_path):
    path = nan_tiff(tmp_path / "nan.tif")
    assert imageio.read_header(path).ok
    assert _rejected(path, "pixel data contains NaN or infinity") == (
        "pixel data contains NaN or infinity (floating-point image)"
    )


def test_modality_lut_that_makes_nan_is_refused(tmp_path, write):
    # A finite slope whose product overflows float64 to inf.
    path = write("overflow.dcm", np.full((256, 256), 4000, np.uint16), bits_stored=12)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.RescaleSlope = "1e308"
    ds.RescaleIntercept = "1e308"
    ds.save_as(path)
    _rejected(path, "pixel data contains NaN or infinity after rescale")


def test_rejection_reason_never_quotes_file_content(tmp_path):
    target = secret_text(tmp_path / "passwd")
    link = tmp_path / "scan" / "image.dcm"
    link.parent.mkdir()
    link.symlink_to(target)
    for path in (target, link):
        info = imageio.read_header(path)
        assert not info.ok
        for fragment in (SECRET[:8], "s3cr3t", "root:x"):
            assert fragment not in info.reason


def test_huge_private_element_is_not_read(tmp_path):
    # In a fresh process: the peak memory while reading a file with a 300 MB private element
    # stays within 100 MB of reading the same image without it.
    plain = tmp_path / "plain.dcm"
    big = huge_private_element(tmp_path / "big.dcm")
    from hostile_files import chest

    from engine.dicomwrite import write_dicom

    write_dicom(plain, chest(), bits_stored=12)
    assert big.stat().st_size > 300 * 2**20
    script = textwrap.dedent(
        f"""
        import resource
        import numpy as np
        from engine import imageio
        a = imageio.read_source({str(plain)!r})
        imageio.read_header({str(plain)!r})
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert imageio.read_header({str(big)!r}).ok
        b = imageio.read_source({str(big)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert np.array_equal(a, b)
        print((after - before) // 1024)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    grown_mib = int(out.stdout.strip())
    assert grown_mib < 100, f"reading grew the peak memory by {grown_mib} MiB"


# --- the decoder workers ---------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL_COMPRESSED)
def test_real_files_decode_identically_in_a_worker_and_in_process(testdata, fresh_pool, name):
    path = testdata(name)
    in_worker = imageio.read_source(path)
    fresh_pool.configure(isolate=False)
    in_process = imageio.read_source(path)
    np.testing.assert_array_equal(in_worker, in_process)
    assert in_worker.dtype == in_process.dtype


def _with_fault(monkeypatch, pool, fault: str) -> None:
    # Workers read the fault from their environment, inherited when they start.
    monkeypatch.setenv("CXRLT_DECODER_TEST_CRASH", fault)
    pool.shutdown()


def _without_fault(monkeypatch, pool) -> None:
    monkeypatch.delenv("CXRLT_DECODER_TEST_CRASH")
    pool.shutdown()


def test_decoder_crash_fails_one_file_and_the_next_decodes(testdata, fresh_pool, monkeypatch):
    path = testdata("RG1_J2KR.dcm")
    _with_fault(monkeypatch, fresh_pool, "abort")
    reason = _rejected(path, "decoder crashed (SIGABRT) on this file")
    assert os.getpid()  # still here
    assert "memory limit" in reason
    _without_fault(monkeypatch, fresh_pool)
    assert imageio.read_source(path).shape == (1955, 1841)


def test_crashed_worker_is_replaced_without_a_restart(testdata, fresh_pool, monkeypatch):
    path = testdata("MR_small_jpeg_ls_lossless.dcm")
    imageio.read_source(path)
    first = fresh_pool.worker_pids()
    assert len(first) == 1
    os.kill(first[0], signal.SIGKILL)  # killed from outside while idle
    assert imageio.read_source(path).shape == (64, 64)
    assert fresh_pool.worker_pids() and fresh_pool.worker_pids() != first


def test_decoder_timeout_stops_the_worker(testdata, fresh_pool, monkeypatch):
    path = testdata("MR_small_RLE.dcm")
    fresh_pool.configure(timeout_s=1.0)
    _with_fault(monkeypatch, fresh_pool, "hang")
    _rejected(path, "decoder timed out after 1 s on this file")
    assert fresh_pool.worker_pids() == []  # the hung worker was killed, not kept
    _without_fault(monkeypatch, fresh_pool)
    assert imageio.read_source(path).shape == (64, 64)


def test_decoder_memory_limit_holds(testdata, fresh_pool, monkeypatch):
    # 2 GiB asked for under a 1 GiB limit: the worker's allocation fails, the file fails.
    fresh_pool.configure(memory_bytes=2**30)
    _with_fault(monkeypatch, fresh_pool, f"allocate:{2 * 2**30}")
    _rejected(testdata("MR_small_RLE.dcm"), "decoder ran out of memory (limit 1.0 GiB per decoder)")


def test_workers_do_not_outlive_their_parent(tmp_path, testdata):
    script = textwrap.dedent(
        f"""
        import os
        from engine import imageio
        from engine.imageio import isolation
        if __name__ == "__main__":
            imageio.read_source({str(testdata("MR_small_RLE.dcm"))!r})
            print(*isolation.worker_pids(), flush=True)
            os.kill(os.getpid(), 9)
        """
    )
    main = tmp_path / "parent.py"
    main.write_text(script)
    out = subprocess.run([sys.executable, str(main)], capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL
    pids = [int(p) for p in out.stdout.split()]
    assert pids
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "a decoder worker outlived its killed parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fp:
            return fp.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_header_values_cannot_break_a_reason_into_lines(tmp_path, dataset, make_ramp):
    # A report-like file without pixels whose SOP Class UID holds a line break and a terminal
    # escape, and a knee radiograph whose BodyPartExamined sets the terminal's title: each
    # reason quoting them stays one visible line.
    ds = dataset(make_ramp((300, 300), 0, 255, np.uint8))
    del ds.PixelData
    ds.SOPClassUID = "1.2.3\n\x1b[31mRED"
    ds.file_meta.MediaStorageSOPClassUID = "1.2.3"
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    reason = imageio.read_header(path).reason
    assert reason.startswith("no pixel data: not an image (SOP class ")
    assert reason.isprintable()
    assert "\\x0a" in reason and "\\x1b[31mRED" in reason
    ct = dataset(make_ramp((300, 300), 0, 255, np.uint8))
    ct.BodyPartExamined = "KNEE\x1b]0;title\x07"
    ct.save_as(tmp_path / "knee.dcm", enforce_file_format=True)
    reason = imageio.read_header(tmp_path / "knee.dcm").reason
    assert reason == "not a chest radiograph (BodyPartExamined=KNEE\\x1b]0;title\\x07)"
    assert printable("left\u202eright") == "left\\u202eright"  # bidirectional override


def test_library_messages_never_quote_bytes_from_the_file(tmp_path):
    from engine.imageio.records import one_line

    text = one_line(ValueError("Instead received b'secret\\x00bytes' with length 14"))
    assert "secret" not in text
    assert text == "Instead received (bytes) with length 14"


def test_unknown_transfer_syntax_is_a_reason(tmp_path, write, make_ramp):
    path = write("odd.dcm", make_ramp((300, 300), 0, 4095, np.uint16), bits_stored=12)
    data = path.read_bytes().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.9\x00", 1)
    assert b"1.2.840.10008.1.2.9" in data
    path.write_bytes(data)
    with pytest.raises(imageio.ImageReadError) as err:
        imageio.read_image(path)
    assert "1.2.840.10008.1.2.9" in err.value.reason
    assert "unexpected error" not in err.value.reason
