"""DICOM node benchmark (run by hand, not in CI).

1. Receive throughput: DCMTK ``storescu`` pushes N uncompressed 2048 x 2048 16-bit radiographs
   (8 MB each, studies of 2 images) over loopback to ``cxrlt listen --no-score`` and, in the same
   run, to DCMTK's own ``storescp`` (the anchor: writes files, nothing else). Both receive with
   a maximum PDU of 131072 bytes (storescp's largest). Reported: images/s, MB/s and the ratio.
   ``cxrlt listen`` does more per object than storescp: an fsync per file, the input layer's
   header check, the atomic rename and a library transaction per batch.
2. Latency: ``cxrlt listen`` scoring in-process (fast mode, a random-weight convnextv2_atto CSRA
   checkpoint at the real 512 px input, CPU): one 2-image study pushed at a time; the time from
   storescu's end (the last object received and answered) to the study on the worklist with
   both images scored (``query_worklist`` polled every 20 ms). Median and max over K studies.

Usage::

    .venv/bin/python benchmarks/bench_dicom_node.py [--images 200] [--studies 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZE = 2048
PDU = 131072


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_studies(folder: Path, n: int, per_study: int = 2, seed: int = 0) -> list[list[Path]]:
    """n uncompressed 2048 x 2048 CRs in studies of ``per_study`` (distinct patients)."""
    from pydicom.uid import generate_uid

    from engine.dicomwrite import write_dicom

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    base = ((xx + yy) // 2).astype(np.uint16)  # 0..2047, plus noise: 12-bit
    studies = []
    for s in range(0, n, per_study):
        study, series = generate_uid(), generate_uid()
        paths = []
        for i in range(min(per_study, n - s)):
            px = base + rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint16)
            paths.append(
                write_dicom(
                    folder / f"s{seed}_{s:04d}_{i}.dcm",
                    px,
                    patient_id=f"B{seed}{s:05d}",
                    study_uid=study,
                    series_uid=series,
                    bits_stored=12,
                    extra={"InstanceNumber": i + 1},
                )
            )
        studies.append(paths)
    return studies


def push(port: int, files: list[Path]) -> float:
    """storescu all files in one association; returns the wall time."""
    t0 = time.perf_counter()
    p = subprocess.run(
        ["storescu", "-aec", "CXRLT", "--max-pdu", str(PDU), "127.0.0.1", str(port)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
    )
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"storescu failed: {p.stderr[-2000:]}")
    return dt


class Listen:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cxrlt_desktop", "listen", "--port", "0", "--quiet", *args],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.port = None
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                self.lines.append(line.rstrip())
                m = re.search(r"listening on \S+:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(120)
        if self.port is None:
            raise SystemExit("cxrlt listen did not start:\n" + "\n".join(self.lines))

    def wait_line(self, pattern: str, timeout: float = 600) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if any(re.search(pattern, ln) for ln in self.lines):
                return
            time.sleep(0.05)
        raise SystemExit(f"no {pattern!r}:\n" + "\n".join(self.lines[-20:]))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(120)


def count_images(db: str) -> int:
    from sqlalchemy import func, select

    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Image

    st = open_store(db, create=False)
    try:
        with st.session() as s, s.begin():
            return int(s.scalar(select(func.count(Image.id)).where(Image.usable.is_(True))))
    finally:
        st.close()


def bench_throughput(work: Path, n: int, env: dict[str, str]) -> None:
    src = work / "src"
    src.mkdir()
    t0 = time.perf_counter()
    files = [p for st in write_studies(src, n) for p in st]
    mb = sum(p.stat().st_size for p in files) / 1e6
    print(f"wrote {n} files, {mb:.0f} MB, in {time.perf_counter() - t0:.1f} s", flush=True)

    # anchor: storescp
    out = work / "storescp"
    out.mkdir()
    port = free_port()
    scp = subprocess.Popen(
        ["storescp", "--max-pdu", str(PDU), "-od", str(out), "-aet", "CXRLT", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    t_scp = push(port, files)
    scp.terminate()
    scp.wait()
    assert len(list(out.iterdir())) == n, "storescp did not store every file"

    db = f"sqlite:///{(work / 'thr.db').as_posix()}"
    settings = work / "empty.toml"
    settings.write_text("")
    lst = Listen(
        ["--db", db, "--settings", str(settings), "--inbox", str(work / "inbox"),
         "--no-score", "--max-pdu", str(PDU), "--min-free-mb", "100"],
        env,
    )  # fmt: skip
    t_cx = push(lst.port, files)
    t_lib = time.perf_counter()
    while count_images(db) < n:  # in the library too (the library thread may trail)
        time.sleep(0.05)
    lib_lag = time.perf_counter() - t_lib
    lst.stop()
    for name, t in (("storescp (anchor)", t_scp), ("cxrlt listen", t_cx)):
        print(f"{name:20s} {n / t:7.1f} images/s  {mb / t:7.1f} MB/s  ({t:.2f} s)")
    print(f"cxrlt listen / storescp: {t_scp / t_cx:.2f} of the anchor's throughput")
    print(f"library lag after the last object: {lib_lag * 1000:.0f} ms")
    shutil.rmtree(src)
    shutil.rmtree(out)


def bench_latency(work: Path, k: int, env: dict[str, str]) -> None:
    from engine.random_models import write_random_task1

    ckpt = write_random_task1(work / "csra.safetensors", head="csra", seed=1)
    src = work / "lat"
    src.mkdir()
    studies = write_studies(src, 2 * k, seed=1)
    db = f"sqlite:///{(work / 'lat.db').as_posix()}"
    settings = work / "empty.toml"
    settings.write_text("")
    lst = Listen(
        ["--db", db, "--settings", str(settings), "--inbox", str(work / "inbox-lat"),
         "--task1-checkpoint", str(ckpt), "--task1-arch", "convnextv2_atto", "--mode", "fast",
         "--device", "cpu", "--max-pdu", str(PDU), "--min-free-mb", "100"],
        env,
    )  # fmt: skip
    lst.wait_line("models loaded")
    from cxrlt_desktop.library import query_worklist
    from cxrlt_desktop.store import open_store

    store = open_store(db, create=False)
    lat = []
    import pydicom

    for files in studies:
        uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        push(lst.port, files)
        t0 = time.perf_counter()
        while True:
            rows = query_worklist(store, study_uids=[uid])
            if rows and rows[0].n_scored == len(files):
                break
            if time.perf_counter() - t0 > 600:
                raise SystemExit("study not scored in 600 s:\n" + "\n".join(lst.lines[-20:]))
            time.sleep(0.02)
        lat.append(time.perf_counter() - t0)
        print(
            f"  study of {len(files)}: on the worklist scored {lat[-1]:.2f} s after the push",
            flush=True,
        )
    store.close()
    lst.stop()
    print(
        f"latency last object -> scored on the worklist: median {statistics.median(lat):.2f} s, "
        f"max {max(lat):.2f} s over {k} studies (first includes the first batch's warm-up)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--studies", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    for prog in ("storescu", "storescp"):
        if shutil.which(prog) is None:
            raise SystemExit(f"{prog} not found: apt-get install -y dcmtk")
    print(
        f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        env = dict(os.environ, CXRLT_DATA_DIR=str(work / "data"), HF_HUB_OFFLINE="1")
        if not args.skip_throughput:
            bench_throughput(work, args.images, env)
        if not args.skip_latency:
            bench_latency(work, args.studies, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
