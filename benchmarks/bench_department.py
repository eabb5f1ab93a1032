"""Department mode on a PostgreSQL server: what the queue, the workers and the change feed cost.

Three measurements, each on a database of its own (``cxrlt_bench_<random>``, created on the
server named by ``--server`` and dropped at the end):

1. **The store alone**: 1, 2 and 4 worker processes (``ScoringWorker``, the loop ``cxrlt worker``
   runs) with a stand-in predictor that returns seeded random probabilities at once, in batches
   of 64 (one claim of 64 jobs, 64 attempt records, one batch write per batch). Each run scores
   the whole library under a model set of its own. jobs/s is counted from the first claim to
   the last batch written (start-up and the run's completion left out), and the time per batch
   of 64 is the workers' wall time per batch.
2. **End to end**: 1 and 2 ``cxrlt worker`` processes with a random-weight convnextv2_atto
   checkpoint in fast mode on the CPU (the engine's default input size unless ``--image-size``),
   on 512 x 512 uncompressed radiographs (the store runs: 256 x 256, the smallest
   the scan accepts, decoded by the stand-in's reads): jobs/s between the first and the last prediction
   written (the model load left out), and the wall time of the whole command.
3. **Change feed latency**: a listener (``cxrlt_desktop.store.notify.ChangeFeed``, the one the
   GUI uses) and a writer recording verdicts one at a time through the store; the time from
   the writer's COMMIT (sent after the store's ``pg_notify``) to the listener's callback
   (median, 95th percentile, max).

    .venv/bin/python benchmarks/bench_department.py \
        [--server postgresql+psycopg://root@/postgres?host=/var/run/postgresql] \
        [--images 3840] [--e2e-images 96] [--notifications 200]

Prints one line per figure and the machine it ran on. Figures depend on the machine (cores,
disk, load): run it where the department's server will be.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 64
DEFAULT_SERVER = "postgresql+psycopg://root@/postgres?host=/var/run/postgresql"


class StandIn:
    """The predictor interface with instant seeded random results (one model set per ``tag``).
    It reads each file through ``read`` as the engine does, so every image's attempt is
    recorded and its file checked against the scan: the store's real per-image work."""

    def __init__(self, tag: str) -> None:
        from engine.predictor import ModelInfo

        self.models = [
            ModelInfo(Path("/x/m.safetensors"), f"{tag:0>64}", "convnextv2_atto", "task1-csra", 1.0)
        ]
        self.settings = {"mode": "fast", "device": "cpu", "stand_in": tag}
        self.rng = np.random.default_rng(int(tag, 16) if tag.isalnum() else 0)

    def predict_paths(self, paths, read=None, batch_size=8, should_stop=None):  # noqa: ANN001, ANN201
        from engine.predictor import PathResult

        for p in paths:
            if read is not None:
                read(Path(p))
            probs = self.rng.random(36)
            yield PathResult(Path(p), True, None, probs, None, probs[:30].copy(), 0.0)


@contextmanager
def database(server: str):
    """A new database on ``server``; yields its URL and drops it at the end."""
    from sqlalchemy import create_engine, make_url

    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"cxrlt_bench_{secrets.token_hex(5)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def write_library(folder: Path, n: int, size: int, per_study: int = 4) -> None:
    from pydicom.uid import generate_uid

    from engine.dicomwrite import write_dicom

    rng = np.random.default_rng(0)
    px = rng.integers(0, 4096, (size, size), dtype=np.uint16)
    study = None
    for i in range(n):
        if i % per_study == 0:
            study = generate_uid()
        write_dicom(
            folder / f"{i // per_study:05d}" / f"{i:06d}.dcm",
            px,
            patient_id=f"P{i // per_study:05d}",
            study_uid=study,
            bits_stored=12,
        )


def scan_into(url: str, folder: Path) -> int:
    from cxrlt_desktop.library.scanning import scan
    from cxrlt_desktop.store import open_store

    store = open_store(url)
    try:
        for _ in scan(store, [folder]):
            pass
        from sqlalchemy import func, select

        from cxrlt_desktop.store.models import Image

        with store.session() as s, s.begin():
            return int(s.scalar(select(func.count(Image.id)).where(Image.usable.is_(True))))
    finally:
        store.close()


