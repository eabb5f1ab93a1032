"""Image-input throughput: header reads per second and decode time per image.

Run by hand (not in CI)::

    .venv/bin/python benchmarks/bench_io.py            # 2,000 headers, 2048 x 2048 decodes
    .venv/bin/python benchmarks/bench_io.py --n 500 --repeats 3

Header files: 2,000 synthetic 2048 x 2048 16-bit CR chest DICOMs (Explicit VR Little Endian,
8 MiB of pixel data each). They are written once into ``--dir`` and reused; the pixel data is
a sparse region of each file (a header read never touches it), so they take little disk.
Decode files: the RG1 chest radiograph from pydicom-data resized to 2048 x 2048, written
uncompressed and as JPEG 2000 lossless and lossy; each is read with ``read_image`` (decode +
source array + display array) and ``read_source``.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _header_template(size: int):
    from engine.dicomwrite import make_dataset

    ds = make_dataset(np.zeros((2, 2), np.uint16), bits_stored=16)
    ds.Rows = ds.Columns = size
    del ds.PixelData
    return ds


def make_header_files(folder: Path, n: int, size: int) -> list[Path]:
    """Write ``n`` full-size DICOM files whose pixel data is a sparse (unwritten) region."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"IM{i:05d}.dcm" for i in range(n)]
    nbytes = size * size * 2
    marker = folder / f".complete-{n}-{size}"
    if marker.exists():
        return paths
    ds = _header_template(size)
    for i, path in enumerate(paths):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID = f"BENCH{i // 4:05d}"
        ds.StudyInstanceUID = generate_uid() if i % 4 == 0 else ds.StudyInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        head = buf.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", nbytes)
        with open(path, "wb") as fp:
            fp.write(head)
            fp.truncate(len(head) + nbytes)  # sparse: declared pixels without writing them
    marker.touch()
    return paths


def _read_chunk(paths: list[str]) -> int:
    from engine.imageio import read_header

    return sum(1 for p in paths if read_header(p).ok)


def bench_headers(paths: list[Path], workers: int) -> tuple[float, int]:
    """Files per second reading every header once; returns (rate, number ok)."""
    strs = [str(p) for p in paths]
    if workers == 1:
        t0 = time.perf_counter()
        ok = _read_chunk(strs)
        return len(strs) / (time.perf_counter() - t0), ok
    chunks = [strs[i :: workers * 8] for i in range(workers * 8)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_read_chunk, [c[:5] for c in chunks]))  # start and import in the workers
        t0 = time.perf_counter()
        ok = sum(pool.map(_read_chunk, chunks))
        return len(strs) / (time.perf_counter() - t0), ok


def make_decode_files(folder: Path, size: int) -> dict[str, Path]:
    import cv2
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import JPEG2000, JPEG2000Lossless

    from engine.dicomwrite import make_dataset

    src = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm", download=False)).pixel_array
    px = cv2.resize(src, (size, size), interpolation=cv2.INTER_AREA).astype(np.uint16)
    out = {}
    for name, ts, kwargs in [
        ("uncompressed", None, {}),
        ("JPEG 2000 lossless", JPEG2000Lossless, {}),
        ("JPEG 2000 lossy (10:1)", JPEG2000, {"j2k_cr": [10]}),
    ]:
        slug = "".join(c if c.isalnum() else "_" for c in name.lower())
        path = folder / f"decode_{slug}_{size}.dcm"
        if not path.exists():
            ds = make_dataset(px, bits_stored=15, photometric="MONOCHROME1", window=(15000, 30000))
            if ts is not None:
                ds.compress(ts, **kwargs)
            ds.save_as(path, enforce_file_format=True)
        out[name] = path
    return out


def bench_decode(path: Path, repeats: int, isolate: bool) -> tuple[float, float]:
    """Median ms for read_image (decode + source + display) and for read_source alone.

    ``isolate``: compressed data decoded in a worker process (the default) or in this one.
    """
    from engine.imageio import isolation, read_image, read_source

    isolation.configure(isolate=isolate)
    read_image(path)  # warm the file cache, the codec imports and the worker
    full, src = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        read_image(path)
        full.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        read_source(path)
        src.append(time.perf_counter() - t0)
    return statistics.median(full) * 1e3, statistics.median(src) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="header files (default 2000)")
    ap.add_argument("--size", type=int, default=2048, help="image side (default 2048)")
    ap.add_argument("--repeats", type=int, default=5, help="decode repeats per file")
    ap.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cxrlt-bench-io",
        help="where the files are written once and reused",
    )
    args = ap.parse_args(argv)
    import warnings

    warnings.simplefilter("ignore")
    import pydicom

    t0 = time.perf_counter()
    paths = make_header_files(args.dir / "headers", args.n, args.size)
    decode_files = make_decode_files(args.dir, args.size)
    print(f"files ready in {time.perf_counter() - t0:.1f} s under {args.dir}", file=sys.stderr)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, pydicom {pydicom.__version__}, numpy {np.__version__}"
    )
    print()
    print(f"| header reads ({args.n} files, {args.size} x {args.size} 16-bit) | files/s |")
    print("|---|---|")
    _read_chunk([str(p) for p in paths[:200]])  # warm the page cache and imports
    for workers in (1, 2):
        rate, ok = bench_headers(paths, workers)
        assert ok == len(paths), f"only {ok} of {len(paths)} headers ok"
        label = "1 process" if workers == 1 else f"{workers} processes"
        print(f"| read_header, {label} | {rate:,.0f} |")
    print()
    print(
        f"| decode {args.size} x {args.size} (median of {args.repeats}) | read_image ms, in "
        "process | read_image ms, decoder worker | read_source ms, in process | read_source ms, "
        "decoder worker | worker / in process (read_source) |"
    )
    print("|---|---|---|---|---|---|")
    for name, path in decode_files.items():
        # Alternate the two ways so that a change in machine load hits both.
        runs = {False: [], True: []}
        for _ in range(2):
            for isolate in (False, True):
                runs[isolate].append(bench_decode(path, args.repeats, isolate))
        (full_in, src_in), (full_w, src_w) = (
            tuple(statistics.median(v) for v in zip(*runs[k], strict=True)) for k in (False, True)
        )
        size_mb = path.stat().st_size / 2**20
        print(
            f"| {name} ({size_mb:.1f} MiB) | {full_in:.0f} | {full_w:.0f} | {src_in:.0f} | "
            f"{src_w:.0f} | {src_w / src_in:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