# ------------------------------------------------------------------------------- store alone
def _store_worker(url: str, tag: str, name: str, barrier, out) -> None:  # noqa: ANN001
    """One worker process: wait for the others, then claim, 'score' and write until empty."""
    from cxrlt_desktop.library.worker import ScoringWorker
    from cxrlt_desktop.store import open_store

    store = open_store(url)
    worker = ScoringWorker(store, StandIn(tag), batch_size=BATCH, claim_size=BATCH, name=name)
    barrier.wait()
    times: list[float] = []
    done = 0
    first = None
    cpu0 = time.process_time()
    for prog in worker.run():
        now = time.time()
        if first is None:
            first = now  # after the start and the first claim
        if prog.done > done:
            times.append(now)
            done = prog.done
    client_cpu = time.process_time() - cpu0
    server = _backend_cpu(store)
    store.close()
    out.put((name, first, times, done, client_cpu, server))


def _backend_cpu(store) -> dict[int, float]:  # noqa: ANN001
    """CPU seconds used so far by each server process of this database (the server runs on
    this machine: /proc; empty elsewhere)."""
    from sqlalchemy import text

    with store.engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        cpu = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu


def bench_store(url: str, n_images: int, workers: int, tag: str) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_store_worker, args=(url, tag, f"bench-{tag}-{k}", barrier, out))
        for k in range(workers)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    start = min(r[1] for r in results)
    end = max(r[2][-1] for r in results if r[2])
    done = sum(r[3] for r in results)
    if done != n_images:
        raise SystemExit(f"bench: {done} jobs written, {n_images} expected")
    batches = sum(len(r[2]) for r in results)
    wall = end - start
    server: dict[int, float] = {}
    for r in results:
        for pid, sec in r[5].items():
            server[pid] = max(server.get(pid, 0.0), sec)
    return {
        "client_ms": 1000 * sum(r[4] for r in results) / done,
        "server_ms": 1000 * sum(server.values()) / done,
        "jobs_s": done / wall,
        "ms_per_batch": 1000 * wall * workers / batches,
        "batches": batches,
    }


# ------------------------------------------------------------------------------- end to end
def bench_end_to_end(
    url: str, workers: int, ckpt: Path, image_size: int | None, env: dict[str, str]
) -> dict[str, float]:
    from sqlalchemy import func, select

    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Prediction

    args = [sys.executable, "-m", "cxrlt_desktop", "worker", "--db", url]
    args += ["--task1-checkpoint", str(ckpt), "--task1-arch", "convnextv2_atto"]
    args += ["--mode", "fast", "--device", "cpu", "--no-progress"]
    if image_size:
        args += ["--image-size", str(image_size)]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([*args, "--name", f"e2e{k}"], env=env, stderr=subprocess.PIPE, text=True)
        for k in range(workers)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"bench: cxrlt worker exited {p.returncode}:\n{err[-2000:]}")
    wall = time.perf_counter() - t0
    store = open_store(url)
    with store.session() as s, s.begin():
        n, first, last = s.execute(
            select(
                func.count(Prediction.id),
                func.min(Prediction.created_at),
                func.max(Prediction.created_at),
            )
        ).one()
    store.close()
    steady = (n - 1) / (last - first).total_seconds()
    return {"n": n, "jobs_s": steady, "wall_s": wall}


# ------------------------------------------------------------------------------- change feed
def bench_notify(url: str, n: int) -> dict[str, float]:
    from sqlalchemy import event, select

    from cxrlt_desktop.library.reviews import set_verdict
    from cxrlt_desktop.store import open_store
    from cxrlt_desktop.store.models import Image
    from cxrlt_desktop.store.notify import ChangeFeed

    store = open_store(url)
    with store.session() as s, s.begin():
        image_ids = list(s.scalars(select(Image.id).order_by(Image.id).limit(n)).all())
    arrived = threading.Event()
    stamp: list[float] = []

    def on_change(change) -> None:  # noqa: ANN001
        if change.what == "verdict":
            stamp.append(time.perf_counter())
            arrived.set()

    commits: list[float] = []  # just before each DBAPI commit (after the store's pg_notify)
    event.listen(store.engine, "commit", lambda _conn: commits.append(time.perf_counter()))
    feed = ChangeFeed(store).start(on_change)
    if not feed.connected.wait(10):
        raise SystemExit("bench: the change feed did not connect")
    lat: list[float] = []
    writes: list[float] = []
    for k in range(n):
        arrived.clear()
        stamp.clear()
        t0 = time.perf_counter()
        set_verdict(
            store,
            image_ids[k % len(image_ids)],
            "Pneumothorax",
            ("present", "absent")[k % 2],
            reviewer="bench",
        )
        t1 = time.perf_counter()
        if not arrived.wait(10):
            raise SystemExit(f"bench: notification {k} never arrived")
        lat.append(stamp[0] - commits[-1])
        writes.append(t1 - t0)
        time.sleep(0.01)
    feed.stop()
    store.close()
    return {
        "median_ms": 1000 * statistics.median(lat),
        "p95_ms": 1000 * sorted(lat)[int(0.95 * (len(lat) - 1))],
        "max_ms": 1000 * max(lat),
        "write_median_ms": 1000 * statistics.median(writes),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default=DEFAULT_SERVER, help="SQLAlchemy URL of a maintenance DB")
    ap.add_argument("--images", type=int, default=60 * BATCH, help="library for the store runs")
    ap.add_argument("--workers", default="1,2,4", help="worker processes of the store runs")
    ap.add_argument("--e2e-images", type=int, default=96)
    ap.add_argument("--e2e-workers", default="1,2")
    ap.add_argument("--image-size", type=int, default=None, help="engine input size (default)")
    ap.add_argument("--notifications", type=int, default=200)
    args = ap.parse_args()

    print(
        f"machine: {platform.machine()} {os.cpu_count()} logical CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="cxrlt-bench-dept-") as tmp:
        root = Path(tmp)
        env = dict(
            os.environ,
            CXRLT_DATA_DIR=str(root / "data"),
            CXRLT_CONFIG=str(root / "none.toml"),
            HF_HUB_OFFLINE="1",
        )
        os.environ.update(CXRLT_DATA_DIR=env["CXRLT_DATA_DIR"], CXRLT_CONFIG=env["CXRLT_CONFIG"])

        # 1. The store alone.
        write_library(root / "small", args.images, 256)
        with database(args.server) as url:
            from cxrlt_desktop.store import open_store

            open_store(url).close()  # migrated once, before the workers start
            n = scan_into(url, root / "small")
            if n != args.images:
                raise SystemExit(f"bench: {n} usable images scanned, {args.images} written")
            print(f"store alone: {n} images, batches of {BATCH}, stand-in predictor")
            for k, w in enumerate(int(x) for x in args.workers.split(",")):
                r = bench_store(url, n, w, tag=f"{k + 1:x}")
                print(
                    f"  {w} worker process(es): {r['jobs_s']:.0f} jobs/s, "
                    f"{r['ms_per_batch']:.0f} ms per batch of {BATCH} per worker "
                    f"({r['batches']} batches); CPU per job: workers {r['client_ms']:.1f} ms, "
                    f"database server {r['server_ms']:.1f} ms"
                )
            # 3. The change feed, on the same library.
            r = bench_notify(url, args.notifications)
            print(
                f"change feed (verdict commit -> listener, {args.notifications} writes): "
                f"median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                f"max {r['max_ms']:.1f} ms (the write itself: median {r['write_median_ms']:.1f} ms)"
            )

        # 2. End to end with the engine.
        from engine.random_models import write_random_task1

        ckpt = write_random_task1(root / "atto.safetensors", head="csra", seed=0)
        write_library(root / "e2e", args.e2e_images, 512)
        size = args.image_size or "default"
        print(
            f"end to end: {args.e2e_images} uncompressed 512 x 512 images, convnextv2_atto "
            f"(random weights), fast mode, CPU, input size {size}"
        )
        for w in (int(x) for x in args.e2e_workers.split(",") if x):
            with database(args.server) as url:
                open_store(url).close()
                scan_into(url, root / "e2e")
                r = bench_end_to_end(url, w, ckpt, args.image_size, env)
            print(
                f"  {w} cxrlt worker process(es): {r['jobs_s']:.1f} jobs/s between the first "
                f"and the last prediction ({r['n']} images), {r['wall_s']:.1f} s wall with "
                "start-up"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
